"""Keras 3 / keras_hub backbones: a reader and a writer of the one pipeline.

Contract. :class:`KerasReader` opens an in-memory keras_hub backbone or a
keras_hub preset folder (``config.json`` + ``model.weights.h5``, or the sharded
``model.weights.json`` + ``model_*.weights.h5``) and presents its weights under
**Hugging Face names and layouts** with a Hugging Face style ``config``, so the
family adapters (bert, gpt2, llama, vit) apply unchanged:

===================================== ================ ================================
keras_hub backbone                    ``model_type``   presented as
===================================== ================ ================================
``BertBackbone``                      ``bert``         ``BertModel``
``GPT2Backbone``                      ``gpt2``         ``GPT2LMHeadModel`` (tied head)
``LlamaBackbone``, ``Llama3Backbone`` ``llama``        ``LlamaForCausalLM``
``MistralBackbone``                   ``mistral``      ``MistralForCausalLM``
``QwenBackbone`` (Qwen2)              ``qwen2``        ``Qwen2ForCausalLM``
``ViTBackbone``                       ``vit``          ``ViTModel`` (no pooler)
===================================== ================ ================================

Every layout change is a reshape, transpose or concatenation (:func:`hf_layout`)
with an exact inverse (:func:`keras_layout`): keras_hub's query kernel
``(hidden, heads, head_dim)`` is Hugging Face's ``(heads*head_dim, hidden)``, its
attention output ``(heads, head_dim, hidden)`` is ``(hidden, heads*head_dim)``, a
``Dense`` kernel ``(in, out)`` is ``(out, in)``, a ``Conv2D`` patch kernel
``(P, P, C, hidden)`` is ``(hidden, C, P, P)``; GPT-2's q/k/v kernels are fused
into ``c_attn`` ``[hidden, 3*hidden]``. Tensors are NumPy arrays in the stored
dtype (``ml_dtypes.bfloat16`` for bfloat16). A preset is read lazily: the
backbone is rebuilt from ``config.json`` without allocating its variables
(``keras.StatelessScope``), keras's own save traversal names the h5 dataset of
every variable, and tensors (or row tiles) are read from the h5 file with h5py;
such a reader is picklable (it travels as its folder and reopens), so worker
processes can read too.
A variable no mapping covers (LoRA, quantised kernels, a subclass's extras) is
refused with the fix; so is a keras_hub task (pass ``task.backbone``) and a
preset holding task-head weights (``task.weights.h5``).

:class:`KerasWriter` builds the target backbone (same class and keras config as
a keras source with the sizes the plan gives, or translated from a Hugging Face
config) without allocating it, lays out ``model.weights.h5`` exactly as
``save_weights`` does, writes every tensor (translated back; row tiles too) as it
arrives, and adds ``config.json``, ``metadata.json``, the source preset's
tokenizer / preprocessor files and assets (a Hugging Face source's tokenizer is
converted by keras_hub where it can be) and a fresh ``README.md`` model card, so
``keras_hub.models.Backbone.from_preset(out)`` loads it. The folder appears
atomically (:class:`~botcore.adapters.io.staging.Stage`); :meth:`KerasWriter.abort`
removes everything. keras and keras_hub are imported only when a reader or
writer is opened; the backend is whatever ``KERAS_BACKEND`` chose.

Examples
--------
>>> import numpy as np
>>> q = np.arange(24.0).reshape(4, 2, 3)          # keras query kernel (hidden, heads, head_dim)
>>> hf = hf_layout("heads_in", [q])               # Hugging Face q_proj (heads*head_dim, hidden)
>>> hf.shape, hf_shape("heads_in", [q.shape])
((6, 4), (6, 4))
>>> np.array_equal(keras_layout("heads_in", hf, [q.shape])[0], q)
True
"""

from __future__ import annotations

import datetime
import json
import math
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from botcore.errors import OptionError, OutputError, TargetError, UnsupportedModelError

from .base import OutputPlan, TensorInfo, numpy_dtype
from .staging import Stage, output_error

__all__ = ["BACKBONES", "KerasReader", "KerasWriter", "hf_config", "hf_layout", "hf_shape",
           "keras_config", "keras_layout", "open_reader", "open_writer"]

#: keras_hub backbone class -> the Hugging Face ``model_type`` it is presented as.
BACKBONES = {"BertBackbone": "bert", "GPT2Backbone": "gpt2", "LlamaBackbone": "llama",
             "Llama3Backbone": "llama", "MistralBackbone": "mistral", "QwenBackbone": "qwen2",
             "ViTBackbone": "vit"}
_CLASS_OF = {"bert": "BertBackbone", "gpt2": "GPT2Backbone", "llama": "LlamaBackbone",
             "mistral": "MistralBackbone", "qwen2": "QwenBackbone", "vit": "ViTBackbone"}
_ARCH = {"bert": "BertModel", "gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM",
         "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM", "vit": "ViTModel"}
_WEIGHTS, _SHARDED = "model.weights.h5", "model.weights.json"
#: Preset files never copied to an output: weights and configs of the old sizes, task heads.
_NOT_COPIED = {"config.json", "metadata.json", _WEIGHTS, _SHARDED, "task.json", "task.weights.h5",
               "README.md"}

# -- layouts: keras variables <-> one Hugging Face tensor (exact inverses) ------------------------

