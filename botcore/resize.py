"""Resizing weight arrays: the BoT wavelet path and the index baselines.

Contract: :func:`resize` maps an array to exactly ``shape`` for any sizes >= 1.
Shrinking keeps the wavelet approximation band (L2S); growing runs the inverse
transform with zero detail bands (S2L); each axis follows its
:class:`~botcore.planning.AxisPlan` (dyadic levels plus at most one fractional
area step). :func:`select` is the index baseline: uniform element selection
when shrinking (weight selection, Xu et al. 2024) and replication when growing
(Net2Net), function-preserving with ``roles``. Inputs are never modified; the
result has the input's framework, dtype and device.

Gains (how magnitudes are set, per axis, from its role):

``"paper"``
    raw orthonormal coefficients, as the paper writes them (Haar multiplies a
    smooth signal by sqrt(2) per shrunk level per axis). A fractional step of
    ratio ``r`` gets ``sqrt(r)``, the same orthonormal convention.
``"function"``
    axes a tensor produces (``depth``, ``out``, ``head``, ``head_dim``) keep
    means; axes it consumes (``in``, ``in_head``, ``in_head_dim``) keep sums.
    For Haar a width growth then preserves a linear layer's function on
    duplicated features, and a constant stays constant on mean axes.
``"std"``
    the result is scaled to the source array's standard deviation.

Examples
--------
>>> import numpy as np
>>> x = np.ones((4, 6))
>>> resize(x, (2, 3), gain="function")
array([[1., 1., 1.],
       [1., 1., 1.]])
>>> resize(x, (2, 3))  # paper: two shrunk axes, sqrt(2) each
array([[2., 2., 2.],
       [2., 2., 2.]])
>>> resize(np.array([[1.0, 2.0]]), (1, 4), roles=("out", "in"), gain="function")
array([[0.5, 0.5, 1. , 1. ]])
"""

from __future__ import annotations

import math

import numpy as np

from ._checks import check_dtype, check_option
from ._checks import check_finite as check_finite_values
from .backend import get_backend
from .errors import RoleError, ShapeError
from .fractional import area_operator, replicate_indices, uniform_indices
from .names import GAINS
from .planning import Plan, check_shape, plan
from .roles import SUM_ROLES, normalize_roles
from .wavelets import filter_bank

__all__ = ["GAINS", "gain_factor", "resize", "select", "take"]



def _check_fixed(p: Plan, roles: tuple[str, ...]) -> None:
    for axis, (a, role) in enumerate(zip(p.axes, roles)):
        if role == "fixed" and a.src != a.dst:
            raise RoleError(
                f"axis {axis} has role 'fixed' (vocabulary, positions, pixels, classes) but "
                f"the target asks {a.src} -> {a.dst}; keep its size at {a.src} or give it a "
                "resizable role"
            )


def _target(b, x, shape, roles, func):
    src = b.shape(x)
    dst = check_shape(shape, "shape")
    if len(dst) != len(src):
        raise ShapeError(
            f"{func}: the array has shape {src} ({len(src)} axes) but shape={dst} has "
            f"{len(dst)}; give one target size per axis"
        )
    check_dtype(b, x, func)
    return src, dst, normalize_roles(roles, len(src))


def gain_factor(p: Plan, roles: tuple[str, ...], gain: str) -> float:
    """Scalar applied after the transform for ``gain`` ``"paper"`` or ``"function"``.

    The fractional steps' orthonormal factor times, for ``"function"``, the role gains;
    ``resize(x, gain=g) == gain_factor(p, roles, g) / gain_factor(p, roles, "paper") *
    resize(x, gain="paper")`` up to rounding.

    >>> from botcore.planning import plan
    >>> gain_factor(plan((4, 6), (2, 3)), ("out", "in"), "function")  # a mean axis and a sum axis
    1.0
    """
    factor = 1.0
    for a, role in zip(p.axes, roles):
        if a.fraction is not None:
            factor *= math.sqrt(a.fraction[0] / a.fraction[1])  # paper convention for the step
        if gain == "function" and a.src != a.dst:
            ratio = a.dst / a.src
            factor *= 1.0 / math.sqrt(ratio) if role in SUM_ROLES else math.sqrt(ratio)
    return factor


