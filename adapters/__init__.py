"""Architecture adapters: native parameters <-> canonical weight signals, and ``resize_model``.

Contract: for every supported family (:data:`FAMILIES`: BERT, GPT-2, Llama-family
decoders -- Llama, Mistral, Qwen2/3, Gemma 1/2/3, Phi-3, OLMo 2 --, ViT, DeiT, DINOv2, under Hugging Face on-disk, transformers-5
in-memory and timm names) an adapter maps each native parameter to a canonical
:class:`~botcore.WeightSignal` (per role stacked over layers into
``(layers, out, in)``, attention head-aware) and back, bit for bit.
:func:`resize_model` resizes a whole checkpoint with one of :data:`METHODS`.
Nothing here imports a deep-learning framework at import time.

Examples
--------
>>> from botcore.adapters import FAMILIES, METHODS, DEFAULT_GAIN
>>> sorted(FAMILIES)
['bert', 'deit', 'dinov2', 'gemma', 'gemma2', 'gemma3', 'gpt2', 'llama', 'olmo2', 'phi3', 'qwen3', 'vit']
>>> METHODS, DEFAULT_GAIN
(('bot', 'weight_selection', 'layer_select', 'net2net'), 'function')
"""

from __future__ import annotations

from .api import (
    DEFAULT_GAIN,
    SHRINK_FRACTIONAL,
    SHRINK_GAINS,
    ModelPlan,
    Record,
    ResizeResult,
    default_fractional,
    default_gain,
    plan_model,
    resize_model,
)
from .base import SIZES, Adapter, Rule
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
    "SHRINK_FRACTIONAL",
    "SHRINK_GAINS",
    "default_fractional",
    "default_gain",
    "detect_family",
    "from_signals",
    "get_adapter",
    "plan_model",
    "resize_model",
    "resolve_target",
    "to_signals",
]


def to_signals(params, config, *, family=None):
    """``{signal name: WeightSignal}`` of an in-memory checkpoint (family detected when omitted).

    Signals hold NumPy arrays in the compute dtype (float32; float64 sources stay
    float64); :func:`from_signals` turns them back into the source's parameters.
    """
    from .signals import to_signals as _to

    return _to(params, config, family=family)


def from_signals(signals, like_params, config, *, family=None):
    """Native parameters named like ``like_params`` from (resized) ``signals``.

    Each parameter comes back in the framework, dtype and device of the matching
    source parameter, so ``from_signals(to_signals(p, c), p, c)`` reproduces ``p``
    bit for bit.
    """
    from .signals import from_signals as _from

    return _from(signals, like_params, config, family=family)
