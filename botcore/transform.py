"""Multi-level n-D wavelet decomposition and its exact inverse.

Contract: :func:`decompose` returns a :class:`Pyramid` (approximation plus one
dict of detail bands per level, keyed like ``pywt.dwtn``: one letter per
transformed axis, ``'a'`` or ``'d'``); :func:`reconstruct` inverts it exactly,
cropping the samples that odd lengths added. Levels may differ per axis: level
``k`` transforms the axes whose level is at least ``k``. Both run on any backend
through its single-level ``dwt``/``idwt``; the levels are composed here.

Examples
--------
>>> import numpy as np
>>> x = np.arange(24.0).reshape(4, 6)
>>> p = decompose(x, 1)
>>> sorted(p.details[0])
['ad', 'da', 'dd']
>>> np.allclose(reconstruct(p), x)
True
>>> q = decompose(x, (2, 1))
>>> [sorted(d) for d in q.details]
[['d'], ['ad', 'da', 'dd']]
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from ._checks import check_axes, check_dtype, check_levels
from .backend import get_backend
from .errors import ModeError, ShapeError
from .fractional import edge_pad_index
from .planning import MODES
from .wavelets import FilterBank, filter_bank

__all__ = ["Pyramid", "decompose", "reconstruct"]


@dataclass(frozen=True, eq=False)
class Pyramid:
    """Approximation and detail bands of a multi-level decomposition.

    Attributes
    ----------
    approx : array
        The coarsest approximation band.
    details : tuple of dict
        One dict per level, **coarsest first** (as ``pywt.wavedecn``); keys have
        one letter per axis transformed at that level.
    axes : tuple of tuple of int
        The axes transformed at each level, coarsest first.
    shapes : tuple of tuple of int
        The shape of the input of each level, coarsest first (used to crop).
    wavelet, mode : str
    """

    approx: Any
    details: tuple
    axes: tuple
    shapes: tuple
    wavelet: str
    mode: str
    like: Any = field(repr=False, default=None)

    @property
    def level(self) -> int:
        """Number of levels."""
        return len(self.details)

    def to_pywt(self) -> list:
        """The ``pywt.wavedecn`` list ``[cA, {details coarsest}, ..., {details finest}]``."""
        return [self.approx, *[dict(d) for d in self.details]]


def analysis(b, x, bank: FilterBank, axes, mode: str, approx_only: bool) -> dict:
    """One n-D analysis level along ``axes`` (even lengths); keys as ``pywt.dwtn``."""
    bands = {"": x}
    for axis in axes:
        nxt = {}
        for key, value in bands.items():
            a, d = b.dwt(value, bank, axis=axis, mode=mode, detail=not approx_only)
            nxt[key + "a"] = a
            if not approx_only:
                nxt[key + "d"] = d
        bands = nxt
    return bands


def synthesis(b, coeffs: dict, bank: FilterBank, axes, mode: str):
    """One n-D synthesis level; missing keys are zero bands."""
    bands = dict(coeffs)
    for pos in reversed(range(len(axes))):
        axis = axes[pos]
        nxt = {}
        for prefix in {k[:pos] for k in bands}:
            a = bands.get(prefix + "a")
            d = bands.get(prefix + "d")
            nxt[prefix] = b.idwt(a, d, bank, axis=axis, mode=mode)
        bands = nxt
    return bands[""]


def _pad_odd(b, x, axes, mode):
    if mode != "periodization":
        return x
    shape = b.shape(x)
    for axis in axes:
        n = shape[axis]
        if n % 2:
            idx = edge_pad_index(n)[None, :]
            x = b.resample(x, idx, _ones(idx), axis=axis)
    return x


def _ones(idx):
    import numpy as np

    return np.ones(idx.shape, dtype=np.float64)


def _crop(b, x, shape):
    current = b.shape(x)
    for axis, (have, want) in enumerate(zip(current, shape)):
        if have != want:
            idx = _arange(want)[None, :]
            x = b.resample(x, idx, _ones(idx), axis=axis)
    return x


def _arange(n):
    import numpy as np

    return np.arange(n, dtype=np.int64)


def decompose(x, level=1, *, wavelet: str = "haar", mode: str = "periodization", axes=None, backend=None) -> Pyramid:
    """Decompose ``x`` into a :class:`Pyramid` of ``level`` wavelet levels.

    Parameters
    ----------
    x : array
        numpy, torch, tensorflow or jax array of floats.
    level : int or sequence of int
        Levels, one for all ``axes`` or one per axis (0 leaves an axis alone).
    wavelet : str, keyword-only
        Any discrete PyWavelets wavelet.
    mode : str, keyword-only
        ``"periodization"`` on every backend; the NumPy backend accepts every
        PyWavelets mode.
    axes : sequence of int, optional
        Axes to transform (default: all).
    backend : str, optional
        Override backend detection.

    Returns
    -------
    Pyramid

    Examples
    --------
    >>> import numpy as np, pywt
    >>> x = np.random.default_rng(0).normal(size=(16, 32))
    >>> p = decompose(x, 2, wavelet="db2")
    >>> ref = pywt.wavedecn(x, "db2", mode="periodization", level=2)
    >>> bool(np.allclose(p.approx, ref[0]) and np.allclose(p.details[0]["dd"], ref[1]["dd"]))
    True
    """
    b = get_backend(x, backend=backend)
    check_dtype(b, x, "decompose")
    bank = filter_bank(wavelet)
    if mode not in b.MODES:
        raise ModeError(
            f"mode {mode!r} is not supported by the {b.NAME} backend; expected one of "
            f"{sorted(b.MODES)} (the numpy backend supports every mode in {MODES})"
        )
    shape = b.shape(x)
    axes = check_axes(axes, len(shape))
    levels = check_levels(level, len(axes))
    current = b.to_compute(x)
    details, level_axes, shapes = [], [], []
    for k in range(1, max(levels, default=0) + 1):
        ax = tuple(a for a, lv in zip(axes, levels) if lv >= k)
        shapes.append(b.shape(current))
        bands = analysis(b, _pad_odd(b, current, ax, mode), bank, ax, mode, approx_only=False)
        top = "a" * len(ax)
        current = bands.pop(top)
        details.append(bands)
        level_axes.append(ax)
    if not details:
        current = b.scale(current, 1.0)  # level 0: a new array, never the input itself
    return Pyramid(
        current,
        tuple(reversed(details)),
        tuple(reversed(level_axes)),
        tuple(reversed(shapes)),
        wavelet,
        mode,
        like=x,
    )


def reconstruct(pyramid: Pyramid, *, backend=None):
    """Invert :func:`decompose` exactly (crops the samples odd lengths added).

    Returns an array of the decomposed input's framework and dtype.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(1).normal(size=(5, 7, 3)).astype(np.float32)
    >>> y = reconstruct(decompose(x, (1, 2, 1), wavelet="bior6.8"))
    >>> y.dtype, bool(np.allclose(y, x, atol=1e-5))
    (dtype('float32'), True)
    """
    if not isinstance(pyramid, Pyramid):
        raise ShapeError(
            f"reconstruct expects a Pyramid from botcore.decompose, got {type(pyramid).__name__}"
        )
    bands = [v for level in pyramid.details for v in level.values()]
    b = get_backend(pyramid.approx, *bands, backend=backend)  # one framework for all bands
    bank = filter_bank(pyramid.wavelet)
    own = b.to_compute if backend is not None else (lambda v: v)  # an override converts the bands
    current = own(pyramid.approx)
    for bands, ax, shape in zip(pyramid.details, pyramid.axes, pyramid.shapes):
        coeffs = {k: own(v) for k, v in bands.items()}
        coeffs["a" * len(ax)] = current
        _check_bands(coeffs, len(ax))
        current = _crop(b, synthesis(b, coeffs, bank, ax, pyramid.mode), shape)
    if pyramid.like is None:
        return current
    return b.from_compute(current, pyramid.like)


def _check_bands(coeffs: dict, n: int) -> None:
    expected = {"".join(p) for p in itertools.product("ad", repeat=n)}
    unknown = set(coeffs) - expected
    if unknown:
        raise ShapeError(
            f"pyramid has band keys {sorted(unknown)} that do not fit a {n}-axis level; "
            f"expected keys among {sorted(expected)}"
        )
