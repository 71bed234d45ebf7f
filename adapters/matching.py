"""Match units before BoT averages them: permute each layer's FFN neurons and heads, exactly.

Contract: :func:`plan_matching` reads a checkpoint's FFN and attention signals one
block of layers at a time and returns, per matched size key (``"ffn"``,
``"heads"``), the order of every layer's units (``(layers, n)`` integer array);
:func:`permute_units` applies it to one canonical stack and returns a new array.
A permutation of a layer's FFN neurons (or of its attention heads, applied to q,
k, v and o together) changes no output of the model, so the matched checkpoint
computes exactly what the source did; only which units a resize averages
together changes. It is the ``match=True`` option of
:func:`botcore.adapters.resize_model` (``method="bot"``).

Why. A Haar shrink by two averages each pair of consecutive layers, and within
them each pair of consecutive units: four neurons become one. Neighbouring
neurons of a trained layer are unrelated (their order is arbitrary), so the
average of their weights is close to none of them; weight selection keeps whole
neurons instead, which is why it trains ahead of plain BoT once the residual
stream is rotated (``docs/transfer.md``). Matching makes the averaged units
alike, as model-merging methods do before averaging two networks (Git Re-Basin,
Ainsworth et al. 2023; ZipIt!, Stoica et al. 2024):

1. *Across layers* (the depth axis shrinks by ``2**k``): the units of every
   layer of a block are aligned to the block's first layer by a greedy
   one-to-one matching of their weights.
2. *Within a layer* (the unit axis shrinks by ``2**k``): the block's aligned
   units are paired by a greedy matching, ``k`` times (pairs of pairs for 4),
   and the groups are laid out consecutively, which is what the resize averages.

A unit's features are its weights in every signal that has the unit axis
(FFN: the input rows, their biases and the output columns; heads: the q, k, v
rows and o columns of the head), each signal scaled by its RMS so that no
signal dominates by its magnitude. Only exact power-of-two ratios are matched
(a non-dyadic step mixes units by overlapping weights, not by blocks); heads
are not matched in grouped-query models (``kv_heads``), whose q heads are tied
to their k/v head. Cost: a ``units x units`` distance matrix per block of
layers (float64), so ``match=`` suits FFN widths up to several thousand.

Examples
--------
Duplicated neurons, shuffled, are found and put side by side:

>>> rng = np.random.default_rng(0)
>>> w = rng.normal(size=(1, 3, 5))                      # (layers, ffn, hidden): 3 neurons
>>> dup = np.concatenate([w, w * 1.01], axis=1)[:, [0, 4, 2, 1, 5, 3]]
>>> order = group_units(dup[0], 2)
>>> [sorted(int(v) for v in order[i:i + 2]) for i in (0, 2, 4)]
[[0, 5], [1, 3], [2, 4]]
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from botcore.errors import OptionError

__all__ = ["MATCHED", "align_units", "block_factor", "group_units", "permute_units", "plan_matching"]

#: The size keys whose units are matched (a layer's FFN neurons, its attention heads).
MATCHED = ("ffn", "heads")


def block_factor(n: int, m: int) -> int:
    """How many consecutive entries a shrink from ``n`` to ``m`` averages into one (1: none).

    >>> block_factor(6, 3), block_factor(1536, 384), block_factor(6, 4), block_factor(3, 6)
    (2, 4, 1, 1)
    """
    if m <= 0 or m >= n or n % m:
        return 1
    f = n // m
    return f if f & (f - 1) == 0 else 1


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances between the rows of ``a`` and of ``b`` (float64)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


def _mutual_best(cost: np.ndarray, *, symmetric: bool) -> list[tuple[int, int]]:
    """Greedy minimum-cost matching: repeatedly take every pair that is each other's best.

    Each round matches every mutually-nearest pair among the units left (the pair of
    least cost is always one), so the result is the greedy matching by increasing cost.
    """
    cost = np.array(cost, dtype=np.float64)
    if symmetric:
        np.fill_diagonal(cost, np.inf)
    rows, cols = np.arange(cost.shape[0]), np.arange(cost.shape[1])
    pairs = []
    while rows.size and cols.size:
        sub = cost[np.ix_(rows, cols)]
        best_col = sub.argmin(1)
        best_row = sub.argmin(0)
        mutual = np.flatnonzero(best_row[best_col] == np.arange(rows.size))
        if not mutual.size:  # only when the costs are not finite
            raise OptionError("match=True: the unit features are not finite; repair the "
                              "checkpoint or leave match= unset")
        taken = [(int(rows[i]), int(cols[best_col[i]])) for i in mutual]
        if symmetric:  # (i, j) and (j, i) are the same pair
            taken = [(i, j) for i, j in taken if i < j]
        pairs += taken
        used_rows = {i for i, j in taken} | ({j for i, j in taken} if symmetric else set())
        rows = np.array([r for r in rows if r not in used_rows], dtype=int)
        used_cols = {j for i, j in taken}
        cols = rows if symmetric else np.array([c for c in cols if c not in used_cols], dtype=int)
    return pairs


def align_units(base: np.ndarray, other: np.ndarray) -> np.ndarray:
    """The order of ``other``'s rows (units) that matches each to the alike row of ``base``.

    >>> base = np.eye(3)
    >>> align_units(base, base[[2, 0, 1]]).tolist()
    [1, 2, 0]
    """
    order = np.empty(base.shape[0], dtype=int)
    for i, j in _mutual_best(_distances(base, other), symmetric=False):
        order[i] = j
    return order


def group_units(features: np.ndarray, factor: int) -> np.ndarray:
    """An order of the rows in which each run of ``factor`` consecutive rows are alike.

    ``factor`` is a power of two; rows are paired greedily, then pairs of pairs
    (by their mean features), and so on.
    """
    groups = [[i] for i in range(features.shape[0])]
    feats = np.asarray(features, np.float64)
    while len(groups[0]) < factor:
        pairs = _mutual_best(_distances(feats, feats), symmetric=True)
        groups = [groups[i] + groups[j] for i, j in pairs]
        feats = np.stack([(feats[i] + feats[j]) / 2 for i, j in pairs])
    return np.array([u for g in groups for u in g], dtype=int)


def _unit_features(stacks: list[tuple[np.ndarray, int]]) -> np.ndarray:
    """``(layers, units, features)``: every stack's unit axis moved forward, RMS-scaled, joined."""
    parts = []
    for data, axis in stacks:
        moved = np.moveaxis(np.asarray(data, np.float64), axis, 1)
        flat = moved.reshape(moved.shape[0], moved.shape[1], -1)
        rms = float(np.sqrt(np.mean(flat * flat))) or 1.0
        parts.append(flat / rms)
    return np.concatenate(parts, axis=2)


