"""Architecture adapters: native parameters <-> canonical weight signals, and ``resize_model``.

Contract: for every supported family (:data:`FAMILIES`: BERT, GPT-2, Llama-family
decoders, ViT, DeiT, DINOv2, under Hugging Face on-disk, transformers-5
in-memory and timm names) an adapter maps each native parameter to a canonical
:class:`~botcore.WeightSignal` (per role stacked over layers into
``(layers, out, in)``, attention head-aware) and back, bit for bit.
:func:`resize_model` resizes a whole checkpoint with one of :data:`METHODS`.
Nothing here imports a deep-learning framework at import time.

Examples
--------
>>> from botcore.adapters import FAMILIES, METHODS, DEFAULT_GAIN
>>> sorted(FAMILIES)
['bert', 'deit', 'dinov2', 'gpt2', 'llama', 'vit']
>>> METHODS, DEFAULT_GAIN
(('bot', 'weight_selection', 'layer_select', 'net2net'), 'function')
"""

from __future__ import annotations

from .api import (
    DEFAULT_GAIN,
    SHRINK_GAINS,
    ModelPlan,
    Record,
    ResizeResult,
    default_gain,
    plan_model,
    resize_model,
)
from .base import SIZES, Adapter, Rule
from .checkpoint import load_source, write_directory
from .methods import METHODS
from .registry import FAMILIES, detect_family, get_adapter
from .targets import resolve_target

__all__ = [
    "DEFAULT_GAIN",
    "FAMILIES",
    "METHODS",
    "SIZES",
    "Adapter",
    "ModelPlan",
    "Record",
    "ResizeResult",
    "Rule",
    "SHRINK_GAINS",
    "default_gain",
    "detect_family",
    "from_signals",
    "get_adapter",
    "load_source",
    "plan_model",
    "resize_model",
    "resolve_target",
    "to_signals",
    "write_directory",
]


def to_signals(params, config, *, family=None):
    """``{signal name: WeightSignal}`` of a checkpoint (family detected when omitted).

    See :meth:`botcore.adapters.base.Adapter.to_signals`.
    """
    config = dict(config.to_dict() if hasattr(config, "to_dict") else config)
    return get_adapter(family or detect_family(params, config)).to_signals(params, config)


def from_signals(signals, like_params, config, *, family=None):
    """Native parameters named like ``like_params`` from (resized) ``signals``.

    See :meth:`botcore.adapters.base.Adapter.from_signals`.
    """
    config = dict(config.to_dict() if hasattr(config, "to_dict") else config)
    adapter = get_adapter(family or detect_family(like_params, config))
    return adapter.from_signals(signals, like_params, config)
