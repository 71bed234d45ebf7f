"""Tests written against surviving mutants of the adapters tree (docs/testing.md, "Mutation testing").

Each test checks values, shapes or messages the unmutated code must produce; the docstring
names the mutants (``mutmut`` names, as in ``scripts/mutation.sh adapters``) it kills.
Several target helpers that the suite reaches only through tests in a fresh process (the
Keras tests), which mutmut cannot attribute to a function ("no tests").
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pytest

from botcore.errors import NonFiniteError, OutputError, ParameterKeyError, TargetError, UnsupportedModelError


def test_post_ln_rotation_of_a_both_sided_matrix():
    """The MLM head's transform is permuted on both sides: ``q.T @ a @ q``.
    Kills ``rotation.x__post_ln_one__mutmut_10`` (``"both"`` never matched: ``a @ q`` or the
    LayerNorm diagonal instead)."""
    from botcore.adapters.rotation import _post_ln_one

    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 4))
    q = np.eye(4)[[2, 0, 3, 1]]
    for name in ("cls.predictions.transform.dense.weight", "cls.predictions.transform.dense.bias_like"):
        np.testing.assert_array_equal(_post_ln_one("both", a, q, name), q.T @ a @ q)
    np.testing.assert_array_equal(_post_ln_one("reader", a, q, "x.weight"), a @ q)
    np.testing.assert_array_equal(_post_ln_one("writer", a, q, "x.weight"), q.T @ a)
    g = rng.normal(size=4)
    np.testing.assert_allclose(_post_ln_one("norm", g, q, "ln.weight"), np.diag(q.T @ np.diag(g) @ q))


def test_phi3_longrope_refuses_a_new_head_dim_naming_both_lists():
    """Kills ``phi3.xǁPhi3Adapterǁwrite_config__mutmut_33`` (the lists joined by ``XX and XX``)."""
    from botcore.adapters.registry import get_adapter

    config = {"hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
              "rope_scaling": {"type": "longrope", "short_factor": [1.0] * 8, "long_factor": [1.0] * 8}}
    msg = ("head_dim 16 -> 8: the config's LongRoPE short_factor and long_factor have one entry per "
           "rotary frequency of the source head_dim; keep head_dim=16 (give heads so that hidden / heads = 16)")
    with pytest.raises(TargetError, match="^" + re.escape(msg) + "$"):
        get_adapter("phi3").write_config(config, {"head_dim": 8, "layers": 2})


def test_a_block_with_nonfinite_values_is_refused_with_its_rows():
    """Kills ``tiles.x__read_block__mutmut_37`` (the message's last sentence)."""
    from botcore.adapters.tiles import _read_block

    rows = np.array([[1.0, np.nan, 2.0], [np.inf, 0.0, 1.0]], np.float32)
    reader = SimpleNamespace(read_rows=lambda native, start, stop: rows[start:stop])
    view = SimpleNamespace(native="w", rows=None)
    msg = ("the weights hold NaN or infinite values: 'w' (2 in rows 0..2); a resize would spread them "
           "into the output; repair the checkpoint, or pass allow_nonfinite=True (--allow-nonfinite) "
           "to keep them")
    with pytest.raises(NonFiniteError, match="^" + re.escape(msg) + "$"):
        _read_block(reader, view, 0, 2, (2, 3), np.float32, "w", False)
    kept = _read_block(reader, view, 0, 2, (2, 3), np.float32, "w", True)
    np.testing.assert_array_equal(kept, rows)


def test_a_truncated_safetensors_file_says_how_many_bytes_it_has(tmp_path):
    """Kills ``safetensors.x__raw_header__mutmut_15`` (the reason replaced by ``None``)."""
    from botcore.adapters.io.safetensors import _raw_header

    path = tmp_path / "model.safetensors"
    path.write_bytes(b"abc")
    msg = (f"{path} is not a readable safetensors file: it has only 3 bytes; expected a complete file "
           "written by safetensors (re-save or re-copy it)")
    with pytest.raises(UnsupportedModelError, match="^" + re.escape(msg) + "$"):
        _raw_header(path)


# -- keras helpers (the Keras tests run in fresh processes, out of mutmut's sight) ---------


def test_keras_names_are_stripped_or_left_alone():
    """Kills ``keras.x__strip__mutmut_11`` (no default: a name no entry spells raised StopIteration)."""
    from botcore.adapters.io.keras import _strip

    entries = {"encoder.layer.0.weight", "model.layers.0.weight"}
    assert _strip("bert.encoder.layer.0.weight", "bert", entries) == "encoder.layer.0.weight"
    assert _strip("layers.0.weight", "llama", entries) == "model.layers.0.weight"
    assert _strip("pooler.dense.weight", "bert", entries) == "pooler.dense.weight"


def test_keras_writer_checks_the_planned_rows():
    """Row writes inside the planned tensor pass, others are refused. Kills
    ``keras.xǁKerasWriterǁ_check__mutmut_6`` (every planned shape treated as a scalar) and
    ``..._mutmut_21`` (the row bound taken from the second axis)."""
    from botcore.adapters.io.base import TensorInfo
    from botcore.adapters.io.keras import KerasWriter

    w = object.__new__(KerasWriter)
    w._planned = {"t": TensorInfo("t", (4, 3), "float32")}
    w._check("t", np.zeros((2, 3), np.float32), 2)  # rows 2..3 of 4
    w._check("t", np.zeros((4, 3), np.float32), 0)
    msg = "internal: t written as float32[2, 3] at row 3, planned float32[4, 3]"
    with pytest.raises(OutputError, match="^" + re.escape(msg) + "$"):
        w._check("t", np.zeros((2, 3), np.float32), 3)
    with pytest.raises(OutputError, match=re.escape("written as float64[2, 3] at row 0")):
        w._check("t", np.zeros((2, 3), np.float64), 0)
    with pytest.raises(OutputError, match=r"^internal: u is not in the plan$"):
        w._check("u", np.zeros((2, 3), np.float32), 0)


def test_a_tied_head_without_its_embedding_is_refused():
    """A tied LM head needs the token embedding it shares. Kills ``rotation.x__tied_head__mutmut_79``
    (the message upper-cased)."""
    from botcore.adapters.rotation import _tied_head

    msg = ("rotate=: the LM head is tied to the token embedding, but the token embedding is missing "
           "from the checkpoint")
    with pytest.raises(UnsupportedModelError, match="^" + re.escape(msg) + "$"):
        _tied_head({"tie_word_embeddings": True}, {}, "llama", True)
    emb = np.arange(6.0).reshape(3, 2)
    params = {"model.embed_tokens.weight": emb, "lm_head.weight": emb.copy()}
    assert _tied_head({}, params, "llama", None) == ("model.embed_tokens.weight", "lm_head.weight")
    assert _tied_head({}, {**params, "lm_head.weight": emb + 1}, "llama", None) is None
    assert _tied_head({}, params, "bert", None) is None


def test_jax_arrays_come_back_as_numpy_with_their_like():
    """Kills ``_arrays.x_to_numpy__mutmut_80`` (the jax branch widened ``None``)."""
    jnp = pytest.importorskip("jax.numpy")
    from botcore.adapters._arrays import from_numpy, to_numpy

    x = jnp.asarray(np.array([[1.5, -2.0], [0.25, 3.0]], np.float32)).astype(jnp.bfloat16)
    a, like = to_numpy(x)
    assert a.dtype == np.float32 and like.framework == "jax" and like.dtype == "bfloat16"
    np.testing.assert_array_equal(a, [[1.5, -2.0], [0.25, 3.0]])
    back = from_numpy(a * 2, like)
    assert back.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(back, np.float32), [[3.0, -4.0], [0.5, 6.0]])


