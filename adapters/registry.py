"""Family registry: name -> adapter, and detection from a config or parameter names.

Contract: :func:`get_adapter` returns a fresh adapter for a family name
(:data:`FAMILIES`) and raises :class:`~botcore.UnsupportedModelError` for
anything else; :func:`detect_family` uses ``config["model_type"]`` when it is
known, else the parameter names, and raises when neither identifies a family.

Examples
--------
>>> get_adapter("bert").family
'bert'
>>> detect_family({}, {"model_type": "mistral"})
'llama'
>>> detect_family({"transformer.h.0.attn.c_attn.weight": None}, {})
'gpt2'
>>> detect_family({}, {"model_type": "gemma3_text"}), detect_family({"model.layers.0.self_attn.q_norm.weight": 0}, {})
('gemma3', 'qwen3')
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from botcore.errors import UnsupportedModelError

__all__ = ["FAMILIES", "detect_family", "get_adapter"]

#: family name -> (module, class) of its adapter, in detection order (by names: the
#: decoders with extra parameters before Llama, whose names they share).
FAMILIES = {
    "bert": ("families.bert", "BertAdapter"),
    "gpt2": ("families.gpt2", "GPT2Adapter"),
    "phi3": ("families.phi3", "Phi3Adapter"),
    "gemma3": ("families.gemma", "Gemma3Adapter"),
    "gemma2": ("families.gemma", "Gemma2Adapter"),
    "gemma": ("families.gemma", "GemmaAdapter"),
    "qwen3": ("families.qwen3", "Qwen3Adapter"),
    "olmo2": ("families.olmo2", "Olmo2Adapter"),
    "llama": ("families.llama", "LlamaAdapter"),
    "vit": ("families.vit", "ViTAdapter"),
    "deit": ("families.vit", "DeiTAdapter"),
    "dinov2": ("families.vit", "Dinov2Adapter"),
}


def _cls(family: str):
    module, name = FAMILIES[family]
    return getattr(importlib.import_module(f"{__package__}.{module}"), name)


def get_adapter(family: str):
    """A new adapter instance for ``family`` (one of :data:`FAMILIES`)."""
    if family not in FAMILIES:
        raise UnsupportedModelError(
            f"family={family!r} is not supported; expected one of {tuple(FAMILIES)}"
        )
    return _cls(family)()


def detect_family(params: Mapping, config: Mapping | None) -> str:
    """The family of a checkpoint from ``config["model_type"]`` or its parameter names."""
    config = dict(config or {})
    model_type = config.get("model_type")
    for family in FAMILIES:
        if model_type in _cls(family).model_types:
            return family
    names = list(params)
    for family in FAMILIES:
        if _cls(family).claims(names, config):
            return family
    raise UnsupportedModelError(
        f"cannot tell the model family (model_type={model_type!r}, parameters like "
        f"{names[:3]}); pass family= one of {tuple(FAMILIES)}"
    )
