"""resize_model's contract: targets, errors, report, methods, atomic output directories."""

from __future__ import annotations

import json

import numpy as np
import pytest
from botcore.adapters import (
    DEFAULT_GAIN,
    SHRINK_GAINS,
    ResizeResult,
    from_signals,
    resize_model,
    resolve_target,
    to_signals,
)
from botcore.adapters.methods import layer_indices, net2net_layers
from hypothesis import given, settings
from hypothesis import strategies as st

import botcore
from botcore import OptionError, ParameterKeyError, TargetError, UnsupportedModelError

CFG = {"model_type": "bert", "num_hidden_layers": 4, "hidden_size": 16, "num_attention_heads": 4,
           "intermediate_size": 32, "vocab_size": 11, "max_position_embeddings": 9, "type_vocab_size": 2}


def bert_params(seed=0, layers=4, hidden=16, ffn=32):
    rng = np.random.default_rng(seed)
    p = {
        "embeddings.word_embeddings.weight": (11, hidden),
        "embeddings.position_embeddings.weight": (9, hidden),
        "embeddings.token_type_embeddings.weight": (2, hidden),
        "embeddings.LayerNorm.weight": (hidden,),
        "embeddings.LayerNorm.bias": (hidden,),
        "pooler.dense.weight": (hidden, hidden),
        "pooler.dense.bias": (hidden,),
    }
    for i in range(layers):
        for n, s in [("attention.self.query", (hidden, hidden)), ("attention.self.key", (hidden, hidden)),
                     ("attention.self.value", (hidden, hidden)),
                     ("attention.output.dense", (hidden, hidden)), ("intermediate.dense", (ffn, hidden)),
                     ("output.dense", (hidden, ffn))]:
            p[f"encoder.layer.{i}.{n}.weight"] = s
            p[f"encoder.layer.{i}.{n}.bias"] = s[:1]
        for n in ("attention.output.LayerNorm", "output.LayerNorm"):
            p[f"encoder.layer.{i}.{n}.weight"] = (hidden,)
            p[f"encoder.layer.{i}.{n}.bias"] = (hidden,)
    return {k: rng.normal(size=s).astype(np.float32) for k, s in p.items()}


def test_result_unpacks_and_reports_every_parameter():
    params = bert_params()
    r = resize_model(params, {"layers": 2, "hidden": 8}, config=CFG)
    assert isinstance(r, ResizeResult) and r.out is None
    new, config = r
    assert new is r.params and config is r.config
    assert config["hidden_size"] == 8 and config["num_hidden_layers"] == 2
    assert config["num_attention_heads"] == 2 and config["intermediate_size"] == 16
    assert CFG["hidden_size"] == 16  # the caller's config is untouched
    covered = {n for rec in r.report for n in rec.names}
    assert covered == set(params)
    q = next(rec for rec in r.report if rec.signal == "q")
    assert q.roles == ("depth", "head", "head_dim", "in")
    assert q.source_shape == (4, 4, 4, 16) and q.target_shape == (2, 2, 4, 8)
    assert "gain=" + SHRINK_GAINS["bert"] in q.treatment  # a shrink: the measured per-family default
    assert new["encoder.layer.1.intermediate.dense.weight"].shape == (16, 8)
    assert "encoder.layer.2.output.dense.weight" not in new


def test_inputs_are_never_modified():
    params = bert_params()
    copy = {k: v.copy() for k, v in params.items()}
    resize_model(params, {"layers": 2, "hidden": 32}, config=CFG)
    assert all(np.array_equal(params[k], copy[k]) for k in params)


def test_bot_resize_equals_botcore_resize_of_the_stacked_signal():
    params = bert_params()
    r = resize_model(params, {"layers": 2, "hidden": 8}, config=CFG, wavelet="db2", gain="paper")
    q = np.stack([params[f"encoder.layer.{i}.attention.self.query.weight"] for i in range(4)])
    want = botcore.resize(q.reshape(4, 4, 4, 16), (2, 2, 4, 8), wavelet="db2", gain="paper",
                          roles=("depth", "head", "head_dim", "in"))
    got = np.stack([r.params[f"encoder.layer.{i}.attention.self.query.weight"] for i in range(2)])
    np.testing.assert_array_equal(got, want.reshape(2, 8, 8))


