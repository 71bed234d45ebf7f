"""Resizing one canonical signal by a method: bot, weight_selection, layer_select, net2net.

Contract: :func:`resize_signal` returns a new array of exactly the target shape
(the input is never modified) and a one-line description of what was done.

======================= ====================================================================
method                  what happens
======================= ====================================================================
``"bot"``               :func:`botcore.resize` over all axes at once (wavelet, mode, gain);
                        options below
``"weight_selection"``  :func:`botcore.select` over all axes: uniform element (and layer)
                        selection when shrinking, replication when growing (Xu et al. 2024)
``"layer_select"``      depth: whole layers copied at :func:`layer_indices` (spread over the
                        stack, first and last kept; DistilBERT-style); width: ``select``
``"net2net"``           growth only; width: function-preserving replication (``select`` with
                        roles); depth: every source layer followed by copies of itself whose
                        residual-writing parameters are zero (identity layers; with
                        LayerScale, the gains: ``Adapter.zeroes_in_new_layers``)
======================= ====================================================================

Options of ``"bot"`` for growth (both keep the grown model's function exactly
where the plain Haar growth does; tested in ``tests/test_growth_options.py``):

* ``depth_growth="identity"``: the depth axis grows as in Net2Net / LLaMA-Pro
  (each source layer followed by copies whose residual-writing parameters are
  zero, so a pre-norm copy is the identity); the other axes are resized by BoT.
* ``detail_noise=alpha``: symmetry-breaking detail bands. A Haar growth with
  zero detail bands replicates every feature, and replicated units get equal
  gradients forever, so the extra width never learns anything of its own.
  Here every axis that *consumes* features (``in``, ``in_head``,
  ``in_head_dim``) and grew by a power of two gets Gaussian noise of standard
  deviation ``alpha * std(result)`` with zero sum over each block of
  replicated inputs: the Haar detail band of that axis. Because the inputs of a
  block are equal, the output is unchanged; the replicas still receive
  different gradients from the first step on. ``alpha=1`` gives the grown
  entries the variance a fresh layer of the grown width would have. The noise
  is seeded by ``seed`` and the signal's ``name``.

Examples
--------
>>> layer_indices(12, 6)
[0, 2, 4, 7, 9, 11]
>>> net2net_layers(2, 5)
([0, 0, 0, 1, 1], [False, True, True, False, True])
"""

from __future__ import annotations

import zlib

import numpy as np

import botcore
from botcore.errors import OptionError
from botcore.fractional import replicate_indices
from botcore.names import FRACTIONAL_STEPS, METHODS

__all__ = ["DEPTH_GROWTH", "METHODS", "detail_noise_like", "layer_indices", "net2net_layers",
           "resize_signal"]

#: How ``method="bot"`` grows the depth axis: ``"wavelet"`` (the default) or ``"identity"``.
DEPTH_GROWTH = ("wavelet", "identity")
_CONSUMED = ("in", "in_head", "in_head_dim")



def layer_indices(n: int, m: int) -> list[int]:
    """``m`` layer indices spread evenly over ``n`` layers, first and last included.

    >>> layer_indices(6, 3), layer_indices(3, 6)
    ([0, 3, 5], [0, 0, 1, 1, 2, 2])
    """
    if m == 1:
        return [n - 1]
    return [int(np.floor(i * (n - 1) / (m - 1) + 0.5)) for i in range(m)]


def net2net_layers(n: int, m: int) -> tuple[list[int], list[bool]]:
    """Source layer per target layer (``m >= n``) and whether it is an inserted identity copy."""
    idx = [int(i) for i in replicate_indices(n, m)]
    return idx, [i > 0 and idx[i] == idx[i - 1] for i in range(m)]


def _identity_depth(data, roles, shape, residual: bool):
    """Net2Net depth growth: ``(array, note)``; inserted copies of residual writers are zero."""
    if not roles or roles[0] != "depth" or shape[0] <= data.shape[0]:
        return data, ""
    idx, inserted = net2net_layers(data.shape[0], shape[0])
    data = botcore.take(data, idx, axis=0)
    if residual:
        data = np.array(data, copy=True)
        data[np.asarray(inserted)] = 0
        return data, f"layers {idx}, inserted copies zeroed (identity)"
    return data, f"layers {idx}"


