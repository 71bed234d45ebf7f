"""Phi-3: Phi3ForCausalLM / Phi3Model (fused ``qkv_proj`` and ``gate_up_proj``).

Contract: the Llama layout (:mod:`botcore.adapters.families.llama`) except that
``self_attn.qkv_proj.weight`` holds the rows ``q | k | v``
(``heads*head_dim + 2*kv_heads*head_dim``) and ``mlp.gate_up_proj.weight`` the
rows ``gate | up`` (``2*ffn``). Both are declared
:class:`~botcore.adapters.base.Fusion` s: the rules see the virtual parameters
``qkv_proj.weight#q``/``#k``/``#v`` (signals ``q``, ``k``, ``v``) and
``gate_up_proj.weight#gate``/``#up`` (``ffn_gate``, ``ffn_in``), each resized on
its own and fused again on the way out, so no filter ever mixes q with k or the
gate with the up projection.

Config: ``head_dim`` is ``hidden_size // num_attention_heads`` (the config
class derives the rotary width from it), so ``heads * head_dim == hidden`` is
required. ``partial_rotary_factor`` (in ``rope_parameters``) is a fraction of
head_dim and is kept; LongRoPE ``short_factor``/``long_factor`` lists have one
entry per rotary frequency, so a target that changes head_dim while they are
present is refused. ``sliding_window`` (every layer, in tokens) is kept.

Examples
--------
>>> from botcore.adapters.io.base import TensorInfo
>>> v = Phi3Adapter().views({"model.layers.0.mlp.gate_up_proj.weight": TensorInfo("w", (8, 2), "float32")},
...                         {"ffn": 4, "heads": 1, "kv_heads": 1, "head_dim": 2})
>>> [(k.split(".")[-1], view.rows) for k, view in v.items()]
[('weight#gate', (0, 4)), ('weight#up', (4, 8))]
"""

from __future__ import annotations

from botcore.errors import TargetError

from ..base import Fusion, Rule
from .common import KV, Q
from .llama import LlamaAdapter
from .windows import window_config

__all__ = ["Phi3Adapter"]

_L = r"(?:model\.)?layers\.(?P<layer>\d+)\."
_LAYER = r"(?:.*\.)?layers\.\d+\."


class Phi3Adapter(LlamaAdapter):
    """Adapter for Phi-3 causal decoders (see the module docstring)."""

    family = "phi3"
    model_types = ("phi3",)
    free_head_dim = False
    rules = (
        Rule(_L + r"self_attn\.qkv_proj\.weight#q", "q", *Q),
        Rule(_L + r"self_attn\.qkv_proj\.weight#k", "k", *KV),
        Rule(_L + r"self_attn\.qkv_proj\.weight#v", "v", *KV),
        Rule(_L + r"mlp\.gate_up_proj\.weight#gate", "ffn_gate", "ffn,hidden", "out,in"),
        Rule(_L + r"mlp\.gate_up_proj\.weight#up", "ffn_in", "ffn,hidden", "out,in"),
    ) + LlamaAdapter.rules
    fusions = (
        Fusion(_LAYER + r"self_attn\.qkv_proj\.weight",
               (("#q", "heads*head_dim"), ("#k", "kv_heads*head_dim"), ("#v", "kv_heads*head_dim"))),
        Fusion(_LAYER + r"mlp\.gate_up_proj\.weight", (("#gate", "ffn"), ("#up", "ffn"))),
    )

    def write_config(self, config, sizes):
        src_head_dim = int(config["hidden_size"]) // int(config["num_attention_heads"])
        rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
        lists = [k for k in ("short_factor", "long_factor") if isinstance(rope, dict) and rope.get(k)]
        if lists and sizes["head_dim"] != src_head_dim:
            raise TargetError(
                f"head_dim {src_head_dim} -> {sizes['head_dim']}: the config's LongRoPE "
                f"{' and '.join(lists)} have one entry per rotary frequency of the source head_dim; "
                f"keep head_dim={src_head_dim} (give heads so that hidden / heads = {src_head_dim})")
        out = super().write_config(config, sizes)
        out.update(window_config(config, sizes["layers"]))
        return out

    @classmethod
    def claims(cls, names, config):
        return any(n.endswith("self_attn.qkv_proj.weight") for n in names)
