"""GPT-2: GPT2Model, GPT2LMHeadModel, GPT2ForSequenceClassification.

Contract: ``Conv1D`` weights are stored ``[in, out]``: they are declared
:attr:`~botcore.adapters.base.Adapter.transposed`, so rules see canonical
``(out, in)``; the fused ``c_attn`` (``[hidden, 3 * hidden]``) is declared a
fusion of ``q``, ``k`` and ``v`` row blocks, so a long filter never mixes them;
writing reverses both exactly. ``lm_head.weight`` tied to ``wte`` stays tied (resized once; not
written when the source did not hold it). The causal-mask buffers
``attn.bias``/``attn.masked_bias`` of old checkpoints are non-persistent:
reported, not written.

Examples
--------
>>> from botcore.adapters.io.base import TensorInfo
>>> v = GPT2Adapter().views({"h.0.attn.c_attn.weight": TensorInfo("w", (2, 6), "float32")},
...                         {"heads": 1, "head_dim": 2, "kv_heads": 1})
>>> [(k, view.shape, view.rows) for k, view in v.items()]  # doctest: +NORMALIZE_WHITESPACE
[('h.0.attn.c_attn.weight#q', (2, 2), (0, 2)), ('h.0.attn.c_attn.weight#k', (2, 2), (2, 4)),
 ('h.0.attn.c_attn.weight#v', (2, 2), (4, 6))]
"""

from __future__ import annotations

from botcore.errors import UnsupportedModelError

from ..base import Adapter, Rule
from .common import Q, linear_rules, qkv_fusion, vector_rules

__all__ = ["GPT2Adapter"]

_P = r"(?:transformer\.)?"
_L = _P + r"h\.(?P<layer>\d+)\."


class GPT2Adapter(Adapter):
    """Adapter for Hugging Face GPT-2 checkpoints (see the module docstring)."""

    family = "gpt2"
    model_types = ("gpt2",)
    rules = (
        Rule(_P + r"wte\.weight", "embed.word", "_,hidden", "fixed,out"),
        Rule(_P + r"wpe\.weight", "embed.position", "_,hidden", "fixed,out"),
        *vector_rules(_L + r"ln_1", "norm1"),
        *vector_rules(_L + r"ln_2", "norm2"),
        *(r for part in ("q", "k", "v")
          for r in linear_rules(_L + r"attn\.c_attn", part, *Q, suffix="#" + part)),
        Rule(_L + r"attn\.c_proj\.weight", "o", "hidden,heads*head_dim",
             "out,in_head*in_head_dim", residual=True),
        Rule(_L + r"attn\.c_proj\.bias", "o.bias", "hidden", "out", residual=True),
        *linear_rules(_L + r"mlp\.c_fc", "ffn_in", "ffn,hidden", "out,in"),
        Rule(_L + r"mlp\.c_proj\.weight", "ffn_out", "hidden,ffn", "out,in", residual=True),
        Rule(_L + r"mlp\.c_proj\.bias", "ffn_out.bias", "hidden", "out", residual=True),
        *vector_rules(_P + r"ln_f", "norm_final"),
        Rule(r"lm_head\.weight", "lm_head", "_,hidden", "fixed,in"),
        *linear_rules(r"score", "score", "_,hidden", "fixed,in"),
    )
    ties = ((r"lm_head\.weight", _P + r"wte\.weight"),)
    head_tie = r"lm_head\.weight"
    head_norms = ("norm_final.weight", "norm_final.bias")
    transposed = (r"(?:.*\.)?h\.\d+\.(?:attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight",)
    fusions = (qkv_fusion(r"(?:.*\.)?h\.\d+\.attn\.c_attn\.(?:weight|bias)", kv="heads*head_dim"),)
    drops = (
        (_P + r"h\.\d+\.attn\.(?:bias|masked_bias)",
         "non-persistent buffer (causal mask): not written, the model rebuilds it"),
    )

    def sizes(self, config, params):
        hidden = config.get("n_embd", config.get("hidden_size"))
        layers = config.get("n_layer", config.get("num_hidden_layers"))
        heads = config.get("n_head", config.get("num_attention_heads"))
        if None in (hidden, layers, heads):
            raise UnsupportedModelError(
                "the gpt2 config lacks n_embd, n_layer or n_head; pass the checkpoint's "
                "config.json as config="
            )
        ffn = config.get("n_inner") or 4 * hidden
        return {"layers": int(layers), "hidden": int(hidden), "heads": int(heads), "kv_heads": int(heads),
                    "head_dim": int(hidden) // int(heads), "ffn": int(ffn)}

    def write_config(self, config, sizes):
        out = dict(config)
        for k in ("hidden_size", "num_hidden_layers", "num_attention_heads"):
            out.pop(k, None)
        out.update(n_layer=sizes["layers"], n_embd=sizes["hidden"], n_head=sizes["heads"])
        if config.get("n_inner") is not None or sizes["ffn"] != 4 * sizes["hidden"]:
            out["n_inner"] = sizes["ffn"]
        return out

    @classmethod
    def claims(cls, names, config):
        return any(n.endswith("attn.c_attn.weight") for n in names)