def test_signals_round_trip_and_head_views():
    params = bert_params()
    signals = to_signals(params, CFG)
    assert signals["o"].roles == ("depth", "out", "in_head", "in_head_dim")
    assert signals["o"].shape == (4, 16, 4, 4)
    assert signals["embed.word"].roles == ("fixed", "out")
    back = from_signals(signals, params, CFG)
    assert set(back) == set(params)
    assert all(np.array_equal(back[k], params[k]) for k in params)


@pytest.mark.parametrize("method", ["weight_selection", "layer_select"])
def test_selection_methods_pick_source_entries(method):
    params = bert_params()
    r = resize_model(params, {"layers": 2, "hidden": 8}, config=CFG, method=method)
    layers = [0, 2] if method == "weight_selection" else layer_indices(4, 2)
    for new_i, old_i in enumerate(layers):
        w = params[f"encoder.layer.{old_i}.intermediate.dense.weight"]
        np.testing.assert_array_equal(
            r.params[f"encoder.layer.{new_i}.intermediate.dense.weight"], w[::2, ::2])


def test_layer_select_spreads_layers_like_distilbert():
    assert layer_indices(12, 6) == [0, 2, 4, 7, 9, 11]
    assert layer_indices(30, 15)[0] == 0 and layer_indices(30, 15)[-1] == 29
    idx, inserted = net2net_layers(3, 6)
    assert idx == [0, 0, 1, 1, 2, 2] and inserted == [False, True] * 3


def test_net2net_inserts_zeroed_residual_writers():
    params = bert_params()
    r = resize_model(params, {"layers": 8}, config=CFG, method="net2net")
    for i in range(8):
        o = r.params[f"encoder.layer.{i}.attention.output.dense.weight"]
        ffn_in = r.params[f"encoder.layer.{i}.intermediate.dense.weight"]
        np.testing.assert_array_equal(ffn_in, params[f"encoder.layer.{i // 2}.intermediate.dense.weight"])
        assert (not o.any()) == (i % 2 == 1)


def test_target_defaults_keep_head_dim():
    r = resize_model(bert_params(), {"hidden": 12}, config=CFG)
    assert r.sizes["heads"] == 3 and r.sizes["head_dim"] == 4 and r.sizes["ffn"] == 24


@pytest.mark.parametrize("target, match", [
    ({"hidden": 10}, "head_dim"),
    ({"hidden": 16, "heads": 3}, "heads=3"),
    ({"kv_heads": 2}, "grouped-query"),
    ({"depth": 3}, "unknown keys"),
    ({"layers": 0}, ">= 1"),
    ({"layers": 2.5}, "not an integer"),
    ({"heads": 4, "head_dim": 8}, "equal to hidden"),
])
def test_impossible_targets_raise_target_error(target, match):
    with pytest.raises(TargetError, match=match):
        resize_model(bert_params(), target, config=CFG)


def test_gqa_target_rules():
    src = {"layers": 30, "hidden": 576, "heads": 9, "kv_heads": 3, "head_dim": 64, "ffn": 1536}
    t = resolve_target(src, {"layers": 15, "hidden": 288, "heads": 9, "kv_heads": 3}, gqa=True,
                       free_head_dim=True)
    assert t == {"layers": 15, "hidden": 288, "heads": 9, "kv_heads": 3, "head_dim": 32, "ffn": 768}
    assert resolve_target(src, {"hidden": 1152}, gqa=True, free_head_dim=True)["kv_heads"] == 6
    with pytest.raises(TargetError, match="group size 3"):
        resolve_target(src, {"hidden": 512, "head_dim": 64}, gqa=True, free_head_dim=True)
    with pytest.raises(TargetError, match="does not divide heads"):
        resolve_target(src, {"kv_heads": 2}, gqa=True, free_head_dim=True)


def test_bad_options_fail_before_any_work():
    params = bert_params()
    with pytest.raises(OptionError, match="method"):
        resize_model(params, {}, config=CFG, method="magic")
    with pytest.raises(OptionError, match="gain"):
        resize_model(params, {}, config=CFG, gain="loud")
    with pytest.raises(botcore.WaveletError):
        resize_model(params, {"hidden": 8}, config=CFG, wavelet="nope")
    with pytest.raises(OptionError, match="config= is required"):
        resize_model(params, {"hidden": 8})
    with pytest.raises(TargetError, match="mapping"):
        resize_model(params, [("hidden", 8)], config=CFG)
    with pytest.raises(UnsupportedModelError, match="family"):
        resize_model(params, {}, config=CFG, family="resnet")


