"""Adapters on random-weight models of every family: exact round trips, the grow/shrink law,
checkpoints that load into transformers both ways, framework parity."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from botcore.adapters import from_signals, get_adapter, resize_model, to_signals

SRC = {"layers": 2, "hidden": 32, "heads": 4, "ffn": 64}


def _bert():
    cfg = transformers.BertConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=4,
                                  intermediate_size=64, vocab_size=50, max_position_embeddings=24)
    return transformers.BertForPreTraining, cfg


def _gpt2():
    cfg = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=4, n_inner=64, vocab_size=50,
                                  n_positions=24, bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel, cfg


def _llama():
    cfg = transformers.LlamaConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=4,
                                   num_key_value_heads=2, intermediate_size=64, vocab_size=50,
                                   tie_word_embeddings=True, bos_token_id=0, eos_token_id=0,
                                   pad_token_id=0)
    return transformers.LlamaForCausalLM, cfg


def _llama_untied():
    cls, cfg = _llama()
    cfg.tie_word_embeddings = False
    return cls, cfg


def _qwen2():
    cfg = transformers.Qwen2Config(num_hidden_layers=2, hidden_size=32, num_attention_heads=4,
                                   num_key_value_heads=2, intermediate_size=64, vocab_size=50,
                                   tie_word_embeddings=False, bos_token_id=0, eos_token_id=0)
    return transformers.Qwen2ForCausalLM, cfg


def _mistral():
    cfg = transformers.MistralConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=4,
                                     num_key_value_heads=2, intermediate_size=64, vocab_size=50,
                                     bos_token_id=0, eos_token_id=0)
    return transformers.MistralForCausalLM, cfg


def _bert_cls():
    return transformers.BertForSequenceClassification, _bert()[1]


def _gpt2_cls():
    _cls, cfg = _gpt2()
    cfg.pad_token_id = 0
    return transformers.GPT2ForSequenceClassification, cfg


def _gpt2_model():
    return transformers.GPT2Model, _gpt2()[1]  # no prefix, no head


def _llama_model():
    return transformers.LlamaModel, _llama()[1]


def _vit():
    cfg = transformers.ViTConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=4,
                                 intermediate_size=64, image_size=16, patch_size=4, num_labels=3)
    return transformers.ViTForImageClassification, cfg


def _vit_model():
    return transformers.ViTModel, _vit()[1]  # with the pooler


def _dinov2_cls():
    cfg = _dinov2()[1]
    cfg.num_labels = 3
    return transformers.Dinov2ForImageClassification, cfg


def _deit():
    cfg = transformers.DeiTConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=4,
                                  intermediate_size=64, image_size=16, patch_size=4, num_labels=3)
    return transformers.DeiTForImageClassificationWithTeacher, cfg


def _dinov2():
    cfg = transformers.Dinov2Config(num_hidden_layers=2, hidden_size=32, num_attention_heads=4,
                                    mlp_ratio=2, image_size=16, patch_size=4, layerscale_value=0.5)
    return transformers.Dinov2Model, cfg


FAMILIES = {"bert": _bert, "bert_cls": _bert_cls, "gpt2": _gpt2, "gpt2_cls": _gpt2_cls,
            "gpt2_model": _gpt2_model, "llama_model": _llama_model,
            "llama": _llama, "llama_untied": _llama_untied, "qwen2": _qwen2, "mistral": _mistral,
            "vit": _vit, "vit_model": _vit_model, "deit": _deit, "dinov2": _dinov2,
            "dinov2_cls": _dinov2_cls}


def _model(name, seed=0):
    cls, cfg = FAMILIES[name]()
    torch.manual_seed(seed)
    model = cls(cfg).eval()
    with torch.no_grad():  # random non-trivial norms and biases, so every tensor matters
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model, cfg


def _inputs(name, cfg):
    g = torch.Generator().manual_seed(1)
    if name.startswith(("vit", "deit", "dinov2")):
        return {"pixel_values": torch.randn(2, 3, 16, 16, generator=g)}
    return {"input_ids": torch.randint(0, 50, (2, 7), generator=g)}


def _outputs(model, inputs):
    with torch.no_grad():
        out = model(**inputs)
    return out[0]  # logits (prediction logits for BERT pre-training) or last hidden state


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_round_trip_is_bit_exact(name):
    model, cfg = _model(name)
    params = _state(model)
    config = cfg.to_dict()
    signals = to_signals(params, config)
    back = from_signals(signals, params, config)
    assert set(back) == set(params)
    for k, v in params.items():
        assert back[k].dtype == v.dtype and torch.equal(back[k], v), k
    same = resize_model(params, None, config=config)
    for k, v in params.items():
        assert torch.equal(same.params[k], v), k


@pytest.mark.parametrize("name", ["bert", "gpt2", "llama", "vit", "deit", "dinov2"])
@pytest.mark.parametrize("wavelet", ["haar", "db2", "bior6.8"])
def test_grow_twice_then_shrink_back_returns_the_weights(name, wavelet):
    model, cfg = _model(name)
    params = _state(model)
    big = resize_model(params, {"layers": 4, "hidden": 64}, config=cfg.to_dict(),
                       wavelet=wavelet, gain="paper")
    assert big.sizes["heads"] == 8 and big.sizes["ffn"] == 128
    small = resize_model(big.params, {"layers": 2, "hidden": 32, "heads": 4, "kv_heads": big.sizes[
        "kv_heads"] // 2, "ffn": 64}, config=big.config, wavelet=wavelet, gain="paper")
    assert set(small.params) == set(params)
    for k, v in params.items():
        err = (small.params[k].double() - v.double()).abs().max().item() if v.numel() else 0.0
        assert err < 1e-5, (k, err)


@pytest.mark.parametrize("name", sorted(FAMILIES))
@pytest.mark.parametrize("target", [{"layers": 1, "hidden": 16}, {"layers": 3, "hidden": 64}],
                         ids=["shrink", "grow"])
def test_resized_directory_loads_and_runs(name, target, tmp_path):
    model, cfg = _model(name)
    src = tmp_path / "src"
    model.save_pretrained(src)
    result = resize_model(src, target, out=tmp_path / "out")
    cls = type(model)
    loaded, info = cls.from_pretrained(result.out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert not info["mismatched_keys"], info
    assert loaded.config.hidden_size == target["hidden"]
    assert loaded.config.num_hidden_layers == target["layers"]
    y = _outputs(loaded.eval(), _inputs(name, cfg))
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", ["bert", "gpt2", "llama", "dinov2"])
@pytest.mark.parametrize("method", ["bot", "weight_selection", "layer_select"])
def test_numpy_and_torch_inputs_agree(name, method):
    model, cfg = _model(name)
    params = _state(model)
    arrays = {k: v.numpy() for k, v in params.items()}
    target = {"layers": 3, "hidden": 16}
    a = resize_model(params, target, config=cfg.to_dict(), method=method)
    b = resize_model(arrays, target, config=cfg.to_dict(), method=method)
    assert set(a.params) == set(b.params)
    for k in a.params:
        assert isinstance(a.params[k], torch.Tensor) and isinstance(b.params[k], np.ndarray)
        np.testing.assert_array_equal(a.params[k].numpy(), b.params[k], err_msg=k)


def test_half_precision_comes_back_in_its_dtype():
    model, cfg = _model("llama")
    for dtype in (torch.float16, torch.bfloat16):
        params = {k: v.to(dtype) for k, v in _state(model).items()}
        back = from_signals(to_signals(params, cfg.to_dict()), params, cfg.to_dict())
        assert all(back[k].dtype == dtype and torch.equal(back[k], v) for k, v in params.items())
        r = resize_model(params, {"hidden": 16, "layers": 1}, config=cfg.to_dict())
        assert all(v.dtype == dtype for v in r.params.values())
        ref = resize_model({k: v.float() for k, v in params.items()}, {"hidden": 16, "layers": 1},
                           config=cfg.to_dict())
        for k, v in r.params.items():
            np.testing.assert_array_equal(v.float().numpy(), ref.params[k].to(dtype).float().numpy())


def test_tensorflow_and_jax_mappings_work():
    model, cfg = _model("gpt2")
    params = {k: v.numpy() for k, v in _state(model).items()}
    ref = resize_model(params, {"hidden": 16}, config=cfg.to_dict())
    for mod in ("tensorflow", "jax"):
        try:
            __import__(mod)
        except ImportError:
            continue
        if mod == "tensorflow":
            import tensorflow as tf

            mapping = {k: tf.constant(v) for k, v in params.items()}
        else:
            import jax.numpy as jnp

            mapping = {k: jnp.asarray(v) for k, v in params.items()}
        r = resize_model(mapping, {"hidden": 16}, config=cfg.to_dict())
        for k, v in r.params.items():
            assert type(v).__module__.split(".")[0] in ("tensorflow", "jax", "jaxlib"), type(v)
            np.testing.assert_allclose(np.asarray(v), ref.params[k], rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["gpt2", "llama", "llama_untied", "vit", "dinov2"])
def test_net2net_growth_preserves_the_function(name):
    model, cfg = _model(name)
    params = _state(model)
    r = resize_model(params, {"layers": 4, "hidden": 64}, config=cfg.to_dict(), method="net2net")
    cls = type(model)
    big_cfg = cfg.__class__.from_dict(r.config)
    big = cls(big_cfg).eval()
    missing, unexpected = big.load_state_dict(r.params, strict=False)
    assert not unexpected and all(k == "lm_head.weight" for k in missing)
    inputs = _inputs(name, cfg)
    y_small, y_big = _outputs(model, inputs), _outputs(big, inputs)
    if name == "dinov2":  # hidden states are replicated: compare every other feature
        y_big = y_big[..., ::2]
    # tied heads (gpt2, llama): the final norm is scaled so the logits stay the source's
    np.testing.assert_allclose(y_big.numpy(), y_small.numpy(), rtol=1e-4, atol=1e-4)


def test_net2net_refuses_to_shrink():
    from botcore import TargetError

    model, cfg = _model("gpt2")
    with pytest.raises(TargetError, match="only grows"):
        resize_model(_state(model), {"hidden": 16}, config=cfg.to_dict(), method="net2net")


def _timm_from_hf(params):
    """timm-style names for an HF in-memory ViT/DeiT state dict (no timm import)."""
    out = {}
    for k, v in params.items():
        k2 = k.split(".", 1)[1] if k.startswith(("vit.", "deit.")) else k
        if ".attention.q_proj." in k2:
            i, kind = k2.split(".")[1], k2.rsplit(".", 1)[1]
            base = k2.split(".attention.")[0]
            qkv = [params[k.replace("q_proj", p)] for p in ("q_proj", "k_proj", "v_proj")]
            out[f"blocks.{i}.attn.qkv.{kind}"] = torch.cat(qkv, 0)
            del base
            continue
        if ".attention.k_proj." in k2 or ".attention.v_proj." in k2:
            continue
        k2 = (k2.replace("layers.", "blocks.").replace("attention.o_proj", "attn.proj")
              .replace("layernorm_before", "norm1").replace("layernorm_after", "norm2")
              .replace("embeddings.cls_token", "cls_token")
              .replace("embeddings.distillation_token", "dist_token")
              .replace("embeddings.position_embeddings", "pos_embed")
              .replace("embeddings.patch_embeddings.projection", "patch_embed.proj")
              .replace("cls_classifier", "head").replace("distillation_classifier", "head_dist")
              .replace("classifier", "head"))
        if k2.startswith("layernorm."):
            k2 = "norm." + k2.split(".", 1)[1]
        out[k2] = v
    return out


@pytest.mark.parametrize("name", ["vit", "deit"])
def test_timm_names_resize_like_hugging_face_names(name):
    model, cfg = _model(name)
    params = _state(model)
    timm = _timm_from_hf(params)
    assert "blocks.0.attn.qkv.weight" in timm
    back = from_signals(to_signals(timm, {"num_attention_heads": 4}, family=name), timm,
                        {"num_attention_heads": 4}, family=name)
    assert all(torch.equal(back[k], v) for k, v in timm.items())
    target = {"layers": 3, "hidden": 16}
    hf = resize_model(params, target, config=cfg.to_dict())
    tm = resize_model(timm, target, config={"num_attention_heads": 4}, family=name)
    assert tm.config["num_hidden_layers"] == 3 and tm.config["hidden_size"] == 16
    mapped = _timm_from_hf(hf.params)
    assert set(mapped) == set(tm.params)
    for k, v in mapped.items():
        assert torch.equal(tm.params[k], v), k


def test_vit_disk_and_memory_names_give_the_same_weights(tmp_path):
    from safetensors.torch import load_file

    model, cfg = _model("vit")
    model.save_pretrained(tmp_path / "src")
    disk = load_file(str(tmp_path / "src" / "model.safetensors"))
    assert any("attention.attention.query" in k for k in disk)
    a = to_signals(disk, cfg.to_dict())
    b = to_signals(_state(model), cfg.to_dict())
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_array_equal(a[k].data, b[k].data, err_msg=k)


def test_every_family_is_detected():
    for name in ("bert", "gpt2", "llama", "vit", "deit", "dinov2"):
        model, cfg = _model(name)
        assert get_adapter(name).family == name
        r = resize_model(_state(model), None, config={**cfg.to_dict(), "model_type": None})
        assert r.family == name


@pytest.mark.parametrize("name", ["bert", "gpt2", "llama"])
def test_in_memory_tied_heads_write_loadable_directories(name, tmp_path):
    model, cfg = _model(name)
    params = _state(model)
    r = resize_model(params, {"hidden": 16}, config=cfg.to_dict(), out=tmp_path / "out")
    tied = [rec for rec in r.report if rec.treatment.startswith("tied to")]
    assert tied  # the in-memory state dict holds the tied duplicate
    loaded, info = type(model).from_pretrained(r.out, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    y = _outputs(loaded.eval(), _inputs(name, cfg))
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("layers, want", [(2, [1, 2]), (3, [1, 2, 3]), (6, [2, 3, 5, 6]), (8, [2, 4, 6, 8])])
def test_dinov2_backbone_stages_keep_their_relative_depth_and_load(layers, want, tmp_path):
    """A DINOv2 backbone reading four stages (as a DPT depth head does) keeps them at the same
    relative depths, ascending and without repeats, so transformers accepts the config; with
    fewer layers than stages it reads fewer. (Before: the old last stage was renamed to the new
    last, the others kept by name, so 4 -> 2 layers gave ``['stage2', 'stage2']``, which
    ``Dinov2Config`` refuses as duplicates.)"""
    cfg = transformers.Dinov2Config(num_hidden_layers=4, hidden_size=32, num_attention_heads=4,
                                    mlp_ratio=2, image_size=16, patch_size=4,
                                    out_indices=[1, 2, 3, 4])
    torch.manual_seed(0)
    model = transformers.Dinov2Backbone(cfg).eval()
    model.save_pretrained(tmp_path / "src")
    resize_model(tmp_path / "src", {"layers": layers}, out=tmp_path / "out")
    new = transformers.Dinov2Backbone.from_pretrained(tmp_path / "out").eval()
    assert new.config.out_indices == want
    assert new.config.out_features == [f"stage{i}" for i in want]
    with torch.no_grad():
        maps = new(pixel_values=torch.randn(1, 3, 16, 16)).feature_maps
    assert len(maps) == len(want) and all(m.shape == (1, 32, 4, 4) for m in maps)


def test_timm_layerscale_names_are_the_canonical_scale_signals():
    """timm's DINOv2-style blocks (``ls1.gamma``, ``ls2.gamma``) give the same canonical
    signals as Hugging Face's ``layer_scale1/2.lambda1``: one ``(layers, hidden)`` stack each.
    Kills ``vit.x__rules__mutmut_330`` (the second LayerScale under another role name)."""
    rng = np.random.default_rng(0)
    h, layers = 8, 2
    shapes = {"cls_token": (1, 1, h), "pos_embed": (1, 5, h), "patch_embed.proj.weight": (h, 3, 4, 4),
              "patch_embed.proj.bias": (h,), "norm.weight": (h,), "norm.bias": (h,)}
    for i in range(layers):
        for name, shape in [("norm1", (h,)), ("attn.qkv", (3 * h, h)), ("attn.proj", (h, h)),
                            ("norm2", (h,)), ("mlp.fc1", (2 * h, h)), ("mlp.fc2", (h, 2 * h))]:
            shapes[f"blocks.{i}.{name}.weight"] = shape
            shapes[f"blocks.{i}.{name}.bias"] = shape[:1]
        shapes[f"blocks.{i}.ls1.gamma"] = shapes[f"blocks.{i}.ls2.gamma"] = (h,)
    params = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    signals = to_signals(params, {"num_attention_heads": 2}, family="vit")
    assert sorted(signals) == sorted(
        ["embed.position", "token.cls", "patch", "patch.bias", "norm_final.weight", "norm_final.bias",
         "scale1", "scale2"] + [f"{r}{b}" for r in ("q", "k", "v", "o", "ffn_in", "ffn_out") for b in ("", ".bias")]
        + [f"norm{j}.{b}" for j in (1, 2) for b in ("weight", "bias")])
    for name, key in (("scale1", "ls1.gamma"), ("scale2", "ls2.gamma")):
        want = np.stack([params[f"blocks.{i}.{key}"] for i in range(layers)])
        np.testing.assert_array_equal(np.asarray(signals[name].data), want)


@pytest.mark.parametrize("options", [dict(method="net2net"), dict(method="bot", depth_growth="identity")])
def test_layerscale_depth_growth_zeroes_the_gate_and_keeps_the_branch_trainable(options):
    """Function-preserving depth growth of a LayerScale model (DINOv2) zeroes the inserted
    layers' LayerScale, not their writers: the output is unchanged and the new branches get
    gradients. (Before: both were zeroed, ``0 * (0 h + 0)``, and no parameter of an inserted
    layer got any gradient.) A model without LayerScale (ViT) still has its writers zeroed."""
    model, cfg = _model("dinov2")
    inputs = _inputs("dinov2", cfg)
    grown = resize_model(_state(model), {"layers": 4}, config=cfg.to_dict(), **options)
    new = transformers.Dinov2Model(transformers.Dinov2Config(**grown.config))
    new.load_state_dict(grown.params)
    torch.testing.assert_close(_outputs(new.eval(), inputs), _outputs(model, inputs), rtol=1e-5, atol=1e-5)
    inserted = [i for i in range(4) if not new.encoder.layer[i].layer_scale1.lambda1.detach().any()]
    assert inserted == [1, 3]
    new(**inputs).last_hidden_state.square().sum().backward()
    for i in inserted:
        block = new.encoder.layer[i]
        assert block.attention.o_proj.weight.detach().any() and block.mlp.fc2.weight.detach().any()
        assert block.layer_scale1.lambda1.grad.abs().sum() > 0 and block.layer_scale2.lambda1.grad.abs().sum() > 0
    vit, vcfg = _model("vit")
    grown = resize_model(_state(vit), {"layers": 4}, config=vcfg.to_dict(), **options)
    writers = [k for k in grown.params if k.startswith(("vit.layers.1.", "layers.1.")) and "o_proj.weight" in k]
    assert writers and not any(grown.params[k].any() for k in writers)
