"""Per-layer attention patterns of decoders, written consistently for a new layer count.

Contract: decoders that mix sliding-window and full attention store the pattern
in their config as ``layer_types`` (one entry per layer) and, for Qwen2/Qwen3,
``max_window_layers`` (layers ``i >= max_window_layers`` slide when
``use_sliding_window``). :func:`layer_types_for` and :func:`window_config` give
a new layer count a pattern that agrees with every such key; ``sliding_window``
(a window in tokens) never depends on the layer count and is kept.

Two rules, chosen per family:

* ``periodic`` (Gemma 2 and 3, whose pattern is architectural: Gemma 2
  alternates sliding/full, Gemma 3 has five sliding layers per full one): the
  shortest period of the source's list is repeated to the new length.
* ``sampled`` (Llama, Mistral, Qwen2, Qwen3): new layer ``i`` takes the type of
  source layer :func:`~botcore.adapters.methods.layer_indices` ``(n, m)[i]`` (the
  stack's ends kept, evenly spread), so a "first k full, then sliding" split
  stays a split at the same fraction of the stack.

Examples
--------
>>> S, F = "sliding_attention", "full_attention"
>>> layer_types_for([S, F, S, F], 3, rule="periodic")
['sliding_attention', 'full_attention', 'sliding_attention']
>>> layer_types_for([F, F, S, S], 2, rule="sampled")
['full_attention', 'sliding_attention']
>>> cfg = {"num_hidden_layers": 4, "use_sliding_window": True, "max_window_layers": 2,
...        "layer_types": [F, F, S, S]}
>>> window_config(cfg, 6)
{'layer_types': ['full_attention', 'full_attention', 'full_attention', 'sliding_attention', 'sliding_attention', 'sliding_attention'], 'max_window_layers': 3}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..methods import layer_indices

__all__ = ["RULES", "layer_types_for", "period", "window_config"]

#: The rules :func:`layer_types_for` offers.
RULES = ("periodic", "sampled")

_FULL = "full_attention"


def period(types: Sequence) -> int:
    """The shortest ``p`` with ``types[i] == types[i % p]`` for every ``i``.

    >>> period(["s", "s", "f"] * 3 + ["s"]), period(["f", "f", "s"])
    (3, 3)
    """
    types = list(types)
    return next(p for p in range(1, len(types) + 1)
                if all(t == types[i % p] for i, t in enumerate(types)))


def layer_types_for(types: Sequence, layers: int, *, rule: str = "sampled") -> list:
    """``types`` (one entry per source layer) carried to ``layers`` layers by ``rule``."""
    types = list(types)
    if rule == "periodic":
        p = period(types)
        return [types[i % p] for i in range(layers)]
    if rule != "sampled":
        raise ValueError(f"rule={rule!r} is not one of {RULES}")
    return [types[i] for i in layer_indices(len(types), layers)]


def _leading_full(types: Sequence) -> int | None:
    """``k`` when ``types`` is ``k`` full layers then only sliding ones (at least one), else None."""
    k = next((i for i, t in enumerate(types) if t != _FULL), len(types))
    if k == len(types) or any(t == _FULL for t in types[k:]):
        return None
    return k


def window_config(config: Mapping, layers: int, *, rule: str = "sampled") -> dict:
    """The per-layer keys of ``config`` rewritten for ``layers`` layers (only those present).

    ``layer_types`` follows ``rule``. ``max_window_layers``, when present: the number
    of leading full-attention layers of the new ``layer_types`` when the list is of
    that form (so the Qwen2 rule "``i >= max_window_layers`` slides" rebuilds it);
    otherwise ``layers`` when every source layer was below it, else scaled with the
    layer count (rounded half up, at most ``layers``).
    """
    out: dict = {}
    n = int(config.get("num_hidden_layers") or 0)
    types = config.get("layer_types")
    if isinstance(types, list) and types:
        out["layer_types"] = layer_types_for(types, layers, rule=rule)
        n = n or len(types)
    mwl = config.get("max_window_layers")
    if isinstance(mwl, int) and not isinstance(mwl, bool) and n:
        k = _leading_full(out.get("layer_types", ()))
        if k is not None and config.get("use_sliding_window", True):
            out["max_window_layers"] = k
        elif mwl >= n:
            out["max_window_layers"] = layers
        else:
            out["max_window_layers"] = min(layers, int(mwl * layers / n + 0.5))
    return out
