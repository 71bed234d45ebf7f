"""The TensorFlow backend: strided slices of the periodized stencils, eager or in tf.function.

Contract: the names listed in :mod:`botcore.backend`, for ``tf.Tensor`` and
``tf.Variable`` (a variable is read once; the result is always a new
``tf.Tensor``, and the variable is never assigned). Results are placed on the
input's device; float16/bfloat16 are computed in float32 and cast back,
float64 stays float64. Every operation is a TensorFlow op (gradients flow under
``tf.GradientTape``); nothing goes through NumPy except the small index arrays
of the stencils. ``MODES`` is ``{"periodization"}``.

Eagerly, a level on a tensor of at least :data:`XLA_MIN_SIZE` elements runs as
one XLA-compiled function per (shape, filter bank, axis) (``tf.function(jit_compile=True)``,
compiled once and cached by TensorFlow): XLA fuses the slices, products and
sums of a level into one pass, which eager TensorFlow's op-by-op kernels cannot
(2-5x faster on CPU, see ``docs/speed.md``). Smaller tensors, and calls inside a
caller's ``tf.function``, run the ops directly.

Importing this module imports tensorflow; the dispatcher only does so once a
TensorFlow tensor has been seen or ``backend="tensorflow"`` is asked for.

Examples
--------
>>> import tensorflow as tf, botcore
>>> x = tf.reshape(tf.range(8.0), (2, 4))
>>> botcore.resize(x, (1, 2), gain="function").numpy().tolist()
[[2.5, 4.5]]
>>> v = tf.Variable(tf.ones((4, 4), dtype=tf.bfloat16))
>>> y = botcore.resize(v, (8, 8), gain="function")
>>> y.dtype.name, tuple(y.shape), isinstance(y, tf.Variable)
('bfloat16', (8, 8), False)
"""

from __future__ import annotations

import functools
import sys
from types import SimpleNamespace

import numpy as np
import tensorflow as tf

from . import _stencil

NAME = "tensorflow"
MODES = _stencil.MODES

_this = sys.modules[__name__]  # the primitives below, for _stencil


def is_array(x: object) -> bool:
    return isinstance(x, (tf.Tensor, tf.Variable))


def _own(x):
    """``x`` as a tf.Tensor: a variable's value, itself, or (``backend="tensorflow"`` on
    another framework's array) converted."""
    if is_array(x):
        return tf.convert_to_tensor(x)
    return tf.constant(_stencil.host_array(x))


def dtype_name(x) -> str:
    return _stencil.dtype_name_of(x)


def shape(x) -> tuple[int, ...]:
    return tuple(int(d) for d in x.shape)


def to_compute(x):
    x = _own(x)
    return tf.cast(x, tf.float64 if x.dtype == tf.float64 else tf.float32)


def from_compute(y, like):
    if not is_array(like):  # a backend="tensorflow" override: stay in tensorflow
        return tf.cast(y, dtype_name(like))
    device = like.device if tf.executing_eagerly() else ""
    if not device:
        return tf.cast(y, like.dtype)
    with tf.device(device):
        return tf.identity(tf.cast(y, like.dtype))


# -- primitives for botcore.backends._stencil ---------------------------------


def axis_slice(x, axis, start, step, count):
    return x[(slice(None),) * axis + (slice(start, start + step * (count - 1) + 1, step),)]


