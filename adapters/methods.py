"""Resizing one canonical signal by a method: bot, weight_selection, layer_select, net2net.

Contract: :func:`resize_signal` returns a new array of exactly the target shape
(the input is never modified) and a one-line description of what was done.

======================= ====================================================================
method                  what happens
======================= ====================================================================
``"bot"``               :func:`botcore.resize` over all axes at once (wavelet, mode, gain)
``"weight_selection"``  :func:`botcore.select` over all axes: uniform element (and layer)
                        selection when shrinking, replication when growing (Xu et al. 2024)
``"layer_select"``      depth: whole layers copied at :func:`layer_indices` (spread over the
                        stack, first and last kept; DistilBERT-style); width: ``select``
``"net2net"``           growth only; width: function-preserving replication (``select`` with
                        roles); depth: every source layer followed by copies of itself whose
                        residual-writing parameters are zero (identity layers)
======================= ====================================================================

Examples
--------
>>> layer_indices(12, 6)
[0, 2, 4, 7, 9, 11]
>>> net2net_layers(2, 5)
([0, 0, 0, 1, 1], [False, True, True, False, True])
"""

from __future__ import annotations

import numpy as np

import botcore
from botcore.errors import OptionError
from botcore.fractional import replicate_indices
from botcore.names import METHODS

__all__ = ["METHODS", "layer_indices", "net2net_layers", "resize_signal"]



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


def resize_signal(data, roles, shape, *, method, wavelet, mode, gain, residual=False):
    """``(array, treatment)`` for one signal; see the module table."""
    src = tuple(data.shape)
    shape = tuple(shape)
    if method == "bot":
        out = botcore.resize(data, shape, roles=roles, wavelet=wavelet, mode=mode, gain=gain)
        return out, f"bot: wavelet={wavelet} mode={mode} gain={gain}"
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
        note = "width by function-preserving replication"
        if roles and roles[0] == "depth" and src[0] != shape[0]:
            idx, inserted = net2net_layers(src[0], shape[0])
            data = botcore.take(data, idx, axis=0)
            if residual:
                data = np.array(data, copy=True)
                data[np.asarray(inserted)] = 0
                note = f"layers {idx}, inserted copies zeroed (identity); " + note
            else:
                note = f"layers {idx}; " + note
        return botcore.select(data, shape, roles=roles), "net2net: " + note
    raise OptionError(f"method={method!r} is not offered; expected one of {METHODS}")
