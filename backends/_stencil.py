"""The periodized DWT/IDWT written once over a handful of array primitives.

Contract: :func:`dwt` and :func:`idwt` have the signatures of the backend
contract (:mod:`botcore.backend`) plus a first argument ``ops``, the backend
module, which supplies these primitives on its own arrays (no NumPy on the hot
path; index arrays and Python floats are the only host values):

``ops.NAME``                        the backend's name (for error messages)
``ops.shape(x)``                    tuple of ints
``ops.axis_slice(x, axis, start, step, count)``  ``x[start : start + step*count : step]`` along ``axis``
``ops.phases(x, axis)``             ``(x[0::2], x[1::2])`` along ``axis`` (even length)
``ops.gather(x, index, axis)``      ``x[index]`` along ``axis`` (``index``: int64 NumPy array)
``ops.concat(parts, axis)``         the parts joined along ``axis``
``ops.lincomb(terms, weights)``     ``sum(w * t)`` as a new array (weights are Python floats)
``ops.interleave(even, odd, axis)`` samples ``even[0], odd[0], even[1], ...`` along ``axis``
``ops.upsample(x, w_even, w_odd, axis)``  ``interleave(w_even * x, w_odd * x, axis)`` in one pass
``ops.pairs(x, axis, w0, w1)``      optional: ``w0 * x[0::2] + w1 * x[1::2]`` (the Haar analysis step)
``ops.constant(a, like)``           NumPy array ``a`` as an array of ``like``'s dtype and device

The index arithmetic comes from :class:`botcore.wavelets.FilterBank` stencils,
which reproduce ``pywt`` periodization exactly for every even length. Haar
needs no gather (its stencils have ``index=None``): analysis is two strided
slices and one weighted sum, zero-detail synthesis is one broadcast multiply.
Only ``mode="periodization"`` is implemented (:data:`MODES`).

Examples
--------
A one-dimensional NumPy stand-in for a backend shows the primitives at work:

>>> import numpy as np
>>> from types import SimpleNamespace
>>> from botcore.wavelets import filter_bank
>>> ops = SimpleNamespace(
...     NAME="demo", shape=np.shape,
...     axis_slice=lambda x, axis, start, step, count: x[start : start + step * count : step],
...     phases=lambda x, axis: (x[0::2], x[1::2]),
...     gather=lambda x, index, axis: x[index], concat=lambda parts, axis: np.concatenate(parts),
...     lincomb=lambda terms, weights: sum(w * t for t, w in zip(terms, weights)),
...     interleave=lambda even, odd, axis: np.stack([even, odd], 1).ravel(),
...     upsample=lambda x, w_even, w_odd, axis: np.outer(x, [w_even, w_odd]).ravel())
>>> x, bank = np.arange(8.0), filter_bank("db2")
>>> a, d = dwt(ops, x, bank, axis=0, mode="periodization", detail=True)
>>> bool(np.allclose(idwt(ops, a, d, bank, axis=0, mode="periodization"), x))
True
>>> idwt(ops, np.array([1.0, 2.0]), None, filter_bank("haar"), axis=0, mode="periodization").round(4)
array([0.7071, 0.7071, 1.4142, 1.4142])
"""

from __future__ import annotations

import functools
import itertools

from botcore.errors import ModeError, ShapeError

MODES = frozenset({"periodization"})


@functools.lru_cache(maxsize=512)
def _analysis(bank, n: int, band: str):
    return bank.analysis_stencil(n, band)


@functools.lru_cache(maxsize=512)
def _synthesis(bank, half: int, band: str, phase: int):
    return bank.synthesis_stencil(half, band, phase)


def host_array(x):
    """A foreign array (another framework's, for a ``backend=`` override) as a NumPy array."""
    import numpy as np

    detach = getattr(x, "detach", None)  # torch tensors that require grad refuse __array__
    if detach is not None:
        x = detach().cpu()
        if str(x.dtype) == "torch.bfloat16":
            import ml_dtypes

            return x.float().numpy().astype(ml_dtypes.bfloat16)
    return np.asarray(x)


def dtype_name_of(x) -> str:
    """``"float32"``, ``"bfloat16"``, ... for a numpy, torch, tensorflow or jax array."""
    dtype = x.dtype
    name = getattr(dtype, "name", None)
    return name if isinstance(name, str) else str(dtype).removeprefix("torch.")


def runs(index) -> list[tuple[int, int]]:
    """``(start, length)`` of each run of consecutive integers in ``index``.

    >>> runs([7, 0, 1, 2, 3, 0])
    [(7, 1), (0, 4), (0, 1)]
    """
    import numpy as np

    index = np.asarray(index, dtype=np.int64).reshape(-1)
    cuts = np.flatnonzero(np.diff(index) != 1) + 1
    bounds = np.concatenate([[0], cuts, [index.size]])
    return [(int(index[a]), int(b - a)) for a, b in itertools.pairwise(bounds)]