def test_progress_is_called_once_per_signal_with_its_name():
    """``progress(done, total, signal_name)`` after each signal, in memory. Kills
    ``pipeline.x_run__mutmut_26`` (the callback dropped) and ``execute.x_run_local__mutmut_34``
    (called without the signal's name)."""
    from botcore.adapters import resize_model

    cfg = {"model_type": "bert", "num_hidden_layers": 2, "hidden_size": 8, "num_attention_heads": 2,
           "intermediate_size": 16, "vocab_size": 5, "max_position_embeddings": 4, "type_vocab_size": 2}
    shapes = {"embeddings.word_embeddings.weight": (5, 8), "embeddings.position_embeddings.weight": (4, 8),
              "embeddings.token_type_embeddings.weight": (2, 8), "embeddings.LayerNorm.weight": (8,),
              "embeddings.LayerNorm.bias": (8,)}
    for i in range(2):
        for n, s in [("attention.self.query", (8, 8)), ("attention.self.key", (8, 8)),
                     ("attention.self.value", (8, 8)), ("attention.output.dense", (8, 8)),
                     ("intermediate.dense", (16, 8)), ("output.dense", (8, 16))]:
            shapes[f"encoder.layer.{i}.{n}.weight"] = s
            shapes[f"encoder.layer.{i}.{n}.bias"] = s[:1]
        for n in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes[f"encoder.layer.{i}.{n}.weight"] = shapes[f"encoder.layer.{i}.{n}.bias"] = (8,)
    rng = np.random.default_rng(1)
    params = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    calls = []
    resize_model(params, {"hidden": 4}, config=cfg, progress=lambda *a: calls.append(a))
    total = calls[0][1]
    assert total > 1 and [c[:2] for c in calls] == [(k, total) for k in range(1, total + 1)]
    names = [c[2] for c in calls]
    assert all(isinstance(n, str) and n for n in names) and len(set(names)) == total


