"""GGUF checkpoints (llama.cpp, Ollama): a lazy reader and a streaming writer.

Contract. :class:`GGUFFileReader` opens a ``.gguf`` file (GGUF v2/v3,
little-endian) and presents it as a :class:`~botcore.adapters.io.base.Reader`:

* the header is parsed and validated before anything else: counts, string
  and array lengths, tensor ranks, dimensions, types and data offsets are
  checked against the file's size, so a damaged or hostile file is refused
  with :class:`~botcore.errors.UnsupportedModelError` before any tensor memory
  is allocated; so is an architecture outside :data:`ARCHS` (named, with what
  is supported) and a tensor no name table maps;
* tensors are presented under **Hugging Face names and layouts**
  (``blk.3.attn_q.weight`` -> ``model.layers.3.self_attn.q_proj.weight``; the
  name tables are data, one row per architecture in :data:`ARCHS`), with
  llama.cpp's value changes undone where llama.cpp applies them, as
  transformers' own GGUF loader does: the interleaved RoPE row order of Q and K
  (``llama``), the ``+1`` stored on Gemma's RMSNorm gains;
* the data are memory-mapped and decoded one tensor (or row tile) at a time:
  F32/F16/BF16/F64 keep their dtype (bfloat16 as ``ml_dtypes.bfloat16``),
  every quantised type the ``gguf`` package can dequantise (Q4_0 ... Q8_0,
  K-quants, IQ types) comes back as float32;
* ``config`` is a Hugging Face config derived from the metadata
  (:func:`gguf_config`), ``meta`` holds the GGUF key/values (``meta_types``
  their GGUF value types), and ``copy_extras`` writes a Hugging Face tokenizer
  (built by transformers from the file) and a ``generation_config.json``.

:class:`GGUFFileWriter` writes one ``.gguf`` file from an
:class:`~botcore.adapters.io.base.OutputPlan`: the header (metadata and every
tensor's name, shape, type and aligned offset) is laid out in ``begin``,
before any data exists; each tensor's bytes go to its offset as it arrives
(``write`` / ``write_rows``, any order), so the model is never held whole.
Tensors keep their planned dtype (F32/F16/BF16; 1-D tensors are always F32,
as llama.cpp expects), or become Q8_0 with ``quantize="q8_0"`` (2-D tensors
whose rows are whole 32-value blocks). Q/K rows get llama.cpp's RoPE order and
Gemma norms their ``+1`` on the way out. The metadata (:func:`gguf_metadata`)
states the target's sizes (block count, embedding and feed-forward lengths,
head counts, RoPE dimensions, key/value lengths where they are not
``hidden / heads``, context length, norm epsilon), a ``general.name`` and
``general.description`` that say the model was resized, and the tokenizer:
copied from a GGUF source, built from ``tokenizer.json`` for a Hugging Face
source with a byte-level BPE (GPT-2 style) tokenizer, refused otherwise. The
file appears atomically (:class:`~botcore.adapters.io.staging.Stage`).

Examples
--------
>>> hf_name("llama", "blk.3.attn_q.weight"), hf_name("llama", "output_norm.weight")
('model.layers.3.self_attn.q_proj.weight', 'model.norm.weight')
>>> gguf_name("phi3", "model.layers.0.mlp.gate_up_proj.weight")
'blk.0.ffn_up.weight'
>>> import numpy as np
>>> w = np.arange(8.0).reshape(8, 1)             # one head, head_dim 8, HF rotate-half order
>>> to_gguf_rows(w, 1)[:, 0]                     # llama.cpp interleaves the two halves
array([0., 4., 1., 5., 2., 6., 3., 7.])
>>> bool((to_hf_rows(to_gguf_rows(w, 1), 1) == w).all())
True
"""

from __future__ import annotations

import json
import math
import mmap
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from botcore.errors import OptionError, OutputError, UnsupportedModelError

from .base import OutputPlan, TensorInfo, numpy_dtype
from .staging import Stage, output_error

__all__ = ["ARCHS", "Arch", "GGUFFileReader", "GGUFFileWriter", "QUANTIZE", "gguf_config",
           "gguf_metadata", "gguf_name", "hf_name", "open_reader", "open_writer", "parse_header",
           "to_gguf_rows", "to_hf_rows", "tokenizer_metadata"]


# -- architectures and names (data) ------------------------------------------------------
#: GGUF leaf names of the whole-model tensors -> Hugging Face module names.
_GLOBAL_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm",
                 "output": "lm_head"}

#: GGUF leaf names inside ``blk.N.`` -> Hugging Face names inside ``model.layers.N.``.
_LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
}
_GEMMA_NORMS = (("ffn_norm", "pre_feedforward_layernorm"),
                ("post_attention_norm", "post_attention_layernorm"),
                ("post_ffw_norm", "post_feedforward_layernorm"))
_SOFTCAP = (("{arch}.attn_logit_softcapping", "attn_logit_softcapping", "f"),
            ("{arch}.final_logit_softcapping", "final_logit_softcapping", "f"),
            ("{arch}.attention.sliding_window", "sliding_window", "I"))


@dataclass(frozen=True)
class Arch:
    """How one GGUF architecture maps to a Hugging Face family (one row of :data:`ARCHS`).

    ``permute_qk``: llama.cpp stores Q/K rows in interleaved RoPE order;
    ``norm_shift``: llama.cpp stores RMSNorm gains plus this; ``names``:
    overrides of the per-layer name table; ``config_keys``: extra
    ``(gguf key, hf key, struct type)`` rows; ``head_dim_keys``: llama.cpp always
    writes ``attention.key_length`` / ``value_length`` for this architecture.
    """

    model_type: str
    hf_class: str
    permute_qk: bool = False
    norm_shift: float = 0.0
    names: tuple = ()
    config_keys: tuple = ()
    head_dim_keys: bool = False

    def layer_names(self) -> dict:
        return {**_LAYER_NAMES, **dict(self.names)}


#: GGUF ``general.architecture`` -> :class:`Arch`: what transformers' GGUF loader maps and
#: the decoder families here cover. Adding an architecture is adding a row.
ARCHS = {
    "llama": Arch("llama", "LlamaForCausalLM", permute_qk=True),
    "qwen2": Arch("qwen2", "Qwen2ForCausalLM"),
    "qwen3": Arch("qwen3", "Qwen3ForCausalLM"),
    "phi3": Arch("phi3", "Phi3ForCausalLM",
                 names=(("attn_qkv", "self_attn.qkv_proj"), ("ffn_up", "mlp.gate_up_proj"))),
    "gemma2": Arch("gemma2", "Gemma2ForCausalLM", norm_shift=1.0, names=_GEMMA_NORMS,
                   config_keys=_SOFTCAP, head_dim_keys=True),
    "gemma3": Arch("gemma3_text", "Gemma3ForCausalLM", norm_shift=1.0, names=_GEMMA_NORMS,
                   config_keys=_SOFTCAP, head_dim_keys=True),
}

