"""The residual rotation (``resize_model(rotate=...)``): exact alone, the right subspace when resizing."""

import numpy as np
import pytest
from botcore.adapters import resize_model
from botcore.adapters.rotation import principal_basis, rotate_residual, rotation_for

import botcore
from botcore.errors import OptionError, UnsupportedModelError

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def _llama(*, tied, model_type="llama", seed=0, **extra):
    torch.manual_seed(seed)
    cls = {"qwen2": transformers.Qwen2Config, "qwen3": transformers.Qwen3Config}.get(model_type,
                                                                                 transformers.LlamaConfig)
    cfg = cls(vocab_size=40, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tied, **extra)
    model = transformers.AutoModelForCausalLM.from_config(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:  # non-trivial RMSNorm gains: folding them must be exact
                p.copy_(torch.rand_like(p) + 0.5)
            elif name.endswith("bias"):
                p.normal_()
    return model


def _moments(model, seed=0):
    from botcore.adapters.rotation import residual_moments

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, model.config.vocab_size, (3, 9), generator=g)
    return residual_moments(model, [ids[:2], ids[2:]])


def _logits(model, params, config):
    cls = type(model)
    new = cls(type(model.config)(**config)).eval()
    missing, unexpected = new.load_state_dict(params, strict=False)
    assert not unexpected and not [k for k in missing if k != "lm_head.weight" or not config.get(
        "tie_word_embeddings")]
    ids = torch.arange(12).reshape(2, 6) % model.config.vocab_size
    with torch.no_grad():
        return model(ids).logits, new(ids).logits


@pytest.mark.parametrize("tied,model_type,extra", [
    (False, "llama", {}),
    (True, "llama", {}),
    (False, "llama", {"mlp_bias": True, "attention_bias": True}),
    (True, "qwen2", {}),
    (False, "qwen3", {"head_dim": 4}),
    (True, "qwen3", {"head_dim": 4}),
])
def test_rotation_alone_keeps_the_outputs(tied, model_type, extra):
    model = _llama(tied=tied, model_type=model_type, **extra)
    params = dict(model.state_dict())
    before = {k: v.clone() for k, v in params.items()}
    res = resize_model(params, None, config=model.config.to_dict(), rotate=_moments(model),
                       retie=False)
    assert res.config["tie_word_embeddings"] is False
    notes = [r.treatment for r in res.report if r.signal == "residual stream"]
    assert len(notes) == 1 and "rotated" in notes[0] and ("untied" in notes[0]) == tied
    assert all(isinstance(v, torch.Tensor) and v.dtype == torch.float32 for v in res.params.values())
    old, new = _logits(model, res.params, res.config)
    assert torch.allclose(old, new, atol=1e-5 * old.abs().max().item())
    norm = res.params["model.norm.weight"]
    assert torch.equal(norm, torch.ones_like(norm))
    assert all(torch.equal(before[k], params[k]) for k in params)  # the input is untouched


def test_rotation_changes_the_weights():
    model = _llama(tied=False)
    params = dict(model.state_dict())
    res = resize_model(params, None, config=model.config.to_dict(), rotate=_moments(model))
    emb = "model.embed_tokens.weight"
    assert not torch.allclose(res.params[emb], params[emb])
    # a rotation: the embedding rows keep their norms
    assert torch.allclose(res.params[emb].norm(dim=1), params[emb].norm(dim=1), rtol=1e-5)


@pytest.mark.parametrize("wavelet,m", [("haar", 8), ("haar", 4), ("db2", 8), ("haar", 12)])
def test_resize_after_rotation_keeps_the_principal_subspace(wavelet, m):
    n = 16
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, n)) * np.geomspace(10, 0.1, n)
    u = principal_basis(x.T @ x)
    analysis = botcore.resize(np.eye(n), (m, n), wavelet=wavelet, gain="paper")
    q = rotation_for(u, analysis)
    np.testing.assert_allclose(q.T @ q, np.eye(n), atol=1e-12)
    kept = analysis @ q.T  # the resize of rotated coordinates, as a map of the original ones
    np.testing.assert_allclose(kept @ u[:, m:], 0, atol=1e-10)
    assert np.linalg.matrix_rank(kept @ u[:, :m]) == m


