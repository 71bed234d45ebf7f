"""Framework-neutral conversion of parameters to NumPy and back.

Contract: adapters work on NumPy copies. :func:`to_numpy` returns a NumPy array
with the same values and a :class:`Like` record of the source's framework,
dtype and device; :func:`from_numpy` turns an array back into that framework,
dtype and device. ``bfloat16`` is widened to ``float32`` on the NumPy side
(exactly) and narrowed back on the way out, so a round trip is bit-exact.
Frameworks are imported only when an array of theirs is seen. Inputs are never
modified.

Examples
--------
>>> import numpy as np
>>> a, like = to_numpy(np.arange(3, dtype=np.float16))
>>> like.framework, like.dtype, a.dtype
('numpy', 'float16', dtype('float16'))
>>> from_numpy(a * 2, like)
array([0., 2., 4.], dtype=float16)
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from botcore.errors import BackendError

__all__ = ["Like", "framework_of", "from_numpy", "to_numpy"]


@dataclass(frozen=True)
class Like:
    """Where an array came from: framework name, dtype name, device (or None) and the dtype object."""

    framework: str
    dtype: str
    device: Any = None
    native_dtype: Any = None


def framework_of(x: object) -> str:
    """``"numpy"``, ``"torch"``, ``"tensorflow"`` or ``"jax"``; BackendError otherwise.

    >>> framework_of(np.zeros(2))
    'numpy'
    """
    if isinstance(x, np.ndarray):
        return "numpy"
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        return "torch"
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(x, (tf.Tensor, tf.Variable)):
        return "tensorflow"
    jax = sys.modules.get("jax")
    if jax is not None and isinstance(x, jax.Array):
        return "jax"
    kind = type(x)
    raise BackendError(
        f"a parameter has type {kind.__module__}.{kind.__qualname__}, which no adapter reads; "
        "expected a numpy.ndarray, torch.Tensor, tf.Tensor/tf.Variable or jax.Array"
    )


def _widen(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float32) if a.dtype.name == "bfloat16" else a


def to_numpy(x) -> tuple[np.ndarray, Like]:
    """A NumPy copy of ``x`` (bfloat16 widened to float32) and its :class:`Like`."""
    fw = framework_of(x)
    if fw == "numpy":
        return _widen(np.array(x, copy=True)), Like("numpy", x.dtype.name, None, x.dtype)
    if fw == "torch":
        import torch

        t = x.detach()
        name = str(t.dtype).replace("torch.", "")
        if t.dtype == torch.bfloat16:
            t = t.float()
        return t.cpu().numpy().copy(), Like("torch", name, x.device, x.dtype)
    if fw == "tensorflow":
        import tensorflow as tf

        name = x.dtype.name
        t = tf.cast(x, tf.float32) if name == "bfloat16" else x
        return np.array(t.numpy(), copy=True), Like("tensorflow", name, None, x.dtype)
    a = np.array(x, copy=True)  # jax
    return _widen(a), Like("jax", a.dtype.name, None, x.dtype)


def from_numpy(a: np.ndarray, like: Like):
    """``a`` as an array of ``like``'s framework, dtype and device."""
    a = np.ascontiguousarray(a)
    if like.framework == "numpy":
        return a.astype(like.native_dtype, copy=False)
    if a.dtype.name == "bfloat16":  # frameworks take it through float32 (exact) and cast back
        a = a.astype(np.float32)
    if like.framework == "torch":
        import torch

        return torch.from_numpy(a.copy()).to(dtype=like.native_dtype, device=like.device)
    if like.framework == "tensorflow":
        import tensorflow as tf

        return tf.cast(tf.constant(a), like.native_dtype)
    import jax.numpy as jnp

    return jnp.asarray(a).astype(like.native_dtype)


def sumsq(a: np.ndarray) -> float:
    """The sum of squares in float64, through one cache-sized buffer (no float64 copy of ``a``)."""
    flat, step = a.reshape(-1), 2**18
    buf, total = np.empty(min(step, flat.size), np.float64), 0.0
    for i in range(0, flat.size, step):
        part = buf[:min(step, flat.size - i)]
        np.copyto(part, flat[i:i + step])
        total += float(np.einsum("i,i->", part, part))  # no BLAS threads for a 2 MB dot
    return total