def test_row_offsets_of_fused_parts_and_scalars():
    """Parts of one native tensor start where the previous part's rows end; a 0-d tensor counts
    one row. Kills ``tiles.x__offsets__mutmut_5`` (``()[0]`` for a scalar)."""
    from botcore.adapters.tiles import _offsets

    def spec(name, native):
        return SimpleNamespace(name=name, layered=False, native_shape=lambda shape: native,
                               names=lambda k: [name])

    specs = {"q": spec("q", (2, 4)), "k": spec("k", (3, 4)), "v": spec("v", (5, 4)), "t": spec("t", ())}
    plan = SimpleNamespace(layout=SimpleNamespace(specs=specs),
                           shapes={"q": (2, 4), "k": (3, 4), "v": (5, 4), "t": ()},
                           outputs={"qkv": SimpleNamespace(parts=["q", "k", "v"]),
                                    "t": SimpleNamespace(parts=["t"])})
    assert _offsets(plan) == {"q": 0, "k": 2, "v": 5, "t": 0}


def test_keras_norm_layers_map_to_weight_and_bias():
    """RMSNorm (``scale`` only) maps to one weight; LayerNorm to its gamma and beta when present.
    Kills ``keras.x__norm__mutmut_11`` (``hasattr("gamma")``: a TypeError)."""
    from botcore.adapters.io.keras import _norm

    s, g, b = np.ones(2), np.full(2, 2.0), np.zeros(2)
    assert _norm(SimpleNamespace(scale=s), "n") == [("n.weight", "same", (s,))]
    assert _norm(SimpleNamespace(scale=s, gamma=g, beta=b), "n") == [("n.weight", "same", (g,)),
                                                                     ("n.bias", "same", (b,))]
    assert _norm(SimpleNamespace(gamma=None, beta=b), "n") == [("n.bias", "same", (b,))]


def test_gguf_description_names_the_method_and_the_sizes():
    """Kills ``gguf.x__general__mutmut_49`` (a missing wavelet shown as ``None``, not ``-``)."""
    from botcore.adapters.io.gguf import _general

    plan = SimpleNamespace(reader=SimpleNamespace(meta={"general.name": "Tiny"}), card={"method": "bot"},
                           sizes={"hidden": 4, "layers": 2}, source_sizes={"hidden": 8, "layers": 2})
    out = _general(plan, 1)
    assert out["general.description"][0] == (
        "Resized with bot-scaling (botcore) from Tiny by bot (wavelet -, gain -): hidden 8 -> 4. "
        "This model needs training before use.")
    assert out["general.name"][0] == "Tiny (resized)" and out["general.file_type"][0] == 1