@pytest.mark.parametrize("layernorm", [False, True])
def test_fractional_select_rotation_keeps_the_principal_subspace(layernorm):
    """``fractional="select"`` (16 -> 12: the fractional step by uniform selection): the
    rotation is built for that analysis matrix, so the selection keeps the stream's energy
    in the principal subspace (RMSNorm: exactly that subspace; LayerNorm, where the
    all-ones direction stays put and is not in a selection's row space: at least the
    energy of its top ``m - 1`` mean-free directions); the area-step rotation does not."""
    from botcore.adapters.methods import resize_signal
    from botcore.adapters.rotation import rotation_matrix

    n, m = 16, 12
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, n)) * np.geomspace(10, 0.1, n)
    x = x - x.mean(axis=1, keepdims=True) if layernorm else x
    moments = x.T @ x
    select, _ = resize_signal(np.eye(n), ("out", "in"), (m, n), method="bot", wavelet="haar",
                              mode="periodization", gain="paper", fractional="select")
    best = np.sort(np.linalg.eigvalsh(moments))[::-1][: m - int(layernorm)].sum() / np.trace(moments)

    def kept(fractional):
        k = select @ rotation_matrix(moments, layernorm=layernorm, target_hidden=m, fractional=fractional).T
        return np.trace(np.linalg.pinv(k) @ k @ moments) / np.trace(moments)

    assert kept("select") >= best - 1e-12
    assert kept(None) < best - 0.05
    if not layernorm:  # exactly the principal subspace
        q = rotation_matrix(moments, layernorm=False, target_hidden=m, fractional="select")
        np.testing.assert_allclose(select @ q.T @ principal_basis(moments)[:, m:], 0, atol=1e-10)


@pytest.mark.parametrize("method", ["weight_selection", "layer_select"])
def test_rotation_before_a_selection_keeps_the_principal_subspace(method):
    """``rotate=`` with a selection method: the rotation is built for the uniform selection
    of the hidden axis, so the kept embedding columns span the principal subspace (here the
    embedding rows are the stream: its top directions are kept, the rest dropped)."""
    model = _llama(tied=False)
    params, cfg = dict(model.state_dict()), model.config.to_dict()
    moments = _moments(model)
    res = resize_model(params, {"hidden": 8, "heads": 2, "kv_heads": 1}, config=cfg, method=method,
                       rotate=moments, retie=False)
    rotated, _ = rotate_residual(params, cfg, moments, target_hidden=8,
                                 analysis=botcore.select(np.eye(16), (8, 16)))
    ref = resize_model(rotated, {"hidden": 8, "heads": 2, "kv_heads": 1}, config={**cfg, "tie_word_embeddings": False},
                       method=method)
    assert all(torch.allclose(res.params[k], ref.params[k], atol=1e-6) for k in ref.params)
    u = principal_basis(moments)
    emb = params["model.embed_tokens.weight"].double().numpy()
    kept = res.params["model.embed_tokens.weight"].double().numpy()
    top = emb @ u[:, :8]  # the embedding in its 8 principal coordinates
    # the kept columns are an orthogonal map of the principal coordinates
    np.testing.assert_allclose(np.linalg.norm(kept, axis=1), np.linalg.norm(top, axis=1), rtol=1e-5)
    plain = resize_model(params, {"hidden": 8, "heads": 2, "kv_heads": 1}, config=cfg, method=method)
    assert np.linalg.norm(plain.params["model.embed_tokens.weight"].double().numpy()) < np.linalg.norm(kept)


def test_shrink_and_growth_with_rotation_load_as_llama():
    model = _llama(tied=True)
    params = dict(model.state_dict())
    moments = _moments(model)
    res = resize_model(params, {"hidden": 8}, config=model.config.to_dict(), rotate=moments)
    small = transformers.LlamaForCausalLM(transformers.LlamaConfig(**res.config)).eval()
    assert not small.load_state_dict(res.params, strict=False).unexpected_keys
    ids = torch.arange(10).reshape(1, 10)
    with torch.no_grad():
        assert torch.isfinite(small(ids).logits).all()
    assert res.params["lm_head.weight"].shape == (40, 8)
    grown = resize_model(params, {"hidden": 32, "layers": 3}, config=model.config.to_dict(),
                         rotate=moments)
    assert grown.params["lm_head.weight"].shape == (40, 32)


@pytest.mark.parametrize("bad,match", [
    (np.eye(8), r"shape \(8, 8\).*hidden size is 16"),
    (np.triu(np.ones((16, 16))), "symmetric"),
    ("pca", "second-moment matrix|symmetric|shape"),
])
def test_bad_moments_are_refused(bad, match):
    model = _llama(tied=False)
    with pytest.raises(OptionError, match=match):
        resize_model(dict(model.state_dict()), None, config=model.config.to_dict(), rotate=bad)


