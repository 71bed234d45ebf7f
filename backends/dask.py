"""The Dask backend: lazy, chunked resizing, bit-identical to the NumPy backend.

Contract: the names listed in :mod:`botcore.backend`, for ``dask.array.Array``.
Every function builds a graph and computes nothing: :func:`botcore.resize`,
:func:`~botcore.select`, :func:`~botcore.take`, :func:`~botcore.decompose` and
:func:`~botcore.reconstruct` return lazy Dask arrays (``gain="std"`` too: its
factor is a task of the graph). Each block runs the NumPy backend's own kernels
(:mod:`botcore.backends.numpy`), so ``resize(da.from_array(x, chunks=c), ...).compute()``
equals ``resize(x, ...)`` bit for bit for every chunking ``c``.

How one level runs along an axis (``mode="periodization"``, and Haar in any mode):

- the axis is rechunked so that every chunk boundary is even (analysis) and no
  chunk is smaller than the halo; growing first splits the input chunks in two,
  so that the output chunks keep the input's sizes;
- Haar needs no halo: one ``map_blocks``. Longer filters read ``h`` periodic
  samples from each neighbour (``dask.array.overlap.overlap`` with
  ``boundary="periodic"``; ``h`` is the stencil's reach, at most the filter
  length) and compute only their own block's samples;
- an axis held by one chunk, or too short to split, runs the NumPy kernel on
  whole lines.

The other PyWavelets modes rechunk the transformed axis whole (the other axes
``"auto"``, so a block stays near ``array.chunk-size``) and call PyWavelets per
block. Memory is bounded by a few blocks plus halos; nothing ever needs the whole
array. :func:`std` follows the NumPy backend's definition (float64 row sums, rows
combined by ``math.fsum``, two passes); :func:`match_std` keeps the ``gain="std"``
factor lazy and makes each pass over the data wait for the previous one
(:func:`after`), so no pass holds blocks in memory for another.

Importing this module imports dask; the dispatcher only does so once
``dask.array`` is in ``sys.modules``.

Examples
--------
>>> import numpy as np, dask.array as da, botcore
>>> x = np.arange(48.0).reshape(4, 12)
>>> y = botcore.resize(da.from_array(x, chunks=(3, 5)), (2, 6), wavelet="db2")
>>> type(y).__name__, y.shape
('Array', (2, 6))
>>> bool(np.array_equal(y.compute(), botcore.resize(x, (2, 6), wavelet="db2")))
True
"""

from __future__ import annotations

import functools
import itertools
import math

import dask
import dask.array as da
import numpy as np
import pywt
from dask.base import clone_key, tokenize
from dask.highlevelgraph import HighLevelGraph

from botcore.errors import ShapeError

from . import _stencil
from . import numpy as nb

NAME = "dask"
MODES = nb.MODES


def is_array(x: object) -> bool:
    return isinstance(x, da.Array)


def _own(x) -> da.Array:
    """``x`` as a Dask array: itself, or (``backend="dask"`` on another framework's array) wrapped."""
    return x if isinstance(x, da.Array) else da.from_array(_stencil.host_array(x))


def dtype_name(x) -> str:
    return str(x.dtype)


def shape(x) -> tuple[int, ...]:
    if any(math.isnan(d) for d in x.shape):
        raise ShapeError(
            f"the Dask array has unknown chunk sizes (shape {x.shape}); resizing needs its shape: "
            "call x.compute_chunk_sizes() first"
        )
    return tuple(int(d) for d in x.shape)


def to_compute(x):
    x = _own(x)
    return x.astype(np.float64 if x.dtype == np.float64 else np.float32)


def from_compute(y, like):
    return y.astype(like.dtype)


# -- chunking -----------------------------------------------------------------