def test_gguf_refuses_query_rows_that_are_not_whole_even_heads():
    """GGUF permutes q/k rows per head: their count must be a multiple of 2 * heads. Kills
    ``gguf.x__slots__mutmut_59`` (the columns checked instead of the rows)."""
    from botcore.adapters.io.gguf import _slots

    t = SimpleNamespace(name="model.layers.0.self_attn.q_proj.weight", shape=(6, 8), dtype="float32")
    plan = SimpleNamespace(tensors=[t])
    msg = ("model.layers.0.self_attn.q_proj.weight has 6 rows, not whole even-sized heads for 2 heads; "
           "GGUF needs an even head_dim")
    with pytest.raises(UnsupportedModelError, match="^" + re.escape(msg) + "$"):
        _slots(plan, "llama", {"num_attention_heads": 2, "num_key_value_heads": 2}, None)


def test_fractional_selection_growth_selects_with_the_roles():
    """``fractional="select"``: BoT to the dyadic size, then uniform selection up to the target,
    with the tensor's roles (an ``in`` axis is selected differently from an ``out`` one). Kills
    ``methods.x__fractional_by_selection__mutmut_56`` (the last selection without roles)."""
    from botcore.adapters.methods import _fractional_by_selection

    import botcore

    x = np.random.default_rng(2).normal(size=(6, 4)).astype(np.float32)
    roles = ("out", "in")
    axes = botcore.plan((6, 4), (6, 6), wavelet="haar", mode="periodization").axes
    mid = tuple(a.fraction[0] if a.fraction and a.direction == "grow" else a.dst for a in axes)
    assert mid != (6, 6)
    want = botcore.select(botcore.resize(x, mid, roles=roles, wavelet="haar", mode="periodization", gain="function"),
                          (6, 6), roles=roles)
    got = _fractional_by_selection(x, roles, (6, 6), wavelet="haar", mode="periodization", gain="function")
    np.testing.assert_array_equal(got, want)
    assert not np.array_equal(got, botcore.select(botcore.resize(x, mid, roles=roles, wavelet="haar",
                                                                 mode="periodization", gain="function"), (6, 6)))


def test_stale_staging_folders_are_removed_and_journaled(tmp_path):
    """A staging folder left by a dead process is removed when the next stage of that output
    starts, and recorded in the stage and in the process's journal by its full path. Kills
    ``staging.xǁStageǁ_clean_stale__mutmut_37`` (the journal got ``"None"``)."""
    import os
    import subprocess
    import sys

    from botcore.adapters.io.staging import Stage, stage_prefix

    from botcore._files import JOURNAL

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    pid = int(dead.stdout)
    out = tmp_path / "model-small"
    stale = tmp_path / f"{stage_prefix(out)}{pid}-0123abcd"
    stale.mkdir()
    (stale / "part.bin").write_bytes(b"x")
    other = tmp_path / f"{stage_prefix(out)}{os.getpid()}-feedbeef"  # a live owner: kept
    other.mkdir()
    stage = Stage(out)
    try:
        assert stage.cleaned == [stale.name]
        assert JOURNAL.cleaned[-1] == str(stale)
        assert not stale.exists() and other.exists()
    finally:
        stage.abort()


def test_source_formats_by_suffix_and_kind(tmp_path):
    """Kills ``io.x_source_format__mutmut_38`` (``"GGUF"``: no reader module of that name)."""
    from botcore.adapters.io import FORMATS, source_format

    assert source_format("m.gguf") == source_format(tmp_path / "M.GGUF") == "gguf"
    assert source_format("m.onnx") == "onnx" and source_format({"w": np.zeros(1)}) == "mapping"
    assert source_format(tmp_path) == "hf"
    (tmp_path / "metadata.json").write_text("{}")
    assert source_format(tmp_path) == "keras"
    assert {"gguf", "onnx", "hf", "keras", "mapping"} <= set(FORMATS)


