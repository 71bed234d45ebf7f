"""The Dask backend: lazy results, bit-identity with the NumPy backend for any chunking, bounded memory.

The shared algebra laws run on dask in ``test_backend_conformance.py``; this
module tests what only the Dask backend promises: ``botcore.resize(...)`` on a
``dask.array.Array`` computes nothing until asked; the computed result equals
the NumPy backend's bit for bit whatever the chunks (every wavelet, gain,
dtype and target size); and resizing a lazily generated array larger than a
few chunks never holds it in memory.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import botcore

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
dask_backend = pytest.importorskip("botcore.backends.dask")

#: each example builds and runs several small graphs; the slow sweep below runs many more.
FEW = settings(max_examples=15)

WAVELETS = ("haar", "db2", "db4", "sym4", "coif3", "bior2.2", "bior6.8")
DTYPES = {"float64": np.float64, "float32": np.float32, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16}


def synchronous():
    """Bit-identity does not depend on the scheduler; the synchronous one has the least overhead.
    (The laziness, distributed and memory tests run the threaded and distributed schedulers.)"""
    return dask.config.set(scheduler="synchronous")


def same_bits(got: np.ndarray, want: np.ndarray) -> bool:
    got, want = np.asarray(got), np.asarray(want)
    return got.dtype == want.dtype and got.shape == want.shape and np.array_equal(
        np.ascontiguousarray(got).view(np.uint8), np.ascontiguousarray(want).view(np.uint8)
    )


@st.composite
def chunked(draw, max_side=20, max_dims=3, max_cuts=3):
    """``(numpy array, dask chunks)``: a random shape, dtype and chunking (chunks of any sizes)."""
    shape = tuple(draw(st.lists(st.integers(1, max_side), min_size=1, max_size=max_dims)))
    chunks = []
    for n in shape:
        cuts = sorted(draw(st.sets(st.integers(1, n - 1), max_size=min(n - 1, max_cuts)))) if n > 1 else []
        edges = [0, *cuts, n]
        chunks.append(tuple(b - a for a, b in zip(edges, edges[1:])))
    dtype = draw(st.sampled_from(sorted(DTYPES)))
    seed = draw(st.integers(0, 2**16))
    a = np.random.default_rng(seed).normal(size=shape).astype(DTYPES[dtype])
    return a, tuple(chunks)


# -- bit-identity --------------------------------------------------------------


def check_resize(case, data, wavelet, gain):
    a, chunks = case
    dst = tuple(data.draw(st.integers(1, 24)) for _ in a.shape)
    y = botcore.resize(da.from_array(a, chunks=chunks), dst, wavelet=wavelet, gain=gain)
    assert isinstance(y, da.Array) and y.shape == dst and y.dtype == a.dtype
    with synchronous():
        assert same_bits(y.compute(), botcore.resize(a, dst, wavelet=wavelet, gain=gain))


@FEW
@given(case=chunked(), data=st.data(), wavelet=st.sampled_from(WAVELETS), gain=st.sampled_from(botcore.GAINS))
def test_resize_is_bit_identical_to_numpy_for_any_chunking(case, data, wavelet, gain):
    check_resize(case, data, wavelet, gain)


@FEW
@given(case=chunked(max_side=16), data=st.data(), wavelet=st.sampled_from(WAVELETS),
       mode=st.sampled_from(("periodization", "periodization", "symmetric", "zero")))
def test_decompose_and_reconstruct_are_bit_identical_to_numpy(case, data, wavelet, mode):
    a, chunks = case
    levels = [data.draw(st.integers(0, 2)) for _ in a.shape]
    p = botcore.decompose(a, levels, wavelet=wavelet, mode=mode)
    q = botcore.decompose(da.from_array(a, chunks=chunks), levels, wavelet=wavelet, mode=mode)
    y = botcore.reconstruct(q)
    assert isinstance(q.approx, da.Array) and isinstance(y, da.Array)
    with synchronous():
        approx, details, back = dask.compute(q.approx, q.details, y)
    assert same_bits(approx, p.approx) and same_bits(back, botcore.reconstruct(p))
    for mine, ref in zip(details, p.details):
        assert sorted(mine) == sorted(ref)
        assert all(same_bits(mine[k], ref[k]) for k in ref)


@FEW
@given(case=chunked(), data=st.data(), roles=st.sampled_from(("out", "in", "in_head")))
def test_select_and_take_are_bit_identical_to_numpy(case, data, roles):
    a, chunks = case
    x = da.from_array(a, chunks=chunks)
    dst = tuple(data.draw(st.integers(1, 24)) for _ in a.shape)
    r = (roles,) * a.ndim
    idx = data.draw(st.lists(st.integers(-a.shape[0], a.shape[0] - 1), min_size=1, max_size=6))
    with synchronous():
        picked, taken = dask.compute(botcore.select(x, dst, roles=r), botcore.take(x, idx, axis=0))
    assert same_bits(picked, botcore.select(a, dst, roles=r))
    assert same_bits(taken, botcore.take(a, idx, axis=0))


@FEW
@given(case=chunked(max_side=40))
def test_std_does_not_depend_on_the_chunking(case):
    a, chunks = case
    with synchronous():
        got = float(dask_backend.std(da.from_array(a, chunks=chunks)))
    want = botcore.backends.numpy.std(a)
    assert got == want  # the same float, not merely close
    assert np.isclose(want, np.std(a.astype(np.float64)), rtol=1e-12, atol=0)


@pytest.mark.slow
@settings(max_examples=400)
@given(case=chunked(max_side=48), data=st.data(), wavelet=st.sampled_from(WAVELETS),
       gain=st.sampled_from(botcore.GAINS))
def test_resize_bit_identity_sweep(case, data, wavelet, gain):
    check_resize(case, data, wavelet, gain)


# -- laziness ------------------------------------------------------------------


class Guard:
    """A source that refuses to be computed until armed."""

    armed = False

    @classmethod
    def block(cls, b):
        if not cls.armed:
            raise AssertionError("a block was computed before .compute() was called")
        return b


def guarded(a: np.ndarray, chunks) -> da.Array:
    return da.from_array(a, chunks=chunks).map_blocks(Guard.block, meta=np.empty((0,) * a.ndim, a.dtype))


def test_nothing_is_computed_until_asked():
    a = np.random.default_rng(0).normal(size=(6, 20, 12)).astype(np.float32)
    x = guarded(a, (2, 7, 5))
    Guard.armed = False
    cases = [("haar", "std", (3, 10, 6)), ("db2", "std", (12, 33, 7)), ("db2", "paper", (3, 10, 6)),
             ("bior6.8", "function", (12, 33, 7))]
    lazy = [botcore.resize(x, dst, wavelet=w, gain=g) for w, g, dst in cases]
    p = botcore.decompose(x, (1, 2, 1), wavelet="db2")
    lazy += [botcore.select(x, (4, 30, 6)), botcore.take(x, [5, 0, 2], axis=1), p.approx,
             botcore.reconstruct(p), dask_backend.std(x)]
    assert all(isinstance(v, da.Array) for v in lazy)
    Guard.armed = True
    try:
        with synchronous():
            got = dask.compute(*lazy)
    finally:
        Guard.armed = False
    want = [botcore.resize(a, dst, wavelet=w, gain=g) for w, g, dst in cases]
    want += [botcore.select(a, (4, 30, 6)), botcore.take(a, [5, 0, 2], axis=1),
             botcore.decompose(a, (1, 2, 1), wavelet="db2").approx,
             botcore.reconstruct(botcore.decompose(a, (1, 2, 1), wavelet="db2")),
             np.float64(botcore.backends.numpy.std(a))]
    assert all(same_bits(g, w) for g, w in zip(got, want))


def test_unknown_chunk_sizes_are_a_shape_error():
    x = da.from_array(np.arange(10.0), chunks=3)
    x = x[x > 2]
    with pytest.raises(botcore.ShapeError, match="compute_chunk_sizes"):
        botcore.resize(x, (3,))


def test_backend_override_returns_a_dask_array():
    a = np.random.default_rng(1).normal(size=(8, 6)).astype(np.float32)
    y = botcore.resize(a, (4, 12), wavelet="db2", backend="dask")
    assert isinstance(y, da.Array) and same_bits(y.compute(), botcore.resize(a, (4, 12), wavelet="db2"))


def test_distributed_scheduler_gives_the_same_bits():
    distributed = pytest.importorskip("distributed")
    a = np.random.default_rng(2).normal(size=(8, 40, 24)).astype(np.float32)
    x = da.from_array(a, chunks=(4, 20, 12))
    cases = (("haar", "std"), ("db2", "function"))
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None):
        got = dask.compute(*[botcore.resize(x, (4, 30, 48), wavelet=w, gain=g) for w, g in cases])
    for y, (w, g) in zip(got, cases):
        assert same_bits(y, botcore.resize(a, (4, 30, 48), wavelet=w, gain=g))


# -- memory --------------------------------------------------------------------

MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, sys, threading, time
    import numpy as np, dask.array as da, botcore

    def anon_mib():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("RssAnon:")) / 1024

    shape, chunks, dst, wavelet, gain, out_path = json.loads(sys.argv[1])
    shape, chunks, dst = tuple(shape), tuple(chunks), tuple(dst)
    src = da.random.default_rng(0).standard_normal(shape, chunks=chunks, dtype=np.float32)
    botcore.resize(da.ones((8, 8), chunks=4), (4, 4), wavelet=wavelet, gain=gain).compute()  # warm-up
    base = peak = anon_mib()
    done = False
    def watch():
        global peak
        while not done:
            peak = max(peak, anon_mib())
            time.sleep(0.002)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    y = botcore.resize(src, dst, wavelet=wavelet, gain=gain)
    out = np.memmap(out_path, dtype=np.float32, mode="w+", shape=dst)
    da.store(y, out)
    out.flush()
    done = True
    watcher.join()
    peak = max(peak, anon_mib())
    print(json.dumps({"extra_mib": peak - base}))
    """
)