def phases(x, axis):
    # TensorFlow's strided slices are several times slower than a copy on CPU;
    # a reshape to (n/2, 2) and an unstack split the phases at copy speed.
    s = shape(x)
    return tf.unstack(tf.reshape(x, s[:axis] + (s[axis] // 2, 2) + s[axis + 1 :]), axis=axis + 1)


def gather(x, index, axis):
    return tf.gather(x, np.asarray(index, dtype=np.int64), axis=axis)


def concat(parts, axis):
    return tf.concat(parts, axis=axis)


def lincomb(terms, weights):
    if len(set(weights)) == 1:
        out = terms[0] if len(terms) == 1 else tf.add_n(terms)
        return out * weights[0]
    return tf.add_n([t * w for t, w in zip(terms, weights)])


def _merge(x, axis):
    s = shape(x)
    return tf.reshape(x, s[:axis] + (s[axis] * s[axis + 1],) + s[axis + 2 :])


def interleave(even, odd, axis):
    return _merge(tf.stack((even, odd), axis=axis + 1), axis)


def upsample(x, w_even, w_odd, axis):
    s = shape(x)
    if axis == len(s) - 1:  # an outer product (K=1 matmul) writes the interleaved last axis fastest
        col = tf.reshape(x, (-1, 1))
        y = tf.linalg.matmul(col, tf.constant([[w_even, w_odd]], dtype=x.dtype))
        return tf.reshape(y, s[:-1] + (2 * s[-1],))
    if w_even == w_odd:  # broadcast_to + reshape writes the output once (a broadcast multiply
        y = tf.expand_dims(x * w_even, axis + 1)  # with an inner size-2 axis is 3x slower)
        return _merge(tf.broadcast_to(y, shape(y)[: axis + 1] + (2,) + shape(y)[axis + 2 :]), axis)
    w = np.array([w_even, w_odd]).reshape((2,) + (1,) * (len(x.shape) - axis - 1))
    return _merge(tf.expand_dims(x, axis + 1) * tf.constant(w, dtype=x.dtype), axis)


def pairs(x, axis, w0, w1):
    # The Haar analysis step without strided slices: a matrix-vector product on
    # the last axis, a sum over the pair axis elsewhere (both near copy speed).
    s = shape(x)
    split = tf.reshape(x, s[:axis] + (s[axis] // 2, 2) + s[axis + 1 :])
    if axis == len(s) - 1:
        return tf.linalg.matvec(split, tf.constant([w0, w1], dtype=x.dtype))
    if w0 == w1:
        return tf.reduce_sum(split, axis=axis + 1) * w0
    even, odd = tf.unstack(split, axis=axis + 1)
    return even * w0 + odd * w1


# -- XLA-compiled levels ---------------------------------------------------------

#: elements (of a level's larger side: its input shrinking, its output growing) from which an
#: eager level runs XLA-compiled. Compiling a level costs about 0.3-2 s of CPU once per shape
#: and axis (cached for the process); large levels repay it, small ones would not.
XLA_MIN_SIZE = 1 << 20


def _x_phases(x, axis):
    s = shape(x)
    half = s[axis] // 2
    if not _packable(x, axis):
        return axis_slice(x, axis, 0, 2, half), axis_slice(x, axis, 1, 2, half)
    return _unpack(x)


def _packable(x, axis: int) -> bool:
    return axis == len(x.shape) - 1 and x.dtype == tf.float32 and sys.byteorder == "little"


# XLA splits and interleaves the innermost axis slowly; read as the two halves of one
# uint64 per pair, it is one fused elementwise pass. Bitcasts have no gradient, so the two
# (linear, mutually transposed) maps declare each other as theirs.


@tf.custom_gradient
def _unpack(x):
    """``(x[..., 0::2], x[..., 1::2])`` of a float32 ``x``."""
    s = shape(x)
    pairs = tf.bitcast(tf.reshape(x, s[:-1] + (s[-1] // 2, 2)), tf.uint64)
    low = tf.bitwise.bitwise_and(pairs, tf.constant(0xFFFFFFFF, tf.uint64))
    high = tf.bitwise.right_shift(pairs, tf.constant(32, tf.uint64))
    even, odd = (tf.bitcast(tf.cast(p, tf.uint32), tf.float32) for p in (low, high))

    def grad(g_even, g_odd):
        g_even = tf.zeros_like(even) if g_even is None else g_even
        g_odd = tf.zeros_like(odd) if g_odd is None else g_odd
        return _pack(g_even, g_odd)

    return (even, odd), grad


@tf.custom_gradient
def _pack(even, odd):
    """Float32 ``even`` and ``odd`` interleaved along the last axis."""
    lo = tf.cast(tf.bitcast(even, tf.uint32), tf.uint64)
    hi = tf.bitwise.left_shift(tf.cast(tf.bitcast(odd, tf.uint32), tf.uint64), tf.constant(32, tf.uint64))
    s = shape(even)
    out = tf.reshape(tf.bitcast(tf.bitwise.bitwise_or(lo, hi), tf.float32), s[:-1] + (2 * s[-1],))

    def grad(g):
        return _unpack(g)

    return out, grad


def _x_lincomb(terms, weights):
    return tf.add_n([t * w for t, w in zip(terms, weights)]) if len(terms) > 1 else terms[0] * weights[0]


def _x_interleave(even, odd, axis):
    return _pack(even, odd) if _packable(even, axis) else interleave(even, odd, axis)


def _x_upsample(x, w_even, w_odd, axis):
    if axis == len(x.shape) - 1:
        return _x_interleave(x * w_even, x * w_odd, axis)
    w = np.array([w_even, w_odd]).reshape((2,) + (1,) * (len(x.shape) - axis - 1))
    return _merge(tf.expand_dims(x, axis + 1) * tf.constant(w, dtype=x.dtype), axis)


# Under XLA, strided slices and broadcast products fuse into the level's one pass, so
# the plain primitives beat the eager workarounds above (reshape/unstack, matvec).
_XLA_OPS = SimpleNamespace(NAME=NAME, shape=shape, axis_slice=axis_slice, phases=_x_phases, gather=gather,
                           concat=concat, lincomb=_x_lincomb, interleave=_x_interleave, upsample=_x_upsample,
                           constant=lambda a, like: tf.constant(a, dtype=like.dtype))


@functools.lru_cache(maxsize=256)
def _compiled(kind: str, bank, axis: int, mode: str, detail: bool):
    if kind == "dwt":
        def level(x):
            return _stencil.dwt(_XLA_OPS, x, bank, axis=axis, mode=mode, detail=detail)
    else:
        def level(a, d):
            return _stencil.idwt(_XLA_OPS, a, d, bank, axis=axis, mode=mode)
    return tf.function(level, jit_compile=True)


def _fused(x, factor: int = 1) -> bool:
    size = x.shape.num_elements() if isinstance(x, tf.Tensor) else None
    return tf.executing_eagerly() and size is not None and factor * size >= XLA_MIN_SIZE


# -- the contract ---------------------------------------------------------------


def dwt(x, bank, *, axis, mode, detail):
    if _fused(x):
        _stencil.check_mode(mode, NAME)
        return _compiled("dwt", bank, axis % len(x.shape), mode, bool(detail))(x)
    return _stencil.dwt(_this, x, bank, axis=axis, mode=mode, detail=detail)


def idwt(a, d, bank, *, axis, mode):
    ref = a if a is not None else d
    if ref is not None and _fused(ref, 2):
        _stencil.check_mode(mode, NAME)
        return _compiled("idwt", bank, axis % len(ref.shape), mode, False)(a, d)
    return _stencil.idwt(_this, a, d, bank, axis=axis, mode=mode)


def resample(x, index, weight, *, axis):
    return _stencil.resample(_this, tf.convert_to_tensor(x), index, weight, axis=axis)


def constant(a, like):
    return tf.constant(a, dtype=like.dtype)


def scale(x, factor, *, owned=False):
    return x * factor


def std(x) -> float:
    return float(tf.math.reduce_std(tf.cast(_own(x), tf.float64)))


def count_nonfinite(x) -> int | None:
    """The number of NaN and infinite elements of ``x``; None inside a ``tf.function`` graph."""
    if not tf.executing_eagerly():
        return None
    finite = tf.math.is_finite(_own(x))
    if bool(tf.reduce_all(finite)):
        return 0
    return int(tf.size(finite, out_type=tf.int64) - tf.math.count_nonzero(finite, dtype=tf.int64))


def match_std(y, x):
    return _stencil.match_std(_this, y, x)


def to_numpy(x) -> np.ndarray:
    return np.array(tf.convert_to_tensor(x).numpy())


def from_numpy(a, like):
    a = _stencil.host_array(a).astype(dtype_name(like))
    if not is_array(like) or not like.device:
        return tf.constant(a)
    with tf.device(like.device):
        return tf.constant(a)
