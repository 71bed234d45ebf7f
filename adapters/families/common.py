"""Rule builders every family shares, so that a family module is mostly data.

Contract: each builder returns a tuple of :class:`~botcore.adapters.base.Rule`
(or one :class:`~botcore.adapters.base.Fusion`) for a native naming pattern; the
signal names and roles are the canonical ones (``q, k, v, o, ffn_in, ffn_out,
norm1, norm2`` ...), the same in every family.

Examples
--------
>>> [r.signal for r in linear_rules(r"pooler\\.dense", "pooler", "hidden,hidden", "out,in")]
['pooler', 'pooler.bias']
>>> qkv_fusion(r"h\\.\\d+\\.attn\\.c_attn\\.(?:weight|bias)").suffixes
('#q', '#k', '#v')
"""

from __future__ import annotations

from ..base import Fusion, Rule

__all__ = ["Q", "KV", "attention_and_ffn", "linear_rules", "qkv_fusion", "vector_rules"]

#: dims and roles of a query projection and of a key/value projection.
Q = "heads*head_dim,hidden", "head*head_dim,in"
KV = "kv_heads*head_dim,hidden", "head*head_dim,in"


def vector_rules(prefix: str, signal: str, dims: str = "hidden") -> tuple[Rule, ...]:
    """Weight and bias rules for a LayerNorm (or bias-carrying vector pair) at ``prefix``."""
    return (
        Rule(prefix + r"\.weight", signal + ".weight", dims, "out"),
        Rule(prefix + r"\.bias", signal + ".bias", dims, "out"),
    )


def linear_rules(prefix: str, signal: str, dims: str, roles: str, *, suffix: str = "",
                 residual: bool = False) -> tuple[Rule, ...]:
    """Weight and bias rules for a linear layer ``(out, in)`` at ``prefix``.

    ``suffix`` is appended after ``.weight``/``.bias`` (the part of a fused tensor,
    e.g. ``"#q"``).
    """
    out_dim, out_role = dims.split(",")[0], roles.split(",")[0]
    return (
        Rule(prefix + r"\.weight" + suffix, signal, dims, roles, residual=residual),
        Rule(prefix + r"\.bias" + suffix, signal + ".bias", out_dim, out_role, residual=residual),
    )


def _name(names: dict, key: str) -> tuple[str, str]:
    value = names[key]
    return value if isinstance(value, tuple) else (value, "")


def attention_and_ffn(L: str, names: dict) -> tuple[Rule, ...]:
    """Layer rules of a transformer block with a two-matrix FFN and two LayerNorms.

    ``L`` is the layer prefix pattern (with a ``(?P<layer>\\d+)`` group); ``names``
    maps ``q, k, v, o, ffn_in, ffn_out, norm1, norm2`` to native module patterns,
    or to ``(pattern, suffix)`` for the parts of a fused tensor.
    """
    rules = []
    for key, (dims, roles) in (("q", Q), ("k", KV), ("v", KV)):
        base, suffix = _name(names, key)
        rules += linear_rules(L + base, key, dims, roles, suffix=suffix)
    rules += linear_rules(L + _name(names, "o")[0], "o", "hidden,heads*head_dim",
                          "out,in_head*in_head_dim", residual=True)
    rules += linear_rules(L + _name(names, "ffn_in")[0], "ffn_in", "ffn,hidden", "out,in")
    rules += linear_rules(L + _name(names, "ffn_out")[0], "ffn_out", "hidden,ffn", "out,in",
                          residual=True)
    rules += vector_rules(L + _name(names, "norm1")[0], "norm1")
    rules += vector_rules(L + _name(names, "norm2")[0], "norm2")
    return tuple(rules)


def qkv_fusion(pattern: str, *, kv: str = "kv_heads*head_dim") -> Fusion:
    """A fused query/key/value tensor (rows ``q | k | v``) matching ``pattern``."""
    return Fusion(pattern, (("#q", "heads*head_dim"), ("#k", kv), ("#v", kv)))
