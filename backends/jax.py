"""The JAX backend: strided slices of the periodized stencils, traceable and differentiable.

Contract: the names listed in :mod:`botcore.backend`, for ``jax.Array``
(tracers included, so :func:`botcore.resize` works inside ``jax.jit``,
``jax.grad`` and ``jax.vmap`` bodies: botcore's control flow depends only on
static shapes). Results stay on the input's device; float16/bfloat16 are
computed in float32 and cast back, float64 stays float64 (float64 arrays exist
only when the caller enabled ``jax_enable_x64``; this module never changes
JAX's configuration). ``MODES`` is ``{"periodization"}``.

``gain="std"`` needs the array's standard deviation as a Python number, so it
cannot run under ``jax.jit``; :func:`std` raises :class:`botcore.OptionError`
there (use ``gain="paper"`` or ``"function"``, or resize outside the jit).

Examples
--------
>>> import jax, jax.numpy as jnp, botcore
>>> x = jnp.arange(8.0).reshape(2, 4)
>>> botcore.resize(x, (1, 2), gain="function").tolist()
[[2.5, 4.5]]
>>> shrink = jax.jit(lambda w: botcore.resize(w, (2, 4), gain="function"))
>>> shrink(jnp.ones((4, 8))).tolist()
[[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]]
>>> float(jax.grad(lambda w: botcore.resize(w, (1, 2)).sum())(x)[0, 0])
0.5
"""

from __future__ import annotations

import functools
import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from botcore.errors import OptionError

from . import _stencil

NAME = "jax"
MODES = _stencil.MODES

_this = sys.modules[__name__]  # the primitives below, for _stencil


def is_array(x: object) -> bool:
    return isinstance(x, jax.Array)


def _own(x):
    """``x`` as a jax array: itself, or (``backend="jax"`` on another framework's array) converted."""
    return x if isinstance(x, jax.Array) else jnp.asarray(_stencil.host_array(x))


def dtype_name(x) -> str:
    return _stencil.dtype_name_of(x)


def shape(x) -> tuple[int, ...]:
    return tuple(int(d) for d in x.shape)


def to_compute(x):
    x = _own(x)
    return x.astype(jnp.float64 if x.dtype == jnp.float64 else jnp.float32)


def from_compute(y, like):
    return y.astype(like.dtype if isinstance(like, jax.Array) else dtype_name(like))


# -- primitives for botcore.backends._stencil ---------------------------------


def axis_slice(x, axis, start, step, count):
    return lax.slice_in_dim(x, start, start + step * (count - 1) + 1, step, axis)


def phases(x, axis):
    n = x.shape[axis]
    return lax.slice_in_dim(x, 0, n - 1, 2, axis), lax.slice_in_dim(x, 1, n, 2, axis)


def gather(x, index, axis):
    return jnp.take(x, np.asarray(index, dtype=np.int32), axis=axis, mode="clip")


def concat(parts, axis):
    return jnp.concatenate(parts, axis=axis)


def lincomb(terms, weights):
    if len(set(weights)) == 1:
        out = terms[0]
        for t in terms[1:]:
            out = out + t
        return out * weights[0]
    out = terms[0] * weights[0]
    for t, w in zip(terms[1:], weights[1:]):
        out = out + t * w
    return out


def _merge(x, axis):
    s = x.shape
    return x.reshape(s[:axis] + (s[axis] * s[axis + 1],) + s[axis + 2 :])


def interleave(even, odd, axis):
    return _merge(jnp.stack((even, odd), axis=axis + 1), axis)


def upsample(x, w_even, w_odd, axis):
    w = np.array([w_even, w_odd], dtype=np.float64).reshape((2,) + (1,) * (x.ndim - axis - 1))
    return _merge(jnp.expand_dims(x, axis + 1) * w.astype(x.dtype), axis)


# -- the contract ---------------------------------------------------------------


# One compiled kernel per (shape, dtype, bank, axis): fused by XLA, and far
# fewer compilations than op-by-op dispatch; inside a caller's jit it inlines.
@functools.partial(jax.jit, static_argnames=("bank", "axis", "mode", "detail"))
def _dwt(x, bank, axis, mode, detail):
    return _stencil.dwt(_this, x, bank, axis=axis, mode=mode, detail=detail)


@functools.partial(jax.jit, static_argnames=("bank", "axis", "mode"))
def _idwt(a, d, bank, axis, mode):
    return _stencil.idwt(_this, a, d, bank, axis=axis, mode=mode)


def dwt(x, bank, *, axis, mode, detail):
    _stencil.check_mode(mode, NAME)
    return _dwt(x, bank, axis=axis % x.ndim, mode=mode, detail=bool(detail))


def idwt(a, d, bank, *, axis, mode):
    _stencil.check_mode(mode, NAME)
    return _idwt(a, d, bank, axis=axis, mode=mode)


def resample(x, index, weight, *, axis):
    return _stencil.resample(_this, x, index, weight, axis=axis)


def constant(a, like):
    return jnp.asarray(a, dtype=like.dtype)


def scale(x, factor, *, owned=False):
    return x * factor


def count_nonfinite(x) -> int | None:
    """The number of NaN and infinite elements of ``x``; None for a traced value (jit, grad)."""
    if isinstance(x, jax.core.Tracer):
        return None
    return int(x.size - jnp.count_nonzero(jnp.isfinite(x)))


def std(x) -> float:
    try:
        return float(jnp.std(to_compute(x)))
    except jax.errors.ConcretizationTypeError:
        raise OptionError(
            "gain='std' needs the weights' standard deviation as a number, which a traced "
            "array (inside jax.jit) does not have; use gain='paper' or gain='function' "
            "under jit, or call botcore.resize outside the jitted function"
        ) from None


def match_std(y, x):
    return _stencil.match_std(_this, y, x)


def to_numpy(x) -> np.ndarray:
    return np.array(x)


def from_numpy(a, like):
    out = jnp.asarray(_stencil.host_array(a).astype(dtype_name(like)))
    if isinstance(like, jax.Array) and not isinstance(like, jax.core.Tracer):
        out = jax.device_put(out, next(iter(like.devices())))
    return out
