"""Run the full transfer benchmark as a prioritised queue of resumable jobs.

Contract: each job is one ``transfer.py`` invocation in its own process (so code
that lands while the queue runs is picked up by later jobs); seed 0 of every case
runs before the second seed of any case, so a run stopped early still leaves one
complete seed per case. A failed job is logged and retried once after the queue;
finished runs are never repeated (``transfer.py`` resumes from its JSON).
``--dry-run`` prints the jobs.

Examples
--------
>>> jobs = queue()
>>> jobs[0]
['--case', 'vit', '--seeds', '0']
>>> queue(0, 2)[2][-3:]
['bot:paper:haar', 'bot:std:haar', 'layer_select']
>>> main(["--dry-run"]) == 0
True
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


#: Methods that get a second (and third) seed when the budget cannot hold every method twice.
KEY_SHRINK = ["scratch", "weight_selection", "bot:function:haar", "bot:paper:haar", "bot:std:haar", "layer_select"]
KEY_GROW = ["scratch", "net2net", "bot:paper:haar", "bot:function:haar", "bot:std:haar"]


def queue(worker: int = 0, workers: int = 1) -> list[list[str]]:
    """The jobs of one worker in priority order (see the module docstring).

    With ``workers=2`` the bert-l2s case goes to worker 0 and the decoder, growth
    and ViT cases to worker 1 (no case is shared, so no results file is). Seed 0
    runs every method of a case; later seeds run the key methods (every gain with
    Haar, the baselines, scratch) first — the CPU budget of the committed results
    held no more.
    """
    m = ["--methods"]
    lanes = [
        [["--case", "bert-l2s", "--targets", "3x192", "--seeds", "0"],
         ["--case", "bert-l2s", "--targets", "4x256", "--seeds", "0"],
         ["--case", "bert-l2s", "--targets", "3x192", "--seeds", "1", *m, *KEY_SHRINK],
         ["--case", "bert-l2s", "--targets", "4x256", "--seeds", "1", *m, *KEY_SHRINK]],
        [["--case", "vit", "--seeds", "0"],
         ["--case", "decoder-l2s", "--seeds", "0"],
         ["--case", "bert-s2l", "--seeds", "0"],
         ["--case", "decoder-l2s", "--seeds", "1", *m, *KEY_SHRINK, "bot:function:haar:dsum"],
         ["--case", "bert-s2l", "--seeds", "1"],
         ["--case", "vit", "--targets", "shrink-2x64", "--seeds", "1"],
         ["--case", "vit", "--targets", "grow-8x256", "--seeds", "1", *m, *KEY_GROW]],
    ]
    if workers == 1:
        return lanes[1][:1] + lanes[0][:2] + lanes[1][1:3] + lanes[0][2:] + lanes[1][3:]
    return lanes[worker]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="run the transfer benchmark queue")
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--worker", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1, choices=(1, 2))
    ap.add_argument("--wait-pid", type=int, default=None, help="start after this process has ended")
    args = ap.parse_args(argv)
    while args.wait_pid and Path(f"/proc/{args.wait_pid}").exists():
        time.sleep(5)
    jobs = queue(args.worker, args.workers)
    if args.dry_run:
        return 0
    failed = []
    for attempt in (0, 1):
        for job in jobs if attempt == 0 else failed[:]:
            t = time.perf_counter()
            print(f"== {' '.join(job)} (attempt {attempt})", flush=True)
            rc = subprocess.call([sys.executable, str(HERE / "transfer.py"), *job])
            print(f"== rc {rc} after {time.perf_counter() - t:.0f} s", flush=True)
            if attempt == 0 and rc != 0:
                failed.append(job)
            elif attempt == 1 and rc == 0:
                failed.remove(job)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
