"""Vision transformers: ViT, DeiT (with distillation token and head) and DINOv2.

Contract: one rule set reads three naming conventions, never mixed in one
checkpoint:

* Hugging Face on disk (what ``save_pretrained`` writes):
  ``vit.encoder.layer.N.attention.attention.query.weight``, ``intermediate.dense``,
  ``output.dense``, ``layernorm_before``/``layernorm_after`` (DINOv2: ``norm1``/``norm2``,
  ``mlp.fc1``/``mlp.fc2``, ``layer_scale1.lambda1``);
* transformers 5 in memory: ``vit.layers.N.attention.q_proj`` ... ``o_proj``, ``mlp.fc1``/``fc2``
  (DINOv2: ``encoder.layer.N.attention.q_proj``);
* timm (without importing timm): ``blocks.N.attn.qkv`` (fused ``[3 * hidden, hidden]``,
  declared a fusion of q/k/v row blocks), ``attn.proj``, ``mlp.fc1``/``fc2``, ``norm1``/``norm2``, ``ls1.gamma``,
  ``cls_token``, ``dist_token``, ``pos_embed``, ``patch_embed.proj``, ``norm``, ``fc_norm``,
  ``head``, ``head_dist``. timm has no config: give ``config=`` with at least
  ``num_attention_heads``; the other sizes are read off the tensors.

Tokens ``(1, 1, hidden)`` are ``(fixed, fixed, out)``, position embeddings
``(1, tokens, hidden)`` ``(fixed, fixed, out)``, the patch projection
``(hidden, channels, P, P)`` ``(out, fixed, fixed, fixed)``, classifier heads
``(classes, hidden)`` ``(fixed, in)`` (DINOv2's ``(classes, 2 * hidden)`` head, fed
with ``[cls, mean patch]``, is ``(fixed, fixed, in)``), LayerScale gains
``(depth, out)``.

Examples
--------
>>> from botcore.adapters.io.base import TensorInfo
>>> v = ViTAdapter().views({"blocks.0.attn.qkv.weight": TensorInfo("w", (12, 4), "float32")},
...                        {"heads": 2, "head_dim": 2, "kv_heads": 2})
>>> sorted((k, view.shape) for k, view in v.items())[0]
('blocks.0.attn.qkv.weight#k', (4, 4))
"""

from __future__ import annotations

import re

from botcore.errors import TargetError, UnsupportedModelError

from ..base import Adapter, Rule
from .common import attention_and_ffn, linear_rules, qkv_fusion, vector_rules

__all__ = ["DeiTAdapter", "Dinov2Adapter", "ViTAdapter"]

_P = r"(?:vit\.|deit\.|dinov2\.)?"
_E = _P + r"embeddings\."
_L = _P + r"(?:encoder\.layer|layers)\.(?P<layer>\d+)\."
_T = r"blocks\.(?P<layer>\d+)\."
_TOKEN = "_,_,hidden", "fixed,fixed,out"


