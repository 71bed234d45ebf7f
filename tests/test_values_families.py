"""Resized weights of every family against an independent NumPy reference (tests/reference.py).

For a tiny random checkpoint of each family (bert, gpt2, llama, vit, deit, dinov2) saved
by transformers, the expected resized weights are computed in the test from the
documented treatment (area/Haar block means and sums with the gain conventions, index
selection, layer choice, Net2Net replication) and compared element-wise with what
``resize_model`` returns, what it writes with ``out=``, and what ``botcore resize``
writes to disk (read back with safetensors).
"""

from __future__ import annotations

import json
import os

import pytest
import reference

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors_numpy = pytest.importorskip("safetensors.numpy")

from botcore.adapters import resize_model  # noqa: E402

from botcore.cli import main  # noqa: E402

SRC = {"layers": 6, "hidden": 48, "heads": 6, "kv_heads": 6, "head_dim": 8, "ffn": 96}
TARGETS = {
    # every axis halves (Haar, db2 and the pywt reference), head_dim shrinks 8 -> 4
    "shrink": {"layers": 3, "hidden": 24, "heads": 6, "head_dim": 4, "ffn": 48},
    # nothing divides (fractional steps; weight selection rounds: 6 -> 4 picks [0, 2, 3, 5])
    "nondividing": {"layers": 4, "hidden": 32, "heads": 4, "head_dim": 8, "ffn": 64},
    # growth with a fractional depth step; head_dim grows 8 -> 16 (the o-projection's in_head_dim)
    "grow": {"layers": 9, "hidden": 96, "heads": 6, "head_dim": 16, "ffn": 192},
}
FAMILIES = ("bert", "gpt2", "llama", "vit", "deit", "dinov2")


def _sizes(family: str, target: dict) -> dict:
    kv = target["heads"] // 2 if family == "llama" else target["heads"]
    return {**target, "kv_heads": kv}


