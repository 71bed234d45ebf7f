"""Llama-family decoders: LlamaForCausalLM / LlamaModel (also Mistral, Qwen2 names).

Contract: ``q_proj`` is ``(depth, head, head_dim, in)``, ``k_proj``/``v_proj``
use the grouped-query ``kv_heads``, ``o_proj`` is ``(depth, out, in_head,
in_head_dim)``; ``gate_proj``/``up_proj``/``down_proj``, RMSNorm gains, the
optional attention/MLP biases (``attention_bias``, ``mlp_bias``, Qwen2) all have
rules. ``lm_head`` tied to ``embed_tokens`` (``tie_word_embeddings``) stays
tied; ``rotary_emb.inv_freq`` buffers of old checkpoints are not written.

RoPE: Hugging Face uses the rotate-half layout, where head-dim entries ``i`` and
``i + head_dim/2`` share a frequency. Halving head_dim with Haar merges entries
``(2j, 2j+1)``, so new pairs ``(j, j + head_dim/4)`` come from old pairs: the
rotate-half structure is kept, and new entry ``j`` gets exactly the frequency
old entry ``2j`` had.

Examples
--------
>>> cfg = dict(model_type="llama", num_hidden_layers=2, hidden_size=8, num_attention_heads=4,
...            num_key_value_heads=2, intermediate_size=16)
>>> LlamaAdapter().sizes(cfg, {})
{'layers': 2, 'hidden': 8, 'heads': 4, 'kv_heads': 2, 'head_dim': 2, 'ffn': 16}
"""

from __future__ import annotations

from botcore.errors import UnsupportedModelError

from ..base import Adapter, Rule
from .windows import window_config

__all__ = ["LlamaAdapter"]

_P = r"(?:model\.)?"
_L = _P + r"layers\.(?P<layer>\d+)\."
_Q = "heads*head_dim,hidden", "head*head_dim,in"
_KV = "kv_heads*head_dim,hidden", "head*head_dim,in"


class LlamaAdapter(Adapter):
    """Adapter for Llama-family causal decoders (see the module docstring)."""

    family = "llama"
    model_types = ("llama", "mistral", "qwen2")
    gqa = True
    free_head_dim = True
    rules = (
        Rule(_P + r"embed_tokens\.weight", "embed.word", "_,hidden", "fixed,out"),
        Rule(_L + r"self_attn\.q_proj\.weight", "q", *_Q),
        Rule(_L + r"self_attn\.k_proj\.weight", "k", *_KV),
        Rule(_L + r"self_attn\.v_proj\.weight", "v", *_KV),
        Rule(_L + r"self_attn\.q_proj\.bias", "q.bias", "heads*head_dim", "head*head_dim"),
        Rule(_L + r"self_attn\.k_proj\.bias", "k.bias", "kv_heads*head_dim", "head*head_dim"),
        Rule(_L + r"self_attn\.v_proj\.bias", "v.bias", "kv_heads*head_dim", "head*head_dim"),
        Rule(_L + r"self_attn\.o_proj\.weight", "o", "hidden,heads*head_dim",
             "out,in_head*in_head_dim", residual=True),
        Rule(_L + r"self_attn\.o_proj\.bias", "o.bias", "hidden", "out", residual=True),
        Rule(_L + r"mlp\.gate_proj\.weight", "ffn_gate", "ffn,hidden", "out,in"),
        Rule(_L + r"mlp\.up_proj\.weight", "ffn_in", "ffn,hidden", "out,in"),
        Rule(_L + r"mlp\.down_proj\.weight", "ffn_out", "hidden,ffn", "out,in", residual=True),
        Rule(_L + r"mlp\.gate_proj\.bias", "ffn_gate.bias", "ffn", "out"),
        Rule(_L + r"mlp\.up_proj\.bias", "ffn_in.bias", "ffn", "out"),
        Rule(_L + r"mlp\.down_proj\.bias", "ffn_out.bias", "hidden", "out", residual=True),
        Rule(_L + r"input_layernorm\.weight", "norm1.weight", "hidden", "out"),
        Rule(_L + r"post_attention_layernorm\.weight", "norm2.weight", "hidden", "out"),
        Rule(_P + r"norm\.weight", "norm_final.weight", "hidden", "out"),
        Rule(r"lm_head\.weight", "lm_head", "_,hidden", "fixed,in"),
        Rule(r"score\.weight", "score", "_,hidden", "fixed,in"),
    )
    ties = ((r"lm_head\.weight", _P + r"embed_tokens\.weight"),)
    head_tie = r"lm_head\.weight"
    head_norms = ("norm_final.weight",)
    tie_default = False
    drops = (
        (_P + r"(?:layers\.\d+\.self_attn\.)?rotary_emb\.inv_freq",
         "non-persistent buffer (RoPE frequencies): not written, the model rebuilds it"),
    )

    def sizes(self, config, params):
        try:
            hidden = int(config["hidden_size"])
            heads = int(config["num_attention_heads"])
            layers = int(config["num_hidden_layers"])
            ffn = int(config["intermediate_size"])
        except KeyError as err:
            raise UnsupportedModelError(
                f"the llama config lacks {err.args[0]!r}; pass the checkpoint's config.json "
                "as config="
            ) from None
        kv = config.get("num_key_value_heads") or heads
        head_dim = config.get("head_dim") or hidden // heads
        return {"layers": layers, "hidden": hidden, "heads": heads, "kv_heads": int(kv),
                    "head_dim": int(head_dim), "ffn": ffn}

    def write_config(self, config, sizes):
        out = dict(config)
        out.update(
            num_hidden_layers=sizes["layers"], hidden_size=sizes["hidden"],
            num_attention_heads=sizes["heads"], num_key_value_heads=sizes["kv_heads"],
            intermediate_size=sizes["ffn"],
        )
        if config.get("head_dim") is not None or sizes["head_dim"] * sizes["heads"] != sizes["hidden"]:
            out["head_dim"] = sizes["head_dim"]
        out.update(window_config(config, sizes["layers"]))  # layer_types, max_window_layers
        return out

    @classmethod
    def claims(cls, names, config):
        return any(n.endswith("self_attn.q_proj.weight") for n in names)