_TO_HF = {
    "same": lambda p: p[0],
    "flat": lambda p: p[0].reshape(-1),
    "lead1": lambda p: p[0][None],
    "T": lambda p: p[0].T,
    "heads_in": lambda p: p[0].reshape(p[0].shape[0], -1).T,
    "heads_out": lambda p: p[0].reshape(-1, p[0].shape[-1]).T,
    "heads_rows": lambda p: p[0].reshape(-1, p[0].shape[-1]),
    "patch": lambda p: p[0].transpose(3, 2, 0, 1),
    "fused_in": lambda p: np.concatenate([a.reshape(a.shape[0], -1) for a in p], axis=1),
    "fused_flat": lambda p: np.concatenate([a.reshape(-1) for a in p]),
}
_SHAPE = {
    "same": lambda s: s[0],
    "flat": lambda s: (math.prod(s[0]),),
    "lead1": lambda s: (1, *s[0]),
    "T": lambda s: s[0][::-1],
    "heads_in": lambda s: (math.prod(s[0][1:]), s[0][0]),
    "heads_out": lambda s: (s[0][-1], math.prod(s[0][:-1])),
    "heads_rows": lambda s: (math.prod(s[0][:-1]), s[0][-1]),
    "patch": lambda s: (s[0][3], s[0][2], s[0][0], s[0][1]),
    "fused_in": lambda s: (s[0][0], sum(math.prod(t[1:]) for t in s)),
    "fused_flat": lambda s: (sum(math.prod(t) for t in s),),
}


def hf_layout(kind: str, parts: list) -> np.ndarray:
    """The Hugging Face tensor made of keras variable values ``parts`` (see the module docstring)."""
    return _TO_HF[kind](parts)


def hf_shape(kind: str, shapes: list) -> tuple:
    """The Hugging Face shape of keras variable ``shapes`` under layout ``kind``."""
    return tuple(int(n) for n in _SHAPE[kind]([tuple(s) for s in shapes]))


def _split(x: np.ndarray, shapes: list, axis: int) -> list:
    cuts = np.cumsum([math.prod(s[axis:]) for s in shapes])[:-1]
    return [p.reshape(s) for p, s in zip(np.split(x, cuts, axis=axis), shapes)]


def keras_layout(kind: str, x: np.ndarray, shapes: list) -> list:
    """Inverse of :func:`hf_layout`: the keras variable values of Hugging Face tensor ``x``."""
    if kind in ("T", "heads_in", "heads_out"):
        return [x.T.reshape(shapes[0])]
    if kind == "patch":
        return [x.transpose(2, 3, 1, 0)]
    if kind == "fused_in":
        return _split(x, [tuple(s) for s in shapes], 1)
    if kind == "fused_flat":
        return _split(x, [tuple(s) for s in shapes], 0)
    return [x.reshape(shapes[0])]


def _head_block(kind: str, shape: tuple, start: int, stop: int) -> tuple:
    """(first head, last head + 1, head_dim) covering Hugging Face rows ``start:stop``."""
    d = shape[2] if kind == "heads_in" else shape[1]
    return start // d, -(-stop // d), d


