"""Speed of botcore.resize per backend, against a plain copy and peer wavelet libraries.

Shrinks a ``(12, 768, 3072)`` float32 tensor (one BERT-base FFN role stacked over
its layers) to ``(6, 384, 1536)`` and grows it back, with Haar and db2, and
prints one markdown table:

- time: median of ``--repeat`` runs after one warm-up run (results are forced:
  CUDA is synchronised, jax is blocked on, dask is computed); a cell whose
  warm-up takes over 20 s (a slow peer) is timed once;
- GB/s: (bytes read + bytes written) / time, the effective bandwidth of a
  memory-bound transform;
- x copy: median over the runs of time / time of a plain copy of the full-size
  ``(12, 768, 3072)`` tensor in the same framework and on the same device, the
  copy timed right before each run (for a shrink that is a copy of the input,
  for a grow a copy of the output: both move the bytes the transform must move
  at least once). Pairing each run with its own copy keeps the ratio stable on
  a shared machine whose load changes between cells;
- peer time / time: above 1, botcore is faster than the peer;
- peer: the same work done by the framework's wavelet library, where one
  exists: PyWavelets ``wavedecn``/``waverecn`` level 1 (numpy), ptwt
  ``wavedec3``/``waverec3`` (torch), jaxwt ``wavedec3``/``waverec3`` under
  ``jax.jit`` (jax). Peers compute all eight bands when shrinking (then the
  ``aaa`` band is kept) and take zero detail bands when growing; ptwt and
  jaxwt have no periodization mode, so they run ``"periodic"`` (ptwt) and
  ``"zero"`` (jaxwt) padding: identical to periodization for Haar, a few
  coefficients longer per axis for db2.

The dask backend runs on ``(2, 384, 3072)`` chunks (9 MiB) with the threaded
scheduler; its copy is ``x.map_blocks(np.copy).compute()``. ``--memory GIB``
adds the out-of-core case instead: a float32 ``np.memmap`` of about GIB GiB on
disk, resized by the dask backend chunk by chunk into a second memmap, with the
peak anonymous memory (``RssAnon``) of that process reported against the
source size.

Usage::

    python benchmarks/speed.py                       # everything installed, CPU
    python benchmarks/speed.py --quick               # tiny shapes (CI smoke test)
    python benchmarks/speed.py --backends torch,jax --device cuda --repeat 20
    python benchmarks/speed.py --backends dask --memory 2 --wavelets haar,db2
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings

import numpy as np

import botcore
from botcore.backend import BACKENDS, load_backend

FULL = ((12, 768, 3072), (6, 384, 1536))
QUICK = ((4, 32, 64), (2, 16, 32))


def _sync_factory(name: str, device: str):
    if name == "dask":
        return lambda y: y.compute()
    if name == "torch" and device == "cuda":
        import torch

        return lambda y: torch.cuda.synchronize()
    if name == "jax":
        import jax

        return lambda y: jax.block_until_ready(y)
    return lambda y: None


def _has_cuda(name: str) -> bool:
    if name == "torch":
        import torch

        return torch.cuda.is_available()
    import jax

    for platform_name in ("cuda", "gpu"):
        try:
            return bool(jax.devices(platform_name))
        except RuntimeError:
            continue
    return False


def _median_time(fn, sync, repeat: int, *, slow_s: float = 20.0, copy=None) -> tuple[float, float]:
    """``(median time, median time / paired copy time)`` of ``repeat`` runs after one warm-up.

    With ``copy`` (a callable), each run is preceded by one timed copy and the ratio is
    taken per run; one timed run only if the warm-up took over ``slow_s``.
    """
    t0 = time.perf_counter()
    sync(fn())  # warm-up (and compilation, for jax)
    if time.perf_counter() - t0 > slow_s:
        repeat = 1
    times, ratios = [], []
    for _ in range(repeat):
        c = None
        if copy is not None:
            t0 = time.perf_counter()
            sync(copy())
            c = time.perf_counter() - t0
        t0 = time.perf_counter()
        sync(fn())
        t = time.perf_counter() - t0
        times.append(t)
        ratios.append(t / c if c else 1.0)
    return statistics.median(times), statistics.median(ratios)


class Framework:
    """Array creation, copy and peer library for one backend."""

    def __init__(self, name: str, device: str):
        self.name, self.device = name, device
        self.module = load_backend(name)
        self.sync = _sync_factory(name, device)
        if device == "cuda" and not _has_cuda(name):
            raise SystemExit(f"--device cuda: {name} sees no CUDA device here; run with --device cpu")

    def make(self, a: np.ndarray):
        if self.name == "numpy":
            return a.copy()
        if self.name == "torch":
            import torch

            return torch.from_numpy(a).to(self.device)
        if self.name == "tensorflow":
            import tensorflow as tf

            return tf.constant(a)
        if self.name == "dask":
            import dask.array as da

            return da.from_array(a, chunks=tuple(min(n, c) for n, c in zip(a.shape, (2, 384, 3072))))
        import jax
        import jax.numpy as jnp

        if self.device == "cpu":
            return jax.device_put(jnp.asarray(a), jax.devices("cpu")[0])
        try:
            device = jax.devices("cuda")[0]
        except RuntimeError:  # older jax names the platform "gpu"
            device = jax.devices("gpu")[0]
        return jax.device_put(jnp.asarray(a), device)

    def copy(self, x):
        if self.name == "numpy":
            return x.copy()
        if self.name == "torch":
            return x.clone()
        if self.name == "tensorflow":
            return x * 1.0  # tf.identity may alias the buffer; this reads and writes it
        if self.name == "dask":
            return x.map_blocks(np.copy)
        return x.copy()

    def peer(self, wavelet: str):
        """``(label, shrink(x), grow(a))`` of the peer library, or None."""
        if self.name == "numpy":
            import pywt

            def grow(a):
                zeros = np.zeros_like(a)
                details = {k: zeros for k in ("aad", "ada", "add", "daa", "dad", "dda", "ddd")}
                return pywt.waverecn([a, details], wavelet, mode="periodization")

            def shrink(x):
                with warnings.catch_warnings():  # tiny --quick shapes: "level too high"
                    warnings.simplefilter("ignore", UserWarning)
                    return pywt.wavedecn(x, wavelet, mode="periodization", level=1)[0]

            return ("pywt", shrink, grow)
        if self.name == "torch":
            try:
                import ptwt
                import torch
            except ImportError:
                return None

            def grow(a):
                zeros = torch.zeros_like(a)
                details = {k: zeros for k in ("aad", "ada", "add", "daa", "dad", "dda", "ddd")}
                return ptwt.waverec3((a, details), wavelet)

            return ("ptwt", lambda x: ptwt.wavedec3(x, wavelet, mode="periodic", level=1)[0], grow)
        if self.name == "jax":
            try:
                import jax
                import jax.numpy as jnp
                import jaxwt
            except ImportError:
                return None

            # jaxwt's 3-D transforms want a leading batch axis (a free reshape under jit).
            shrink = jax.jit(lambda x: jaxwt.wavedec3(x[None], wavelet, mode="zero", level=1)[0][0])

            @jax.jit
            def grow(a):
                zeros = jnp.zeros_like(a[None])
                details = {k: zeros for k in ("aad", "ada", "add", "daa", "dad", "dda", "ddd")}
                return jaxwt.waverec3([a[None], details], wavelet)[0]

            return ("jaxwt (jit)", shrink, grow)
        return None


def _gbs(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e9


def run(backends, wavelets, big, small, repeat: int, device: str, peers: bool = True):
    """Yield one result row (a dict) at a time, as it is measured."""
    rng = np.random.default_rng(0)
    a_big = rng.standard_normal(big, dtype=np.float32)
    a_small = rng.standard_normal(small, dtype=np.float32)
    n_big, n_small = a_big.nbytes, a_small.nbytes
    for name in backends:
        fw = Framework(name, device if name in ("torch", "jax") else "cpu")
        x_big, x_small = fw.make(a_big), fw.make(a_small)
        copy_big = functools.partial(fw.copy, x_big)
        copy, _ = _median_time(copy_big, fw.sync, repeat)
        yield {"backend": name, "op": "copy", "wavelet": "-", "t": copy, "gbs": _gbs(2 * n_big, copy), "ratio": 1.0}
        if name != "dask":  # the check botcore.resize runs by default (dask: lazy, not counted)
            count = functools.partial(botcore.get_backend(x_big).count_nonfinite, x_big)
            t, ratio = _median_time(count, lambda r: r, repeat, copy=copy_big)
            yield {"backend": name, "op": "finite check", "wavelet": "-", "t": t, "gbs": _gbs(n_big, t),
                   "ratio": ratio}
        variants = [(name, botcore.resize)]
        if name == "jax":
            import jax

            variants.append(("jax (jit)", None))
        for wavelet in wavelets:
            peer = fw.peer(wavelet) if peers else None
            for label, fn in variants:
                for op, x, shape, moved in (("shrink", x_big, small, n_big + n_small),
                                            ("grow", x_small, big, n_small + n_big)):
                    if fn is None:  # the whole resize under one jax.jit
                        f = jax.jit(functools.partial(botcore.resize, shape=shape, wavelet=wavelet))
                        call = functools.partial(f, x)
                    else:
                        call = functools.partial(fn, x, shape, wavelet=wavelet)
                    t, ratio = _median_time(call, fw.sync, repeat, copy=copy_big)
                    row = {"backend": label, "op": op, "wavelet": wavelet, "t": t, "gbs": _gbs(moved, t),
                           "ratio": ratio}
                    if peer is not None and fn is not None:
                        peer_fn = peer[1] if op == "shrink" else peer[2]
                        tp, _ = _median_time(functools.partial(peer_fn, x), fw.sync, repeat)
                        row.update(peer=peer[0], tp=tp)
                    yield row


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.1f}" if ms >= 1 else f"{ms:.3f}"


HEADER = (
    "| backend | op | wavelet | time (ms) | GB/s | x copy | peer | peer time (ms) | peer time / time |\n"
    "|---|---|---|---:|---:|---:|---|---:|---:|"
)


def table_row(r: dict) -> str:
    """One markdown table row for a result of :func:`run`."""
    peer = r.get("peer", "-")
    tp = _ms(r["tp"]) if "tp" in r else "-"
    speedup = f"{r['tp'] / r['t']:.2f}" if "tp" in r else "-"
    return (
        f"| {r['backend']} | {r['op']} | {r['wavelet']} | {_ms(r['t'])} | {r['gbs']:.2f} | "
        f"{r['ratio']:.2f} | {peer} | {tp} | {speedup} |"
    )


MEMORY_HEADER = (
    "| backend | op | wavelet | gain | source (GiB) | chunk (MiB) | process before (MiB) | "
    "peak above it (MiB) | peak / source | time (s) |\n|---|---|---|---|---:|---:|---:|---:|---:|---:|"
)


def _anon_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssAnon:")) / 1024


def _memory_case(gib: float):
    layers = max(8, int(round(gib * 64)) // 8 * 8)  # (layers, 2048, 2048) float32: 16 MiB per layer
    return (layers, 2048, 2048), (4, 512, 2048), (layers // 2, 1024, 1024)


def memory_child(gib: float, wavelet: str, gain: str, folder: str) -> dict:
    """One out-of-core resize in this fresh process: the source memmap -> dask backend -> a memmap."""
    import threading

    import dask.array as da
    from botcore.backends.dask import from_sliceable  # da.from_array would copy the memmap into memory

    shape, chunks, dst = _memory_case(gib)
    x = from_sliceable(np.memmap(os.path.join(folder, "source.f32"), dtype=np.float32, mode="r", shape=shape),
                       chunks=chunks)
    botcore.resize(da.ones((8, 8), chunks=4), (4, 4), wavelet=wavelet, gain=gain).compute()  # warm-up
    state = {"peak": _anon_mib(), "done": False}
    base = state["peak"]

    def watch():
        while not state["done"]:
            state["peak"] = max(state["peak"], _anon_mib())
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    t0 = time.perf_counter()
    out = np.memmap(os.path.join(folder, "out.f32"), dtype=np.float32, mode="w+", shape=dst)
    da.store(botcore.resize(x, dst, wavelet=wavelet, gain=gain), out)
    out.flush()
    seconds = time.perf_counter() - t0
    state["done"] = True
    watcher.join()
    extra = max(state["peak"], _anon_mib()) - base
    return {"gib": math.prod(shape) * 4 / 2**30, "chunk_mib": math.prod(chunks) * 4 / 2**20,
            "base_mib": base, "extra_mib": extra, "seconds": seconds, "wavelet": wavelet, "gain": gain}


def memory_rows(gib: float, wavelets, gains=("paper", "std")):
    """Write the source memmap once (here), then yield one row per wavelet and gain, each
    measured in a fresh process that only reads it."""
    import subprocess
    import tempfile

    import dask.array as da

    shape, chunks, _ = _memory_case(gib)
    with tempfile.TemporaryDirectory(prefix="botcore-speed-") as folder:
        src = np.memmap(os.path.join(folder, "source.f32"), dtype=np.float32, mode="w+", shape=shape)
        da.store(da.random.default_rng(0).standard_normal(shape, chunks=chunks, dtype=np.float32), src)
        src.flush()
        del src
        for wavelet in wavelets:
            for gain in gains:
                args = json.dumps([gib, wavelet, gain, folder])
                done = subprocess.run([sys.executable, __file__, "--memory-child", args],
                                      capture_output=True, text=True, check=True)
                yield json.loads(done.stdout.strip().splitlines()[-1])


def memory_row(r: dict) -> str:
    return (
        f"| dask | shrink | {r['wavelet']} | {r['gain']} | {r['gib']:.2f} | {r['chunk_mib']:.0f} | "
        f"{r['base_mib']:.0f} | {r['extra_mib']:.0f} | {r['extra_mib'] / 1024 / r['gib']:.3f} | {r['seconds']:.1f} |"
    )


def _installed() -> list[str]:
    out = []
    for name in BACKENDS:
        try:
            load_backend(name)
        except botcore.BackendError:
            continue
        out.append(name)
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--memory-child"]:
        print(json.dumps(memory_child(*json.loads(argv[1]))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per cell (median; default 5)")
    parser.add_argument("--backends", default=None, help="comma list, default: every installed backend")
    parser.add_argument("--wavelets", default="haar,db2", help="comma list (default haar,db2)")
    parser.add_argument("--quick", action="store_true", help=f"tiny shapes {QUICK[0]} -> {QUICK[1]} (smoke test)")
    parser.add_argument("--no-peers", action="store_true", help="skip the peer libraries (jaxwt takes minutes)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                        help="device for torch and jax (tensorflow and numpy stay on their default)")
    parser.add_argument("--memory", type=float, default=None, metavar="GIB",
                        help="instead: the dask out-of-core case on a GIB GiB on-disk memmap (peak memory)")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    wavelets = [w.strip() for w in args.wavelets.split(",") if w.strip()]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    if args.memory is not None:
        if args.memory <= 0:
            parser.error("--memory must be > 0 (GiB)")
        print(f"dask out-of-core: float32 memmap (layers, 2048, 2048) of {args.memory} GiB -> half on every "
              f"axis, into a memmap; {os.cpu_count()} CPUs, load average {load:.1f} at start\n")
        print(MEMORY_HEADER, flush=True)
        for row in memory_rows(args.memory, wavelets):
            print(memory_row(row), flush=True)
        return 0
    names = _installed() if args.backends is None else [n.strip() for n in args.backends.split(",") if n.strip()]
    unknown = [n for n in names if n not in BACKENDS]
    if unknown:
        parser.error(f"--backends: unknown {unknown}; expected among {list(BACKENDS)}")
    big, small = QUICK if args.quick else FULL
    print(f"float32 {big} <-> {small}, device {args.device}, repeat {args.repeat} (median after warm-up); "
          f"{platform.machine()} {os.cpu_count()} CPUs, load average {load:.1f} at start, "
          f"Python {sys.version.split()[0]}\n")
    print(HEADER, flush=True)
    for row in run(names, wavelets, big, small, args.repeat, args.device, peers=not args.no_peers):
        print(table_row(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
