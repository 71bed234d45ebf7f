"""The exact residual rotation of pre-LN LayerNorm families (GPT-2, ViT, DeiT, DINOv2).

Rotation alone (no resize): the outputs are unchanged to 1e-5, the rotated
parameters load in the stock transformers class with no missing or unexpected
keys, the input is untouched, and one-parameter-at-a-time rotation equals the
whole-mapping one. Tiny random models with non-trivial LayerNorm gains and
shifts, biases and LayerScale.
"""

import numpy as np
import pytest
from botcore.adapters.rotation import (
    check_rotatable,
    plan_rotation,
    residual_moments,
    rotate_parameter,
    rotate_residual,
    rotation_matrix,
)

from botcore.errors import UnsupportedModelError

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

_VISION = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=4, image_size=8,
               patch_size=4, num_channels=1, num_labels=3)


def _models():
    t = transformers
    gpt2 = dict(n_embd=16, n_layer=2, n_head=4, vocab_size=40, n_positions=16, bos_token_id=0,
                eos_token_id=0)
    return {
        "gpt2-tied": (t.GPT2LMHeadModel, t.GPT2Config(**gpt2, tie_word_embeddings=True)),
        "gpt2-untied": (t.GPT2LMHeadModel, t.GPT2Config(**gpt2, tie_word_embeddings=False)),
        "gpt2-score": (t.GPT2ForSequenceClassification, t.GPT2Config(**gpt2, num_labels=3,
                                                                      pad_token_id=0)),
        "vit": (t.ViTForImageClassification, t.ViTConfig(**_VISION, intermediate_size=24)),
        "vit-no-qkv-bias": (t.ViTForImageClassification,
                            t.ViTConfig(**_VISION, intermediate_size=24, qkv_bias=False)),
        "deit": (t.DeiTForImageClassificationWithTeacher, t.DeiTConfig(**_VISION, intermediate_size=24)),
        "dinov2": (t.Dinov2ForImageClassification, t.Dinov2Config(**_VISION, mlp_ratio=2)),
    }