def _hf_rows(kind: str, get, shapes: list, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of the Hugging Face tensor; ``get(i, index)`` reads part ``i``."""
    if kind == "same":
        return get(0, (slice(start, stop),))
    if kind in ("T", "heads_out", "patch"):
        return hf_layout(kind, [get(0, (Ellipsis, slice(start, stop)))])
    if kind == "fused_in":
        return hf_layout(kind, [get(i, (slice(start, stop),)) for i in range(len(shapes))])
    if kind in ("heads_in", "heads_rows"):
        h0, h1, d = _head_block(kind, shapes[0], start, stop)
        index = (slice(None), slice(h0, h1)) if kind == "heads_in" else (slice(h0, h1),)
        return hf_layout(kind, [get(0, index)])[start - h0 * d:stop - h0 * d]
    return hf_layout(kind, [get(i, ()) for i in range(len(shapes))])[start:stop]


def _keras_rows(kind: str, x: np.ndarray, shapes: list, start: int):
    """``[(part, index, value)]`` that write Hugging Face rows ``x`` at ``start``; None: buffer."""
    stop = start + x.shape[0]
    if kind == "same":
        return [(0, (slice(start, stop),), x)]
    if kind in ("T", "heads_out", "patch"):
        shape = (*shapes[0][:-1], x.shape[0])
        return [(0, (Ellipsis, slice(start, stop)), keras_layout(kind, x, [shape])[0])]
    if kind == "fused_in":
        parts = keras_layout(kind, x, [(x.shape[0], *s[1:]) for s in shapes])
        return [(i, (slice(start, stop),), p) for i, p in enumerate(parts)]
    if kind in ("heads_in", "heads_rows"):
        h0, h1, d = _head_block(kind, shapes[0], start, stop)
        if start % d or stop % d:
            return None
        if kind == "heads_in":
            shape = (shapes[0][0], h1 - h0, d)
            return [(0, (slice(None), slice(h0, h1)), keras_layout(kind, x, [shape])[0])]
        return [(0, (slice(h0, h1),), x.reshape(h1 - h0, d, shapes[0][-1]))]
    return None


# -- family mappings: backbone objects -> [(HF name, layout, variables)] -------------------------

def _dense(layer, hf: str, kind: str = "T", bias: str = "same") -> list:
    rows = [(f"{hf}.weight", kind, (layer.kernel,))]
    if getattr(layer, "bias", None) is not None:
        rows.append((f"{hf}.bias", bias, (layer.bias,)))
    return rows


def _norm(layer, hf: str) -> list:
    if hasattr(layer, "scale") and not hasattr(layer, "gamma"):  # RMSNorm of the decoders
        return [(f"{hf}.weight", "same", (layer.scale,))]
    rows = [(f"{hf}.weight", "same", (layer.gamma,))] if layer.gamma is not None else []
    return rows + ([(f"{hf}.bias", "same", (layer.beta,))] if layer.beta is not None else [])


def _attention(attn, names: tuple, private: bool = False) -> list:
    """q, k, v (``heads_in``) and o (``heads_out``) of an attention layer, with their biases."""
    pre = "_" if private else ""
    rows = []
    for part, hf in zip(("query", "key", "value"), names[:3]):
        rows += _dense(getattr(attn, f"{pre}{part}_dense"), hf, "heads_in", "flat")
    return rows + _dense(getattr(attn, f"{pre}output_dense"), names[3], "heads_out", "same")


def _bert(bb) -> list:
    g = bb.get_layer
    rows = [("embeddings.word_embeddings.weight", "same", (g("token_embedding").embeddings,)),
            ("embeddings.position_embeddings.weight", "same",
             (g("position_embedding").position_embeddings,)),
            ("embeddings.token_type_embeddings.weight", "same", (g("segment_embedding").embeddings,))]
    rows += _norm(g("embeddings_layer_norm"), "embeddings.LayerNorm")
    for i in range(bb.num_layers):
        block, p = g(f"transformer_layer_{i}"), f"encoder.layer.{i}."
        rows += _attention(block._self_attention_layer, tuple(
            p + s for s in ("attention.self.query", "attention.self.key", "attention.self.value",
                            "attention.output.dense")))
        rows += _norm(block._self_attention_layer_norm, p + "attention.output.LayerNorm")
        rows += _dense(block._feedforward_intermediate_dense, p + "intermediate.dense")
        rows += _dense(block._feedforward_output_dense, p + "output.dense")
        rows += _norm(block._feedforward_layer_norm, p + "output.LayerNorm")
    return rows + _dense(g("pooled_dense"), "pooler.dense")


def _gpt2(bb) -> list:
    rows = [("wte.weight", "same", (bb.token_embedding.embeddings,)),
            ("wpe.weight", "same", (bb.position_embedding.position_embeddings,))]
    for i, block in enumerate(bb.transformer_layers):
        p, attn = f"h.{i}.", block._self_attention_layer
        qkv = (attn.query_dense, attn.key_dense, attn.value_dense)
        rows += _norm(block._self_attention_layer_norm, p + "ln_1")
        rows.append((p + "attn.c_attn.weight", "fused_in", tuple(d.kernel for d in qkv)))
        rows.append((p + "attn.c_attn.bias", "fused_flat", tuple(d.bias for d in qkv)))
        rows += _dense(attn.output_dense, p + "attn.c_proj", "heads_rows")
        rows += _norm(block._feedforward_layer_norm, p + "ln_2")
        rows += _dense(block._feedforward_intermediate_dense, p + "mlp.c_fc", "same")
        rows += _dense(block._feedforward_output_dense, p + "mlp.c_proj", "same")
    return rows + _norm(bb.layer_norm, "ln_f")


def _llama(bb) -> list:
    g = bb.get_layer
    tok = g("token_embedding")
    rows = [("model.embed_tokens.weight", "same", (tok.embeddings,))]
    if not tok.tie_weights:
        rows.append(("lm_head.weight", "T", (tok.reverse_embeddings,)))
    for i in range(bb.num_layers):
        block, p = g(f"transformer_layer_{i}"), f"model.layers.{i}."
        rows += _norm(block._self_attention_layernorm, p + "input_layernorm")
        rows += _attention(block._self_attention_layer, tuple(
            p + f"self_attn.{s}_proj" for s in "qkvo"), private=True)
        rows += _dense(block._feedforward_gate_dense, p + "mlp.gate_proj")
        rows += _dense(block._feedforward_intermediate_dense, p + "mlp.up_proj")
        rows += _dense(block._feedforward_output_dense, p + "mlp.down_proj")
        rows += _norm(block._feedforward_layernorm, p + "post_attention_layernorm")
    return rows + _norm(g("sequence_output_layernorm"), "model.norm")


def _vit(bb) -> list:
    emb, enc = bb.get_layer("vit_patching_and_embedding"), bb.get_layer("vit_encoder")
    rows = [("embeddings.cls_token", "same", (emb.class_token,))] if emb.use_class_token else []
    rows += _dense(emb.patch_embedding, "embeddings.patch_embeddings.projection", "patch")
    rows.append(("embeddings.position_embeddings", "lead1", (emb.position_embedding.embeddings,)))
    for i, block in enumerate(enc.encoder_layers):
        p = f"encoder.layer.{i}."
        rows += _norm(block.layer_norm_1, p + "layernorm_before")
        rows += _attention(block.mha, tuple(p + s for s in (
            "attention.attention.query", "attention.attention.key", "attention.attention.value",
            "attention.output.dense")))
        rows += _norm(block.layer_norm_2, p + "layernorm_after")
        rows += _dense(block.mlp.dense_1, p + "intermediate.dense")
        rows += _dense(block.mlp.dense_2, p + "output.dense")
    return rows + _norm(enc.layer_norm, "layernorm")


_MAPPINGS = {"bert": _bert, "gpt2": _gpt2, "llama": _llama, "mistral": _llama, "qwen2": _llama,
             "vit": _vit}


@dataclass(frozen=True)
class _Entry:
    """One Hugging Face tensor: its layout and the keras variables it is made of."""

    kind: str
    variables: tuple

    @property
    def shapes(self) -> list:
        return [tuple(int(n) for n in v.shape) for v in self.variables]

    @property
    def hf_shape(self) -> tuple:
        return hf_shape(self.kind, self.shapes)


def _entries(bb, model_type: str) -> dict:
    """HF name -> :class:`_Entry` for backbone ``bb``; refuses variables no mapping covers."""
    entries = {name: _Entry(kind, tuple(vs)) for name, kind, vs in _MAPPINGS[model_type](bb)}
    covered = {id(v) for e in entries.values() for v in e.variables}
    left = [v.path for v in bb.weights if id(v) not in covered]
    if any("lora_kernel" in p for p in left):
        raise UnsupportedModelError(
            f"the {type(bb).__name__} has LoRA enabled; expected plain kernels: save it with "
            "backbone.save_to_preset(dir), which merges LoRA into the kernels, and resize that folder")
    if left:
        shown = ", ".join(repr(p) for p in left[:6]) + (f" and {len(left) - 6} more" if len(left) > 6
                                                         else "")
        raise UnsupportedModelError(
            f"the {type(bb).__name__} holds variables with no Hugging Face counterpart: {shown}; "
            "expected a plain keras_hub backbone (dequantise, or rebuild the backbone from its "
            "config and load its weights, then resize)")
    return entries


# -- configs: keras_hub <-> Hugging Face --------------------------------------------------------

_LLAMA_KEYS = (("vocabulary_size", "vocab_size"), ("num_layers", "num_hidden_layers"),
               ("num_query_heads", "num_attention_heads"),
               ("num_key_value_heads", "num_key_value_heads"), ("hidden_dim", "hidden_size"),
               ("intermediate_dim", "intermediate_size"), ("rope_max_wavelength", "rope_theta"),
               ("layer_norm_epsilon", "rms_norm_eps"), ("dropout", "attention_dropout"))
#: model_type -> (keras key, Hugging Face key) pairs translated both ways.
_KEYS = {
    "bert": (("vocabulary_size", "vocab_size"), ("num_layers", "num_hidden_layers"),
             ("num_heads", "num_attention_heads"), ("hidden_dim", "hidden_size"),
             ("intermediate_dim", "intermediate_size"),
             ("max_sequence_length", "max_position_embeddings"), ("num_segments", "type_vocab_size"),
             ("dropout", "hidden_dropout_prob"), ("dropout", "attention_probs_dropout_prob")),
    "gpt2": (("vocabulary_size", "vocab_size"), ("num_layers", "n_layer"), ("num_heads", "n_head"),
             ("hidden_dim", "n_embd"), ("intermediate_dim", "n_inner"),
             ("max_sequence_length", "n_positions"), ("dropout", "resid_pdrop"),
             ("dropout", "embd_pdrop"), ("dropout", "attn_pdrop")),
    "llama": _LLAMA_KEYS + (("tie_word_embeddings", "tie_word_embeddings"),),
    "mistral": _LLAMA_KEYS + (("sliding_window", "sliding_window"), ("head_dim", "head_dim")),
    "qwen2": _LLAMA_KEYS + (("tie_word_embeddings", "tie_word_embeddings"),
                            ("use_sliding_window_attention", "use_sliding_window"),
                            ("sliding_window_size", "sliding_window")),
    "vit": (("num_layers", "num_hidden_layers"), ("num_heads", "num_attention_heads"),
            ("hidden_dim", "hidden_size"), ("mlp_dim", "intermediate_size"),
            ("layer_norm_epsilon", "layer_norm_eps"), ("use_mha_bias", "qkv_bias"),
            ("dropout_rate", "hidden_dropout_prob"), ("attention_dropout", "attention_probs_dropout_prob")),
}
#: keras keys that carry the model-level sizes (the only ones a resize changes).
_SIZE_KEYS = ("num_layers", "num_heads", "num_query_heads", "num_key_value_heads", "hidden_dim",
              "intermediate_dim", "mlp_dim", "head_dim")
#: What keras_hub fixes in code, stated in the Hugging Face config.
_FIXED = {"bert": {"hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-12},
          "gpt2": {"activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
                   "tie_word_embeddings": True},
          "llama": {"hidden_act": "silu"}, "mistral": {"hidden_act": "silu"},
          "qwen2": {"hidden_act": "silu"}, "vit": {"hidden_act": "gelu"}}


def _rope_to_hf(kc: dict) -> dict | None:
    if kc.get("rope_frequency_adjustment_factor") is not None:
        return {"rope_type": "llama3", "factor": kc["rope_frequency_adjustment_factor"],
                "low_freq_factor": kc["rope_low_freq_factor"],
                "high_freq_factor": kc["rope_high_freq_factor"],
                "original_max_position_embeddings": kc["rope_pretraining_sequence_length"]}
    factor = kc.get("rope_position_scaling_factor", kc.get("rope_scaling_factor", 1.0))
    return None if factor in (None, 1, 1.0) else {"rope_type": "linear", "factor": factor}


def hf_config(model_type: str, kc: dict) -> dict:
    """The Hugging Face config of a keras_hub backbone config ``kc`` (``model_type`` + sizes)."""
    out = {"model_type": model_type, "architectures": [_ARCH[model_type]], **_FIXED[model_type]}
    for k_key, hf_key in _KEYS[model_type]:
        if kc.get(k_key) is not None:
            out[hf_key] = kc[k_key]
    if model_type in ("llama", "mistral", "qwen2"):
        out.setdefault("tie_word_embeddings", False)
        out["rope_scaling"] = _rope_to_hf(kc)
    if model_type == "vit":
        h, w, c = kc["image_shape"]
        ph, pw = kc["patch_size"] if isinstance(kc["patch_size"], (list, tuple)) else (kc["patch_size"],) * 2
        out.update(image_size=h if h == w else [h, w], patch_size=ph if ph == pw else [ph, pw],
                   num_channels=c)
    if kc.get("dtype") is not None:
        out["torch_dtype"] = _variable_dtype(kc["dtype"])
    return out


def _rope_to_keras(hf: dict, kc: dict) -> None:
    scaling = hf.get("rope_scaling") or {}
    theta = (hf.get("rope_parameters") or {}).get("rope_theta", hf.get("rope_theta"))
    if theta is not None:
        kc["rope_max_wavelength"] = theta
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind == "llama3":
        kc.update(rope_frequency_adjustment_factor=scaling["factor"],
                  rope_low_freq_factor=scaling["low_freq_factor"],
                  rope_high_freq_factor=scaling["high_freq_factor"],
                  rope_pretraining_sequence_length=scaling["original_max_position_embeddings"])
    elif kind == "linear":
        key = "rope_position_scaling_factor" if hf["model_type"] == "llama" else "rope_scaling_factor"
        kc[key] = scaling["factor"]
    elif kind not in (None, "default"):
        raise UnsupportedModelError(
            f"rope_scaling type {kind!r} has no keras_hub equivalent; expected none, 'linear' or "
            "'llama3' (write a Hugging Face directory instead)")


def keras_config(hf: dict) -> tuple[str, dict]:
    """(backbone class name, keras_hub config) of a Hugging Face config."""
    model_type = hf.get("model_type")
    if model_type not in _CLASS_OF:
        raise UnsupportedModelError(
            f"model_type={model_type!r} has no keras_hub backbone here; expected one of "
            f"{tuple(_CLASS_OF)} (write a Hugging Face directory instead)")
    kc = {k_key: hf[hf_key] for k_key, hf_key in _KEYS[model_type] if hf.get(hf_key) is not None}
    if model_type == "gpt2" and "intermediate_dim" not in kc:
        kc["intermediate_dim"] = 4 * hf["n_embd"]
    if model_type in ("llama", "mistral", "qwen2"):
        _rope_to_keras(hf, kc)
    if model_type == "vit":
        size, patch = hf.get("image_size", 224), hf.get("patch_size", 16)
        size = size if isinstance(size, (list, tuple)) else (size, size)
        patch = patch if isinstance(patch, (list, tuple)) else (patch, patch)
        kc.update(image_shape=(*size, hf.get("num_channels", 3)), patch_size=tuple(patch))
    name = _CLASS_OF[model_type]
    if "rope_frequency_adjustment_factor" in kc:
        name = "Llama3Backbone"
    return name, kc


def _variable_dtype(policy) -> str:
    name = policy["config"]["name"] if isinstance(policy, dict) else str(policy)
    return "float32" if name.startswith("mixed_") else name


# -- keras machinery (imported lazily) ----------------------------------------------------------

def _keras():
    try:
        import keras
        import keras_hub
    except ImportError as err:
        raise UnsupportedModelError(
            f"keras sources and outputs need keras>=3.15 and keras-hub>=0.32 ({err}); install "
            "them as docs/keras.md says (keras-hub with --no-deps beside tensorflow-cpu)") from None
    return keras, keras_hub


def _class(name: str):
    _, keras_hub = _keras()
    cls = getattr(keras_hub.models, name, None)
    if name not in BACKBONES or cls is None:
        raise UnsupportedModelError(
            f"keras_hub {name} is not supported; expected one of {tuple(BACKBONES)} (other "
            "backbones have no family adapter yet)")
    return cls


def _stateless(build):
    """Call ``build()`` with keras variables that get shapes and dtypes but no memory."""
    keras, _ = _keras()
    from keras.src.backend.common import global_state

    before = list(global_state.get_global_attribute("uninitialized_variables", []) or [])
    with keras.StatelessScope(initialize_variables=False):
        bb = build()
    global_state.set_global_attribute("uninitialized_variables", before)  # never initialise ours
    return bb


def _build(name: str, config: dict):
    """The backbone ``name`` of keras_hub ``config``, its variables not allocated."""
    cls = _class(name)
    try:
        return _stateless(lambda: cls.from_config(dict(config)))
    except (TypeError, ValueError) as err:
        raise UnsupportedModelError(
            f"keras_hub cannot build {name} from this config ({err}); pass the preset's own "
            "config.json, or a target its backbone can express") from None


def _h5_layout(bb) -> tuple[list, list]:
    """``([(group, metadata)], [(dataset path, variable)])``: ``save_weights``'s own traversal."""
    keras, _ = _keras()
    try:
        from keras.src.saving import saving_lib

        class _Recorder(saving_lib.H5IOStore):
            def __init__(self):
                self.groups, self.rows, self.at = [], [], ""

            def __bool__(self):
                return True

            def make(self, path, metadata=None):
                self.at = path
                self.groups.append((path, metadata))
                return self

            def __setitem__(self, key, value):
                self.rows.append(("/".join(p for p in (self.at, "vars", key) if p), value))

        rec = _Recorder()
        saving_lib._save_state(bb, weights_store=rec, assets_store=None, inner_path="",
                               visited_saveables=set())
    except (ImportError, AttributeError, TypeError) as err:
        raise UnsupportedModelError(
            f"keras {keras.__version__} changed the weights-file traversal this reader relies on "
            f"({err}); expected keras 3.15.x (pin keras==3.15.*)") from None
    return rec.groups, rec.rows


def _dtype_of(ds) -> str:
    return "bfloat16" if ds.attrs.get("dtype") == "bfloat16" else ds.dtype.name


def _h5_files(folder: Path) -> list[Path]:
    if (folder / _WEIGHTS).is_file():
        return [folder / _WEIGHTS]
    index = folder / _SHARDED
    if not index.is_file():
        raise UnsupportedModelError(
            f"the keras preset {str(folder)!r} has no {_WEIGHTS} or {_SHARDED}; expected a folder "
            "written by backbone.save_to_preset(dir)")
    names = set()
    for v in json.loads(index.read_text())["weight_map"].values():
        names.update(v if isinstance(v, list) else [v])
    files = [folder / n for n in sorted(names)]
    bad = [str(f) for f in files if not _inside(f, folder) or not f.is_file()]
    if bad:
        raise UnsupportedModelError(f"{_SHARDED} names missing or outside files {bad}; copy the "
                                    "shards into the preset folder")
    return files


def _inside(path: Path, root: Path) -> bool:
    return os.path.realpath(path).startswith(os.path.realpath(root) + os.sep)


# -- reader -------------------------------------------------------------------------------------

class KerasReader:
    """A keras_hub backbone or preset folder opened for lazy reading (see the module docstring)."""

    format = "keras"

    def __init__(self, source, *, config=None):
        self._handles: list = []
        if isinstance(source, (str, Path)) or hasattr(source, "__fspath__"):
            self.path, self.backbone = Path(source), None
            bb = self._open_preset()
        else:
            self.path, self.backbone = None, _check_object(source)
            bb = source
        name = type(bb).__name__
        kc = dict(bb.get_config())
        if hasattr(bb, "tie_word_embeddings"):  # keras_hub's Llama get_config leaves it out
            kc["tie_word_embeddings"] = bool(bb.tie_word_embeddings)
        self.model_type = BACKBONES[name]
        self.meta = {"keras": {"class_name": name, "config": kc}}
        self._overrides = dict(config or {})
        self.config = {**hf_config(self.model_type, kc), **self._overrides}
        self._entries = _entries(bb, self.model_type)
        self._datasets = self._locate(bb) if self.backbone is None else {}
        self._infos = {n: TensorInfo(n, e.hf_shape, self._dtype(e)) for n, e in self._entries.items()}

    def _open_preset(self):
        folder = self.path
        if not (folder / "config.json").is_file():
            raise UnsupportedModelError(f"{str(folder)!r} is not a keras preset folder; expected "
                                        "config.json and model.weights.h5 (backbone.save_to_preset)")
        if (folder / "task.weights.h5").is_file():
            raise UnsupportedModelError(
                f"the preset {str(folder)!r} holds task-head weights (task.weights.h5), which a "
                "resize cannot carry; resize the backbone preset (a copy without task.json and "
                "task.weights.h5) and attach a new head")
        spec = json.loads((folder / "config.json").read_text())
        return _build(spec.get("class_name", "?"), spec.get("config", {}))

    def _locate(self, bb) -> dict:
        """id(variable) -> its h5 dataset (checked against the variable's shape)."""
        import h5py

        self._handles = [h5py.File(f, "r") for f in _h5_files(self.path)]
        found = {}
        for path, var in _h5_layout(bb)[1]:
            ds = next((h[path] for h in self._handles if path in h), None)
            if ds is None or tuple(ds.shape) != tuple(var.shape):
                got = "missing" if ds is None else f"shape {tuple(ds.shape)}"
                raise UnsupportedModelError(
                    f"the preset's weights do not match its config.json: {var.path} is {got}, "
                    f"config says {tuple(var.shape)}; pass an unmodified preset folder")
            found[id(var)] = ds
        return found

    def _dtype(self, entry: _Entry) -> str:
        v = entry.variables[0]
        return _dtype_of(self._datasets[id(v)]) if self._datasets else str(v.dtype)

    def _get(self, entry: _Entry, i: int, index: tuple) -> np.ndarray:
        var = entry.variables[i]
        if self._datasets:
            ds = self._datasets[id(var)]
            a = ds[index]
            return a.view(numpy_dtype("bfloat16")) if _dtype_of(ds) == "bfloat16" else a
        keras, _ = _keras()
        a = np.asarray(keras.ops.convert_to_numpy(var.value))
        if str(var.dtype) == "bfloat16":
            a = a.astype(numpy_dtype("bfloat16"), copy=False)
        return a[index]

    def tensors(self) -> dict:
        return dict(self._infos)

    def read(self, name: str) -> np.ndarray:
        e = self._entries[name]
        parts = [self._get(e, i, ()) for i in range(len(e.variables))]
        return np.array(hf_layout(e.kind, parts), order="C", copy=True)

    def read_rows(self, name: str, start: int, stop: int) -> np.ndarray:
        e = self._entries[name]
        rows = _hf_rows(e.kind, lambda i, idx: self._get(e, i, idx), e.shapes, start, stop)
        return np.array(rows, order="C", copy=True)

    def copy_extras(self, dest: Path) -> list[str]:
        """Files a Hugging Face directory needs: none (a preset's tokenizer is keras's own format)."""
        return []

    def copy_assets(self, dest: Path) -> list[str]:
        """Copy the preset's tokenizer / preprocessor configs and ``assets/`` into ``dest``."""
        if self.path is None:
            return []
        copied = []
        for item in sorted(self.path.iterdir()):
            name = item.name
            if name in _NOT_COPIED or name.endswith(".weights.h5") or not _inside(item, self.path):
                continue
            if item.is_dir():
                shutil.copytree(item, dest / name, symlinks=False,
                                ignore=lambda d, ns: [n for n in ns if not _inside(Path(d) / n, self.path)])
            else:
                shutil.copyfile(item, dest / name)
            copied.append(name)
        return copied

    def close(self) -> None:
        for h in self._handles:
            h.close()
        self._handles = []

    def __getstate__(self):
        """A preset reader travels as its folder (for worker processes); it reopens on arrival."""
        if self.path is None:
            raise TypeError("a reader of an in-memory keras backbone cannot be sent to another "
                            "process; save it with backbone.save_to_preset(dir) and pass the folder")
        return {"path": self.path, "config": self._overrides}

    def __setstate__(self, state):
        self.__init__(state["path"], config=state["config"])


def _check_object(source):
    """``source`` if it is a supported keras_hub backbone, else the error that says what to pass."""
    names = [c.__name__ for c in type(source).__mro__]
    if "Task" in names and hasattr(source, "backbone"):
        raise UnsupportedModelError(
            f"source is a keras_hub task ({type(source).__name__}); its head is not resized: pass "
            "task.backbone (then attach a new head to the resized backbone)")
    if type(source).__name__ not in BACKBONES:
        raise UnsupportedModelError(
            f"keras source {type(source).__name__} is not supported; expected one of "
            f"{tuple(BACKBONES)} (a keras_hub backbone) or a preset folder")
    return source


def open_reader(source, *, config=None) -> KerasReader:
    """A :class:`KerasReader` for a keras_hub backbone or preset folder; ``config`` overrides keys."""
    return KerasReader(source, config=config)


# -- writer -------------------------------------------------------------------------------------

#: Hugging Face prefixes a writer accepts in front of the names above (task-model checkpoints).
_PREFIXES = {"bert": ("bert.",), "gpt2": ("transformer.",), "vit": ("vit.",),
             "llama": (), "mistral": (), "qwen2": ()}
#: Tensors a keras backbone can hold as a tie: (alias, target), where it has no variable for alias.
_TIES = {"gpt2": (("lm_head.weight", "wte.weight"),),
         "llama": (("lm_head.weight", "model.embed_tokens.weight"),),
         "qwen2": (("lm_head.weight", "model.embed_tokens.weight"),)}


def _target(plan: OutputPlan) -> tuple[str, dict]:
    """(class name, keras config) of the output: the keras source's config with new sizes."""
    base = (getattr(plan.reader, "meta", None) or {}).get("keras")  # a keras source (or its rotation)
    if base is None:
        name, kc = keras_config(dict(plan.config))
    else:
        name, kc = base["class_name"], dict(base["config"])
        _, sized = keras_config({**hf_config(BACKBONES[name], kc), **dict(plan.config)})
        kc.update({k: v for k, v in sized.items() if k in _SIZE_KEYS})
        if "tie_word_embeddings" in kc and "tie_word_embeddings" in sized:  # rotate= unties a head
            kc["tie_word_embeddings"] = sized["tie_word_embeddings"]
    _check_head_dim(name, kc, plan.config)
    floats = {t.dtype for t in plan.tensors}
    if len(floats) > 1:
        raise OptionError(f"a keras preset holds one weight dtype, the plan has {sorted(floats)}; "
                          "pass one dtype= for the output")
    if floats and floats != {_variable_dtype(kc.get("dtype") or "float32")}:
        kc["dtype"] = floats.pop()
    return name, kc


def _check_head_dim(name: str, kc: dict, hf: dict) -> None:
    head_dim = hf.get("head_dim")
    heads = kc.get("num_query_heads")
    if head_dim is None or heads is None or name == "MistralBackbone":
        return
    if head_dim * heads != kc["hidden_dim"]:
        raise TargetError(
            f"keras_hub {name} derives head_dim from hidden/heads ({kc['hidden_dim']}/{heads}), "
            f"but the target has head_dim={head_dim}; choose heads = hidden / head_dim")


class KerasWriter:
    """A keras_hub preset folder being written (see the module docstring)."""

    def __init__(self, out, *, overwrite: bool = False):
        self.path = Path(out)
        self.overwrite = overwrite
        self.stage: Stage | None = None
        self.notes: list[str] = []
        self._h5 = None

    def begin(self, plan: OutputPlan) -> None:
        self.plan = plan
        self.class_name, self.keras_config = _target(plan)
        self.backbone = _build(self.class_name, self.keras_config)
        self.model_type = BACKBONES[self.class_name]
        self._match(plan.tensors, _entries(self.backbone, self.model_type))
        self.stage = Stage(self.path, overwrite=self.overwrite, need_bytes=plan.nbytes)
        try:
            self.stage.target.mkdir()
            self._layout(self.stage.target / _WEIGHTS)
        except OSError as exc:
            self.abort()
            raise output_error(exc, self.path) from None

    def _match(self, tensors: list, entries: dict) -> None:
        """Pair every plan tensor with a keras entry (checking shapes); refuse the rest."""
        self._entries, self._planned = entries, {t.name: t for t in tensors}
        self._entry, self._ties, self._left, unknown = {}, {}, {}, []
        ties = dict(a for a in _TIES.get(self.model_type, ()) if a[0] not in entries)
        for t in tensors:
            name = _strip(t.name, self.model_type, entries)
            if name in entries:
                e = entries[name]
                if e.hf_shape != tuple(t.shape):
                    raise UnsupportedModelError(
                        f"{t.name} is planned as {tuple(t.shape)} but the keras {self.class_name} "
                        f"of this config holds {e.hf_shape}; the plan and the target config disagree")
                self._entry[t.name], self._left[t.name] = e, t.shape[0] if t.shape else 1
            elif name in ties:
                self._ties[t.name] = ties[name]
            else:
                unknown.append(t.name)
        have = {id(e) for e in self._entry.values()}
        missing = [n for n, e in entries.items() if id(e) not in have]
        if unknown or missing:
            what = "; ".join(w for w in (
                f"has no place for {unknown[:5]}" if unknown else "",
                f"needs {missing[:5]}, which the plan lacks" if missing else "") if w)
            raise UnsupportedModelError(
                f"a keras_hub {self.class_name} {what}; resize the base model's parameters "
                f"({_ARCH[self.model_type]}), or write a Hugging Face directory instead")
        self._tied: dict = {}
        self._buffers: dict = {}

    def _layout(self, weights: Path) -> None:
        """Create ``model.weights.h5`` with keras's groups and one empty dataset per variable."""
        import h5py

        self._h5 = h5py.File(weights, "w")
        groups, rows = _h5_layout(self.backbone)
        for path, metadata in groups:
            if metadata:
                group = self._h5.require_group("/".join(p for p in (path, "vars") if p))
                for k, v in metadata.items():
                    group.attrs[k] = v
        self._datasets = {}
        for path, var in rows:
            dtype = str(var.dtype)
            ds = self._h5.create_dataset(path, shape=tuple(var.shape), dtype=numpy_dtype(dtype))
            if dtype == "bfloat16":
                ds.attrs["dtype"] = "bfloat16"
            self._datasets[id(var)] = ds

    def _check(self, name: str, array: np.ndarray, start: int) -> None:
        planned = self._planned.get(name)
        if planned is None:
            raise OutputError(f"internal: {name} is not in the plan")
        want = (array.shape[0], *planned.shape[1:]) if planned.shape else ()
        if tuple(array.shape) != tuple(want) or array.dtype != numpy_dtype(planned.dtype) or \
                (planned.shape and start + array.shape[0] > planned.shape[0]):
            raise OutputError(f"internal: {name} written as {array.dtype}{list(array.shape)} at row "
                              f"{start}, planned {planned.dtype}{list(planned.shape)}")

    def _store(self, e: _Entry, part: int, index: tuple, value: np.ndarray) -> None:
        ds = self._datasets[id(e.variables[part])]
        try:
            ds[index] = value.view(ds.dtype) if value.dtype.name == "bfloat16" else value
        except OSError as exc:
            raise output_error(exc, self.path) from None

    def write(self, name: str, array: np.ndarray) -> None:
        if name in self._ties:
            self._check(name, array, 0)
            self._tied[name] = array
            return
        self._check(name, array, 0)
        e = self._entry[name]
        for i, part in enumerate(keras_layout(e.kind, array, e.shapes)):
            self._store(e, i, (), part)
        self._left[name] = 0

    def write_rows(self, name: str, start: int, array: np.ndarray) -> None:
        self._check(name, array, start)
        if name in self._ties:
            buf = self._tied.setdefault(name, np.empty(self._planned[name].shape, array.dtype))
            buf[start:start + array.shape[0]] = array
            return
        e = self._entry[name]
        writes = _keras_rows(e.kind, array, e.shapes, start)
        if writes is None:  # a tile that does not align with heads: gather the tensor first
            buf = self._buffers.setdefault(name, np.empty(e.hf_shape, array.dtype))
            buf[start:start + array.shape[0]] = array
            self._left[name] -= array.shape[0]
            if not self._left[name]:
                self.write(name, self._buffers.pop(name))
            return
        for part, index, value in writes:
            self._store(e, part, index, value)
        self._left[name] -= array.shape[0]

    def finish(self) -> Path:
        missing = [n for n, left in self._left.items() if left]
        if missing:
            raise OutputError(f"internal: tensors never written: {missing[:5]}")
        self._check_ties()
        try:
            self._h5.close()
            self._h5 = None
            self._metadata(self.stage.target)
        except OSError as exc:
            raise output_error(exc, self.path) from None
        return self.stage.commit()

    def _check_ties(self) -> None:
        """A tie the keras backbone keeps (GPT-2 and tied decoders' heads) must hold equal values."""
        for alias, target in self._ties.items():
            if alias not in self._tied:
                continue
            e = self._entries[target]
            if not np.array_equal(self._tied.pop(alias), hf_layout(e.kind, [self._read(e, 0)])):
                raise UnsupportedModelError(
                    f"{alias} differs from {target}, but a keras_hub {self.class_name} of this "
                    "config ties them; set tie_word_embeddings=False in the config, or write a "
                    "Hugging Face directory")

    def _read(self, e: _Entry, part: int) -> np.ndarray:
        ds = self._datasets[id(e.variables[part])]
        a = ds[()]
        return a.view(numpy_dtype("bfloat16")) if _dtype_of(ds) == "bfloat16" else a

    def _metadata(self, dest: Path) -> None:
        keras, keras_hub = _keras()
        spec = keras.saving.serialize_keras_object(self.backbone)
        for key in ("compile_config", "build_config"):
            spec.pop(key, None)
        if hasattr(self.backbone, "tie_word_embeddings"):
            spec["config"]["tie_word_embeddings"] = bool(self.backbone.tie_word_embeddings)
        (dest / "config.json").write_text(json.dumps(spec, indent=4))
        (dest / "metadata.json").write_text(json.dumps(_preset_metadata(self.backbone), indent=4))
        self._extras(dest)
        card = _card(self.plan)
        if card is not None:
            (dest / "README.md").write_text(card)

    def _extras(self, dest: Path) -> None:
        reader = self.plan.reader
        if hasattr(reader, "copy_assets"):  # a keras preset source
            reader.copy_assets(dest)
            return
        folder = getattr(reader, "path", None)
        if folder is None or not Path(folder).is_dir():
            return
        _, keras_hub = _keras()
        try:
            keras_hub.tokenizers.Tokenizer.from_preset(str(folder)).save_to_preset(str(dest))
        except Exception as err:  # keras_hub raises many kinds; the weights stand on their own
            self.notes.append(f"tokenizer not converted by keras_hub ({type(err).__name__}: {err})")

    def abort(self) -> None:
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None
        if self.stage is not None:
            self.stage.abort()


def _strip(name: str, model_type: str, entries) -> str:
    """``name`` as the entries spell it: a task model's prefix (``bert.``, ``vit.``, ...) removed,
    a bare decoder's ``model.`` added."""
    candidates = [name] + [name[len(p):] for p in _PREFIXES[model_type] if name.startswith(p)]
    candidates.append("model." + name)
    return next((c for c in candidates if c in entries), name)


def _preset_metadata(bb) -> dict:
    """``metadata.json`` as keras_hub's ``save_to_preset`` writes it."""
    keras, keras_hub = _keras()
    tasks = sorted({t.__base__.__name__ for t in vars(keras_hub.models).values()
                    if isinstance(t, type) and issubclass(t, keras_hub.models.Task)
                    and getattr(t, "backbone_cls", None) is type(bb)})
    return {"keras_version": keras.version(), "keras_hub_version": keras_hub.__version__,
            "parameter_count": int(bb.count_params()),
            "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"), "tasks": tasks}


def _card(plan: OutputPlan) -> str | None:
    try:
        from .card import model_card
    except ImportError:  # the model card module arrives with the pipeline
        return None
    return model_card(replace(plan, card={"library_name": "keras-hub", **dict(plan.card or {})}))


def open_writer(out, *, overwrite: bool = False, **options) -> KerasWriter:
    """A :class:`KerasWriter` for the preset folder ``out``."""
    if options:
        raise OptionError(f"options {sorted(options)} do not apply to a keras preset output; "
                          "leave them out")
    return KerasWriter(out, overwrite=overwrite)