def test_bot_with_heads_by_selection_keeps_whole_heads():
    """``heads="select"``: whole heads are selected, then BoT resizes the other axes. Kills
    ``methods.x__bot__mutmut_38`` (the selection given ``None``)."""
    from botcore.adapters.methods import resize_signal

    import botcore

    x = np.random.default_rng(3).normal(size=(4, 3, 8)).astype(np.float32)
    roles = ("head", "head_dim", "in")
    out, note = resize_signal(x, roles, (2, 3, 4), method="bot", wavelet="haar", mode="periodization",
                              gain="function", heads="select")
    heads = botcore.select(x, (2, 3, 8), roles=roles)
    np.testing.assert_array_equal(out, botcore.resize(heads, (2, 3, 4), roles=roles, wavelet="haar",
                                                      mode="periodization", gain="function"))
    assert "heads by selection" in note


def _bert(rng, *, zero_query: bool = False) -> tuple[dict, dict]:
    cfg = dict(model_type="bert", num_hidden_layers=2, hidden_size=8, num_attention_heads=2,
               intermediate_size=16)
    params = {}
    for i in range(2):
        for n, s in [("attention.self.query", (8, 8)), ("attention.self.key", (8, 8)),
                     ("attention.self.value", (8, 8)), ("attention.output.dense", (8, 8)),
                     ("intermediate.dense", (16, 8)), ("output.dense", (8, 16))]:
            w = rng.normal(size=s).astype(np.float32)
            params[f"encoder.layer.{i}.{n}.weight"] = w * 0 if zero_query and "query" in n else w
            params[f"encoder.layer.{i}.{n}.bias"] = np.zeros(s[0], np.float32)
    return params, cfg


def test_measured_energy_of_an_all_zero_signal_is_all_kept():
    """A signal with no energy keeps all of it (1.0), not a ratio of zeros; the others are
    the kept share, in (0, 1] when shrinking. Kills ``pipeline.x_energy_kept__mutmut_5``."""
    from botcore.adapters import resize_model

    params, cfg = _bert(np.random.default_rng(0), zero_query=True)
    result = resize_model(params, {"layers": 1, "hidden": 4}, config=cfg, measure=True)
    energy = {r.signal: r.energy for r in result.report if r.energy is not None}
    assert energy["q"] == 1.0, energy  # the stacked query weights: all zero
    assert all(energy[s] == 1.0 for s in energy if s.endswith(".bias")), energy  # zero biases
    others = [v for s, v in energy.items() if s != "q" and not s.endswith(".bias")]
    assert len(others) >= 5 and all(0 < v < 1 for v in others), energy


def test_gemma2_claims_sandwich_norms_without_qk_norms():
    """Gemma 2 has pre- and post-feed-forward norms; Gemma 3 adds per-head q/k norms.
    Kills ``gemma.xǁGemma2Adapterǁclaims__mutmut_9`` (the q_norm test replaced)."""
    from botcore.adapters.families.gemma import Gemma2Adapter

    gemma2 = ["model.layers.0.pre_feedforward_layernorm.weight", "model.layers.0.self_attn.q_proj.weight"]
    assert Gemma2Adapter.claims(gemma2, {})
    assert not Gemma2Adapter.claims(gemma2 + ["model.layers.0.self_attn.q_norm.weight"], {})
    assert not Gemma2Adapter.claims(["model.layers.0.self_attn.q_proj.weight"], {})


# -- third adapters sample (seed 2, at HEAD) ------------------------------------------


def test_keras_rope_wavelength_is_the_checkpoints_theta():
    """RoPE's base frequency goes to keras_hub's ``rope_max_wavelength``, from either place a
    transformers config keeps it (the tests' tiny models use the default 10000, which keras_hub
    assumes anyway). Kills ``keras.x__rope_to_keras__mutmut_23`` (the key's name)."""
    from botcore.adapters.io.keras import _rope_to_keras

    for hf in ({"model_type": "llama", "rope_theta": 500000.0},
               {"model_type": "llama", "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0}}):
        kc: dict = {}
        _rope_to_keras(hf, kc)
        assert kc == {"rope_max_wavelength": 500000.0}


def test_gguf_pre_tokenizer_names():
    """llama.cpp's names for the pre-tokenizers it knows. Kills ``gguf.x__pre_name__mutmut_44``
    (SmolLM's digits-then-bytes sequence not recognised)."""
    from botcore.adapters.io.gguf import _pre_name

    byte = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}
    smol = {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, byte]}
    assert _pre_name(smol) == "smollm"
    assert _pre_name(byte) == "gpt-2"
    assert _pre_name({"type": "Sequence", "pretokenizers": [{"type": "Digits"}, byte]}) is None
    assert _pre_name(None) is None