def _resize_to_memmap(tmp_path, shape, chunks, dst, wavelet, gain) -> tuple[float, np.ndarray]:
    try:
        with open("/proc/self/status") as f:
            if "RssAnon:" not in f.read():
                pytest.skip("needs /proc/self/status RssAnon (Linux)")
    except OSError:
        pytest.skip("needs /proc/self/status (Linux)")
    out_path = tmp_path / "out.f32"
    args = json.dumps([shape, chunks, dst, wavelet, gain, str(out_path)])
    run = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, args], capture_output=True, text=True, check=True)
    extra = json.loads(run.stdout.strip().splitlines()[-1])["extra_mib"]
    return extra, np.memmap(out_path, dtype=np.float32, mode="r", shape=tuple(dst))


def _source_block(shape, chunks, index) -> np.ndarray:
    """Block ``index`` of the test's lazily generated source, computed on its own."""
    src = da.random.default_rng(0).standard_normal(shape, chunks=chunks, dtype=np.float32)
    return src.blocks[index].compute()


def test_resizing_a_lazy_array_holds_a_few_chunks_not_the_array(tmp_path):
    shape, chunks, dst = (32, 1024, 1024), (4, 256, 1024), (16, 512, 512)  # 128 MiB, 4 MiB chunks
    extra, out = _resize_to_memmap(tmp_path, shape, chunks, dst, "haar", "paper")
    source_mib = np.prod(shape) * 4 / 2**20
    assert extra < source_mib / 2, f"peak anonymous memory grew by {extra:.0f} MiB for a {source_mib:.0f} MiB source"
    # Haar shrinks each 4 x 256 x 1024 block to its own 2 x 128 x 512 tile of the output.
    for index in ((0, 0, 0), (3, 2, 0), (7, 3, 0)):
        tile = tuple(slice(i * c // 2, (i + 1) * c // 2) for i, c in zip(index, chunks))
        block = _source_block(shape, chunks, index)
        assert same_bits(out[tile], botcore.resize(block, tuple(s // 2 for s in block.shape)))


def test_an_on_disk_memmap_is_read_block_by_block(tmp_path):
    """``from_sliceable`` does not copy the memmap (``da.from_array`` does, in recent dask)."""
    shape = (16, 256, 1024)  # 16 MiB
    src = np.memmap(tmp_path / "src.f32", dtype=np.float32, mode="w+", shape=shape)
    src[:] = np.random.default_rng(3).standard_normal(shape, dtype=np.float32)
    src.flush()
    src = np.memmap(tmp_path / "src.f32", dtype=np.float32, mode="r", shape=shape)
    with open("/proc/self/status") as f:
        has_anon = "RssAnon:" in f.read()
    before = _anon_mib() if has_anon else 0.0
    x = dask_backend.from_sliceable(src, chunks=(2, 128, 1024))
    if has_anon:
        assert _anon_mib() - before < 8, "wrapping the memmap copied it"
    out = np.memmap(tmp_path / "out.f32", dtype=np.float32, mode="w+", shape=(8, 512, 512))
    with synchronous():
        da.store(botcore.resize(x, out.shape, wavelet="db2"), out)
    assert same_bits(np.asarray(out), botcore.resize(np.asarray(src), out.shape, wavelet="db2"))


def _anon_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssAnon:")) / 1024


@pytest.mark.slow
@pytest.mark.parametrize("wavelet, gain", [("haar", "std"), ("db2", "paper"), ("db2", "std")])
def test_resizing_a_large_lazy_array_stays_bounded(tmp_path, wavelet, gain):
    shape, chunks, dst = (128, 1024, 1024), (8, 256, 1024), (64, 512, 512)  # 512 MiB, 8 MiB chunks
    extra, out = _resize_to_memmap(tmp_path, shape, chunks, dst, wavelet, gain)
    assert extra < 256, f"peak anonymous memory grew by {extra:.0f} MiB for a 512 MiB source"
    assert np.isfinite(out[:2, :8, :8]).all() and float(np.abs(out[:2]).max()) > 0
