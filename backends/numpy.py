"""The NumPy reference backend: tiled periodized stencils, PyWavelets for the other modes.

Contract: the names listed in :mod:`botcore.backend`, for ``numpy.ndarray``
(including ``ml_dtypes.bfloat16`` arrays). ``mode="periodization"`` (and Haar
in any mode, where every mode gives the same numbers) runs the
:class:`botcore.wavelets.Stencil` of each level as multiply-adds over strided
views, in cache-sized tiles, written straight into one output allocation; the
other PyWavelets modes call ``pywt.dwt``/``pywt.idwt``. Haar is bit-identical
to PyWavelets; longer filters agree with it within float rounding (the same
products, summed in tap order). The other backends are tested against this one.

The kernels here are also the Dask backend's block kernels
(:mod:`botcore.backends.dask`): every output sample is computed by the same
sequence of float operations whether the array is whole or one block with a
halo (:func:`level_into`), and :func:`std` is defined so that any split of the
rows gives the same bits.

Examples
--------
>>> import numpy as np
>>> from botcore.wavelets import filter_bank
>>> a, d = dwt(np.array([1.0, 3.0, 5.0, 7.0]), filter_bank("haar"), axis=0,
...            mode="periodization", detail=True)
>>> (a * a).sum().round(6), (d * d).sum().round(6)
(np.float64(80.0), np.float64(4.0))
>>> std(np.arange(4.0)) == float(np.std(np.arange(4.0)))
True
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pywt

NAME = "numpy"
MODES = frozenset(pywt.Modes.modes)

#: output elements per tile: a tile's operands (output, one product, windows) stay in L2.
TILE = 1 << 15
#: rows per block of :func:`std` (bounded float64 temporaries whatever the array's size).
STD_BLOCK = 1 << 20
_PAIR = np.uint64(0x100000001)  # u32 * _PAIR == (u32 << 32) | u32: a float32 written twice


def is_array(x: object) -> bool:
    return isinstance(x, np.ndarray)


def dtype_name(x: np.ndarray) -> str:
    return str(x.dtype)


def shape(x: np.ndarray) -> tuple[int, ...]:
    return tuple(int(d) for d in x.shape)


def to_compute(x: np.ndarray) -> np.ndarray:
    dtype = np.float64 if x.dtype == np.float64 else np.float32
    return np.asarray(x, dtype=dtype)  # no copy when already float32/64: nothing writes in place


def from_compute(y: np.ndarray, like: np.ndarray) -> np.ndarray:
    return np.asarray(y).astype(like.dtype, copy=False)


# -- the periodized level, written once for whole arrays and for halo blocks ---


def as3(x: np.ndarray, axis: int) -> np.ndarray:
    """``x`` as ``(before, n, after)`` with ``axis`` in the middle (a view when ``x`` is contiguous)."""
    s = x.shape
    return x.reshape(math.prod(s[:axis]), s[axis], math.prod(s[axis + 1 :]))


def _tile_shape(a: int, k: int, b: int) -> tuple[int, int, int]:
    tb = min(b, TILE)
    tk = min(k, max(1, TILE // tb))
    return min(a, max(1, TILE // (tb * tk))), tk, tb


def _tiles(a: int, k: int, b: int):
    ta, tk, tb = _tile_shape(a, k, b)
    for a0 in range(0, a, ta):
        for k0 in range(0, k, tk):
            for b0 in range(0, b, tb):
                yield slice(a0, a0 + ta), k0, min(k, k0 + tk), slice(b0, b0 + tb)


def _tile(o, terms, ta, k0, k1, tb, step, tmp):
    """``o = w0 * s0[...] + w1 * s1[...] + ...`` for output rows ``k0:k1`` of one tile, in term order."""
    for i, (src, first, w) in enumerate(terms):
        win = src[ta, first + step * k0 : first + step * (k1 - 1) + 1 : step, tb]
        if i == 0:
            np.multiply(win, w, out=o)
        else:
            t = tmp[: o.shape[0], : o.shape[1], : o.shape[2]]
            np.multiply(win, w, out=t)
            np.add(o, t, out=o)
    return o


def combine(out3, terms, step: int, *, twin=None) -> None:
    """``out3[:, k] = sum_t w_t * src_t[:, first_t + step * k]`` (3-D views), tile by tile.

    ``terms`` is a list of ``(src3, first, w)``; the sum runs in term order, each
    product rounded, then each addition (no fused or reordered arithmetic), so a
    sample's bits do not depend on the tiling. ``twin``, a view of ``out3``'s shape,
    receives a copy of each finished tile (both phases of a single-band Haar synthesis).
    """
    a, k, b = out3.shape
    if not (a and k and b):
        return
    tmp = np.empty(_tile_shape(a, k, b), out3.dtype) if len(terms) > 1 else None
    for ta, k0, k1, tb in _tiles(a, k, b):
        o = _tile(out3[ta, k0:k1, tb], terms, ta, k0, k1, tb, step, tmp)
        if twin is not None:
            twin[ta, k0:k1, tb] = o


def _pairs(out_pairs, terms, step: int) -> None:
    """Both phases of a single-band float32 synthesis on the last axis, each sample written
    twice as one uint64 (``out_pairs``: the ``(a, k)`` uint64 view of the interleaved output)."""
    a, k = out_pairs.shape
    ta, tk, _ = _tile_shape(a, k, 1)
    buf = np.empty(ta * tk, np.float32)
    tmp = np.empty((ta, tk, 1), np.float32) if len(terms) > 1 else None
    for rows_a, k0, k1, tb in _tiles(a, k, 1):
        rows = out_pairs[rows_a, k0:k1]
        o = buf[: rows.size].reshape(rows.shape + (1,))
        _tile(o, terms, rows_a, k0, k1, tb, step, tmp)
        np.multiply(o.reshape(rows.shape).view(np.uint32), _PAIR, out=rows, casting="unsafe")


def _duplicate(out3, k0: int, k1: int, terms, step: int) -> None:
    """Phases 0 and 1 of samples ``k0:k1`` when both have the same terms (Haar, one band)."""
    a, _, b = out3.shape
    if b == 1 and out3.dtype == np.float32:
        _pairs(out3.reshape(a, -1, 2).view(np.uint64)[:, k0:k1, 0], terms, step)
    else:
        combine(out3[:, 2 * k0 : 2 * k1 : 2], terms, step, twin=out3[:, 2 * k0 + 1 : 2 * k1 : 2])


def level_into(out3, phases, step: int, n: int, *, halo: int | None = None) -> None:
    """One level along axis 1: output phase ``p`` of ``len(phases)`` goes to ``out3[:, p::len(phases)]``.

    Each phase is a list of ``(src3, offset, w)``: sample ``k`` of the phase is
    ``sum w * src[(offset + step * k) mod n]``, summed in list order. With
    ``halo=None`` the sources are whole signals of length ``n`` (the interior is
    read in place, the few wrapped samples at each end from a small periodic
    gather); with ``halo=h`` each source is one block with ``h`` periodic samples
    on each side (the Dask backend's overlapped blocks). Both give the same bits.
    """
    count = out3.shape[1] // len(phases)
    dup = len(phases) == 2 and _same_terms(*phases)
    for p, terms in enumerate(phases[:1] if dup else phases):
        if halo is not None:
            parts = [(0, count, [(s, o + halo, w) for s, o, w in terms])]
        else:
            parts = _segments(terms, step, n, count)
        for k0, k1, part in parts:
            if dup:
                _duplicate(out3, k0, k1, part, step)
            else:
                combine(out3[:, p :: len(phases)][:, k0:k1], part, step)


def _same_terms(t0, t1) -> bool:
    return len(t0) == len(t1) and all(a[0] is b[0] and a[1:] == b[1:] for a, b in zip(t0, t1))


def _segments(terms, step: int, n: int, count: int):
    """``(k0, k1, terms)`` covering ``0..count``: the interior in place, the wrapped ends gathered."""
    lo = min(o for _, o, _ in terms)
    hi = max(o for _, o, _ in terms)
    k_lo = min(count, max(0, -(lo // step)))
    k_hi = max(k_lo, min(count, (n - 1 - hi) // step + 1))
    for k0, k1 in ((0, k_lo), (k_lo, k_hi), (k_hi, count)):
        if k1 <= k0:
            continue
        if (k0, k1) == (k_lo, k_hi):
            yield k0, k1, [(s, o + step * k0, w) for s, o, w in terms]
            continue
        g0, g1 = step * k0 + lo, step * (k1 - 1) + hi + 1
        index = np.arange(g0, g1) % n
        ext = {id(s): np.take(s, index, axis=1) for s, _, _ in terms}
        yield k0, k1, [(ext[id(s)], o - lo, w) for s, o, w in terms]


def halo(phases, step: int) -> int:
    """Periodic samples a block needs on each side for :func:`level_into` with ``halo=``."""
    lo = min(o for terms in phases for _, o, _ in terms)
    hi = max(o for terms in phases for _, o, _ in terms)
    return max(0, -lo, hi - step + 1)


@functools.lru_cache(maxsize=512)
def stencil_offsets(bank, n: int, band: str, phase: int | None) -> tuple:
    """``(offset, w)`` per tap of the analysis (``phase=None``) or synthesis stencil: sample ``k``
    reads the signal at ``(offset + step * k) mod n``."""
    st = bank.analysis_stencil(n, band) if phase is None else bank.synthesis_stencil(n, band, phase)
    before = 0 if st.index is None else (-int(st.index[0])) % n
    return tuple((start - before, w) for start, w in st.taps)


def analysis_phases(src3, bank, band: str, n: int, dtype):
    """The one phase of a periodized analysis level of ``src3`` (length ``n``), for :func:`level_into`."""
    return [[(src3, o, dtype.type(w)) for o, w in stencil_offsets(bank, n, band, None)]]


def synthesis_phases(bands, bank, half: int, dtype):
    """The two phases of a periodized synthesis level; ``bands`` is ``[(src3, "a" or "d"), ...]``."""
    return [
        [(src, o, dtype.type(w)) for src, band in bands for o, w in stencil_offsets(bank, half, band, p)]
        for p in (0, 1)
    ]


def uses_stencil(bank, mode: str, *, detail_given: bool = False) -> bool:
    """True when a level runs on the stencil kernels (periodization; Haar in any mode)."""
    return mode == "periodization" or (bank.name == "haar" and not detail_given)


def _analysis(x, bank, axis, band):
    n = x.shape[axis]
    x3 = as3(x, axis)
    out_shape = x.shape[:axis] + (n // 2,) + x.shape[axis + 1 :]
    out = np.empty(out_shape, x.dtype)
    level_into(as3(out, axis), analysis_phases(x3, bank, band, n, x.dtype), 2, n)
    return out


def dwt(x, bank, *, axis, mode, detail):
    axis = axis % x.ndim
    if uses_stencil(bank, mode) and x.shape[axis] % 2 == 0 and x.shape[axis]:
        a = _analysis(x, bank, axis, "a")
        return a, (_analysis(x, bank, axis, "d") if detail else None)
    a, d = pywt.dwt(x, bank.name, mode=mode, axis=axis)
    return a, (d if detail else None)


def idwt(a, d, bank, *, axis, mode):
    ref = a if a is not None else d
    if ref is None or not uses_stencil(bank, mode, detail_given=a is not None and d is not None):
        return pywt.idwt(a, d, bank.name, mode=mode, axis=axis)
    if a is not None and d is not None and (a.shape != d.shape or a.dtype != d.dtype):
        return pywt.idwt(a, d, bank.name, mode=mode, axis=axis)  # pywt's own error message
    axis = axis % ref.ndim
    half = ref.shape[axis]
    bands = [(as3(c, axis), band) for c, band in ((a, "a"), (d, "d")) if c is not None]
    out = np.empty(ref.shape[:axis] + (2 * half,) + ref.shape[axis + 1 :], ref.dtype)
    level_into(as3(out, axis), synthesis_phases(bands, bank, half, ref.dtype), 1, half)
    return out


def resample(x, index, weight, *, axis):
    """``y[i] = sum_t weight[t, i] * x[index[t, i]]`` along ``axis``, tap by tap in order
    (``term * w`` summed), written into one output: slice by slice where the rows after
    ``axis`` are long contiguous runs, else by whole-array gathers into one reused buffer."""
    axis = axis % x.ndim
    out = np.empty(x.shape[:axis] + (index.shape[1],) + x.shape[axis + 1:], x.dtype)
    if math.prod(x.shape[axis + 1:]) >= 4096:
        _resample_slices(x, index, weight, axis, out)
    else:
        _resample_gathers(x, index, weight, axis, out)
    return out


def _resample_slices(x, index, weight, axis, out) -> None:
    src, dst = np.moveaxis(x, axis, 0), np.moveaxis(out, axis, 0)
    tmp = np.empty(src.shape[1:], x.dtype)
    for i in range(index.shape[1]):
        np.multiply(src[index[0, i]], x.dtype.type(weight[0, i]), out=dst[i])
        for t in range(1, index.shape[0]):
            np.multiply(src[index[t, i]], x.dtype.type(weight[t, i]), out=tmp)
            np.add(dst[i], tmp, out=dst[i])


def _resample_gathers(x, index, weight, axis, out) -> None:
    shape_w = [1] * x.ndim
    shape_w[axis] = index.shape[1]
    term = np.empty_like(out) if index.shape[0] > 1 else None
    for t in range(index.shape[0]):
        target = out if t == 0 else term
        np.take(x, index[t], axis=axis, out=target)
        np.multiply(target, weight[t].astype(x.dtype).reshape(shape_w), out=target)
        if t > 0:
            np.add(out, term, out=out)


def scale(x, factor, *, owned=False):
    if owned:  # botcore's own intermediate: no second array of its size
        return np.multiply(x, x.dtype.type(factor), out=x)
    return x * x.dtype.type(factor)


# -- the standard deviation, defined so that any split of the rows gives the same bits --


def row_sums(x, mean: float | None = None) -> np.ndarray:
    """float64 sums along the last axis of ``x`` (of ``(x - mean) ** 2`` if ``mean`` is given), one per row.

    Each row is widened to a contiguous float64 row and summed by NumPy's
    pairwise summation, so a row's sum depends only on the row: the Dask
    backend's blocks (whole rows) give the same numbers.
    """
    length = x.shape[-1] if x.ndim else 1
    rows = np.reshape(x, (-1, length))
    step = max(1, STD_BLOCK // max(length, 1))
    parts = []
    for r in range(0, rows.shape[0], step):
        block = np.array(rows[r : r + step], dtype=np.float64)
        if mean is not None:
            block -= mean
            np.multiply(block, block, out=block)
        parts.append(block.sum(axis=-1))
    return np.concatenate(parts) if parts else np.zeros(0)


def exact_sum(values) -> float:
    """The correctly rounded sum of float64 ``values`` (``math.fsum``: independent of their order)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    try:
        return math.fsum(values.tolist())
    except (OverflowError, ValueError):  # inf, -inf and nan: no finite sum to round
        return float(np.sum(values))


def std_of(size: int, first, second) -> float:
    """The standard deviation from :func:`row_sums` without (``first``) and with a mean (``second``)."""
    return math.sqrt(exact_sum(second(exact_sum(first) / size)) / size) if size else 0.0


def std(x) -> float:
    """Population standard deviation: two passes (mean, then squared deviations) of
    :func:`row_sums` combined by :func:`exact_sum`; the same bits on the Dask backend."""
    return std_of(x.size, row_sums(x), lambda mean: row_sums(x, mean))


def count_nonfinite(x) -> int:
    """The number of NaN and infinite elements of ``x``."""
    return int(x.size - np.count_nonzero(np.isfinite(x)))


def std_ratio(want: float, have: float) -> float:
    """The ``gain="std"`` factor: ``want / have``, or 1 when ``have`` is 0."""
    return want / have if have > 0 else 1.0


def match_std(y, x):
    factor = std_ratio(std(x), std(y))
    return y if factor == 1.0 else scale(y, factor)


def to_numpy(x) -> np.ndarray:
    return np.asarray(x)


def from_numpy(a, like):
    return np.asarray(a).astype(like.dtype, copy=False)