def test_gguf_metadata_without_a_size_key_names_it():
    """Each of the four size keys is required; a file without one is refused by its name.
    Kills ``gguf.x_gguf_config__mutmut_26`` (the layer count not required)."""
    from botcore.adapters.io.gguf import gguf_config

    full = {"general.architecture": "llama", "llama.block_count": 2, "llama.embedding_length": 8,
            "llama.feed_forward_length": 16, "llama.attention.head_count": 2}
    for key in ("llama.block_count", "llama.embedding_length", "llama.feed_forward_length",
                "llama.attention.head_count"):
        meta = {k: v for k, v in full.items() if k != key}
        msg = (f"the GGUF metadata lacks {key}; expected a model file from llama.cpp's "
               "convert_hf_to_gguf.py (re-convert it)")
        with pytest.raises(UnsupportedModelError, match="^" + re.escape(msg) + "$"):
            gguf_config(meta, ["token_embd.weight"])


def _gguf_bytes(alignment: int | None, rows: int = 4) -> bytes:
    """A GGUF v3 file with one float32 tensor (4 x ``rows``) and an optional ``general.alignment``."""
    import struct

    def s(text: str) -> bytes:
        return struct.pack("<Q", len(text)) + text.encode()

    kv = [s("general.architecture") + struct.pack("<I", 8) + s("llama")]
    if alignment is not None:
        kv.append(s("general.alignment") + struct.pack("<II", 4, alignment))
    out = b"GGUF" + struct.pack("<IQQ", 3, 1, len(kv)) + b"".join(kv)
    out += s("token_embd.weight") + struct.pack("<I", 2) + struct.pack("<QQ", 4, rows)
    out += struct.pack("<IQ", 0, 0)
    align = alignment or 32
    out += bytes(-len(out) % align)
    return out + np.arange(4 * rows, dtype=np.float32).tobytes()


def test_gguf_alignment_from_the_metadata_places_the_data(tmp_path):
    """``general.alignment`` (a uint32 power of two) moves the data section to its next
    multiple; other values are refused by name. Kills ``gguf.x__place__mutmut_15`` (the key's
    type looked up under another name) and ``gguf.x__place__mutmut_21`` (1 refused)."""
    pytest.importorskip("gguf")
    from botcore.adapters.io.gguf import parse_header

    for alignment in (None, 1, 64, 128):  # 1 = 2**0: no padding at all
        path = tmp_path / f"a{alignment}.gguf"
        raw = _gguf_bytes(alignment)
        path.write_bytes(raw)
        meta, _, tensors = parse_header(path)
        (t,) = tensors
        assert t.offset % (alignment or 32) == 0 and t.offset == len(raw) - t.nbytes
        assert meta.get("general.alignment") == alignment
    path = tmp_path / "bad.gguf"
    path.write_bytes(_gguf_bytes(48))
    msg = "not a readable GGUF file: general.alignment 48 is not a power of two (uint32)"
    with pytest.raises(UnsupportedModelError, match=re.escape(msg)):
        parse_header(path)


# -- fourth adapters sample (seed 3, at HEAD) -----------------------------------------