def test_unknown_and_missing_parameters_are_named():
    params = bert_params()
    extra = dict(params, **{"adapter.down.weight": np.zeros((2, 2), np.float32)})
    with pytest.raises(ParameterKeyError, match="adapter.down.weight"):
        resize_model(extra, {}, config=CFG)
    missing = dict(params)
    del missing["encoder.layer.2.attention.self.key.weight"]
    with pytest.raises(ParameterKeyError, match=r"missing layers \[2\]"):
        resize_model(missing, {}, config=CFG)
    with pytest.raises(UnsupportedModelError, match="implies"):
        resize_model(params, {}, config=dict(CFG, hidden_size=32, num_attention_heads=8))


def test_mlm_decoder_tie_is_kept_and_untied_decoder_is_resized_on_its_own():
    params = bert_params()
    params = {("bert." + k): v for k, v in params.items() if not k.startswith("pooler")}
    params["cls.predictions.decoder.weight"] = params["bert.embeddings.word_embeddings.weight"].copy()
    params["cls.predictions.bias"] = np.zeros(11, np.float32)
    params["cls.predictions.decoder.bias"] = np.zeros(11, np.float32)
    for n in ("dense.weight", "dense.bias", "LayerNorm.weight", "LayerNorm.bias"):
        shape = (16, 16) if n == "dense.weight" else (16,)
        params["cls.predictions.transform." + n] = np.ones(shape, np.float32)
    r = resize_model(params, {"hidden": 8}, config=CFG)
    assert r.params["cls.predictions.decoder.weight"] is r.params["bert.embeddings.word_embeddings.weight"]
    assert any(rec.treatment.startswith("tied to") for rec in r.report)
    params["cls.predictions.decoder.weight"] = params["cls.predictions.decoder.weight"] + 1
    r = resize_model(params, {"hidden": 8}, config=CFG)
    dec = r.params["cls.predictions.decoder.weight"]
    assert dec.shape == (11, 8)
    assert not np.array_equal(dec, r.params["bert.embeddings.word_embeddings.weight"])


def test_progress_is_called_once_per_signal():
    seen = []
    r = resize_model(bert_params(), {"hidden": 8}, config=CFG,
                     progress=lambda done, total, name: seen.append((done, total, name)))
    assert [s[0] for s in seen] == list(range(1, len(seen) + 1))
    assert seen[-1][1] == len(seen) == len([rec for rec in r.report if rec.source_shape])


def _write_source(tmp_path):
    from safetensors.numpy import save_file

    src = tmp_path / "src"
    src.mkdir()
    params = bert_params()
    params["embeddings.position_ids"] = np.arange(9, dtype=np.int64)[None]
    save_file(params, str(src / "model.safetensors"))
    (src / "config.json").write_text(json.dumps(CFG))
    (src / "vocab.txt").write_text("a\nb\n")
    (src / "1_Pooling").mkdir()
    (src / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 16}))
    (src / "pytorch_model.bin").write_bytes(b"old weights")
    return src


