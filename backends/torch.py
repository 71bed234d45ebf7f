"""The PyTorch backend: strided slices of the periodized stencils, on the tensor's device.

Contract: the names listed in :mod:`botcore.backend`, for ``torch.Tensor``
(``torch.nn.Parameter`` included). Results are plain tensors on the input's
device; float16/bfloat16 are computed in float32 and cast back, float64 stays
float64. Every operation is a differentiable torch op, so autograd flows
through :func:`botcore.resize`, :func:`botcore.decompose` and
:func:`botcore.reconstruct`. Nothing goes through NumPy except the small index
arrays of the stencils. ``MODES`` is ``{"periodization"}``.

Importing this module imports torch; the dispatcher only does so once a torch
tensor has been seen or ``backend="torch"`` is asked for.

Examples
--------
>>> import torch, botcore
>>> x = torch.arange(8.0).reshape(2, 4)
>>> botcore.resize(x, (1, 2), gain="function")
tensor([[2.5000, 4.5000]])
>>> y = botcore.resize(torch.ones(4, 4, dtype=torch.bfloat16), (8, 8), gain="function")
>>> y.dtype, y.shape
(torch.bfloat16, torch.Size([8, 8]))
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from . import _stencil

NAME = "torch"
MODES = _stencil.MODES

_this = sys.modules[__name__]  # the primitives below, for _stencil
_COMPUTE = {torch.float16: torch.float32, torch.bfloat16: torch.float32, torch.float32: torch.float32}


def is_array(x: object) -> bool:
    return isinstance(x, torch.Tensor)


def _own(x) -> torch.Tensor:
    """``x`` as a tensor: itself, or (``backend="torch"`` on another framework's array) converted."""
    if isinstance(x, torch.Tensor):
        return x
    a = _stencil.host_array(x)
    if a.dtype.name == "bfloat16":
        return torch.from_numpy(a.astype(np.float32)).to(torch.bfloat16)
    return torch.from_numpy(np.array(a))


def dtype_name(x) -> str:
    return _stencil.dtype_name_of(x)


def shape(x) -> tuple[int, ...]:
    return tuple(int(d) for d in x.shape)


def to_compute(x) -> torch.Tensor:
    # No copy for float32/float64: every kernel below returns new tensors and
    # never writes into its inputs; from_compute copies if handed the input back.
    x = _own(x)
    return x.to(_COMPUTE.get(x.dtype, torch.float64))


def from_compute(y: torch.Tensor, like) -> torch.Tensor:
    if not isinstance(like, torch.Tensor):  # a backend="torch" override: stay in torch
        return y.to(getattr(torch, dtype_name(like)))
    out = y.to(device=like.device, dtype=like.dtype)
    if out is like or (out.numel() and out.data_ptr() == like.data_ptr()):
        out = out.clone()
    return out


# -- primitives for botcore.backends._stencil ---------------------------------


def axis_slice(x, axis, start, step, count):
    return x.narrow(axis, start, step * (count - 1) + 1)[(slice(None),) * axis + (slice(None, None, step),)]


def phases(x, axis):
    lead = (slice(None),) * axis
    return x[lead + (slice(0, None, 2),)], x[lead + (slice(1, None, 2),)]


def gather(x, index, axis):
    return x.index_select(axis, torch.as_tensor(index, device=x.device))


def concat(parts, axis):
    return torch.cat(parts, dim=axis)


def lincomb(terms, weights):
    if len(set(weights)) == 1:
        out = terms[0] + terms[1] if len(terms) > 1 else terms[0] * 1.0
        for t in terms[2:]:
            out.add_(t)
        return out.mul_(weights[0])
    out = terms[0] * weights[0]
    for t, w in zip(terms[1:], weights[1:]):
        out.add_(t, alpha=w)
    return out


def interleave(even, odd, axis):
    return torch.stack((even, odd), dim=axis + 1).flatten(axis, axis + 1)


def upsample(x, w_even, w_odd, axis):
    w = torch.tensor([w_even, w_odd], dtype=x.dtype, device=x.device)
    w = w.reshape((2,) + (1,) * (x.dim() - axis - 1))
    return (x.unsqueeze(axis + 1) * w).flatten(axis, axis + 1)


# -- the contract ---------------------------------------------------------------


def dwt(x, bank, *, axis, mode, detail):
    return _stencil.dwt(_this, x, bank, axis=axis, mode=mode, detail=detail)


def idwt(a, d, bank, *, axis, mode):
    return _stencil.idwt(_this, a, d, bank, axis=axis, mode=mode)


def resample(x, index, weight, *, axis):
    return _stencil.resample(_this, x, index, weight, axis=axis)


def constant(a, like):
    return torch.as_tensor(a, dtype=like.dtype, device=like.device)


def scale(x, factor):
    return x * factor


def std(x) -> float:
    return float(_own(x).detach().to(torch.float64).std(correction=0))


def match_std(y, x):
    return _stencil.match_std(_this, y, x)


def to_numpy(x) -> np.ndarray:
    x = x.detach().cpu()
    if x.dtype == torch.bfloat16:
        import ml_dtypes

        return x.to(torch.float32).numpy().astype(ml_dtypes.bfloat16)
    return x.numpy().copy()


def from_numpy(a, like):
    a = _stencil.host_array(a)
    if a.dtype.name == "bfloat16":
        a = a.astype(np.float32)
    out = torch.from_numpy(np.array(a))
    if isinstance(like, torch.Tensor):
        return out.to(device=like.device, dtype=like.dtype)
    return out.to(getattr(torch, dtype_name(like)))