def _config(family: str):
    common = dict(num_hidden_layers=6, hidden_size=48, num_attention_heads=6)
    vision = dict(common, image_size=8, patch_size=4)
    if family == "bert":
        return transformers.BertForPreTraining, transformers.BertConfig(
            **common, intermediate_size=96, vocab_size=20, max_position_embeddings=12)
    if family == "gpt2":
        return transformers.GPT2LMHeadModel, transformers.GPT2Config(
            n_layer=6, n_embd=48, n_head=6, n_inner=96, vocab_size=20, n_positions=12,
            bos_token_id=0, eos_token_id=0)
    if family == "llama":
        return transformers.LlamaForCausalLM, transformers.LlamaConfig(
            **common, num_key_value_heads=3, intermediate_size=96, vocab_size=20,
            tie_word_embeddings=True, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    if family == "vit":
        return transformers.ViTForImageClassification, transformers.ViTConfig(
            **vision, intermediate_size=96, num_labels=3)
    if family == "deit":
        return transformers.DeiTForImageClassificationWithTeacher, transformers.DeiTConfig(
            **vision, intermediate_size=96, num_labels=3)
    return transformers.Dinov2Model, transformers.Dinov2Config(**vision, mlp_ratio=2,
                                                                layerscale_value=0.5)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """{family: (directory, source params as float64 numpy)}, saved by transformers."""
    out = {}
    for i, family in enumerate(FAMILIES):
        cls, cfg = _config(family)
        torch.manual_seed(i)
        model = cls(cfg).eval()
        with torch.no_grad():  # non-trivial norms and biases: every tensor carries information
            for p in model.parameters():
                p.add_(0.1 * torch.randn_like(p))
        folder = tmp_path_factory.mktemp(family)
        model.save_pretrained(folder)
        out[family] = (folder, _read(folder))
    return out


def _read(folder) -> dict:
    params = {}
    for f in sorted(os.listdir(folder)):
        if f.endswith(".safetensors"):
            params.update(safetensors_numpy.load_file(os.path.join(folder, f)))
    return params


#: the norm feeding the output head, where these checkpoints tie that head to the embedding
TIED_HEAD_NORMS = {"bert": r"predictions\.transform\.LayerNorm", "gpt2": r"ln_f\.", "llama": r"^model\.norm\."}


def _expected(family, params, target, **how):
    return reference.resized_model(params, _sizes(family, SRC), _sizes(family, target),
                                   tied_head_norm=TIED_HEAD_NORMS.get(family), **how)


CASES = [  # (target, method, gain, wavelet)
    ("shrink", "bot", "function", "haar"),
    ("shrink", "bot", "paper", "haar"),
    ("shrink", "bot", "std", "haar"),
    ("shrink", "bot", "paper", "db2"),
    ("shrink", "bot", "function", "db2"),
    ("nondividing", "bot", "function", "haar"),
    ("nondividing", "bot", "paper", "haar"),
    ("nondividing", "weight_selection", None, "haar"),
    ("nondividing", "layer_select", None, "haar"),
    ("grow", "bot", "function", "haar"),
    ("grow", "bot", "paper", "haar"),
    ("grow", "weight_selection", None, "haar"),
    ("grow", "net2net", None, "haar"),
]


@pytest.mark.parametrize("case", CASES, ids=["-".join(c for c in case if c) for case in CASES])
@pytest.mark.parametrize("family", FAMILIES)
def test_resize_model_matches_the_reference(checkpoints, family, case):
    name, method, gain, wavelet = case
    folder, params = checkpoints[family]
    target = _sizes(family, TARGETS[name])
    area = {"fractional": "area"} if method == "bot" else {}  # the reference's fractional step
    r = resize_model(folder, target, method=method, gain=gain, wavelet=wavelet, **area)
    assert r.sizes == target
    expected = _expected(family, params, target, method=method, gain=gain or "function",
                         wavelet=wavelet)
    reference.assert_params_equal(r.params, expected)


@pytest.mark.parametrize("family", FAMILIES)
def test_default_gain_of_a_shrink_matches_the_reference(checkpoints, family):
    """No gain given: std for BERT and the ViT family, function for the decoders (documented)."""
    folder, params = checkpoints[family]
    target = _sizes(family, TARGETS["shrink"])
    gain = "function" if family in ("gpt2", "llama") else "std"
    r = resize_model(folder, target)
    reference.assert_params_equal(r.params, _expected(family, params, target, gain=gain))


@pytest.mark.parametrize("family", FAMILIES)
def test_written_directory_matches_the_reference(checkpoints, family, tmp_path):
    folder, params = checkpoints[family]
    target = _sizes(family, TARGETS["grow"])
    r = resize_model(folder, target, gain="function", out=tmp_path / "out")
    expected = _expected(family, params, target, gain="function")
    reference.assert_params_equal(_read(r.out), expected)
    for k, v in _read(r.out).items():
        assert v.dtype == params.get(k, next(iter(params.values()))).dtype, k


def _cli_args(family, target):
    args = ["--layers", target["layers"], "--hidden", target["hidden"], "--heads", target["heads"],
            "--head-dim", target["head_dim"], "--ffn", target["ffn"]]
    if family == "llama":
        args += ["--kv-heads", target["kv_heads"]]
    return [str(a) for a in args]


@pytest.mark.parametrize("case", [("grow", "bot", "function"), ("nondividing", "weight_selection", None),
                                  ("shrink", "bot", None), ("grow", "net2net", None)],
                         ids=["grow-function", "nondividing-selection", "shrink-default", "grow-net2net"])
@pytest.mark.parametrize("family", FAMILIES)
def test_cli_output_on_disk_matches_the_reference(checkpoints, family, case, tmp_path, capsys):
    name, method, gain = case
    folder, params = checkpoints[family]
    target = _sizes(family, TARGETS[name])
    argv = ["resize", str(folder), str(tmp_path / "out"), *_cli_args(family, target),
            "--method", method, "--quiet"]
    if gain:
        argv += ["--gain", gain]
    assert main(argv) == 0, capsys.readouterr().err
    if gain is None and method == "bot":
        gain = "function" if family in ("gpt2", "llama") else "std"
    expected = _expected(family, params, target, method=method, gain=gain or "function")
    reference.assert_params_equal(_read(tmp_path / "out"), expected)


@pytest.mark.parametrize("family", FAMILIES)
def test_written_config_loads_with_the_new_sizes(checkpoints, family, tmp_path):
    """The CLI's config matches its weights: from_pretrained reports no mismatch (head_dim 8 -> 16)."""
    folder, _ = checkpoints[family]
    target = _sizes(family, TARGETS["grow"])
    assert main(["resize", str(folder), str(tmp_path / "out"), *_cli_args(family, target), "--quiet"]) == 0
    cls, _ = _config(family)
    model, info = cls.from_pretrained(tmp_path / "out", output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    assert model.config.hidden_size == target["hidden"]
    assert model.config.num_attention_heads == target["heads"]
    if family == "llama":
        cfg = json.loads((tmp_path / "out" / "config.json").read_text())
        assert cfg["head_dim"] == model.config.head_dim == target["head_dim"]
        assert model.config.num_key_value_heads == target["kv_heads"]