#: Hugging Face ``model_type`` -> the GGUF architecture written for it (llama.cpp converts
#: Mistral checkpoints as ``llama``).
_WRITE_ARCHS = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "qwen3": "qwen3",
                "phi3": "phi3", "gemma2": "gemma2", "gemma3_text": "gemma3"}

#: ``(gguf key, hf config key, struct type)`` read and written for every architecture.
_CONFIG_KEYS = (
    ("{arch}.context_length", "max_position_embeddings", "I"),
    ("{arch}.embedding_length", "hidden_size", "I"),
    ("{arch}.block_count", "num_hidden_layers", "I"),
    ("{arch}.feed_forward_length", "intermediate_size", "I"),
    ("{arch}.attention.head_count", "num_attention_heads", "I"),
    ("{arch}.attention.head_count_kv", "num_key_value_heads", "I"),
    ("{arch}.attention.layer_norm_rms_epsilon", "rms_norm_eps", "f"),
    ("{arch}.vocab_size", "vocab_size", "I"),
)
_SPECIAL_IDS = (("tokenizer.ggml.bos_token_id", "bos_token_id"),
                ("tokenizer.ggml.eos_token_id", "eos_token_id"),
                ("tokenizer.ggml.padding_token_id", "pad_token_id"),
                ("tokenizer.ggml.unknown_token_id", "unk_token_id"))

_BLK = re.compile(r"blk\.(\d+)\.(.+)\.(weight|bias)")
_TOP = re.compile(r"(.+)\.(weight|bias)")
_HF_LAYER = re.compile(r"(?:model\.)?layers\.(\d+)\.(.+)\.(weight|bias)")


def _arch(name) -> Arch:
    if name not in ARCHS:
        raise UnsupportedModelError(
            f"GGUF architecture {name!r} is not supported; supported: {', '.join(ARCHS)} "
            "(Llama-family decoders); convert the original Hugging Face checkpoint instead")
    return ARCHS[name]


def hf_name(arch: str, name: str) -> str | None:
    """The Hugging Face name of GGUF tensor ``name`` (``None`` if no table row maps it)."""
    m = _BLK.fullmatch(name)
    if m is not None:
        leaf = _arch(arch).layer_names().get(m.group(2))
        return None if leaf is None else f"model.layers.{m.group(1)}.{leaf}.{m.group(3)}"
    m = _TOP.fullmatch(name)
    if m is not None and m.group(1) in _GLOBAL_NAMES:
        return f"{_GLOBAL_NAMES[m.group(1)]}.{m.group(2)}"
    return None


def gguf_name(arch: str, name: str) -> str | None:
    """The GGUF name of Hugging Face tensor ``name`` (the inverse of :func:`hf_name`)."""
    m = _HF_LAYER.fullmatch(name)
    if m is not None:
        inverse = {v: k for k, v in _arch(arch).layer_names().items()}
        leaf = inverse.get(m.group(2))
        return None if leaf is None else f"blk.{m.group(1)}.{leaf}.{m.group(3)}"
    m = _TOP.fullmatch(name)
    inverse = {v: k for k, v in _GLOBAL_NAMES.items()}
    stem = None if m is None else ("model." + m.group(1) if m.group(1) in ("embed_tokens", "norm")
                                   else m.group(1))
    if stem in inverse:
        return f"{inverse[stem]}.{m.group(2)}"
    return None