def take(ops, x, index, axis: int, *, max_runs: int = 8):
    """``x[index]`` along ``axis``: joined slices when ``index`` is a few runs, else a gather.

    A periodic extension or an odd-length pad is two to a few runs; joining
    slices of them is a plain copy, while a gather along an inner axis is
    several times slower on CPU. An index that is all of ``x`` returns ``x``.
    """
    parts = runs(index)
    if len(parts) > max_runs:
        return ops.gather(x, index, axis)
    if parts == [(0, ops.shape(x)[axis])]:
        return x
    pieces = [ops.axis_slice(x, axis, start, 1, length) for start, length in parts]
    return pieces[0] if len(pieces) == 1 else ops.concat(pieces, axis)


def resample(ops, x, index, weight, *, axis: int):
    """The contract's ``resample``: ``y[i] = sum_t weight[t, i] * x[index[t, i]]`` along ``axis``."""
    import numpy as np

    ndim = len(ops.shape(x))
    axis = axis % ndim
    shape_w = [1] * ndim
    shape_w[axis] = index.shape[1]
    out = None
    for t in range(index.shape[0]):
        term = take(ops, x, index[t], axis)
        w = weight[t]
        if not np.all(w == 1.0):
            term = term * ops.constant(np.reshape(w, shape_w), term)
        out = term if out is None else out + term
    return out


def match_std(ops, y, x):
    """The contract's ``match_std``: ``y`` scaled by ``ops.std(x) / ops.std(y)`` (itself when that is 1
    or ``ops.std(y)`` is 0)."""
    have, want = ops.std(y), ops.std(x)
    factor = want / have if have > 0 else 1.0
    return y if factor == 1.0 else ops.scale(y, factor)


def check_mode(mode: str, name: str) -> None:
    if mode not in MODES:
        raise ModeError(
            f"mode {mode!r} is not supported by the {name} backend; expected one of "
            f"{sorted(MODES)} (the numpy backend supports every PyWavelets mode)"
        )


def _window(ops, x, axis: int, start: int, count: int):
    """``x[start : start + count]`` along ``axis``; ``x`` itself when that is all of it."""
    if start == 0 and ops.shape(x)[axis] == count:
        return x
    return ops.axis_slice(x, axis, start, 1, count)


def apply(ops, x, stencil, axis: int):
    """``y[k] = sum(w * x_ext[start + step*k])`` along ``axis`` (see :class:`botcore.wavelets.Stencil`).

    Stride-2 stencils read the two polyphase components of ``x_ext`` (split
    once, by ``ops.phases``) through contiguous windows.
    """
    src = x if stencil.index is None else take(ops, x, stencil.index, axis)
    pairs = getattr(ops, "pairs", None)
    if pairs is not None and stencil.index is None and stencil.step == 2 and len(stencil.taps) == 2:
        w = dict(stencil.taps)
        if set(w) == {0, 1}:  # Haar: w0 * x[0::2] + w1 * x[1::2]
            return pairs(x, axis, w[0], w[1])
    if stencil.step == 2:
        phases = ops.phases(src, axis)
        terms = [_window(ops, phases[s % 2], axis, s // 2, stencil.count) for s, _ in stencil.taps]
    else:
        terms = [_window(ops, src, axis, s, stencil.count) for s, _ in stencil.taps]
    return ops.lincomb(terms, [w for _, w in stencil.taps])


def dwt(ops, x, bank, *, axis: int, mode: str, detail: bool):
    """One periodized analysis level along ``axis``: ``(a, d)``, ``d`` None unless ``detail``."""
    check_mode(mode, ops.NAME)
    axis = axis % len(ops.shape(x))
    n = ops.shape(x)[axis]
    if n % 2 or n == 0:
        raise ShapeError(f"dwt needs an even length along axis {axis}, got {n}")
    a = apply(ops, x, _analysis(bank, n, "a"), axis)
    d = apply(ops, x, _analysis(bank, n, "d"), axis) if detail else None
    return a, d


def idwt(ops, a, d, bank, *, axis: int, mode: str):
    """One periodized synthesis level; ``a`` or ``d`` may be None (a zero band)."""
    check_mode(mode, ops.NAME)
    bands = [(c, band) for c, band in ((a, "a"), (d, "d")) if c is not None]
    if not bands:
        raise ShapeError("idwt needs at least one of the approximation and detail bands")
    ref = ops.shape(bands[0][0])
    axis = axis % len(ref)
    for c, _ in bands[1:]:
        if ops.shape(c) != ref:
            raise ShapeError(f"idwt bands differ in shape: {ref} and {ops.shape(c)}")
    half = ref[axis]
    if len(bands) == 1:
        c, band = bands[0]
        even, odd = _synthesis(bank, half, band, 0), _synthesis(bank, half, band, 1)
        if _single_tap(even) and _single_tap(odd) and even.taps[0][0] == odd.taps[0][0]:
            src = _window(ops, c, axis, even.taps[0][0], half)
            return ops.upsample(src, even.taps[0][1], odd.taps[0][1], axis)
    phases = []
    for phase in (0, 1):
        terms, weights = [], []
        for c, band in bands:
            st = _synthesis(bank, half, band, phase)
            src = c if st.index is None else take(ops, c, st.index, axis)
            for start, w in st.taps:
                terms.append(_window(ops, src, axis, start, st.count))
                weights.append(w)
        phases.append(ops.lincomb(terms, weights))
    return ops.interleave(phases[0], phases[1], axis)


def _single_tap(stencil) -> bool:
    return stencil.index is None and len(stencil.taps) == 1
