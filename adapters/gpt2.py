"""GPT-2: GPT2Model, GPT2LMHeadModel, GPT2ForSequenceClassification.

Contract: ``Conv1D`` weights are stored ``[in, out]``; :meth:`GPT2Adapter.split`
transposes them to canonical ``(out, in)`` and splits the fused ``c_attn``
(``[hidden, 3 * hidden]``) into ``q``, ``k`` and ``v`` before any rule applies,
so a long filter never mixes them; :meth:`GPT2Adapter.merge` undoes both
exactly. ``lm_head.weight`` tied to ``wte`` stays tied (resized once; not
written when the source did not hold it). The causal-mask buffers
``attn.bias``/``attn.masked_bias`` of old checkpoints are non-persistent:
reported, not written.

Examples
--------
>>> import numpy as np
>>> w = np.arange(12.0).reshape(2, 6)  # Conv1D c_attn of hidden 2: [in, 3 * out]
>>> v = GPT2Adapter().split({"h.0.attn.c_attn.weight": w}, {})
>>> sorted(v), v["h.0.attn.c_attn.weight#q"].shape
(['h.0.attn.c_attn.weight#k', 'h.0.attn.c_attn.weight#q', 'h.0.attn.c_attn.weight#v'], (2, 2))
"""

from __future__ import annotations

import re

import numpy as np

from botcore.errors import UnsupportedModelError

from .base import Adapter, Rule
from .bert import linear_rules, vector_rules

__all__ = ["GPT2Adapter"]

_P = r"(?:transformer\.)?"
_L = _P + r"h\.(?P<layer>\d+)\."
_FUSED = re.compile(r"(.*h\.\d+\.attn\.c_attn)\.(weight|bias)")
_CONV1D = re.compile(r"(?:.*\.)?h\.\d+\.(?:attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight")
_PARTS = ("q", "k", "v")


class GPT2Adapter(Adapter):
    """Adapter for Hugging Face GPT-2 checkpoints (see the module docstring)."""

    family = "gpt2"
    model_types = ("gpt2",)
    rules = (
        Rule(_P + r"wte\.weight", "embed.word", "_,hidden", "fixed,out"),
        Rule(_P + r"wpe\.weight", "embed.position", "_,hidden", "fixed,out"),
        *vector_rules(_L + r"ln_1", "norm1"),
        *vector_rules(_L + r"ln_2", "norm2"),
        Rule(_L + r"attn\.c_attn\.weight#q", "q", "heads*head_dim,hidden", "head*head_dim,in"),
        Rule(_L + r"attn\.c_attn\.weight#k", "k", "heads*head_dim,hidden", "head*head_dim,in"),
        Rule(_L + r"attn\.c_attn\.weight#v", "v", "heads*head_dim,hidden", "head*head_dim,in"),
        Rule(_L + r"attn\.c_attn\.bias#q", "q.bias", "heads*head_dim", "head*head_dim"),
        Rule(_L + r"attn\.c_attn\.bias#k", "k.bias", "heads*head_dim", "head*head_dim"),
        Rule(_L + r"attn\.c_attn\.bias#v", "v.bias", "heads*head_dim", "head*head_dim"),
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

    def split(self, params, config):
        out = {}
        for name, a in params.items():
            m = _FUSED.fullmatch(name)
            if m is not None:
                a = a.T if m.group(2) == "weight" else a
                if a.shape[0] % 3:
                    raise UnsupportedModelError(
                        f"{name} has shape {a.shape}; expected 3 * hidden fused q/k/v outputs"
                    )
                n = a.shape[0] // 3
                for i, part in enumerate(_PARTS):
                    out[f"{name}#{part}"] = a[i * n:(i + 1) * n]
            elif _CONV1D.fullmatch(name):
                out[name] = a.T
            else:
                out[name] = a
        return out

    def merge(self, virtual, config):
        out = {}
        for name, a in virtual.items():
            base, _, part = name.partition("#")
            if part:
                if part != "q":
                    continue
                fused = np.concatenate([virtual[f"{base}#{p}"] for p in _PARTS], axis=0)
                out[base] = fused.T if base.endswith("weight") else fused
            elif _CONV1D.fullmatch(name):
                out[name] = a.T
            else:
                out[name] = a
        return out

    @classmethod
    def claims(cls, names, config):
        return any(n.endswith("attn.c_attn.weight") for n in names)