# -- llama.cpp's RoPE row order ------------------------------------------------------------
def to_gguf_rows(w: np.ndarray, heads: int) -> np.ndarray:
    """Q/K rows from Hugging Face's rotate-half order to llama.cpp's interleaved pairs.

    Within each head, HF row ``s * head_dim/2 + j`` (``s`` in 0, 1) becomes row
    ``2 j + s``: the two members of a rotation pair become neighbours.
    """
    half = w.shape[0] // heads // 2
    return w.reshape(heads, 2, half, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def to_hf_rows(w: np.ndarray, heads: int) -> np.ndarray:
    """The inverse of :func:`to_gguf_rows` (what transformers' GGUF loader undoes)."""
    half = w.shape[0] // heads // 2
    return w.reshape(heads, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _gguf_row(row: int, head_dim: int) -> int:
    """Where HF row ``row`` of a permuted Q/K tensor lives in the GGUF layout."""
    h, r = divmod(row, head_dim)
    s, j = divmod(r, head_dim // 2)
    return h * head_dim + 2 * j + s


# -- the header -----------------------------------------------------------------------------
_MAGIC = b"GGUF"
_STRING, _ARRAY = 8, 9
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
            12: "d"}
_MAX_DIMS = 4
F32, F16, Q8_0, F64, BF16 = 0, 1, 8, 28, 30
_PLAIN = {F32: "<f4", F16: "<f2", F64: "<f8", 24: "i1", 25: "<i2", 26: "<i4", 27: "<i8"}


@dataclass(frozen=True)
class GGUFTensor:
    """One tensor of a GGUF file as its header describes it (GGUF dimension order)."""

    name: str
    dims: tuple
    qtype: int
    offset: int
    nbytes: int

    @property
    def shape(self) -> tuple:
        """The NumPy (and Hugging Face) shape: the GGUF dimensions reversed."""
        return tuple(reversed(self.dims))


class _Cursor:
    """Bounds-checked little-endian reads from a buffer; every failure is one clear error."""

    def __init__(self, buf, path: Path):
        self.buf, self.pos, self.size, self.path = buf, 0, len(buf), path

    def error(self, what: str) -> UnsupportedModelError:
        return UnsupportedModelError(
            f"{self.path} is not a readable GGUF file: {what} (at byte {self.pos} of "
            f"{self.size}); expected a complete GGUF v2/v3 file (re-download or re-convert it "
            "with llama.cpp's convert_hf_to_gguf.py)")

    def take(self, fmt: str):
        n = struct.calcsize("<" + fmt)
        if self.pos + n > self.size:
            raise self.error("the header ends early")
        value = struct.unpack_from("<" + fmt, self.buf, self.pos)[0]
        self.pos += n
        return value

    def string(self) -> str:
        n = self.take("Q")
        if n > self.size - self.pos:
            raise self.error(f"a string claims {n} bytes, more than the file holds")
        raw = self.buf[self.pos:self.pos + n]
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.error("a string is not valid UTF-8") from None

    def value(self, vtype: int):
        if vtype == _STRING:
            return self.string()
        if vtype in _SCALARS:
            return self.take(_SCALARS[vtype])
        if vtype == _ARRAY:
            return self.array()
        raise self.error(f"unknown metadata value type {vtype}")

    def array(self) -> list:
        sub, n = self.take("I"), self.take("Q")
        if sub == _ARRAY or (sub != _STRING and sub not in _SCALARS):
            raise self.error(f"an array of value type {sub} (nested or unknown) is not supported")
        least = 8 if sub == _STRING else struct.calcsize("<" + _SCALARS[sub])
        if n * least > self.size - self.pos:
            raise self.error(f"an array claims {n} items, more than the file holds")
        if sub == _STRING:
            return [self.string() for _ in range(n)]
        fmt = f"<{n}{_SCALARS[sub]}"
        values = list(struct.unpack_from(fmt, self.buf, self.pos))
        self.pos += struct.calcsize(fmt)
        return values


def _counts(cur: _Cursor) -> tuple[int, int]:
    if bytes(cur.buf[:4]) != _MAGIC:
        raise cur.error("it does not start with the GGUF magic bytes")
    cur.pos = 4
    version = cur.take("I")
    if version not in (2, 3):
        raise cur.error(f"GGUF version {version} is not supported (expected 2 or 3; big-endian "
                        "files read as a huge version)")
    n_tensors, n_kv = cur.take("Q"), cur.take("Q")
    left = cur.size - cur.pos
    if n_tensors > left // 24 or n_kv > left // 13:
        raise cur.error(f"it claims {n_tensors} tensors and {n_kv} metadata keys, more than a "
                        f"file of {cur.size} bytes can describe")
    return n_tensors, n_kv


def _metadata(cur: _Cursor, n_kv: int) -> tuple[dict, dict]:
    meta, types = {}, {}
    for _ in range(n_kv):
        key = cur.string()
        vtype = cur.take("I")
        start = cur.pos
        value = cur.value(vtype)
        if key in meta:
            raise cur.error(f"metadata key {key!r} appears twice")
        meta[key] = value
        sub = struct.unpack_from("<I", cur.buf, start)[0] if vtype == _ARRAY else None
        types[key] = (vtype, sub)
    return meta, types


def _tensor_info(cur: _Cursor, sizes: dict) -> GGUFTensor:
    name = cur.string()
    n_dims = cur.take("I")
    if not 1 <= n_dims <= _MAX_DIMS:
        raise cur.error(f"tensor {name!r} claims {n_dims} dimensions (expected 1 to {_MAX_DIMS})")
    dims = tuple(cur.take("Q") for _ in range(n_dims))
    qtype, offset = cur.take("I"), cur.take("Q")
    if qtype not in sizes:
        raise UnsupportedModelError(
            f"tensor {name!r} of {cur.path} has ggml type id {qtype}, which the installed gguf "
            "package does not know; upgrade it (pip install -U gguf) or re-quantise the model")
    block, tsize = sizes[qtype]
    if min(dims) < 1 or dims[0] % block:
        raise cur.error(f"tensor {name!r} has dimensions {list(dims)} (each must be at least 1, "
                        f"and the first a multiple of the {block}-value block)")
    return GGUFTensor(name, dims, qtype, offset, math.prod(dims) // block * tsize)


def _place(cur: _Cursor, infos: list, meta: dict, types: dict) -> list:
    align = meta.get("general.alignment", 32)
    if "general.alignment" in meta and (types["general.alignment"][0] != 4 or align < 1
                                        or align & (align - 1)):
        raise cur.error(f"general.alignment {align!r} is not a power of two (uint32)")
    start = -(-cur.pos // align) * align
    placed, seen = [], set()
    for t in infos:
        if t.name in seen:
            raise cur.error(f"tensor {t.name!r} appears twice")
        seen.add(t.name)
        if t.offset % align or start + t.offset + t.nbytes > cur.size:
            raise cur.error(
                f"tensor {t.name!r} claims {t.nbytes} bytes at data offset {t.offset}, beyond the "
                "end of the file or off its alignment: the file is truncated or its metadata "
                "corrupt")
        placed.append(GGUFTensor(t.name, t.dims, t.qtype, start + t.offset, t.nbytes))
    return placed


def parse_header(path) -> tuple[dict, dict, list]:
    """``(meta, meta_types, tensors)`` of a GGUF file, validated against its size.

    ``meta`` maps keys to Python values (arrays as lists), ``meta_types`` keys to
    ``(value type, array item type or None)``, ``tensors`` lists
    :class:`GGUFTensor` records with absolute data offsets. Nothing but the
    header is read; nothing is allocated from a count the file claims before
    that count is checked against the bytes that are there.
    """
    from gguf import GGML_QUANT_SIZES

    path = Path(path)
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size < 24:
            raise _Cursor(b"", path).error("the file is shorter than a GGUF header")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            cur = _Cursor(buf, path)
            n_tensors, n_kv = _counts(cur)
            meta, types = _metadata(cur, n_kv)
            sizes = {int(k): v for k, v in GGML_QUANT_SIZES.items()}
            infos = [_tensor_info(cur, sizes) for _ in range(n_tensors)]
            return meta, types, _place(cur, infos, meta, types)


# -- decoding -----------------------------------------------------------------------------
def _dtype_name(qtype: int) -> str:
    """The dtype a tensor is read in: its own for plain types, float32 when dequantised."""
    if qtype == BF16:
        return "bfloat16"
    return np.dtype(_PLAIN[qtype]).name if qtype in _PLAIN else "float32"


def _type_name(qtype: int) -> str:
    from gguf import GGMLQuantizationType

    return GGMLQuantizationType(qtype).name


def _check_decodable(qtype: int, name: str, path) -> None:
    if qtype in _PLAIN or qtype == BF16:
        return
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
    from gguf.quants import dequantize

    _, tsize = GGML_QUANT_SIZES[GGMLQuantizationType(qtype)]
    try:
        dequantize(np.zeros((1, tsize), np.uint8), GGMLQuantizationType(qtype))
    except NotImplementedError:
        raise UnsupportedModelError(
            f"tensor {name!r} of {path} is stored as {_type_name(qtype)}, which the installed gguf "
            "package cannot dequantise; re-quantise the model to a supported type (F16, Q8_0, "
            "Q4_K, ...) with llama-quantize, or upgrade gguf") from None


def _decode(raw: np.ndarray, qtype: int) -> np.ndarray:
    """Rows of raw bytes (``(rows, row_bytes)`` uint8) as values, in a new array."""
    if qtype in _PLAIN:
        return raw.view(_PLAIN[qtype]).astype(np.dtype(_PLAIN[qtype]).newbyteorder("="))
    if qtype == BF16:
        return raw.view("<u2").astype(np.uint16).view(numpy_dtype("bfloat16"))
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize

    return dequantize(raw, GGMLQuantizationType(qtype))


# -- the config ------------------------------------------------------------------------------
def _rope(meta: dict, arch: str) -> dict:
    def key(k):
        return meta.get(k.format(arch=arch))

    rope = {"rope_type": "default"}
    if key("{arch}.rope.freq_base") is not None:
        rope["rope_theta"] = float(key("{arch}.rope.freq_base"))
    kind, factor = key("{arch}.rope.scaling.type"), key("{arch}.rope.scaling.factor")
    if kind in ("linear", "yarn") and factor:
        rope.update(rope_type=kind, factor=float(factor))
        if key("{arch}.rope.scaling.original_context_length"):
            rope["original_max_position_embeddings"] = int(
                key("{arch}.rope.scaling.original_context_length"))
    return rope


def _head_dim(meta: dict, arch_name: str, cfg: dict) -> None:
    key_length = meta.get(f"{arch_name}.attention.key_length")
    rope_dim = meta.get(f"{arch_name}.rope.dimension_count")
    if _arch(arch_name).permute_qk:  # llama: RoPE spans the whole head (as transformers reads it)
        key_length = key_length or rope_dim
    if key_length:
        cfg["head_dim"] = int(key_length)
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    if rope_dim and rope_dim != head_dim and not _arch(arch_name).permute_qk:
        cfg["partial_rotary_factor"] = rope_dim / head_dim


def gguf_config(meta: dict, names, *, dtype: str = "float32") -> dict:
    """A Hugging Face config dict from GGUF metadata and the file's tensor names.

    Examples
    --------
    >>> meta = {"general.architecture": "llama", "llama.block_count": 2,
    ...         "llama.embedding_length": 8, "llama.feed_forward_length": 16,
    ...         "llama.attention.head_count": 2, "llama.rope.freq_base": 10000.0}
    >>> cfg = gguf_config(meta, ["token_embd.weight"])
    >>> cfg["num_hidden_layers"], cfg["num_key_value_heads"], cfg["tie_word_embeddings"]
    (2, 2, True)
    >>> cfg["rope_parameters"]
    {'rope_type': 'default', 'rope_theta': 10000.0}
    """
    arch_name = meta.get("general.architecture")
    arch = _arch(arch_name)
    cfg = {"model_type": arch.model_type, "architectures": [arch.hf_class], "dtype": dtype}
    for key, hf, _ in _CONFIG_KEYS + arch.config_keys:
        if meta.get(key.format(arch=arch_name)) is not None:
            cfg[hf] = meta[key.format(arch=arch_name)]
    need = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
    missing = [gguf for gguf, hf, _ in _CONFIG_KEYS if hf in need and hf not in cfg]
    if missing:
        raise UnsupportedModelError(
            f"the GGUF metadata lacks {', '.join(k.format(arch=arch_name) for k in missing)}; "
            "expected a model file from llama.cpp's convert_hf_to_gguf.py (re-convert it)")
    cfg.setdefault("num_key_value_heads", cfg["num_attention_heads"])
    _head_dim(meta, arch_name, cfg)
    cfg["rope_parameters"] = _rope(meta, arch_name)
    if "vocab_size" not in cfg and meta.get("tokenizer.ggml.tokens"):
        cfg["vocab_size"] = len(meta["tokenizer.ggml.tokens"])
    names = set(names)
    cfg["tie_word_embeddings"] = "output.weight" not in names
    for key, hf in _SPECIAL_IDS:
        if meta.get(key) is not None:
            cfg[hf] = int(meta[key])
    if arch.model_type == "llama":
        cfg["attention_bias"] = any(n.endswith(("attn_q.bias", "attn_k.bias")) for n in names)
        cfg["mlp_bias"] = any(n.endswith(("ffn_up.bias", "ffn_down.bias")) for n in names)
    return cfg


def generation_config(meta: dict) -> dict:
    """A ``generation_config.json`` dict from the token ids and sampling keys ({} if none)."""
    out = {hf: int(meta[key]) for key, hf in _SPECIAL_IDS[:3] if meta.get(key) is not None}
    sampling = {"general.sampling.temp": "temperature", "general.sampling.top_k": "top_k",
                "general.sampling.top_p": "top_p", "general.sampling.min_p": "min_p",
                "general.sampling.penalty_repeat": "repetition_penalty"}
    chosen = {hf: meta[key] for key, hf in sampling.items() if meta.get(key) is not None}
    if chosen:
        out.update(chosen, do_sample=True)
    return out


# -- the reader -------------------------------------------------------------------------------
def _unmapped_error(path: Path, arch: str, names: list) -> UnsupportedModelError:
    hint = ""
    if any(n.startswith(("rope_freqs", "rope_factors")) for n in names):
        hint = (" (rope_freqs / rope_factors_* hold RoPE scaling factors, as Llama 3.1+ and "
                "Phi-3 128k files do; these are not supported yet)")
    return UnsupportedModelError(
        f"{path} holds tensors with no Hugging Face name in the {arch!r} table: "
        f"{', '.join(names[:6])}{' ...' if len(names) > 6 else ''}{hint}; resize the original "
        "Hugging Face checkpoint instead")


def _plain(config) -> dict:
    from .hf import _plain_config

    return _plain_config(config) or {}


class GGUFFileReader:
    """A GGUF file opened for lazy reading (see the module docstring)."""

    format = "gguf"
    folder = None

    def __init__(self, path, *, config=None):
        path = Path(path)
        if not path.is_file():
            raise UnsupportedModelError(f"source {str(path)!r} does not exist or is not a file; "
                                        "expected a .gguf file (check the path)")
        self.path = path
        self.meta, self.meta_types, tensors = parse_header(path)
        if int(self.meta.get("split.count", 1) or 1) > 1:
            raise UnsupportedModelError(
                f"{path} is one part of a split GGUF model; merge the parts first "
                "(llama-gguf-split --merge first-part.gguf merged.gguf) and resize the merged file")
        self.arch = self.meta.get("general.architecture")
        self._arch = _arch(self.arch)
        self._by_name = self._map(tensors)
        for qtype in sorted({t.qtype for t in tensors}):
            _check_decodable(qtype, next(t.name for t in tensors if t.qtype == qtype), path)
        derived = gguf_config(self.meta, [t.name for t in tensors], dtype=self._main_dtype())
        self.config = {**derived, **_plain(config)}
        self._data = None

    def _map(self, tensors) -> dict:
        out, unmapped = {}, []
        for t in tensors:
            name = hf_name(self.arch, t.name)
            if name is None:
                unmapped.append(t.name)
            else:
                out[name] = t
        if unmapped:
            raise _unmapped_error(self.path, self.arch, unmapped)
        if not out:
            raise UnsupportedModelError(f"{self.path} holds no weights (a vocabulary-only GGUF?); "
                                        "point at the model file")
        return out

    def _main_dtype(self) -> str:
        kinds = [_dtype_name(t.qtype) for t in self._by_name.values() if len(t.dims) > 1]
        return max(set(kinds), key=kinds.count) if kinds else "float32"

    def tensors(self) -> dict:
        return {n: TensorInfo(n, t.shape, _dtype_name(t.qtype)) for n, t in self._by_name.items()}

    def _raw(self, t: GGUFTensor) -> np.ndarray:
        if self._data is None:
            self._data = np.memmap(self.path, dtype=np.uint8, mode="r")
        data = self._data[t.offset:t.offset + t.nbytes]
        return data.reshape(1 if len(t.dims) == 1 else t.shape[0], -1)

    def _rows(self, t: GGUFTensor, start: int, stop: int) -> np.ndarray:
        out = _decode(self._raw(t)[start:stop], t.qtype)
        return out.reshape((stop - start, *t.shape[1:]))

    def _heads(self, name: str) -> int:
        """Heads of a Q/K tensor that llama.cpp stored in interleaved RoPE order (else 0)."""
        m = re.search(r"self_attn\.([qk])_proj\.(?:weight|bias)$", name)
        if not self._arch.permute_qk or m is None:
            return 0
        key = "num_attention_heads" if m.group(1) == "q" else "num_key_value_heads"
        heads = int(self.config[key])
        if self._by_name[name].shape[0] % (2 * heads):
            raise UnsupportedModelError(
                f"{name} has {self._by_name[name].shape[0]} rows, not a whole number of "
                f"even-sized heads for {key}={heads}; fix the config (config=)")
        return heads

    def _finish(self, name: str, x: np.ndarray) -> np.ndarray:
        shift = self._arch.norm_shift
        if shift and name.endswith("norm.weight"):
            return (x.astype(np.float32) - np.float32(shift)).astype(x.dtype)
        return x

    def read(self, name: str) -> np.ndarray:
        t = self._entry(name)
        if len(t.dims) == 1:
            x = _decode(self._raw(t), t.qtype).reshape(t.shape)
        else:
            x = self._rows(t, 0, t.shape[0])
        heads = self._heads(name)
        return self._finish(name, to_hf_rows(x, heads) if heads else x)

    def read_rows(self, name: str, start: int, stop: int) -> np.ndarray:
        t = self._entry(name)
        if not 0 <= start <= stop <= t.shape[0]:
            raise OptionError(f"rows {start}:{stop} of {name} are outside its {t.shape[0]} rows")
        if len(t.dims) == 1:
            return self.read(name)[start:stop]
        heads = self._heads(name)
        if not heads:
            return self._finish(name, self._rows(t, start, stop))
        hd = t.shape[0] // heads
        h0, h1 = start // hd, -(-stop // hd)
        block = to_hf_rows(self._rows(t, h0 * hd, h1 * hd), h1 - h0)
        return self._finish(name, block[start - h0 * hd:stop - h0 * hd].copy())

    def _entry(self, name: str) -> GGUFTensor:
        try:
            return self._by_name[name]
        except KeyError:
            raise UnsupportedModelError(f"{self.path} has no tensor {name!r}; its tensors are "
                                        "listed by tensors()") from None

    def copy_extras(self, dest) -> list[str]:
        """Write a Hugging Face tokenizer and ``generation_config.json`` into ``dest``."""
        dest = Path(dest)
        written = []
        if self.meta.get("tokenizer.ggml.tokens"):
            written += _save_tokenizer(self.path, dest)
        gen = generation_config(self.meta)
        if gen:
            (dest / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
            written.append("generation_config.json")
        return sorted(set(written))

    def close(self) -> None:
        self._data = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_data"] = None  # reopened on first read (never pickle the memory map)
        return state


def _save_tokenizer(path: Path, dest: Path) -> list[str]:
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise UnsupportedModelError(
            "writing a Hugging Face tokenizer from a GGUF file needs transformers "
            "(pip install transformers)") from None
    try:
        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except (ValueError, KeyError, OSError) as exc:
        raise UnsupportedModelError(
            f"transformers cannot build a tokenizer from {path} ({exc}); write a GGUF output "
            "(out ending in .gguf), which keeps the file's own tokenizer") from None
    return [Path(f).name for f in tok.save_pretrained(str(dest))]


def open_reader(source, *, config=None) -> GGUFFileReader:
    """A :class:`GGUFFileReader` for the ``.gguf`` file ``source``."""
    return GGUFFileReader(source, config=config)


# -- the tokenizer of a Hugging Face source ---------------------------------------------------
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
#: Split regexes of ``tokenizer.json`` -> llama.cpp's ``tokenizer.ggml.pre`` name.
_SPLITS = {_LLAMA3_SPLIT: "llama-bpe", _QWEN2_SPLIT: "qwen2"}
_STR, _I32, _BOOL, _U32 = 8, 5, 7, 4
_NORMAL, _CONTROL, _USER, _UNUSED = 1, 3, 4, 5


def _pre_name(pre) -> str | None:
    """llama.cpp's pre-tokenizer name for a ``tokenizer.json`` pre_tokenizer (None: unknown)."""
    steps = (pre or {}).get("pretokenizers") if (pre or {}).get("type") == "Sequence" else [pre]
    steps = [s for s in steps or [] if s]
    kinds = [s.get("type") for s in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and \
            steps[1].get("use_regex", True):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and not steps[1].get("use_regex", True):
        return _SPLITS.get((steps[0].get("pattern") or {}).get("Regex"))
    return None


def _vocab(model: dict, added: list, vocab_size) -> tuple[list, list]:
    ids = dict(model.get("vocab") or {})
    ids.update({a["content"]: a["id"] for a in added})
    n = max(max(ids.values(), default=-1) + 1, int(vocab_size or 0))
    tokens, types = [f"[PAD{i}]" for i in range(n)], [_UNUSED] * n
    for token, i in (model.get("vocab") or {}).items():
        tokens[i], types[i] = token, _NORMAL
    for a in added:
        tokens[a["id"]], types[a["id"]] = a["content"], _CONTROL if a.get("special") else _USER
    return tokens, types


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (ValueError, UnicodeDecodeError):
        raise UnsupportedModelError(f"{path} is not valid JSON; re-save the tokenizer "
                                    "(tokenizer.save_pretrained(dir))") from None


def _special_ids(config: dict, tc: dict, tokens: list) -> dict:
    index = {t: i for i, t in enumerate(tokens)}
    out = {}
    for key, hf in _SPECIAL_IDS:
        value = config.get(hf)
        if isinstance(value, list):
            value = value[0] if value else None
        if value is None:
            token = tc.get(hf.replace("_id", ""))
            token = token.get("content") if isinstance(token, dict) else token
            value = index.get(token)
        if value is not None:
            out[key] = (int(value), _U32, None)
    return out


def tokenizer_metadata(folder, config: dict) -> dict:
    """GGUF tokenizer keys ``{key: (value, value type, item type)}`` from a model folder.

    Byte-level BPE (GPT-2 style: GPT-2, SmolLM, Llama 3, Qwen2 pre-tokenizers)
    ``tokenizer.json`` files are converted; anything else is refused with the fix.
    """
    path = Path(folder) / "tokenizer.json" if folder is not None else None
    if path is None or not path.is_file():
        raise UnsupportedModelError(
            "a GGUF output needs the model's tokenizer, but the source has no tokenizer.json; "
            "resize a model directory that holds one, or write a Hugging Face directory (an out "
            "path without .gguf) and convert it with llama.cpp's convert_hf_to_gguf.py")
    tj = _read_json(path)
    model, pre = tj.get("model") or {}, _pre_name(tj.get("pre_tokenizer"))
    if model.get("type") != "BPE" or model.get("byte_fallback") or pre is None:
        raise UnsupportedModelError(
            f"{path} holds a {model.get('type')} tokenizer (pre-tokenizer "
            f"{(tj.get('pre_tokenizer') or {}).get('type')}); the GGUF writer converts byte-level "
            "BPE (GPT-2 style) tokenizers only; write a Hugging Face directory instead and "
            "convert it with llama.cpp's convert_hf_to_gguf.py")
    tokens, types = _vocab(model, tj.get("added_tokens") or [], config.get("vocab_size"))
    tc = _read_json(Path(folder) / "tokenizer_config.json")
    kv = {"tokenizer.ggml.model": ("gpt2", _STR, None), "tokenizer.ggml.pre": (pre, _STR, None),
          "tokenizer.ggml.tokens": (tokens, _ARRAY, _STR),
          "tokenizer.ggml.token_type": (types, _ARRAY, _I32)}
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
    if merges:
        kv["tokenizer.ggml.merges"] = (merges, _ARRAY, _STR)
    kv.update(_special_ids(config, tc, tokens))
    kv["tokenizer.ggml.add_bos_token"] = (bool(tc.get("add_bos_token", False)), _BOOL, None)
    if "add_eos_token" in tc:
        kv["tokenizer.ggml.add_eos_token"] = (bool(tc["add_eos_token"]), _BOOL, None)
    template = tc.get("chat_template")
    jinja = Path(folder) / "chat_template.jinja"
    template = template if isinstance(template, str) else (
        jinja.read_text(encoding="utf-8") if jinja.is_file() else None)
    if template:
        kv["tokenizer.chat_template"] = (template, _STR, None)
    return kv


# -- the metadata of an output ----------------------------------------------------------------
_NOT_COPIED = ("general.name", "general.description", "general.size_label", "general.file_type",
               "general.quantization_version", "general.alignment", "general.architecture",
               "general.base_model.", "split.")
#: Per-architecture keys that depend on the sizes: never copied, recomputed for the target.
_SIZED = ("attention.key_length", "attention.value_length", "rope.dimension_count",
          "attention.key_length_swa", "attention.value_length_swa", "rope.dimension_count_swa")
_FILE_TYPES = {F32: 0, F16: 1, Q8_0: 7, BF16: 32}
_FMT_TYPES = {"I": _U32, "f": 6}


def _copied(reader, arch_name: str) -> dict:
    """Metadata a GGUF source passes on: lineage, tokenizer, its architecture's other keys."""
    meta, types = getattr(reader, "meta", None) or {}, getattr(reader, "meta_types", None) or {}
    if not types:  # not a GGUF source (nor one carried through, e.g. rotated in memory)
        return {}
    same_arch = meta.get("general.architecture") == arch_name
    out = {}
    sized = tuple(f"{arch_name}.{k}" for k in _SIZED)
    for key, value in meta.items():
        if key.startswith(_NOT_COPIED) or key in sized:
            continue
        if key.startswith(("general.", "tokenizer.")) or (same_arch and key.startswith(arch_name + ".")):
            out[key] = (value, *types[key])
    return out


def _rope_theta(config: dict):
    rope = config.get("rope_parameters") or {}
    rope = rope.get("full_attention", rope) if isinstance(rope, dict) else {}
    return config.get("rope_theta") or rope.get("rope_theta")


def _size_keys(arch_name: str, config: dict) -> dict:
    arch, kv = _arch(arch_name), {}
    for key, hf, fmt in _CONFIG_KEYS + arch.config_keys:
        if config.get(hf) is not None:
            value = float(config[hf]) if fmt == "f" else int(config[hf])
            kv[key.format(arch=arch_name)] = (value, _FMT_TYPES[fmt], None)
    heads, hidden = int(config["num_attention_heads"]), int(config["hidden_size"])
    head_dim = int(config.get("head_dim") or hidden // heads)
    rotary = float(config.get("partial_rotary_factor") or 1.0)
    kv[f"{arch_name}.rope.dimension_count"] = (int(head_dim * rotary), _U32, None)
    if arch.head_dim_keys or head_dim * heads != hidden:
        kv[f"{arch_name}.attention.key_length"] = (head_dim, _U32, None)
        kv[f"{arch_name}.attention.value_length"] = (head_dim, _U32, None)
    if _rope_theta(config) is not None:
        kv[f"{arch_name}.rope.freq_base"] = (float(_rope_theta(config)), 6, None)
    rope = config.get("rope_parameters") or {}
    if rope.get("rope_type") in ("linear", "yarn") and rope.get("factor"):
        kv[f"{arch_name}.rope.scaling.type"] = (rope["rope_type"], _STR, None)
        kv[f"{arch_name}.rope.scaling.factor"] = (float(rope["factor"]), 6, None)
        if rope.get("original_max_position_embeddings"):
            kv[f"{arch_name}.rope.scaling.original_context_length"] = (
                int(rope["original_max_position_embeddings"]), _U32, None)
    return kv


def _general(plan: OutputPlan, file_type: int) -> dict:
    reader, card = plan.reader, dict(plan.card or {})
    meta = getattr(reader, "meta", None) or {}
    base = meta.get("general.name") or card.get("base_model") or "model"
    changed = dict(plan.sizes or {}) != dict(plan.source_sizes or {})
    sizes = ", ".join(f"{k} {plan.source_sizes.get(k)} -> {v}" for k, v in (plan.sizes or {}).items()
                      if plan.source_sizes.get(k) != v)
    how = f"{card.get('method', 'bot')} (wavelet {card.get('wavelet', '-')}, gain {card.get('gain', '-')})"
    text = (f"Resized with bot-scaling (botcore) from {base} by {how}: {sizes or 'same sizes'}. "
            "This model needs training before use.")
    return {"general.name": (f"{base} (resized)" if changed else base, _STR, None),
            "general.description": (text, _STR, None),
            "general.base_model.count": (1, _U32, None),
            "general.base_model.0.name": (str(base), _STR, None),
            "general.file_type": (file_type, _U32, None),
            "general.quantization_version": (2, _U32, None)}


def gguf_metadata(plan: OutputPlan, arch_name: str, config: dict, *, file_type: int = 0) -> dict:
    """Every metadata key of an output: ``{key: (value, value type, array item type)}``.

    Copied from a GGUF source (lineage, tokenizer, its architecture's other keys),
    then overwritten with the target's sizes (:data:`_CONFIG_KEYS`, RoPE, head
    dims) and a ``general.name``/``description`` that say it was resized. A Hugging
    Face source gets its tokenizer from ``tokenizer.json`` (:func:`tokenizer_metadata`).
    """
    kv = {"general.type": ("model", _STR, None)}
    kv.update(_copied(plan.reader, arch_name))
    kv.update(_general(plan, file_type))
    kv.update(_size_keys(arch_name, config))
    if not any(k.startswith("tokenizer.ggml.") for k in kv):
        kv.update(tokenizer_metadata(getattr(plan.reader, "folder", None), config))
    return kv


# -- the writer ---------------------------------------------------------------------------------
#: ``quantize=`` choices of the GGUF writer (None: each tensor in its planned dtype).
QUANTIZE = (None, "q8_0")
_CONFIG_NEEDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                 "rms_norm_eps", "max_position_embeddings", "vocab_size", "tie_word_embeddings")


def _write_arch(config: dict) -> str:
    kind = config.get("model_type")
    if kind not in _WRITE_ARCHS:
        raise UnsupportedModelError(
            f"a GGUF output cannot hold a {kind!r} model; GGUF is written for "
            f"{', '.join(sorted(_WRITE_ARCHS))} (write a Hugging Face directory instead: an out "
            "path without .gguf)")
    return _WRITE_ARCHS[kind]


def _complete(config: dict) -> dict:
    """``config`` with the keys the metadata needs, from transformers' class defaults if absent."""
    missing = [k for k in _CONFIG_NEEDS if config.get(k) is None]
    if _rope_theta(config) is None:
        missing.append("rope_parameters")
    if not missing:
        return dict(config)
    try:
        from transformers import AutoConfig

        defaults = AutoConfig.for_model(config["model_type"]).to_dict()
    except (ImportError, ValueError, KeyError):
        defaults = {}
    out = {**{k: defaults.get(k) for k in missing}, **{k: v for k, v in config.items() if v is not None}}
    absent = [k for k in _CONFIG_NEEDS[:4] if out.get(k) is None]
    if absent:
        raise UnsupportedModelError(f"the target config lacks {absent}; pass the model's full "
                                    "Hugging Face config")
    out.setdefault("num_key_value_heads", out["num_attention_heads"])
    return out


@dataclass
class _Slot:
    """One output tensor: where its bytes go and how they are encoded."""

    name: str
    gguf: str
    shape: tuple
    dtype: str
    qtype: int
    heads: int = 0
    shift: float = 0.0
    alias: bool = False
    offset: int = 0
    done: np.ndarray | None = None

    @property
    def nbytes(self) -> int:
        n = math.prod(self.shape)
        return n // 32 * 34 if self.qtype == Q8_0 else n * {F32: 4, F16: 2, BF16: 2}[self.qtype]

    @property
    def row_bytes(self) -> int:
        return self.nbytes // self.shape[0]


def _out_type(t: TensorInfo, quantize) -> int:
    if t.dtype not in ("float32", "float16", "bfloat16", "float64"):
        raise UnsupportedModelError(f"tensor {t.name} is {t.dtype}; a GGUF output holds float "
                                    "weights (F32/F16/BF16/Q8_0)")
    if len(t.shape) == 1:
        return F32
    if quantize == "q8_0" and t.shape[-1] % 32 == 0:
        return Q8_0
    return {"float32": F32, "float64": F32, "float16": F16, "bfloat16": BF16}[t.dtype]


def _slots(plan: OutputPlan, arch_name: str, config: dict, quantize) -> list:
    arch, slots, unknown = _arch(arch_name), [], []
    for t in plan.tensors:
        g = gguf_name(arch_name, t.name)
        if g is None:
            unknown.append(t.name)
            continue
        s = _Slot(t.name, g, tuple(t.shape), t.dtype, _out_type(t, quantize))
        s.alias = g == "output.weight" and bool(config.get("tie_word_embeddings"))
        m = re.search(r"self_attn\.([qk])_proj\.(?:weight|bias)$", t.name)
        if arch.permute_qk and m is not None:
            s.heads = int(config["num_attention_heads" if m.group(1) == "q" else "num_key_value_heads"])
            if s.shape[0] % (2 * s.heads):
                raise UnsupportedModelError(f"{t.name} has {s.shape[0]} rows, not whole even-sized "
                                            f"heads for {s.heads} heads; GGUF needs an even head_dim")
        s.shift = arch.norm_shift if t.name.endswith("norm.weight") else 0.0
        slots.append(s)
    if unknown:
        raise UnsupportedModelError(
            f"no GGUF name for {', '.join(unknown[:6])} in the {arch_name!r} table; write a Hugging "
            "Face directory instead (an out path without .gguf)")
    return slots


def _file_type(slots: list) -> int:
    kinds = [s.qtype for s in slots if len(s.shape) > 1 and not s.alias]
    return _FILE_TYPES[max(set(kinds), key=kinds.count)] if kinds else 0


def _pad(n: int, align: int = 32) -> int:
    return -(-n // align) * align


class GGUFFileWriter:
    """A ``.gguf`` file being written (see the module docstring)."""

    def __init__(self, out, *, overwrite: bool = False, quantize=None):
        if quantize not in QUANTIZE:
            raise OptionError(f"quantize={quantize!r} is not offered for GGUF outputs; expected "
                              f"one of {QUANTIZE}")
        self.path = Path(out)
        self.overwrite, self.quantize = overwrite, quantize
        self.stage: Stage | None = None
        self._fd: int | None = None
        self._slots: dict = {}

    def begin(self, plan: OutputPlan) -> None:
        arch_name = _write_arch(plan.config)
        config = _complete(plan.config)
        slots = _slots(plan, arch_name, config, self.quantize)
        kv = gguf_metadata(plan, arch_name, config, file_type=_file_type(slots))
        need = sum(_pad(s.nbytes) for s in slots if not s.alias)
        self.stage = Stage(self.path, overwrite=self.overwrite, need_bytes=need)
        try:
            self._lay_out(arch_name, kv, slots)
        except OSError as exc:
            self.abort()
            raise output_error(exc, self.path) from None
        except BaseException:
            self.abort()
            raise
        self._slots = {s.name: s for s in slots}

    def _lay_out(self, arch_name: str, kv: dict, slots: list) -> None:
        """Write the header (metadata, tensor infos) and size the file; offsets into ``slots``."""
        from gguf import GGMLQuantizationType, GGUFValueType, GGUFWriter

        target = self.stage.target
        w = GGUFWriter(target, arch_name)
        for key, (value, vtype, sub) in kv.items():
            if key != "general.architecture":
                w.add_key_value(key, value, GGUFValueType(vtype),
                                None if sub is None else GGUFValueType(sub))
        stored = [s for s in slots if not s.alias]
        for s in stored:
            w.add_tensor_info(s.gguf, s.shape, np.dtype(np.float32), s.nbytes,
                              raw_dtype=GGMLQuantizationType(s.qtype))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        pos = _pad(w.fout[0].tell(), w.data_alignment)
        w.close()
        for s in stored:
            s.offset, pos = pos, pos + _pad(s.nbytes, w.data_alignment)
        os.truncate(target, pos)
        self._fd = os.open(target, os.O_WRONLY)

    def _slot(self, name: str, array: np.ndarray, start: int, rows: int | None) -> _Slot:
        s = self._slots.get(name)
        if s is None:
            raise OutputError(f"internal: {name} was not in the output plan")
        want = s.shape if rows is None else (rows, *s.shape[1:])
        if tuple(array.shape) != tuple(want) or array.dtype != numpy_dtype(s.dtype) or \
                start < 0 or start + want[0] > s.shape[0]:
            raise OutputError(f"internal: {name} written as {array.dtype}{list(array.shape)} at row "
                              f"{start}, planned {s.dtype}{list(s.shape)}")
        if s.done is None:
            s.done = np.zeros(s.shape[0], bool)
        return s

    def _encode(self, s: _Slot, a: np.ndarray, heads: int) -> np.ndarray:
        x = a.astype(np.float32) + np.float32(s.shift) if s.shift else a
        x = to_gguf_rows(x, heads) if heads else x
        if s.qtype == Q8_0:
            from gguf import GGMLQuantizationType
            from gguf.quants import quantize

            x = quantize(np.ascontiguousarray(x, dtype=np.float32), GGMLQuantizationType.Q8_0)
        elif s.qtype == BF16:
            x = x.astype(numpy_dtype("bfloat16")).view(np.uint16).astype("<u2")
        else:
            x = x.astype({F32: "<f4", F16: "<f2"}[s.qtype])
        return np.ascontiguousarray(x).reshape(-1).view(np.uint8)

    def _put(self, offset: int, data: np.ndarray) -> None:
        done = 0
        try:
            while done < data.size:
                done += os.pwrite(self._fd, data[done:done + 2**30], offset + done)
        except OSError as exc:
            raise output_error(exc, self.path) from None

    def write(self, name: str, array: np.ndarray) -> None:
        s = self._slot(name, array, 0, None)
        if not s.alias:
            self._put(s.offset, self._encode(s, array, s.heads))
        s.done[:] = True

    def write_rows(self, name: str, start: int, array: np.ndarray) -> None:
        s = self._slot(name, array, start, array.shape[0] if array.ndim else 0)
        n = array.shape[0]
        if s.alias:
            pass
        elif not s.heads or (start % (s.shape[0] // s.heads) == 0 and n % (s.shape[0] // s.heads) == 0):
            heads = n // (s.shape[0] // s.heads) if s.heads else 0
            self._put(s.offset + start * s.row_bytes, self._encode(s, array, heads))
        else:  # a tile that cuts a head: each row goes to its own permuted place
            hd = s.shape[0] // s.heads
            for i in range(n):
                row = _gguf_row(start + i, hd)
                self._put(s.offset + row * s.row_bytes, self._encode(s, array[i:i + 1], 0))
        s.done[start:start + n] = True

    def finish(self) -> Path:
        missing = [n for n, s in self._slots.items() if s.done is None or not s.done.all()]
        if missing:
            raise OutputError(f"internal: tensors never written (or only in part): {missing[:5]}")
        self._close()
        return self.stage.commit()

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def abort(self) -> None:
        self._close()
        if self.stage is not None:
            self.stage.abort()


def open_writer(out, *, overwrite: bool = False, quantize=None, **options) -> GGUFFileWriter:
    """A :class:`GGUFFileWriter` for the ``.gguf`` path ``out`` (``quantize``: see :data:`QUANTIZE`)."""
    if options:
        raise OptionError(f"options {sorted(options)} do not apply to a GGUF output; the GGUF "
                          f"writer takes quantize= (one of {QUANTIZE})")
    return GGUFFileWriter(out, overwrite=overwrite, quantize=quantize)
