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


def queue(worker: int = 0, workers: int = 1) -> list[list[str]]:
    """The jobs of one worker in priority order (see the module docstring).

    With ``workers=2`` the BERT/ViT cases go to worker 0 and the decoder and
    growth cases to worker 1 (no case is shared, so no results file is).
    """
    lanes = [
        [["--case", "vit", "--seeds", "0"],
         ["--case", "bert-l2s", "--targets", "3x192", "--seeds", "0"],
         ["--case", "bert-l2s", "--targets", "4x256", "--seeds", "0"],
         ["--case", "vit", "--seeds", "0", "1"],
         ["--case", "bert-l2s", "--targets", "3x192", "--seeds", "0", "1"],
         ["--case", "bert-l2s", "--targets", "4x256", "--seeds", "0", "1"]],
        [["--case", "decoder-l2s", "--seeds", "0"],
         ["--case", "bert-s2l", "--seeds", "0"],
         ["--case", "decoder-l2s", "--seeds", "0", "1"],
         ["--case", "bert-s2l", "--seeds", "0", "1"]],
    ]
    if workers == 1:
        return lanes[0][:3] + lanes[1][:2] + lanes[0][3:] + lanes[1][2:]
    return lanes[worker]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="run the transfer benchmark queue")
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--worker", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1, choices=(1, 2))
    args = ap.parse_args(argv)
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