def test_output_directory_is_complete_and_refuses_to_clobber(tmp_path):
    src = _write_source(tmp_path)
    out = tmp_path / "out"
    r = resize_model(src, {"hidden": 8}, out=out)
    assert r.out == out
    names = sorted(p.name for p in out.iterdir())
    assert names == ["1_Pooling", "README.md", "config.json", "model.safetensors", "vocab.txt"]
    assert json.loads((out / "config.json").read_text())["hidden_size"] == 8
    assert json.loads((out / "1_Pooling" / "config.json").read_text())["word_embedding_dimension"] == 8
    assert any(rec.names == ("embeddings.position_ids",) for rec in r.report)
    with pytest.raises(OptionError, match="overwrite=True"):
        resize_model(src, {"hidden": 4}, out=out)
    assert json.loads((out / "config.json").read_text())["hidden_size"] == 8
    resize_model(src, {"hidden": 4}, out=out, overwrite=True)
    assert json.loads((out / "config.json").read_text())["hidden_size"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]  # no temp dirs left


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    src = _write_source(tmp_path)
    from botcore.adapters.io import hf

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(hf, "write_at", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        resize_model(src, {"hidden": 8}, out=tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_safetensors_file_source_needs_config(tmp_path):
    src = _write_source(tmp_path)
    with pytest.raises(OptionError, match="config= is required"):
        resize_model(src / "model.safetensors", {"hidden": 8})
    r = resize_model(src / "model.safetensors", {"hidden": 8}, config=CFG)
    assert r.params["pooler.dense.weight"].shape == (8, 8)


def test_onnx_sources_go_through_the_pipelines_onnx_reader(tmp_path):
    from botcore.adapters.io import source_format

    assert source_format(str(tmp_path / "m.onnx")) == "onnx"
    with pytest.raises(FileNotFoundError, match="ONNX model .*m.onnx.* does not exist"):
        resize_model(str(tmp_path / "m.onnx"), {"hidden": 8}, method="bot")
    assert list(tmp_path.iterdir()) == []


def test_importing_adapters_imports_no_framework():
    import subprocess
    import sys

    code = (
        "import sys, botcore, botcore.adapters as a; a.get_adapter('llama'); a.get_adapter('vit');"
        "print(sorted(m for m in ('torch', 'tensorflow', 'jax', 'transformers', 'onnx', "
        "'safetensors') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_plan_model_matches_resize_model_without_resizing():
    from botcore.adapters import plan_model

    params = bert_params()
    p = plan_model(params, {"layers": 3, "hidden": 8}, config=CFG)
    r = resize_model(params, {"layers": 3, "hidden": 8}, config=CFG)
    assert p.sizes == r.sizes and p.config == r.config and p.source_sizes == r.source_sizes
    planned = {rec.signal: rec.target_shape for rec in p.records}
    done = {rec.signal: rec.target_shape for rec in r.report if rec.source_shape}
    assert planned == done
    with pytest.raises(TargetError):
        plan_model(params, {"heads": 5}, config=CFG)


def test_existing_out_is_refused_before_any_work(tmp_path, monkeypatch):
    from botcore.adapters import api

    (tmp_path / "out").mkdir()
    monkeypatch.setattr(api.pipeline, "plan", lambda *a, **k: pytest.fail("planned despite out"))
    with pytest.raises(OptionError, match="already exists"):
        resize_model(bert_params(), {"hidden": 8}, config=CFG, out=tmp_path / "out")


def test_sharded_safetensors_directory(tmp_path):
    from safetensors.numpy import save_file

    params = bert_params()
    names = sorted(params)
    src = tmp_path / "src"
    src.mkdir()
    shards = {"model-00001-of-00002.safetensors": names[::2],
              "model-00002-of-00002.safetensors": names[1::2]}
    weight_map = {}
    for shard, keys in shards.items():
        save_file({k: params[k] for k in keys}, str(src / shard))
        weight_map.update(dict.fromkeys(keys, shard))
    (src / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (src / "config.json").write_text(json.dumps(CFG))
    r = resize_model(src, {"hidden": 8}, out=tmp_path / "out")
    ref = resize_model(params, {"hidden": 8}, config=CFG)
    assert sorted(p.name for p in r.out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert all(np.array_equal(r.params[k], ref.params[k]) for k in ref.params)


def test_pytorch_bin_directory_is_read_with_weights_only(tmp_path):
    torch = pytest.importorskip("torch")
    params = bert_params()
    src = tmp_path / "src"
    src.mkdir()
    torch.save({k: torch.from_numpy(v) for k, v in params.items()}, src / "pytorch_model.bin")
    (src / "config.json").write_text(json.dumps(CFG))
    r = resize_model(src, {"hidden": 8})
    ref = resize_model(params, {"hidden": 8}, config=CFG)
    assert all(np.array_equal(r.params[k], ref.params[k]) for k in ref.params)


@given(
    hidden=st.sampled_from([32, 48, 64, 96]),
    heads=st.sampled_from([1, 2, 4, 8]),
    group=st.sampled_from([1, 2, 4]),
    t_hidden=st.integers(1, 200),
    t_heads=st.one_of(st.none(), st.integers(1, 16)),
    t_head_dim=st.one_of(st.none(), st.integers(1, 64)),
    t_kv=st.one_of(st.none(), st.integers(1, 16)),
    gqa=st.booleans(),
    free=st.booleans(),
)
@settings(max_examples=300, deadline=None)
def test_resolved_targets_are_consistent_or_refused(hidden, heads, group, t_hidden, t_heads,
                                                     t_head_dim, t_kv, gqa, free):
    kv = max(1, heads // group) if gqa else heads
    src = {"layers": 4, "hidden": hidden, "heads": heads, "kv_heads": kv,
           "head_dim": hidden // heads, "ffn": 4 * hidden}
    target = {"hidden": t_hidden, "heads": t_heads, "head_dim": t_head_dim, "kv_heads": t_kv}
    try:
        t = resolve_target(src, target, gqa=gqa, free_head_dim=free)
    except TargetError:
        return
    assert t["hidden"] == t_hidden and t["layers"] == 4
    assert t["heads"] % t["kv_heads"] == 0
    assert free or t["heads"] * t["head_dim"] == t["hidden"]
    assert gqa or t["kv_heads"] == t["heads"]
    for key in ("heads", "head_dim", "kv_heads"):
        assert target[key] is None or t[key] == target[key]
    if t_heads is None and t_head_dim is None:
        assert t["head_dim"] == src["head_dim"]


def test_out_may_not_be_the_source_directory(tmp_path):
    src = _write_source(tmp_path)
    before = (src / "model.safetensors").read_bytes()
    with pytest.raises(OptionError, match="source directory"):
        resize_model(src, {"hidden": 8}, out=src, overwrite=True)
    assert (src / "model.safetensors").read_bytes() == before


def test_written_directory_gets_umask_permissions(tmp_path):
    import os
    import stat

    import numpy as np
    from botcore.adapters import resize_model

    rng = np.random.default_rng(0)
    cfg = dict(model_type="bert", num_hidden_layers=2, hidden_size=8, num_attention_heads=2,
               intermediate_size=16, vocab_size=11, max_position_embeddings=16, type_vocab_size=2)
    params = {"embeddings.word_embeddings.weight": rng.normal(size=(11, 8)).astype(np.float32),
              "embeddings.position_embeddings.weight": rng.normal(size=(16, 8)).astype(np.float32),
              "embeddings.token_type_embeddings.weight": rng.normal(size=(2, 8)).astype(np.float32),
              "embeddings.LayerNorm.weight": np.ones(8, np.float32),
              "embeddings.LayerNorm.bias": np.zeros(8, np.float32)}
    for i in range(2):
        for n, s in [("attention.self.query", (8, 8)), ("attention.self.key", (8, 8)),
                     ("attention.self.value", (8, 8)), ("attention.output.dense", (8, 8)),
                     ("intermediate.dense", (16, 8)), ("output.dense", (8, 16))]:
            params[f"encoder.layer.{i}.{n}.weight"] = rng.normal(size=s).astype(np.float32)
            params[f"encoder.layer.{i}.{n}.bias"] = np.zeros(s[0], np.float32)
        for n in ("attention.output.LayerNorm", "output.LayerNorm"):
            params[f"encoder.layer.{i}.{n}.weight"] = np.ones(8, np.float32)
            params[f"encoder.layer.{i}.{n}.bias"] = np.zeros(8, np.float32)
    out = tmp_path / "small"
    resize_model(params, {"layers": 1, "hidden": 4}, config=cfg, out=out)
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~mask
    for f in out.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~mask


@pytest.mark.parametrize(
    "target, expected",
    [({"layers": 2, "hidden": 8}, SHRINK_GAINS["bert"]), ({"layers": 8, "hidden": 32}, DEFAULT_GAIN)],
)
def test_default_gain_follows_family_and_direction(target, expected):
    params = bert_params()
    r = resize_model(params, target, config=CFG)
    explicit = resize_model(params, target, config=CFG, gain=expected)
    assert all(np.array_equal(r.params[k], explicit.params[k]) for k in r.params)
    q = next(rec for rec in r.report if rec.signal == "q")
    assert f"gain={expected}" in q.treatment


def test_explicit_gain_overrides_the_default():
    params = bert_params()
    r = resize_model(params, {"layers": 2, "hidden": 8}, config=CFG, gain="paper")
    q = next(rec for rec in r.report if rec.signal == "q")
    assert "gain=paper" in q.treatment