def _randomize(model, seed=0):
    """Non-trivial gains, shifts, biases and LayerScale, so every fold is exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            x = torch.randn(p.shape, generator=g)
            if ("norm" in name.lower() or "ln_" in name or "lambda" in name) and name.endswith(
                    ("weight", "lambda1")):
                p.copy_(x.abs() * 0.5 + 0.5)
            else:
                p.copy_(x * (0.5 if name.endswith("bias") else 0.3))
    return model.eval()


def _inputs(config):
    g = torch.Generator().manual_seed(1)
    if hasattr(config, "image_size"):
        return {"pixel_values": torch.randn(2, 1, 8, 8, generator=g)}
    return {"input_ids": torch.randint(1, config.vocab_size, (2, 7), generator=g)}


def _logits(model, x):
    with torch.no_grad():
        return model(**x).logits


@pytest.fixture(scope="module", params=sorted(_models()))
def case(request):
    cls, cfg = _models()[request.param]
    model = _randomize(cls(cfg))
    x = _inputs(cfg)
    return request.param, cls, model, x, residual_moments(model, [x])


@pytest.mark.parametrize("target", [None, 8])
def test_rotation_alone_keeps_the_outputs_and_loads_in_the_stock_class(case, target):
    name, cls, model, x, moments = case
    params = dict(model.state_dict())
    before = {k: v.clone() for k, v in params.items()}
    new_params, config = rotate_residual(params, model.config.to_dict(), moments, target_hidden=target)
    new = cls(type(model.config)(**config)).eval()
    loaded = new.load_state_dict(new_params, strict=False)
    assert not loaded.missing_keys and not loaded.unexpected_keys, name
    old = _logits(model, x)
    assert torch.allclose(old, _logits(new, x), atol=1e-5 * old.abs().max().item()), name
    assert all(torch.equal(before[k], params[k]) for k in params)  # the input is untouched
    assert all(v.dtype == torch.float32 for v in new_params.values())
    emb = next(k for k in params if k.endswith(("wte.weight", "cls_token")))
    assert not torch.allclose(new_params[emb], params[emb])  # it did rotate
    if name == "gpt2-tied":
        assert config["tie_word_embeddings"] is False
    if name == "vit-no-qkv-bias":
        assert config["qkv_bias"] is True


def test_one_parameter_at_a_time_equals_the_whole_mapping(case):
    name, _, model, _, moments = case
    params = dict(model.state_dict())
    cfg = model.config.to_dict()
    whole, _ = rotate_residual(params, cfg, moments, target_hidden=8)
    rot = plan_rotation(params, cfg, moments, target_hidden=8)
    streamed = {}
    for key in reversed(list(params)):  # any order: biases before their weights too
        streamed.update(rotate_parameter(rot, key, params[key]))
    assert streamed.keys() == whole.keys(), name
    assert all(torch.equal(streamed[k], whole[k]) for k in whole)


def test_the_rotation_keeps_the_mean_direction_and_the_principal_subspace():
    rng = np.random.default_rng(0)
    n, m = 16, 8
    x = rng.normal(size=(300, n)) * np.geomspace(10, 0.1, n)
    x -= x.mean(axis=1, keepdims=True)  # a mean-free stream, as the folded model has
    q = rotation_matrix(x.T @ x, layernorm=True, target_hidden=m)
    e = np.full(n, n ** -0.5)
    np.testing.assert_allclose(q.T @ q, np.eye(n), atol=1e-12)
    np.testing.assert_allclose(q.T @ e, e, atol=1e-12)  # stock LayerNorm stays exact
    import botcore

    analysis = botcore.resize(np.eye(n), (m, n), wavelet="haar", gain="paper")
    kept = (analysis @ q.T) @ x.T  # what the Haar approximation band keeps of the rotated stream
    energy = np.sum(kept ** 2) / np.sum(x ** 2)
    top = np.sort(np.linalg.eigvalsh(x.T @ x))[::-1][: m - 1].sum() / np.trace(x.T @ x)
    assert energy == pytest.approx(top, rel=1e-9)  # the mean + the top m - 1 mean-free directions


def test_timm_names_rotate_like_the_hugging_face_names():
    """timm ViT names (fused qkv, blocks.N, ls1.gamma) go through the same folds."""
    cls, cfg = _models()["vit"]
    model = _randomize(cls(cfg))
    hf = dict(model.state_dict())
    timm = {"cls_token": hf["vit.embeddings.cls_token"], "pos_embed": hf["vit.embeddings.position_embeddings"],
            "patch_embed.proj.weight": hf["vit.embeddings.patch_embeddings.projection.weight"],
            "patch_embed.proj.bias": hf["vit.embeddings.patch_embeddings.projection.bias"],
            "norm.weight": hf["vit.layernorm.weight"], "norm.bias": hf["vit.layernorm.bias"],
            "head.weight": hf["classifier.weight"], "head.bias": hf["classifier.bias"]}
    for i in range(2):
        h, t = f"vit.layers.{i}.", f"blocks.{i}."
        for kind in ("weight", "bias"):
            timm[t + f"attn.qkv.{kind}"] = torch.cat([hf[h + f"attention.{p}_proj.{kind}"] for p in "qkv"])
            for a, b in (("attention.o_proj", "attn.proj"), ("mlp.fc1", "mlp.fc1"), ("mlp.fc2", "mlp.fc2"),
                         ("layernorm_before", "norm1"), ("layernorm_after", "norm2")):
                timm[t + f"{b}.{kind}"] = hf[h + f"{a}.{kind}"]
    moments = residual_moments(model, [_inputs(cfg)])
    cfg_t = {"model_type": "vit", "hidden_size": 16}
    a, _ = rotate_residual(hf, model.config.to_dict(), moments, target_hidden=8)
    b, _ = rotate_residual(timm, cfg_t, moments, target_hidden=8)
    assert torch.allclose(b["blocks.1.mlp.fc2.weight"], a["vit.layers.1.mlp.fc2.weight"], atol=1e-6)
    assert torch.allclose(b["head.bias"], a["classifier.bias"], atol=1e-5)
    qkv = torch.cat([a[f"vit.layers.0.attention.{p}_proj.bias"] for p in "qkv"])
    assert torch.allclose(b["blocks.0.attn.qkv.bias"], qkv, atol=1e-5)


def test_layerscale_is_folded_into_its_writer():
    cls, cfg = _models()["dinov2"]
    model = _randomize(cls(cfg))
    params = dict(model.state_dict())
    new, _ = rotate_residual(params, model.config.to_dict(), residual_moments(model, [_inputs(cfg)]))
    scale = new["dinov2.encoder.layer.0.layer_scale1.lambda1"]
    assert torch.equal(scale, torch.ones_like(scale))


def test_post_ln_and_headless_models_are_refused():
    with pytest.raises(UnsupportedModelError, match="post-LN"):
        check_rotatable("bert")
    cls, cfg = _models()["vit"]
    model = _randomize(cls(cfg))
    headless = {k: v for k, v in model.state_dict().items() if not k.startswith("classifier")}
    with pytest.raises(UnsupportedModelError, match="LM head"):
        rotate_residual(headless, model.config.to_dict(), np.eye(16))