def detail_noise_like(out, roles, source_shape, *, alpha: float, seed: int = 0, name: str = ""):
    """Zero-sum noise over each block of replicated inputs of a Haar-grown ``out`` (or ``None``).

    The blocks are the ``2**k`` consecutive entries one source entry became on
    every consumed axis (``in``, ``in_head``, ``in_head_dim``) that grew by a
    power of two; the noise has standard deviation ``alpha * std(out)`` before
    its block means are removed.

    Examples
    --------
    >>> w = np.repeat(np.array([[1.0, 2.0]]), 2, axis=1) / 2      # (1, 4): a doubled input axis
    >>> n = detail_noise_like(w, ("out", "in"), (1, 2), alpha=1.0)
    >>> bool(np.allclose((w + n)[:, ::2] + (w + n)[:, 1::2], [[1.0, 2.0]])), bool(n.any())
    (True, True)
    """
    out = np.asarray(out)
    factors = {}
    for i, (role, n, m) in enumerate(zip(roles, source_shape, out.shape)):
        f = m // n if n else 0
        if role in _CONSUMED and m > n and f * n == m and f & (f - 1) == 0:
            factors[i] = f
    std = float(np.std(out)) if out.size else 0.0
    if not factors or std == 0.0 or alpha == 0:
        return None
    rng = np.random.default_rng([int(seed), zlib.crc32(name.encode())])
    split, block_axes = [], []
    for i, m in enumerate(out.shape):
        if i in factors:
            split += [m // factors[i], factors[i]]
            block_axes.append(len(split) - 1)
        else:
            split.append(m)
    z = rng.standard_normal(split)
    z = z - z.mean(axis=tuple(block_axes), keepdims=True)
    return (alpha * std * z).reshape(out.shape).astype(out.dtype)


def _select_heads(data, roles, shape):
    """Whole attention heads kept by selection (``heads="select"``); the other axes untouched."""
    partial = tuple(m if r in ("head", "in_head") else n for r, n, m in zip(roles, data.shape, shape))
    if partial == tuple(data.shape):
        return data, ""
    return botcore.select(data, partial, roles=roles), "heads by selection"


def _fractional_by_selection(data, roles, shape, *, wavelet, mode, gain):
    """BoT on the dyadic levels only; every fractional step is done by uniform selection.

    A shrink selects down to the size the analysis levels start from (``m * 2**j``),
    a growth replicates from the size the synthesis levels end at.
    """
    axes = botcore.plan(tuple(data.shape), tuple(shape), wavelet=wavelet, mode=mode).axes
    pre = tuple(a.fraction[1] if a.fraction and a.direction == "shrink" else a.src for a in axes)
    mid = tuple(a.fraction[0] if a.fraction and a.direction == "grow" else a.dst for a in axes)
    if pre != tuple(data.shape):
        data = botcore.select(data, pre, roles=roles)
    data = botcore.resize(data, mid, roles=roles, wavelet=wavelet, mode=mode, gain=gain,
                          check_finite=False)  # the pipeline checked (or allowed) them
    return botcore.select(data, shape, roles=roles) if mid != tuple(shape) else data


def _bot(data, roles, shape, *, wavelet, mode, gain, residual, depth_growth, detail_noise, seed, name,
         heads=None, fractional=None):
    src = tuple(data.shape)
    notes = [f"bot: wavelet={wavelet} mode={mode} gain={gain}"]
    if depth_growth not in (None, *DEPTH_GROWTH):
        raise OptionError(f"depth_growth={depth_growth!r} is not offered; expected one of {DEPTH_GROWTH}")
    if heads not in (None, "wavelet", "select"):
        raise OptionError(f"heads={heads!r} is not offered; expected 'wavelet' or 'select'")
    if fractional is not None and fractional not in FRACTIONAL_STEPS:
        raise OptionError(f"fractional={fractional!r} is not offered; expected 'area' or 'select'")
    if depth_growth == "identity":
        data, note = _identity_depth(data, roles, shape, residual)
        if note:
            notes.append("depth: " + note)
    if heads == "select":
        data, note = _select_heads(data, roles, shape)
        if note:
            notes.append(note)
    if fractional == "select":
        out = _fractional_by_selection(data, roles, shape, wavelet=wavelet, mode=mode, gain=gain)
        if any(a.fraction for a in botcore.plan(tuple(data.shape), tuple(shape), wavelet=wavelet,
                                                mode=mode).axes):
            notes.append("fractional steps by selection")
    else:
        out = botcore.resize(data, shape, roles=roles, wavelet=wavelet, mode=mode, gain=gain,
                             check_finite=False)  # the pipeline checked (or allowed) them
    if detail_noise is not None:
        if wavelet != "haar":
            raise OptionError(f"detail_noise= keeps the function only for Haar growth (replicated "
                              f"inputs); got wavelet={wavelet!r}; use wavelet='haar' or detail_noise=None")
        noise = detail_noise_like(out, roles, src, alpha=float(detail_noise), seed=seed, name=name)
        if noise is not None:
            out = np.asarray(out) + noise
            notes.append(f"detail noise {detail_noise:g} on the grown consumed axes")
    return out, "; ".join(notes)


def resize_signal(data, roles, shape, *, method, wavelet, mode, gain, residual=False,
                  depth_growth=None, detail_noise=None, seed=0, name="", heads=None, fractional=None):
    """``(array, treatment)`` for one signal; see the module table.

    ``depth_growth``, ``detail_noise`` and ``seed`` are options of ``method="bot"``
    (module docstring); ``name`` (the signal's name) seeds the noise.
    """
    src = tuple(data.shape)
    shape = tuple(shape)
    if method != "bot" and (depth_growth not in (None, "wavelet") or detail_noise is not None
                            or heads is not None or fractional is not None):
        raise OptionError(f"depth_growth=, detail_noise=, heads= and fractional= are options of "
                          f"method='bot', not of method={method!r}; leave them unset")
    if method == "bot":
        return _bot(data, roles, shape, wavelet=wavelet, mode=mode, gain=gain, residual=residual,
                    depth_growth=depth_growth, detail_noise=detail_noise, seed=seed, name=name,
                    heads=heads, fractional=fractional)
    if method == "weight_selection":
        return botcore.select(data, shape, roles=roles), "weight selection (uniform indices)"
    if method == "layer_select":
        note = "width by selection"
        if roles and roles[0] == "depth" and src[0] != shape[0]:
            idx = layer_indices(src[0], shape[0])
            data = botcore.take(data, idx, axis=0)
            note = f"layers {idx}; " + note
        return botcore.select(data, shape, roles=roles), "layer_select: " + note
    if method == "net2net":
        data, note = _identity_depth(data, roles, shape, residual) if roles and roles[0] == "depth" \
            and src[0] != shape[0] else (data, "")
        note = (note + "; " if note else "") + "width by function-preserving replication"
        return botcore.select(data, shape, roles=roles), "net2net: " + note
    raise OptionError(f"method={method!r} is not offered; expected one of {METHODS}")