def test_rotation_is_refused_where_it_cannot_be_exact(tmp_path):
    model = _llama(tied=False)
    cfg = model.config.to_dict()
    moments = np.eye(16)
    with pytest.raises(OptionError, match="not of method='net2net'"):
        resize_model(dict(model.state_dict()), {"hidden": 32, "heads": 8, "kv_heads": 4}, config=cfg,
                     method="net2net", rotate=moments)
    headless = {k[len("model."):]: v for k, v in model.state_dict().items() if k.startswith("model.")}
    with pytest.raises(UnsupportedModelError, match="LM head"):
        rotate_residual(headless, cfg, moments)
    gemma2 = dict(model_type="gemma2", num_hidden_layers=1, hidden_size=4, num_attention_heads=1,
                  num_key_value_heads=1, intermediate_size=8, head_dim=4)
    p = {"model.layers.0.self_attn.q_proj.weight": np.zeros((4, 4), np.float32)}
    with pytest.raises(UnsupportedModelError, match="gemma2: it normalises"):
        resize_model(p, None, config=gemma2, rotate=np.eye(4))
    with pytest.raises(OptionError, match="ONNX"):
        resize_model(str(tmp_path / "m.onnx"), None, rotate=moments)


def test_retie_keeps_the_tie_and_is_exact_when_the_final_gain_is_constant():
    model = _llama(tied=True)
    with torch.no_grad():
        model.model.norm.weight.fill_(1.7)
    params = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}
    new, cfg = rotate_residual(params, model.config.to_dict(), _moments(model), retie=True)
    assert cfg["tie_word_embeddings"] is True and "lm_head.weight" not in new
    assert sum(v.numel() for v in new.values()) == sum(v.numel() for v in params.values())
    old, rotated = _logits(model, new, cfg)
    assert torch.allclose(old, rotated, atol=1e-5 * old.abs().max().item())


def test_resize_model_keeps_a_tied_head_tied_when_shrinking_by_default():
    """``rotate=`` with a hidden shrink, default ``retie=None``: the ``retie=True`` result."""
    model = _llama(tied=True)
    params, moments = dict(model.state_dict()), _moments(model)
    cfg = model.config.to_dict()
    res = resize_model(params, {"hidden": 8}, config=cfg, rotate=moments)
    emb = res.params["model.embed_tokens.weight"]
    assert res.config["tie_word_embeddings"] is True
    assert torch.equal(res.params.get("lm_head.weight", emb), emb)
    notes = [r.treatment for r in res.report if r.signal == "residual stream"]
    assert len(notes) == 1 and "stays tied" in notes[0] and "untied" not in notes[0]
    tied = resize_model(params, {"hidden": 8}, config=cfg, rotate=moments, retie=True)
    assert tied.config == res.config
    assert all(torch.equal(v, tied.params[k]) for k, v in res.params.items())


@pytest.mark.parametrize("target", [None, {"hidden": 32}])
def test_resize_model_unties_a_tied_head_when_the_hidden_size_does_not_shrink(target):
    """Default ``retie=None`` without a shrink: written untied; rotation alone keeps the function."""
    model = _llama(tied=True)
    params, moments = dict(model.state_dict()), _moments(model)
    res = resize_model(params, target, config=model.config.to_dict(), rotate=moments)
    assert res.config["tie_word_embeddings"] is False
    assert not torch.allclose(res.params["lm_head.weight"][:, :16], res.params["model.embed_tokens.weight"][:, :16])
    untied = resize_model(params, target, config=model.config.to_dict(), rotate=moments, retie=False)
    assert all(torch.equal(v, untied.params[k]) for k, v in res.params.items())
    if target is None:
        old, new = _logits(model, res.params, res.config)
        assert torch.allclose(old, new, atol=1e-5 * old.abs().max().item())
    forced = resize_model(params, target, config=model.config.to_dict(), rotate=moments, retie=True)
    emb = forced.params["model.embed_tokens.weight"]
    assert forced.config["tie_word_embeddings"] is True
    assert torch.equal(forced.params.get("lm_head.weight", emb), emb)


def test_retie_changes_nothing_for_an_untied_head():
    model = _llama(tied=False)
    params, moments = dict(model.state_dict()), _moments(model)
    a = resize_model(params, {"hidden": 8}, config=model.config.to_dict(), rotate=moments)
    b = resize_model(params, {"hidden": 8}, config=model.config.to_dict(), rotate=moments, retie=False)
    assert a.config == b.config and all(torch.equal(a.params[k], b.params[k]) for k in a.params)


def test_retie_must_be_a_bool():
    model = _llama(tied=True)
    with pytest.raises(OptionError, match=r"retie='no': expected True .*, False .* or None"):
        resize_model(dict(model.state_dict()), None, config=model.config.to_dict(),
                     rotate=_moments(model), retie="no")


@pytest.mark.parametrize("family, why", [("bert", "post-LN"), ("gemma2", "normalises each sublayer's output"),
                                         ("olmo2", "normalises each sublayer's output"),
                                         ("phi3", "no parameter table for this family yet")])
def test_a_family_that_cannot_be_rotated_is_refused_with_its_own_reason(family, why):
    from botcore.adapters.rotation import check_rotatable

    with pytest.raises(UnsupportedModelError, match=f"{family}: .*{why}.*pass rotate=None"):
        check_rotatable(family)
