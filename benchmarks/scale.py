"""Scale benchmark: real-size bf16 Llama checkpoints through the streaming pipeline.

Generates synthetic Llama-family checkpoints in Hugging Face layout (bf16, 2 GB
safetensors shards, written tensor by tensor), resizes each in a fresh process
through the CLI, and prints per case: wall time, peak RSS of the whole process
tree (sampled from /proc), the I/O floor measured in the same run (read every
tensor with ``safetensors.safe_open``, write a same-size output), the largest
role stack (source + target, float32) and the targets of issue 11:

* peak RSS <= 2 x the largest role stack + 1 GiB (and the 7B halving under 8 GiB);
* wall time <= 2 x the I/O floor (Haar).

Usage::

    python benchmarks/scale.py --quick            # a small model, for CI (seconds)
    python benchmarks/scale.py                    # 1.1B halve + 1.5x depth, 3B halve
    python benchmarks/scale.py --cases 7b-half    # one case
    python benchmarks/scale.py --workdir /big/disk --keep

Checkpoints are generated under ``--workdir`` (default: a temporary folder, removed
at the end unless ``--keep``). Results are printed as a markdown table.

Examples
--------
>>> MODELS["tinyllama"]["hidden_size"], CASES["tinyllama-half"].target["layers"]
(2048, 11)
>>> round(role_stack_gib(MODELS["tinyllama"], CASES["tinyllama-half"].target), 3)
1.063
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

#: Llama-family shapes (Hugging Face config keys) of the models the issue names.
MODELS = {
    "quick": dict(vocab_size=1024, hidden_size=256, intermediate_size=704, num_hidden_layers=4,
                  num_attention_heads=8, num_key_value_heads=4, tie_word_embeddings=False),
    "tinyllama": dict(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                      num_attention_heads=32, num_key_value_heads=4, tie_word_embeddings=False),
    "llama3.2-3b": dict(vocab_size=128256, hidden_size=3072, intermediate_size=8192,
                        num_hidden_layers=28, num_attention_heads=24, num_key_value_heads=8,
                        tie_word_embeddings=True),
    "llama2-7b": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=32, tie_word_embeddings=False),
    # one role stack of Llama-2-70B only (80 x 28672 x 8192 bf16, 37.6 GB): the Dask path's case
    "llama2-70b-ffn": dict(vocab_size=32000, hidden_size=8192, intermediate_size=28672,
                           num_hidden_layers=80, num_attention_heads=64, num_key_value_heads=8,
                           tie_word_embeddings=False, only="mlp.up_proj"),
}


@dataclass(frozen=True)
class Case:
    """One benchmark case: a model, a target and the extra CLI flags."""

    model: str
    target: dict
    flags: tuple = ()
    rss_cap_gib: float | None = None
    cluster: bool = False


def _half(m: dict) -> dict:
    return {"layers": m["num_hidden_layers"] // 2, "hidden": m["hidden_size"] // 2,
            "heads": m["num_attention_heads"] // 2, "kv_heads": m["num_key_value_heads"] // 2}


CASES = {
    "quick-half": Case("quick", _half(MODELS["quick"])),
    "tinyllama-half": Case("tinyllama", _half(MODELS["tinyllama"])),
    "tinyllama-depth1.5x": Case("tinyllama", {"layers": 33}),
    "3b-half": Case("llama3.2-3b", _half(MODELS["llama3.2-3b"])),
    "7b-half": Case("llama2-7b", _half(MODELS["llama2-7b"]), rss_cap_gib=8.0),
    "70b-ffn-half": Case("llama2-70b-ffn", _half(MODELS["llama2-70b-ffn"]), rss_cap_gib=4.0),
    "tinyllama-half-cluster": Case("tinyllama", _half(MODELS["tinyllama"]), cluster=True),
    "quick-half-cluster": Case("quick", _half(MODELS["quick"]), cluster=True),
}
DEFAULT = ("tinyllama-half", "tinyllama-depth1.5x", "3b-half")


def _target_sizes(model: dict, target: dict) -> dict:
    from botcore.adapters.targets import resolve_target

    src = {"layers": model["num_hidden_layers"], "hidden": model["hidden_size"],
           "heads": model["num_attention_heads"], "kv_heads": model["num_key_value_heads"],
           "head_dim": model["hidden_size"] // model["num_attention_heads"],
           "ffn": model["intermediate_size"]}
    return src, resolve_target(src, target, gqa=True, free_head_dim=True)


def role_stack_gib(model: dict, target: dict) -> float:
    """The largest role stack, source + target, in float32 GiB (the RSS target's unit)."""
    src, dst = _target_sizes(model, target)
    v = model["vocab_size"]
    stacks = [src["layers"] * src["ffn"] * src["hidden"] + dst["layers"] * dst["ffn"] * dst["hidden"],
              src["layers"] * src["hidden"] ** 2 + dst["layers"] * dst["hidden"] ** 2,
              v * (src["hidden"] + dst["hidden"])]
    return 4 * max(stacks) / 2**30


def tensor_shapes(model: dict) -> list[tuple[str, tuple]]:
    """Every tensor of a LlamaForCausalLM with these sizes, in save_pretrained order."""
    h, f, v = model["hidden_size"], model["intermediate_size"], model["vocab_size"]
    hd = h // model["num_attention_heads"]
    q, kv = model["num_attention_heads"] * hd, model["num_key_value_heads"] * hd
    out = [("model.embed_tokens.weight", (v, h))]
    for i in range(model["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out += [(p + "self_attn.q_proj.weight", (q, h)), (p + "self_attn.k_proj.weight", (kv, h)),
                (p + "self_attn.v_proj.weight", (kv, h)), (p + "self_attn.o_proj.weight", (h, q)),
                (p + "mlp.gate_proj.weight", (f, h)), (p + "mlp.up_proj.weight", (f, h)),
                (p + "mlp.down_proj.weight", (h, f)), (p + "input_layernorm.weight", (h,)),
                (p + "post_attention_layernorm.weight", (h,))]
    out.append(("model.norm.weight", (h,)))
    if not model["tie_word_embeddings"]:
        out.append(("lm_head.weight", (v, h)))
    only = model.get("only")
    return [(n, s) for n, s in out if only is None or only in n]


def _random_bf16(shape, rng) -> np.ndarray:
    """Finite random bf16 values of magnitude ~0.01-0.03 from random bits (fast at any size)."""
    import ml_dtypes

    n = math.prod(shape)
    bits = np.frombuffer(rng.bytes(2 * n), dtype=np.uint16)
    bits = (bits & np.uint16(0x807F)) | np.uint16(0x3C00)  # sign + mantissa random, exponent fixed
    return bits.view(ml_dtypes.bfloat16).reshape(shape)


def write_checkpoint(folder: Path, model: dict, *, shard_bytes: int = 2 * 10**9, seed: int = 0) -> int:
    """A Hugging Face directory (config + bf16 shards + index), tensor by tensor; returns bytes."""
    from botcore.adapters.io.base import TensorInfo
    from botcore.adapters.io.safetensors import ShardLayout, write_at

    folder.mkdir(parents=True)
    infos = [TensorInfo(n, s, "bfloat16") for n, s in tensor_shapes(model)]
    shards, size = [[]], 0
    for t in infos:
        if shards[-1] and size + t.nbytes > shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(t)
        size += t.nbytes
    rng, weight_map = np.random.default_rng(seed), {}
    for k, group in enumerate(shards, 1):
        name = f"model-{k:05d}-of-{len(shards):05d}.safetensors"
        layout = ShardLayout(group)
        layout.create(folder / name)
        for t in group:
            write_at(folder / name, layout.offsets[t.name], _random_bf16(t.shape, rng))
            weight_map[t.name] = name
    total = sum(t.nbytes for t in infos)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    cfg = dict({k: v for k, v in model.items() if k != "only"}, model_type="llama", architectures=["LlamaForCausalLM"], torch_dtype="bfloat16",
               rms_norm_eps=1e-5, rope_theta=10000.0, max_position_embeddings=4096)
    (folder / "config.json").write_text(json.dumps(cfg, indent=2))
    return total


class PeakRSS:
    """Samples the RSS of a process and all its descendants from /proc; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.05, *, also=()):
        self.pid, self.interval, self.peak, self.also = pid, interval, 0, tuple(also)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def _children() -> dict:
        kids: dict = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
                kids.setdefault(ppid, []).append(int(entry))
        return kids

    def _tree_rss(self) -> int:
        kids, todo, total = self._children(), [self.pid, *self.also], 0
        while todo:
            pid = todo.pop()
            try:
                with open(f"/proc/{pid}/statm") as f:
                    total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            except (OSError, ValueError):
                pass
            todo += kids.get(pid, [])
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._tree_rss())
            time.sleep(self.interval)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def measure(cmd: list[str], *, env=None, also=()) -> tuple[float, int, str]:
    """Run ``cmd``; return (wall seconds, peak RSS bytes of its process tree, stderr tail).

    ``also``: more process ids whose trees count (a cluster's workers).
    """
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    rss = PeakRSS(proc.pid, also=also)
    _, err = proc.communicate()
    seconds = time.monotonic() - t0
    peak = rss.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {err[-2000:]}")
    return seconds, peak, err[-500:]


FLOOR = """
import ml_dtypes, json, os, sys
from safetensors import safe_open
src, dst = sys.argv[1], sys.argv[2]
index = json.load(open(os.path.join(src, "model.safetensors.index.json")))
with open(dst, "wb") as out:
    for shard in sorted(set(index["weight_map"].values())):
        with safe_open(os.path.join(src, shard), framework="numpy") as f:
            for name in f.keys():
                out.write(f.get_tensor(name).tobytes())
"""


class LocalCluster:
    """``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1 (a context manager)."""

    def __enter__(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="botcore-cluster-"))
        info = self.tmp / "scheduler.json"
        run = [sys.executable, "-m", "dask"]
        self.procs = [subprocess.Popen(run + ["scheduler", "--host", "127.0.0.1", "--port", "0",
                                              "--no-dashboard", "--scheduler-file", str(info)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
        while not info.exists():
            time.sleep(0.2)
        time.sleep(0.5)
        self.address = json.loads(info.read_text())["address"]
        self.procs += [subprocess.Popen(run + ["worker", self.address, "--nthreads", "1", "--no-dashboard",
                                               "--memory-limit", "0"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                       for _ in range(2)]
        from distributed import Client

        with Client(self.address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=120)
        return self

    def __exit__(self, *exc):
        for p in reversed(self.procs):
            p.terminate()
            p.wait(timeout=30)
        shutil.rmtree(self.tmp, ignore_errors=True)


def same_bytes(a: Path, b: Path) -> bool:
    """Whether two output folders hold byte-identical weight files and index."""
    names = sorted(p.name for p in a.iterdir() if p.suffix in (".safetensors", ".json"))
    if names != sorted(p.name for p in b.iterdir() if p.suffix in (".safetensors", ".json")):
        return False
    return all((a / n).read_bytes() == (b / n).read_bytes() for n in names if n != "config.json")


def _flags(target: dict) -> list[str]:
    return [a for k, v in target.items() for a in (f"--{k.replace('_', '-')}", str(v))]


def run_case(name: str, case: Case, workdir: Path) -> dict:
    """Generate (once per model), measure the floor and the resize; one result row."""
    src = workdir / case.model
    if not src.exists():
        t0 = time.monotonic()
        size = write_checkpoint(src, MODELS[case.model])
        print(f"generated {case.model}: {size / 2**30:.2f} GiB in {time.monotonic() - t0:.1f} s",
              file=sys.stderr, flush=True)
    size = sum(f.stat().st_size for f in src.glob("*.safetensors"))
    floor_s, _, _ = measure([sys.executable, "-c", FLOOR, str(src), str(workdir / "floor.bin")])
    os.remove(workdir / "floor.bin")
    out = workdir / f"out-{name}"
    cmd = [sys.executable, "-m", "botcore", "resize", str(src), str(out), "--quiet",
           *_flags(case.target), *case.flags]
    identical = None
    if case.cluster:
        with LocalCluster() as cluster:
            wall, peak, _ = measure(cmd + ["--scheduler", cluster.address],
                                    also=[p.pid for p in cluster.procs])
        ref = workdir / f"ref-{name}"
        measure(cmd[:5] + [str(ref)] + cmd[6:])
        identical = same_bytes(out, ref)
        shutil.rmtree(ref)
    else:
        wall, peak, _ = measure(cmd)
    out_size = sum(f.stat().st_size for f in out.glob("*.safetensors"))
    shutil.rmtree(out)
    stack = role_stack_gib(MODELS[case.model], case.target)
    cap = case.rss_cap_gib if case.rss_cap_gib is not None else 2 * stack + 1
    return {"case": name, "source GiB": size / 2**30, "output GiB": out_size / 2**30,
            "role stack GiB": stack, "peak RSS GiB": peak / 2**30, "RSS target GiB": cap,
            "wall s": wall, "floor s": floor_s, "wall/floor": wall / floor_s,
            "bit-identical": "-" if identical is None else identical,
            "ok": peak / 2**30 <= cap and wall / floor_s <= 2.0 and identical is not False}


def table(rows: list[dict]) -> str:
    """The results as a markdown table."""
    if not rows:
        return ""
    keys = list(rows[0])

    def fmt(v):
        if isinstance(v, bool):
            return "yes" if v else "no"
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="only the small CI case")
    p.add_argument("--cases", help=f"comma-separated, from {', '.join(CASES)} (default: {', '.join(DEFAULT)})")
    p.add_argument("--workdir", help="where checkpoints are generated (default: a temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the generated checkpoints")
    args = p.parse_args(argv)
    names = ["quick-half"] if args.quick else (args.cases.split(",") if args.cases else list(DEFAULT))
    unknown = [n for n in names if n not in CASES]
    if unknown:
        p.error(f"unknown cases {unknown}; expected some of {list(CASES)}")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="botcore-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for name in names:
            rows.append(run_case(name, CASES[name], workdir))
            print(table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"# botcore scale benchmark ({os.cpu_count()} CPUs, "
          f"{os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} GiB)\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