def resize(
    x,
    shape,
    *,
    wavelet: str = "haar",
    mode: str = "periodization",
    gain: str = "paper",
    roles=None,
    backend: str | None = None,
    check_finite: bool = True,
):
    """Resize ``x`` to exactly ``shape`` by wavelet down- or up-sampling.

    Parameters
    ----------
    x : array
        numpy, torch, tensorflow or jax array of floats (float16, bfloat16,
        float32, float64). Never modified.
    shape : sequence of int
        Target shape, same rank, every size >= 1; axes may shrink and grow in
        one call.
    wavelet : str, keyword-only
        Any discrete PyWavelets wavelet (orthogonal or biorthogonal).
    mode : str, keyword-only
        ``"periodization"`` (for Haar every mode gives the same result).
    gain : {"paper", "function", "std"}, keyword-only
        Magnitude convention; see the module docstring.
    roles : sequence of str, optional
        One role per axis (see :mod:`botcore.roles`); default every axis ``"out"``.
        A ``"fixed"`` axis may not change size.
    backend : str, optional
        Override backend detection.
    check_finite : bool, keyword-only
        Refuse NaN and infinite elements (default; one counting pass over ``x``).
        Lazy Dask arrays and traced values (``jax.jit``, ``tf.function``) are
        not counted.

    Returns
    -------
    array
        Same framework, dtype and device as ``x``, of shape ``shape``.

    Raises
    ------
    ShapeError, WaveletError, ModeError, RoleError, OptionError, DTypeError, BackendError,
    NonFiniteError

    Examples
    --------
    >>> import numpy as np, pywt
    >>> x = np.random.default_rng(0).normal(size=(4, 8, 6))
    >>> y = resize(x, (2, 4, 3), wavelet="db2")
    >>> bool(np.allclose(y, pywt.dwtn(x, "db2", mode="periodization")["aaa"]))
    True
    >>> resize(x, (3, 5, 7)).shape
    (3, 5, 7)
    """
    b = get_backend(x, backend=backend)
    check_option(gain, GAINS, "gain")
    src, dst, roles = _target(b, x, shape, roles, "resize")
    p = plan(src, dst, wavelet=wavelet, mode=mode)
    _check_fixed(p, roles)
    y = start = b.to_compute(x)
    if check_finite:
        check_finite_values(b, y, "resize")
    if p.is_identity:
        return b.from_compute(b.scale(y, 1.0), x)  # a new array, never the input itself
    bank = filter_bank(wavelet)
    # 1. shrink axes: the fractional step first (at the fine end), then analysis levels.
    for axis, a in enumerate(p.axes):
        if a.levels >= 0 and a.fraction is not None and a.dst < a.src:
            y = b.resample(y, *area_operator(*a.fraction), axis=axis)
    for k in range(1, max((a.levels for a in p.axes), default=0) + 1):
        for axis, a in enumerate(p.axes):
            if a.levels >= k:
                y = b.dwt(y, bank, axis=axis, mode=mode, detail=False)[0]
    # 2. grow axes: synthesis levels with zero details, then the fractional step.
    for k in range(1, max((-a.levels for a in p.axes), default=0) + 1):
        for axis, a in enumerate(p.axes):
            if -a.levels >= k:
                y = b.idwt(y, None, bank, axis=axis, mode=mode)
    for axis, a in enumerate(p.axes):
        if a.fraction is not None and a.dst > a.src:
            y = b.resample(y, *area_operator(*a.fraction), axis=axis)
    if gain == "std":
        return b.from_compute(b.match_std(y, x), x)  # the backend's: lazy on dask
    factor = gain_factor(p, roles, gain)
    if factor != 1.0:
        y = b.scale(y, factor, owned=y is not start)  # in place on the backends that can
    return b.from_compute(y, x)


def select(x, shape, *, roles=None, backend: str | None = None):
    """Resize ``x`` by picking indices: weight selection down, replication up.

    Shrinking an axis keeps uniformly spaced entries (a fixed stride when the
    target divides the source, else rounded evenly spaced positions), the
    weight-selection baseline. Growing repeats entries in order
    (``floor(i * n / m)``); on axes whose role consumes features (``in``,
    ``in_head``, ``in_head_dim``) every copy is divided by its number of copies,
    so ``W_big @ repeat(x) == repeat(W @ x)`` (Net2Net's function-preserving
    widening, without its random choice of units).

    Examples
    --------
    >>> import numpy as np
    >>> select(np.arange(6.0), (3,))
    array([0., 2., 4.])
    >>> select(np.array([[1.0, 2.0]]), (2, 4), roles=("out", "in"))
    array([[0.5, 0.5, 1. , 1. ],
           [0.5, 0.5, 1. , 1. ]])
    """
    b = get_backend(x, backend=backend)
    src, dst, roles = _target(b, x, shape, roles, "select")
    p = plan(src, dst)
    _check_fixed(p, roles)
    y = b.to_compute(x)
    for axis, (n, m, role) in enumerate(zip(src, dst, roles)):
        if n == m:
            continue
        if m < n:
            idx = uniform_indices(n, m)
            weight = np.ones(m)
        else:
            idx = replicate_indices(n, m)
            weight = np.ones(m)
            if role in SUM_ROLES:
                weight = 1.0 / np.bincount(idx, minlength=n)[idx]
        y = b.resample(y, idx[None, :], weight[None, :], axis=axis)
    if p.is_identity:
        y = b.scale(y, 1.0)  # a new array, never the input itself
    return b.from_compute(y, x)


def take(x, indices, *, axis: int, backend: str | None = None):
    """Entries ``indices`` of ``x`` along ``axis`` (e.g. a layer choice), in ``x``'s framework.

    >>> import numpy as np
    >>> take(np.arange(12.0).reshape(4, 3), [0, 3], axis=0)
    array([[ 0.,  1.,  2.],
           [ 9., 10., 11.]])
    """
    b = get_backend(x, backend=backend)
    check_dtype(b, x, "take")
    shape = b.shape(x)
    if not -len(shape) <= axis < len(shape):
        raise ShapeError(f"axis {axis} is out of range for shape {shape}")
    idx = np.asarray(indices, dtype=np.int64)
    n = shape[axis]
    if idx.ndim != 1 or idx.size == 0 or idx.min() < -n or idx.max() >= n:
        raise ShapeError(
            f"indices {idx.tolist()} do not select along an axis of length {n}; "
            f"expected a non-empty list of ints in [0, {n - 1}]"
        )
    idx = idx % n
    y = b.resample(b.to_compute(x), idx[None, :], np.ones((1, idx.size)), axis=axis % len(shape))
    return b.from_compute(y, x)