def test_from_signals_honours_an_explicit_family():
    """``family=`` is used, not guessed from the names: Llama parameters read back as BERT are
    refused. Kills ``adapters.x_from_signals__mutmut_8`` (the family dropped)."""
    from botcore.adapters import from_signals, to_signals

    rng = np.random.default_rng(0)
    cfg = {"model_type": "llama", "hidden_size": 8, "num_attention_heads": 2, "num_key_value_heads": 2,
           "num_hidden_layers": 1, "intermediate_size": 16}
    shapes = {"q_proj": (8, 8), "k_proj": (8, 8), "v_proj": (8, 8), "o_proj": (8, 8)}
    params = {f"model.layers.0.self_attn.{n}.weight": rng.normal(size=s).astype(np.float32)
              for n, s in shapes.items()}
    params |= {f"model.layers.0.mlp.{n}.weight": rng.normal(size=s).astype(np.float32)
               for n, s in {"gate_proj": (16, 8), "up_proj": (16, 8), "down_proj": (8, 16)}.items()}
    signals = to_signals(params, cfg)
    back = from_signals(signals, params, cfg)
    assert all(np.array_equal(back[k], v) for k, v in params.items())
    with pytest.raises(ParameterKeyError, match="^the bert adapter has no treatment for "):
        from_signals(signals, params, cfg, family="bert")


def test_row_offsets_skip_parts_without_rows():
    """A part the layout does not resize (no spec) takes no rows of its native tensor. Kills
    ``tiles.x__offsets__mutmut_27`` (``None`` rows)."""
    from botcore.adapters.tiles import _offsets

    spec = SimpleNamespace(name="q", layered=False, native_shape=lambda shape: (2, 4), names=lambda k: ["q"])
    plan = SimpleNamespace(layout=SimpleNamespace(specs={"q": spec}), shapes={"q": (2, 4)},
                           outputs={"w": SimpleNamespace(parts=["extra", "q"])})
    assert _offsets(plan) == {"extra": 0, "q": 0}


def _gguf_header(*, string_len=None, qtype=0) -> bytes:
    import struct

    def s(text: str) -> bytes:
        return struct.pack("<Q", len(text)) + text.encode()

    kv = s("general.architecture") + struct.pack("<I", 8)
    kv += struct.pack("<Q", string_len) + b"llama" if string_len is not None else s("llama")
    out = b"GGUF" + struct.pack("<IQQ", 3, 1, 1) + kv
    out += s("token_embd.weight") + struct.pack("<I", 2) + struct.pack("<QQ", 4, 4) + struct.pack("<IQ", qtype, 0)
    return out + bytes(-len(out) % 32) + bytes(64)


def test_gguf_lengths_and_type_ids_are_unsigned(tmp_path):
    """GGUF string lengths (uint64) and ggml type ids (uint32) are read unsigned, so an all-ones
    field is refused with its real value. Kills ``gguf.xǁ_Cursorǁstring__mutmut_4`` (a signed
    length: -1 passed the size check) and ``gguf.x__tensor_info__mutmut_20`` (a signed id)."""
    pytest.importorskip("gguf")
    from botcore.adapters.io.gguf import parse_header

    path = tmp_path / "m.gguf"
    path.write_bytes(_gguf_header(string_len=2**64 - 1))
    with pytest.raises(UnsupportedModelError, match=f"a string claims {2**64 - 1} bytes, more than the file"):
        parse_header(path)
    path.write_bytes(_gguf_header(qtype=2**32 - 1))
    with pytest.raises(UnsupportedModelError, match=f"has ggml type id {2**32 - 1}, "):
        parse_header(path)


def test_to_numpy_widens_bfloat16_and_records_its_origin():
    """bfloat16 from torch or TensorFlow arrives as float32 NumPy (exact), and the record says
    where it came from and in which dtype. Kills ``_arrays.x_to_numpy__mutmut_25`` (torch's
    dtype name lost) and ``..._mutmut_55`` (TensorFlow's bfloat16 cast without its tensor)."""
    torch = pytest.importorskip("torch")
    tf = pytest.importorskip("tensorflow")
    from botcore.adapters._arrays import to_numpy

    values = np.array([1.5, -2.0, 0.0078125], np.float32)
    for x, framework in ((torch.tensor(values, dtype=torch.bfloat16), "torch"),
                         (tf.constant(values, dtype=tf.bfloat16), "tensorflow")):
        a, like = to_numpy(x)
        assert a.dtype == np.float32 and like.framework == framework and like.dtype == "bfloat16"
        np.testing.assert_array_equal(a, values)
    _, like = to_numpy(torch.zeros(2, dtype=torch.float16))
    assert like.dtype == "float16" and like.native_dtype == torch.float16
