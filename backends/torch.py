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
    if w_even == w_odd and x.numel():
        # Haar: duplicate every sample (nearest-neighbour upsampling on the last axis, expand +
        # reshape elsewhere), then scale the fresh result in place: one new allocation, and
        # no product with an inner size-2 axis (twice as slow on the last axis).
        if axis == x.dim() - 1:
            y = torch.nn.functional.interpolate(x.reshape(-1, 1, x.shape[-1]), size=2 * x.shape[-1], mode="nearest")
            y = y.reshape(*x.shape[:-1], 2 * x.shape[-1])
        else:
            y = x.unsqueeze(axis + 1).expand(*x.shape[: axis + 1], 2, *x.shape[axis + 1 :])
            y = y.clone(memory_format=torch.contiguous_format).flatten(axis, axis + 1)  # never a view of x
        return y.mul_(w_even)
    w = torch.tensor([w_even, w_odd], dtype=x.dtype, device=x.device)
    w = w.reshape((2,) + (1,) * (x.dim() - axis - 1))
    return (x.unsqueeze(axis + 1) * w).flatten(axis, axis + 1)


# -- without autograd: levels written into one output, no periodic-extension copy --


def _offsets(stencil, n: int):
    before = 0 if stencil.index is None else (-int(stencil.index[0])) % n
    return [(start - before, w) for start, w in stencil.taps]


def _level_into(out, terms, step: int, n: int, axis: int) -> None:
    """``out[k] = sum w * src[(o + step * k) mod n]`` along ``axis`` for ``terms`` ``(src, o, w)``.

    The interior reads ``src`` through strided views; the few samples at each end
    whose taps wrap around are written one by one from single slices. (Joining a
    periodic extension of a large tensor first, ``torch.cat``, costs more than the
    whole level.)
    """
    count = out.shape[axis]
    lo, hi = min(o for _, o, _ in terms), max(o for _, o, _ in terms)
    k_lo = min(count, max(0, -(lo // step)))
    k_hi = max(k_lo, min(count, (n - 1 - hi) // step + 1))
    pieces = [(k_lo, k_hi - k_lo, [(axis_slice(src, axis, o + step * k_lo, step, k_hi - k_lo), w)
                                   for src, o, w in terms])] if k_hi > k_lo else []
    for k in [*range(k_lo), *range(k_hi, count)]:
        pieces.append((k, 1, [(src.narrow(axis, (o + step * k) % n, 1), w) for src, o, w in terms]))
    for k0, length, parts in pieces:
        view = out.narrow(axis, k0, length)
        torch.mul(parts[0][0], parts[0][1], out=view)
        for t, w in parts[1:]:
            view.add_(t, alpha=w)


def _needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _fast_dwt(x, bank, axis: int, detail: bool):
    n = x.shape[axis]
    if n % 2 or n == 0:
        return _stencil.dwt(_this, x, bank, axis=axis, mode="periodization", detail=detail)
    out = []
    for band in ("a", "d") if detail else ("a",):
        y = x.new_empty(x.shape[:axis] + (n // 2,) + x.shape[axis + 1 :])
        terms = [(x, o, w) for o, w in _offsets(_stencil._analysis(bank, n, band), n)]
        _level_into(y, terms, 2, n, axis)
        out.append(y)
    return out[0], (out[1] if detail else None)


def _fast_idwt(a, d, bank, axis: int):
    ref = a if a is not None else d
    half = ref.shape[axis]
    bands = [(c, band) for c, band in ((a, "a"), (d, "d")) if c is not None]
    phases = [[(c, o, w) for c, band in bands for o, w in _offsets(_stencil._synthesis(bank, half, band, p), half)]
              for p in (0, 1)]
    if len(bands) == 1 and len(phases[0]) == 1 and phases[0][0][1:] == phases[1][0][1:] == (0, phases[0][0][2]):
        return upsample(ref, phases[0][0][2], phases[1][0][2], axis)  # Haar
    y = ref.new_empty(ref.shape[:axis] + (2 * half,) + ref.shape[axis + 1 :])
    for p, terms in enumerate(phases):
        _level_into(axis_slice(y, axis, p, 2, half), terms, 1, half, axis)
    return y


# -- the contract ---------------------------------------------------------------


def dwt(x, bank, *, axis, mode, detail):
    if not _needs_grad(x) and isinstance(x, torch.Tensor):
        _stencil.check_mode(mode, NAME)
        return _fast_dwt(x, bank, axis % x.dim(), bool(detail))
    return _stencil.dwt(_this, x, bank, axis=axis, mode=mode, detail=detail)


def idwt(a, d, bank, *, axis, mode):
    ref = a if a is not None else d
    same = a is None or d is None or (a.shape == d.shape and a.dtype == d.dtype)
    if isinstance(ref, torch.Tensor) and same and not _needs_grad(a, d):
        _stencil.check_mode(mode, NAME)
        return _fast_idwt(a, d, bank, axis % ref.dim())
    return _stencil.idwt(_this, a, d, bank, axis=axis, mode=mode)


def resample(x, index, weight, *, axis):
    return _stencil.resample(_this, x, index, weight, axis=axis)


def constant(a, like):
    return torch.as_tensor(a, dtype=like.dtype, device=like.device)


def scale(x, factor, *, owned=False):
    if owned and not x.requires_grad:  # botcore's own intermediate, outside autograd
        return x.mul_(factor)
    return x * factor


def std(x) -> float:
    return float(_own(x).detach().to(torch.float64).std(correction=0))


def count_nonfinite(x) -> int:
    """The number of NaN and infinite elements of ``x`` (a device sync on accelerators); None
    for a meta tensor."""
    x = _own(x).detach()
    if x.device.type == "meta":
        return None  # no values to count
    if x.numel() == 0:
        return 0
    low, high = torch.aminmax(x)  # one reduction, no new tensor: NaN and +-inf reach the ends
    if bool(torch.isfinite(low)) and bool(torch.isfinite(high)):
        return 0
    return int(x.numel() - torch.isfinite(x).sum())


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