def _rules(classifier_dims: str, classifier_roles: str) -> tuple[Rule, ...]:
    return (
        # Hugging Face (disk and transformers-5 memory names)
        Rule(_E + r"cls_token", "token.cls", *_TOKEN),
        Rule(_E + r"distillation_token", "token.dist", *_TOKEN),
        Rule(_E + r"mask_token", "token.mask", "_,hidden", "fixed,out"),
        Rule(_E + r"position_embeddings", "embed.position", *_TOKEN),
        *linear_rules(_E + r"patch_embeddings\.projection", "patch", "hidden,_,_,_",
                      "out,fixed,fixed,fixed"),
        *attention_and_ffn(_L, {
            "q": r"attention\.(?:attention\.query|q_proj)", "k": r"attention\.(?:attention\.key|k_proj)",
            "v": r"attention\.(?:attention\.value|v_proj)", "o": r"attention\.(?:output\.dense|o_proj)",
            "ffn_in": r"(?:intermediate\.dense|mlp\.fc1)", "ffn_out": r"(?:output\.dense|mlp\.fc2)",
            "norm1": r"(?:layernorm_before|norm1)", "norm2": r"(?:layernorm_after|norm2)"}),
        Rule(_L + r"layer_scale1\.lambda1", "scale1", "hidden", "out", residual=True),
        Rule(_L + r"layer_scale2\.lambda1", "scale2", "hidden", "out", residual=True),
        *vector_rules(_P + r"layernorm", "norm_final"),
        *linear_rules(_P + r"pooler\.dense", "pooler", "hidden,hidden", "out,in"),
        *linear_rules(r"classifier", "classifier", classifier_dims, classifier_roles),
        *linear_rules(r"cls_classifier", "classifier", "_,hidden", "fixed,in"),
        *linear_rules(r"distillation_classifier", "classifier_dist", "_,hidden", "fixed,in"),
        # timm
        Rule(r"cls_token", "token.cls", *_TOKEN),
        Rule(r"dist_token", "token.dist", *_TOKEN),
        Rule(r"pos_embed", "embed.position", *_TOKEN),
        *linear_rules(r"patch_embed\.proj", "patch", "hidden,_,_,_", "out,fixed,fixed,fixed"),
        *attention_and_ffn(_T, {
            "q": (r"attn\.qkv", "#q"), "k": (r"attn\.qkv", "#k"), "v": (r"attn\.qkv", "#v"),
            "o": r"attn\.proj",
            "ffn_in": r"mlp\.fc1", "ffn_out": r"mlp\.fc2", "norm1": r"norm1", "norm2": r"norm2"}),
        Rule(_T + r"ls1\.gamma", "scale1", "hidden", "out", residual=True),
        Rule(_T + r"ls2\.gamma", "scale2", "hidden", "out", residual=True),
        *vector_rules(r"norm", "norm_final"),
        *vector_rules(r"fc_norm", "norm_head"),
        *linear_rules(r"head", "classifier", "_,hidden", "fixed,in"),
        *linear_rules(r"head_dist", "classifier_dist", "_,hidden", "fixed,in"),
    )


def _has(names, *parts) -> bool:
    return any(p in n for n in names for p in parts)


