"""OLMo 2: Olmo2ForCausalLM / Olmo2Model (norms after the sublayers, q/k norms over the width).

Contract: the Llama projections, MLP, embedding and head
(:mod:`botcore.adapters.families.llama`), but no input norms: each block is
``h + norm_attn_out(attn(h))`` then ``h + norm_ffn_out(mlp(h))``, with
``post_attention_layernorm`` -> signal ``norm_attn_out.weight`` and
``post_feedforward_layernorm`` -> ``norm_ffn_out.weight`` (``(layers, hidden)``,
``(depth, out)``). ``self_attn.q_norm.weight`` and ``k_norm.weight`` are one
RMSNorm over the *whole* projection (``heads*head_dim`` and
``kv_heads*head_dim`` entries, unlike Qwen3's per-head norm): signals
``q_norm.weight`` ``(layers, heads, head_dim)`` and ``k_norm.weight``
``(layers, kv_heads, head_dim)``, roles ``(depth, head, head_dim)``, so heads
are resized like the projection rows they scale. ``head_dim`` is
``hidden_size // num_attention_heads`` unless the config stores one (the model
reads it; it is written when the source had it or it differs from
``hidden / heads``).

Examples
--------
>>> [r.signal for r in Olmo2Adapter.rules[:4]]
['q_norm.weight', 'k_norm.weight', 'norm_attn_out.weight', 'norm_ffn_out.weight']
"""

from __future__ import annotations

from ..base import Rule
from .llama import LlamaAdapter
from .windows import window_config

__all__ = ["Olmo2Adapter"]

_L = r"(?:model\.)?layers\.(?P<layer>\d+)\."


class Olmo2Adapter(LlamaAdapter):
    """Adapter for OLMo 2 causal decoders (see the module docstring)."""

    family = "olmo2"
    model_types = ("olmo2",)
    rules = (
        Rule(_L + r"self_attn\.q_norm\.weight", "q_norm.weight", "heads*head_dim", "head*head_dim"),
        Rule(_L + r"self_attn\.k_norm\.weight", "k_norm.weight", "kv_heads*head_dim", "head*head_dim"),
        Rule(_L + r"post_attention_layernorm\.weight", "norm_attn_out.weight", "hidden", "out"),
        Rule(_L + r"post_feedforward_layernorm\.weight", "norm_ffn_out.weight", "hidden", "out"),
    ) + LlamaAdapter.rules

    def write_config(self, config, sizes):
        out = super().write_config(config, sizes)
        out.update(window_config(config, sizes["layers"]))
        return out

    @classmethod
    def claims(cls, names, config):
        names = list(names)
        return any(n.endswith("post_feedforward_layernorm.weight") for n in names) and not any(
            n.endswith(("input_layernorm.weight", "pre_feedforward_layernorm.weight")) for n in names)
