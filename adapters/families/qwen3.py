"""Qwen3: Qwen3ForCausalLM / Qwen3Model (Llama layout plus per-head q/k RMSNorm).

Contract: every Llama rule applies (:mod:`botcore.adapters.families.llama`);
``self_attn.q_norm.weight`` and ``k_norm.weight`` are RMSNorm gains of size
``head_dim``, one vector shared by every head (the norm runs over each head's
features after the projection, before RoPE): signals ``q_norm.weight`` /
``k_norm.weight`` of shape ``(layers, head_dim)``, roles ``(depth, head_dim)``
(means kept under ``gain="function"``; unchanged while head_dim is kept, which
is the default). ``head_dim`` is explicit in the config and always written.
``layer_types`` and ``max_window_layers`` are rewritten together for a new
layer count (:func:`~botcore.adapters.families.windows.window_config`);
``sliding_window`` (tokens) is kept.

Examples
--------
>>> cfg = dict(model_type="qwen3", num_hidden_layers=2, hidden_size=32, num_attention_heads=4,
...            num_key_value_heads=2, head_dim=16, intermediate_size=64)
>>> Qwen3Adapter().sizes(cfg, {})["head_dim"]
16
>>> [r.axis_roles for r in Qwen3Adapter.rules[:1]]
[('depth', 'head_dim')]
"""

from __future__ import annotations

from ..base import Rule
from .llama import LlamaAdapter
from .windows import window_config

__all__ = ["Qwen3Adapter"]

_L = r"(?:model\.)?layers\.(?P<layer>\d+)\."


def head_norm_rules(L: str = _L) -> tuple[Rule, ...]:
    """``q_norm``/``k_norm`` gains over one head's features (Qwen3, Gemma 3)."""
    return (
        Rule(L + r"self_attn\.q_norm\.weight", "q_norm.weight", "head_dim", "head_dim"),
        Rule(L + r"self_attn\.k_norm\.weight", "k_norm.weight", "head_dim", "head_dim"),
    )


class Qwen3Adapter(LlamaAdapter):
    """Adapter for Qwen3 causal decoders (see the module docstring)."""

    family = "qwen3"
    model_types = ("qwen3",)
    rules = head_norm_rules() + LlamaAdapter.rules

    def write_config(self, config, sizes):
        out = super().write_config(config, sizes)
        out["head_dim"] = sizes["head_dim"]
        out.update(window_config(config, sizes["layers"], rule="sampled"))
        return out

    @classmethod
    def claims(cls, names, config):
        names = list(names)
        return any(n.endswith("self_attn.q_norm.weight") for n in names) and not any(
            n.endswith(("pre_feedforward_layernorm.weight", "post_feedforward_layernorm.weight"))
            for n in names)
