"""The TensorFlow backend: strided slices of the periodized stencils, eager or in tf.function.

Contract: the names listed in :mod:`botcore.backend`, for ``tf.Tensor`` and
``tf.Variable`` (a variable is read once; the result is always a new
``tf.Tensor``, and the variable is never assigned). Results are placed on the
input's device; float16/bfloat16 are computed in float32 and cast back,
float64 stays float64. Every operation is a TensorFlow op (gradients flow under
``tf.GradientTape``); nothing goes through NumPy except the small index arrays
of the stencils. ``MODES`` is ``{"periodization"}``.

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

import sys

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


# -- the contract ---------------------------------------------------------------


def dwt(x, bank, *, axis, mode, detail):
    return _stencil.dwt(_this, x, bank, axis=axis, mode=mode, detail=detail)


def idwt(a, d, bank, *, axis, mode):
    return _stencil.idwt(_this, a, d, bank, axis=axis, mode=mode)


def resample(x, index, weight, *, axis):
    return _stencil.resample(_this, tf.convert_to_tensor(x), index, weight, axis=axis)


def constant(a, like):
    return tf.constant(a, dtype=like.dtype)


def scale(x, factor):
    return x * factor


def std(x) -> float:
    return float(tf.math.reduce_std(tf.cast(_own(x), tf.float64)))


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