def _aligned(chunks, multiple: int, minimum: int) -> tuple[int, ...]:
    """Chunk sizes whose boundaries are multiples of ``multiple`` and whose sizes are >= ``minimum``."""
    n = sum(chunks)
    edges, prev = [0], 0
    for b in itertools.accumulate(chunks[:-1]):
        b -= b % multiple
        if b - prev >= minimum and n - b >= minimum:
            edges.append(b)
            prev = b
    edges.append(n)
    return tuple(b - a for a, b in itertools.pairwise(edges))


def _halved(chunks) -> tuple[int, ...]:
    """Each chunk split in two (growing doubles them back)."""
    return tuple(p for c in chunks for p in ((c - c // 2, c // 2) if c > 1 else (c,)))


def whole(x, axis: int):
    """``x`` with ``axis`` in one chunk, the other axes ``"auto"`` (a block stays near ``array.chunk-size``)."""
    if x.numblocks[axis] == 1:
        return x
    return x.rechunk({i: -1 if i == axis else "auto" for i in range(x.ndim)})


def _meta(x) -> np.ndarray:
    """An empty array of ``x``'s rank and dtype: ``map_blocks`` then never calls a kernel to guess it."""
    return np.empty((0,) * x.ndim, x.dtype)


def _chunks_along(x, axis: int, sizes) -> tuple:
    return x.chunks[:axis] + (tuple(sizes),) + x.chunks[axis + 1 :]


# -- one level ----------------------------------------------------------------


def _extended(pieces, axis: int, halo: int) -> list:
    """One block per array with its periodic halo: ``pieces`` are ``(tail, block, head)`` triples."""
    if not halo:
        return list(pieces)
    return [np.concatenate(pieces[i : i + 3], axis=axis) for i in range(0, len(pieces), 3)]


def _analysis_block(*pieces, bank, band, axis, n, halo):
    if halo is None:  # whole lines: the NumPy backend itself
        return nb.dwt(pieces[0], bank, axis=axis, mode="periodization", detail=band == "d")[band == "d"]
    (ext,) = _extended(pieces, axis, halo)
    k = (ext.shape[axis] - 2 * halo) // 2
    out = np.empty(ext.shape[:axis] + (k,) + ext.shape[axis + 1 :], ext.dtype)
    phases = nb.analysis_phases(nb.as3(ext, axis), bank, band, n, ext.dtype)
    nb.level_into(nb.as3(out, axis), phases, 2, n, halo=halo)
    return out


def _synthesis_block(*pieces, bank, bands, axis, half, halo):
    if halo is None:
        coeffs = dict(zip(bands, pieces))
        return nb.idwt(coeffs.get("a"), coeffs.get("d"), bank, axis=axis, mode="periodization")
    exts = _extended(pieces, axis, halo)
    ref = exts[0]
    k = ref.shape[axis] - 2 * halo
    out = np.empty(ref.shape[:axis] + (2 * k,) + ref.shape[axis + 1 :], ref.dtype)
    src = [(nb.as3(b, axis), band) for b, band in zip(exts, bands)]
    nb.level_into(nb.as3(out, axis), nb.synthesis_phases(src, bank, half, ref.dtype), 1, half, halo=halo)
    return out


def _stencil_halo(bank, n: int, analysis: bool, bands) -> int:
    if analysis:
        phases = [[(None, o, w) for band in bands for o, w in nb.stencil_offsets(bank, n, band, None)]]
        return nb.halo(phases, 2)
    phases = [[(None, o, w) for band in bands for o, w in nb.stencil_offsets(bank, n, band, p)] for p in (0, 1)]
    return nb.halo(phases, 1)


def _edge(block, axis: int, start: int, stop):
    """A copy (not a view, which would keep the whole block alive) of ``block[start:stop]`` along ``axis``."""
    return np.array(block[(slice(None),) * axis + (slice(start, stop),)])


def _with_halo(func, arrays, halo: int, chunks, meta, kw: dict):
    """``func(..., **kw)`` per block of ``arrays`` (equal chunks), each block given ``halo`` periodic
    samples of its neighbours along ``kw["axis"]``: ``func(tail_0, block_0, head_0, tail_1, ...)``.

    The neighbours' edges are copied by their own small tasks, so a block is freed
    as soon as its own output and its two edges exist (the first and last blocks of
    an axis are not kept alive by the periodic wrap). Without a halo it is ``map_blocks``.
    """
    if halo == 0:
        return da.map_blocks(func, *arrays, halo=0, chunks=chunks, meta=meta, **kw)
    axis = kw["axis"]
    token = tokenize(func.__name__, [a.name for a in arrays], axis, halo, chunks, kw)
    name, head, tail = f"{func.__name__.strip('_')}-{token}", f"halo-head-{token}", f"halo-tail-{token}"
    count = arrays[0].numblocks[axis]
    call = functools.partial(func, halo=halo, **kw)
    graph = {}
    for idx in itertools.product(*map(range, arrays[0].numblocks)):
        left = idx[:axis] + ((idx[axis] - 1) % count,) + idx[axis + 1 :]
        right = idx[:axis] + ((idx[axis] + 1) % count,) + idx[axis + 1 :]
        args = []
        for j, a in enumerate(arrays):
            graph[(head, j, *idx)] = (_edge, (a.name, *idx), axis, 0, halo)
            graph[(tail, j, *idx)] = (_edge, (a.name, *idx), axis, -halo, None)
            args += [(tail, j, *left), (a.name, *idx), (head, j, *right)]
        graph[(name, *idx)] = (call, *args)
    hlg = HighLevelGraph.from_collections(name, graph, dependencies=arrays)
    return da.Array(hlg, name, chunks, meta=meta)


def _analysis(x, bank, axis: int, band: str):
    n = x.shape[axis]
    h = _stencil_halo(bank, n, True, (band,))
    minimum = max(2, h + h % 2)
    kw = {"bank": bank, "band": band, "axis": axis, "n": n}
    if x.numblocks[axis] == 1 or n < 2 * minimum:
        x = whole(x, axis)
        return x.map_blocks(_analysis_block, halo=None, chunks=_chunks_along(x, axis, (n // 2,)),
                            meta=_meta(x), **kw)
    x = x.rechunk({axis: _aligned(x.chunks[axis], 2, minimum)})
    chunks = _chunks_along(x, axis, tuple(c // 2 for c in x.chunks[axis]))
    return _with_halo(_analysis_block, [x], h, chunks, _meta(x), kw)


def _synthesis(coeffs, bank, axis: int):
    bands = tuple(band for band, c in coeffs)
    arrays = [c for _, c in coeffs]
    half = arrays[0].shape[axis]
    h = _stencil_halo(bank, half, False, bands)
    minimum = max(1, h)
    kw = {"bank": bank, "bands": bands, "axis": axis, "half": half}
    ref = arrays[0]
    if ref.numblocks[axis] == 1 or half < 2 * minimum:
        arrays = [whole(a, axis) for a in arrays]
        arrays = [a.rechunk(arrays[0].chunks) for a in arrays]
        chunks = _chunks_along(arrays[0], axis, (2 * half,))
        return da.map_blocks(_synthesis_block, *arrays, halo=None, chunks=chunks, meta=_meta(ref), **kw)
    sizes = _aligned(_halved(ref.chunks[axis]), 1, minimum)
    arrays = [a.rechunk(_chunks_along(ref, axis, sizes)) for a in arrays]
    chunks = _chunks_along(arrays[0], axis, tuple(2 * c for c in sizes))
    return _with_halo(_synthesis_block, arrays, h, chunks, _meta(ref), kw)


def _pywt_dwt_block(block, *, wavelet, mode, axis, detail):
    return pywt.dwt(block, wavelet, mode=mode, axis=axis)[1 if detail else 0]


def _pywt_idwt_block(*blocks, wavelet, mode, axis, bands):
    coeffs = dict(zip(bands, blocks))
    return pywt.idwt(coeffs.get("a"), coeffs.get("d"), wavelet, mode=mode, axis=axis)


def dwt(x, bank, *, axis, mode, detail):
    axis = axis % x.ndim
    n = shape(x)[axis]
    if nb.uses_stencil(bank, mode) and n % 2 == 0 and n:
        a = _analysis(x, bank, axis, "a")
        return a, (_analysis(x, bank, axis, "d") if detail else None)
    x = whole(x, axis)
    chunks = _chunks_along(x, axis, (pywt.dwt_coeff_len(n, bank.length, mode),))
    kw = {"wavelet": bank.name, "mode": mode, "axis": axis, "chunks": chunks, "meta": _meta(x)}
    a = x.map_blocks(_pywt_dwt_block, detail=False, **kw)
    return a, (x.map_blocks(_pywt_dwt_block, detail=True, **kw) if detail else None)


def idwt(a, d, bank, *, axis, mode):
    coeffs = [(band, c) for band, c in (("a", a), ("d", d)) if c is not None]
    if not coeffs:
        raise ShapeError("idwt needs at least one of the approximation and detail bands")
    ref = coeffs[0][1]
    axis = axis % ref.ndim
    for _, c in coeffs[1:]:
        if shape(c) != shape(ref) or c.dtype != ref.dtype:
            raise ShapeError(f"idwt bands differ: {shape(ref)} {ref.dtype} and {shape(c)} {c.dtype}")
    if nb.uses_stencil(bank, mode, detail_given=len(coeffs) == 2):
        coeffs = [(band, c.rechunk(ref.chunks)) for band, c in coeffs]
        return _synthesis(coeffs, bank, axis)
    arrays = [whole(c, axis) for _, c in coeffs]
    arrays = [c.rechunk(arrays[0].chunks) for c in arrays]
    half = shape(ref)[axis]
    length = 2 * half if mode == "periodization" else 2 * half - bank.length + 2
    return da.map_blocks(_pywt_idwt_block, *arrays, wavelet=bank.name, mode=mode, axis=axis,
                         bands=tuple(band for band, _ in coeffs),
                         chunks=_chunks_along(arrays[0], axis, (length,)), meta=_meta(ref))


# -- passes that wait for each other ------------------------------------------


def _chain(value, parent):
    return value


def after(x, parent):
    """A copy of ``x``'s graph (new keys) whose source tasks start only once ``parent`` (a Delayed) is done.

    This is what keeps ``gain="std"`` lazy and bounded: each pass over the data
    recomputes its blocks from the source after the previous pass's scalar, so
    no pass keeps blocks in memory for a later one. (``dask.graph_manipulation.bind``
    does this for legacy graphs only; it leaves the references inside new-style
    tasks unrenamed.)
    """
    try:
        from dask._task_spec import Task, TaskRef, convert_legacy_graph
    except ImportError:  # older dask: legacy tuples, where bind works
        from dask.graph_manipulation import bind

        return bind(x, parent)
    graph = convert_legacy_graph(dict(x.__dask_graph__()))
    seed = tokenize(x.name, parent.key)
    renamed = {k: clone_key(k, seed) for k in graph}
    tasks = {}
    for k, node in graph.items():
        key = renamed[k]
        if node.dependencies:
            tasks[key] = node.substitute(renamed, key=key)
        else:
            tasks[key] = Task(key, _chain, node, TaskRef(parent.key))
    name = clone_key(x.name, seed)
    hlg = HighLevelGraph.from_collections(name, tasks, dependencies=[parent])
    return da.Array(hlg, name, x.chunks, meta=x._meta)


# -- reading large sources -------------------------------------------------------


class _Sliceable:
    """``a``'s shape, dtype and slicing, without the ``copy()`` that ``da.from_array`` makes of arrays."""

    def __init__(self, a):
        self._a, self.shape, self.dtype, self.ndim = a, tuple(a.shape), np.dtype(a.dtype), len(a.shape)

    def __getitem__(self, key):
        return np.asarray(self._a[key])


def from_sliceable(a, chunks="auto", *, name: str | None = None) -> da.Array:
    """A Dask array that reads ``a`` (an ``np.memmap``, an h5py or zarr dataset, ...) block by block.

    ``dask.array.from_array`` copies NumPy arrays it is given (an ``np.memmap`` of a
    37 GB tensor would be read whole into memory); this wraps ``a`` so that only the
    blocks being computed are read.

    >>> import numpy as np
    >>> x = from_sliceable(np.arange(12.0).reshape(3, 4), chunks=(2, 2))
    >>> x.chunks, float(x.sum().compute())
    (((2, 1), (2, 2)), 66.0)
    """
    if name is None:
        name = "from-sliceable-" + tokenize(id(a), getattr(a, "filename", None), tuple(a.shape), str(a.dtype))
    return da.from_array(_Sliceable(a), chunks=chunks, name=name, meta=np.empty((0,) * len(a.shape), a.dtype))


# -- the rest of the contract ---------------------------------------------------


def resample(x, index, weight, *, axis):
    """The NumPy backend's ``resample`` per block, ``axis`` whole: the same products and sums."""
    axis = axis % x.ndim
    y = whole(x, axis)
    return y.map_blocks(nb.resample, index, weight, axis=axis, dtype=x.dtype, meta=_meta(y),
                        chunks=_chunks_along(y, axis, [index.shape[1]]))


def scale(x, factor, *, owned=False):
    return x * x.dtype.type(factor)


def _rows(x):
    """``x`` with the last axis whole (at least 1-D), for :func:`botcore.backends.numpy.row_sums`."""
    if x.ndim == 0:
        x = x.reshape(1)
    return whole(x, x.ndim - 1)


def _sum_rows(parts) -> float:
    return nb.exact_sum(np.concatenate([np.ravel(p) for p in parts]) if parts else np.zeros(0))


def _std_delayed(x, start=None):
    """The NumPy backend's :func:`~botcore.backends.numpy.std` as a Delayed float: a pass for the
    mean, then one for the squared deviations that starts once the mean is known. With ``start``
    (a Delayed), the first pass waits for it too. Each pass recomputes ``x`` from its sources."""
    rows = _rows(x)
    size = math.prod(shape(x))
    first = rows if start is None else after(rows, start)
    mean = dask.delayed(_mean)(size, [dask.delayed(nb.row_sums)(b) for b in _blocks(first)])
    return dask.delayed(_root)(size, [dask.delayed(nb.row_sums)(b, mean) for b in _blocks(after(rows, mean))])


def _blocks(x) -> list:
    return x.to_delayed(optimize_graph=False).ravel().tolist()


def _mean(size, parts) -> float:
    return _sum_rows(parts) / size if size else 0.0


def _root(size, parts) -> float:
    return np.float64(math.sqrt(_sum_rows(parts) / size) if size else 0.0)


def count_nonfinite(x) -> None:
    """None: a lazy array is not read to count (the pipeline checks the blocks it reads)."""
    return None


def std(x):
    """Population standard deviation as a lazy 0-d float64 Dask array (``float(...)`` computes it)."""
    return da.from_delayed(_std_delayed(x), shape=(), dtype=np.float64)


def _scale_block(block, factor):
    return block if factor == 1.0 else nb.scale(block, factor)


def match_std(y, x):
    """``y`` scaled to ``x``'s standard deviation, lazily: two passes over ``x``, then two over
    ``y``, then the scaled ``y``, each pass waiting for the previous one's scalar and recomputing
    its blocks from the sources, so that memory stays bounded by a few blocks."""
    want = _std_delayed(x)
    have = _std_delayed(y, start=want)
    factor = dask.delayed(nb.std_ratio)(want, have)
    return after(y, factor).map_blocks(_scale_block, factor, meta=_meta(y))


def to_numpy(x) -> np.ndarray:
    return np.asarray(_own(x).compute())


def from_numpy(a, like):
    a = np.asarray(_stencil.host_array(a)).astype(like.dtype, copy=False)
    chunks = like.chunks if isinstance(like, da.Array) and like.shape == a.shape else "auto"
    return da.from_array(a, chunks=chunks)