class ViTAdapter(Adapter):
    """Adapter for ViT checkpoints (Hugging Face or timm names)."""

    family = "vit"
    model_types = ("vit",)
    rules = _rules("_,hidden", "fixed,in")
    fusions = (qkv_fusion(r"(?:.*\.)?blocks\.\d+\.attn\.qkv\.(?:weight|bias)"),)
    gates = ((r"o(?:\.bias)?", "scale1"), (r"ffn_out(?:\.bias)?", "scale2"))  # LayerScale (DINOv2, timm)

    def sizes(self, config, params):
        hidden = config.get("hidden_size") or config.get("embed_dim")
        for key in ("cls_token", "embeddings.cls_token"):
            for name, a in params.items():
                if hidden is None and name.endswith(key):
                    hidden = a.shape[-1]
        layers = config.get("num_hidden_layers") or config.get("depth")
        if layers is None:
            found = {int(m.group(1)) for n in params for m in [re.search(r"blocks\.(\d+)\.", n)] if m}
            layers = len(found) or None
        heads = config.get("num_attention_heads") or config.get("num_heads")
        if hidden is None or layers is None or heads is None:
            raise UnsupportedModelError(
                f"the {self.family} config lacks hidden_size, num_hidden_layers or "
                "num_attention_heads (timm checkpoints have no config: pass "
                "config={'num_attention_heads': ...})"
            )
        ffn = self._ffn(config, int(hidden), params)
        return {"layers": int(layers), "hidden": int(hidden), "heads": int(heads),
                    "kv_heads": int(heads), "head_dim": int(hidden) // int(heads), "ffn": ffn}

    def _ffn(self, config, hidden, params) -> int:
        if config.get("intermediate_size"):
            return int(config["intermediate_size"])
        if config.get("mlp_ratio"):
            return int(hidden * config["mlp_ratio"])
        for name, a in params.items():
            if name.endswith("mlp.fc1.weight"):
                return int(a.shape[0])
        raise UnsupportedModelError(
            f"cannot tell the {self.family} FFN width: the config has no intermediate_size "
            "or mlp_ratio and there is no mlp.fc1.weight"
        )

    def write_config(self, config, sizes):
        out = dict(config)
        out.update(num_hidden_layers=sizes["layers"], hidden_size=sizes["hidden"],
                   num_attention_heads=sizes["heads"], intermediate_size=sizes["ffn"])
        if "mlp_ratio" in config:
            out.pop("intermediate_size")
            out["mlp_ratio"] = _ratio(sizes)
        if config.get("pooler_output_size") is not None and \
                config.get("pooler_output_size") == config.get("hidden_size"):
            out["pooler_output_size"] = sizes["hidden"]
        for timm_key, key in (("embed_dim", "hidden_size"), ("depth", "num_hidden_layers"),
                              ("num_heads", "num_attention_heads")):
            if timm_key in config:
                out[timm_key] = out[key]
        return out

    @classmethod
    def claims(cls, names, config):
        return _has(names, "patch_embeddings.projection", "patch_embed.proj") and not (
            DeiTAdapter.claims(names, config) or Dinov2Adapter.claims(names, config))


def _renumber(index: int, old: int, new: int) -> int:
    """Stage ``index`` of ``old`` layers -> the stage at the same relative depth of ``new``.

    Rounded half up; the stem (0) stays the stem and a layer never becomes it.

    >>> [_renumber(i, 12, 6) for i in (0, 3, 6, 9, 12)]
    [0, 2, 3, 5, 6]
    >>> [_renumber(i, 4, 8) for i in (1, 2, 4)]
    [2, 4, 8]
    """
    return 0 if index == 0 else max(1, (2 * index * new + old) // (2 * old))


def backbone_stages(config, layers: int) -> dict:
    """``stage_names``, ``out_features`` and ``out_indices`` of a backbone config for ``layers``.

    Each selected stage moves to the same relative depth (a DPT head reading layers 3, 6,
    9 and 12 of 12 reads 2, 3, 5 and 6 of 6), negative indices count from the end, and the
    result is ascending without repeats, as transformers' backbone configs require (fewer
    layers than selected stages therefore select fewer stages).

    >>> cfg = {"stage_names": ["stem"] + [f"stage{i}" for i in range(1, 5)],
    ...        "out_features": ["stage2", "stage4"], "out_indices": [2, -1]}
    >>> backbone_stages(cfg, 2)
    {'stage_names': ['stem', 'stage1', 'stage2'], 'out_indices': [1, 2], 'out_features': ['stage1', 'stage2']}
    >>> backbone_stages(cfg, 1)["out_features"]
    ['stage1']
    """
    stages = config.get("stage_names")
    if not isinstance(stages, list):
        return {}
    old = len(stages) - 1
    names = ["stem"] + [f"stage{i}" for i in range(1, layers + 1)]
    out = {"stage_names": names}

    def picked(indices) -> list:
        return sorted({_renumber(i % (old + 1), old, layers) for i in indices})

    if old > 0 and config.get("out_indices") is not None:
        out["out_indices"] = picked(config["out_indices"])
    if old > 0 and config.get("out_features") is not None:
        chosen = picked(stages.index(f) for f in config["out_features"] if f in stages)
        out["out_features"] = [names[i] for i in chosen]
    return out


def _ratio(sizes) -> float | int:
    ratio = sizes["ffn"] / sizes["hidden"]
    if int(sizes["hidden"] * ratio) != sizes["ffn"]:
        raise TargetError(
            f"ffn={sizes['ffn']} cannot be written as hidden * mlp_ratio with hidden="
            f"{sizes['hidden']}; choose an ffn that is a simple multiple of hidden"
        )
    return int(ratio) if ratio == int(ratio) else ratio


class DeiTAdapter(ViTAdapter):
    """Adapter for DeiT checkpoints (distillation token and head; HF or timm names)."""

    family = "deit"
    model_types = ("deit",)

    @classmethod
    def claims(cls, names, config):
        return _has(names, "distillation_token", "dist_token")


class Dinov2Adapter(ViTAdapter):
    """Adapter for DINOv2 checkpoints (LayerScale, mask token, ``mlp_ratio`` config)."""

    family = "dinov2"
    model_types = ("dinov2",)
    rules = _rules("_,2*hidden", "fixed,fixed*in")

    def sizes(self, config, params):
        if config.get("use_swiglu_ffn"):
            raise UnsupportedModelError(
                "DINOv2 with use_swiglu_ffn=True (giant) is not supported; only the MLP FFN is"
            )
        return super().sizes(config, params)

    def write_config(self, config, sizes):
        out = super().write_config(config, sizes)
        out.pop("intermediate_size", None)
        out["mlp_ratio"] = _ratio(sizes)
        out.update(backbone_stages(config, sizes["layers"]))
        return out

    @classmethod
    def claims(cls, names, config):
        return _has(names, "layer_scale1", "mask_token")