def block_orders(features: np.ndarray, *, depth: int, factor: int) -> np.ndarray:
    """The unit order of every layer of one block of ``depth`` layers (``(layers, units)``).

    >>> f = np.random.default_rng(1).normal(size=(2, 4, 3))
    >>> f[1] = f[0][[3, 1, 0, 2]]                        # layer 1: layer 0's units, permuted
    >>> o = block_orders(f, depth=2, factor=1)
    >>> bool(np.allclose(f[0][o[0]], f[1][o[1]]))
    True
    """
    layers, units = features.shape[:2]
    aligned = [np.arange(units)] + [align_units(features[0], features[t]) for t in range(1, depth)]
    mean = np.mean([features[t][o] for t, o in enumerate(aligned)], axis=0)
    group = group_units(mean, factor) if factor > 1 else np.arange(units)
    return np.stack([o[group] for o in aligned])


def _axis_of(spec, key: str) -> int | None:
    """The canonical axis of ``spec`` that holds ``key``'s units (k/v heads count as heads)."""
    dims = spec.rule.axis_dims
    for name in (key, "kv_heads") if key == "heads" else (key,):
        if name in dims:
            return dims.index(name)
    return None


def _signals_with(layout, key: str) -> list:
    return [s for s in layout.specs.values() if s.layered and _axis_of(s, key) is not None]


def _read_layers(reader, layout, spec, layers: range) -> np.ndarray:
    from .pipeline import read_view

    return np.stack([np.asarray(read_view(reader, layout.views[spec.members[i]]), np.float64)
                     .reshape(spec.shape[1:]) for i in layers])


def _multi_head(sizes: Mapping) -> bool:
    return sizes.get("kv_heads", sizes.get("heads")) == sizes.get("heads")


def matched_keys(layout, source_sizes: Mapping, target_sizes: Mapping) -> dict:
    """``{size key: (depth block, unit block)}`` of the unit axes :func:`plan_matching` permutes.

    Heads are matched only where every query head has its own key/value head
    (``kv_heads == heads`` before and after), so k and v move with q.
    """
    depth = block_factor(source_sizes["layers"], target_sizes["layers"])
    out = {}
    for key in MATCHED:
        if key not in source_sizes or not _signals_with(layout, key):
            continue
        if key == "heads" and not (_multi_head(source_sizes) and _multi_head(target_sizes)):
            continue
        factor = block_factor(source_sizes[key], target_sizes[key])
        if depth > 1 or factor > 1:
            out[key] = (depth, factor)
    return out


def plan_matching(reader, layout, source_sizes: Mapping, target_sizes: Mapping) -> dict:
    """``{size key: (layers, units) orders}`` for the shrink ``source_sizes -> target_sizes``.

    Reads the signals that carry a matched unit axis, one block of layers at a time.
    Empty when nothing shrinks by a power of two (a growth, a non-dyadic step). The
    heads' order is also given as ``"kv_heads"`` (the k/v axes of multi-head attention).
    """
    orders = {}
    for key, (depth, factor) in matched_keys(layout, source_sizes, target_sizes).items():
        specs = _signals_with(layout, key)
        n_layers = specs[0].shape[0]
        if n_layers % depth:
            raise OptionError(f"match=True: {n_layers} layers do not split into blocks of {depth}")
        per_layer = []
        for start in range(0, n_layers, depth):
            block = range(start, start + depth)
            stacks = [(_read_layers(reader, layout, s, block), _axis_of(s, key)) for s in specs]
            per_layer.append(block_orders(_unit_features(stacks), depth=depth, factor=factor))
        orders[key] = np.concatenate(per_layer)
        if key == "heads":  # multi-head attention: the k/v heads are the query heads
            orders["kv_heads"] = orders[key]
    return orders


def permute_units(data, axis_dims: tuple, orders: Mapping) -> np.ndarray:
    """``data`` (a layered canonical stack) with each layer's units put in the matched order.

    >>> x = np.arange(12.0).reshape(2, 3, 2)             # (layers, ffn, hidden)
    >>> permute_units(x, ("layers", "ffn", "hidden"), {"ffn": np.array([[2, 0, 1], [0, 1, 2]])})[0]
    array([[4., 5.],
           [0., 1.],
           [2., 3.]])
    """
    out = np.asarray(data)
    for key, order in orders.items():
        if key not in axis_dims or axis_dims[0] != "layers":
            continue
        axis = axis_dims.index(key)
        idx = np.asarray(order).reshape((order.shape[0],) + (1,) * (axis - 1) + (order.shape[1],)
                                        + (1,) * (out.ndim - axis - 1))
        out = np.take_along_axis(out, idx, axis=axis)
    return out
