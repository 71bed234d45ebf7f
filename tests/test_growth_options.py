"""Growth options of ``method="bot"``: identity depth growth and symmetry-breaking detail noise.

Identity tests (option alone, on a tiny random model): the grown model computes
the source's function to 1e-5 and loads in its stock class; the noise really
breaks the replica symmetry (replicated columns differ); with plain Haar
function growth, ``depth_growth="identity"`` is exactly Net2Net.
"""

import numpy as np
import pytest
from botcore.adapters import resize_model
from botcore.adapters.methods import detail_noise_like, resize_signal

from botcore.errors import OptionError

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

GROW = {"layers": 3, "hidden": 32, "heads": 8, "kv_heads": 4, "ffn": 48}


def _llama(seed=0):
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(vocab_size=40, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)
    model = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(torch.rand_like(p) + 0.5)
            else:
                p.normal_(0, 0.3)
    return model


def _grown_logits(model, res):
    big = transformers.LlamaForCausalLM(transformers.LlamaConfig(**res.config)).eval()
    loaded = big.load_state_dict(dict(res.params), strict=False)
    assert not loaded.unexpected_keys and set(loaded.missing_keys) <= {"lm_head.weight"}
    ids = torch.arange(14).reshape(2, 7) % 40
    with torch.no_grad():
        return model(ids).logits, big(ids).logits, big


@pytest.mark.parametrize("options", [
    dict(depth_growth="identity"),
    dict(depth_growth="identity", detail_noise=1.0),
])
def test_function_preserving_growth_keeps_the_outputs(options):
    model = _llama()
    res = resize_model(dict(model.state_dict()), GROW, config=model.config.to_dict(), gain="function",
                       **options)
    old, new, big = _grown_logits(model, res)
    assert torch.allclose(old, new, atol=1e-5 * old.abs().max().item())
    if "detail_noise" in options:  # replicated input columns now differ (the symmetry is broken)
        w = big.model.layers[0].mlp.down_proj.weight
        assert not torch.allclose(w[:, 0::2], w[:, 1::2])
        assert any("detail noise" in r.treatment for r in res.report)


def test_identity_depth_with_haar_function_growth_is_net2net():
    model = _llama()
    params, cfg = dict(model.state_dict()), model.config.to_dict()
    bot = resize_model(params, GROW, config=cfg, gain="function", depth_growth="identity")
    n2n = resize_model(params, GROW, config=cfg, method="net2net")
    assert bot.params.keys() == n2n.params.keys()
    assert all(torch.allclose(bot.params[k], n2n.params[k], atol=1e-6) for k in bot.params)


def test_detail_noise_is_seeded_and_sums_to_zero_over_each_block():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(2, 3, 4))
    roles = ("depth", "out", "in")
    grown, _ = resize_signal(src, roles, (2, 6, 16), method="bot", wavelet="haar", mode="periodization",
                             gain="function")
    a = detail_noise_like(grown, roles, src.shape, alpha=1.0, seed=3, name="ffn_in")
    b = detail_noise_like(grown, roles, src.shape, alpha=1.0, seed=3, name="ffn_in")
    c = detail_noise_like(grown, roles, src.shape, alpha=1.0, seed=3, name="q")
    assert np.array_equal(a, b) and not np.allclose(a, c)
    np.testing.assert_allclose(a.reshape(2, 6, 4, 4).sum(axis=-1), 0, atol=1e-12)
    assert detail_noise_like(grown, ("depth", "out", "fixed"), src.shape, alpha=1.0) is None


def test_growth_options_are_refused_where_they_do_not_apply():
    x = np.ones((2, 4))
    with pytest.raises(OptionError, match="method='bot'"):
        resize_signal(x, ("out", "in"), (4, 8), method="net2net", wavelet="haar", mode="periodization",
                      gain="function", detail_noise=1.0)
    with pytest.raises(OptionError, match="wavelet='haar'"):
        resize_signal(x, ("out", "in"), (4, 8), method="bot", wavelet="db2", mode="periodization",
                      gain="function", detail_noise=1.0)
    with pytest.raises(OptionError, match="depth_growth"):
        resize_signal(x, ("out", "in"), (4, 8), method="bot", wavelet="haar", mode="periodization",
                      gain="function", depth_growth="copy")


def test_fractional_steps_by_selection_keep_the_dyadic_levels_of_bot():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 12, 48))
    roles = ("depth", "out", "in")
    kw = dict(method="bot", wavelet="haar", mode="periodization", gain="function")
    sel, note = resize_signal(x, roles, (4, 8, 24), fractional="select", **kw)  # 6->4, 12->8: fractional
    ws, _ = resize_signal(x, roles, (4, 8, 48), method="weight_selection", wavelet="haar",
                          mode="periodization", gain="function")
    plain, _ = resize_signal(ws, roles, (4, 8, 24), **kw)  # then one Haar level on the last axis
    np.testing.assert_allclose(sel, plain)
    assert "selection" in note
    dyadic, _ = resize_signal(x, roles, (3, 6, 24), fractional="select", **kw)
    np.testing.assert_allclose(dyadic, resize_signal(x, roles, (3, 6, 24), **kw)[0])
    grown, _ = resize_signal(x[:, :, :8], roles, (9, 12, 24), fractional="select", **kw)
    assert grown.shape == (9, 12, 24)


def test_resize_model_fractional_select_is_weight_selection_where_every_step_is_fractional():
    torch.manual_seed(0)
    src = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=40, hidden_size=12, intermediate_size=24, num_hidden_layers=3, num_attention_heads=3,
        num_key_value_heads=3, tie_word_embeddings=False))
    params, cfg = dict(src.state_dict()), src.config.to_dict()
    target = {"layers": 2, "hidden": 8, "heads": 2, "kv_heads": 2, "ffn": 16}  # every step is 3 -> 2
    sizes = (cfg["num_hidden_layers"], cfg["hidden_size"], cfg["intermediate_size"])
    assert all(n * 2 // 3 == m for n, m in zip(sizes, (2, 8, 16))), sizes
    sel = resize_model(params, target, config=cfg, method="bot", fractional="select").params
    ws = resize_model(params, target, config=cfg, method="weight_selection").params
    assert sel.keys() == ws.keys()
    for k in ws:
        np.testing.assert_array_equal(np.asarray(sel[k]), np.asarray(ws[k]), err_msg=k)
    with pytest.raises(OptionError, match="fractional= are options of method='bot'"):
        resize_model(params, target, config=cfg, method="weight_selection", fractional="select")


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_the_default_fractional_step_is_the_familys(family):
    """``fractional=None``: selection for a BERT shrink (``SHRINK_FRACTIONAL``), the area step
    for a BERT growth and for the other families."""
    from botcore.adapters import SHRINK_FRACTIONAL, default_fractional, plan_model

    torch.manual_seed(0)
    if family == "bert":
        model = transformers.BertForMaskedLM(transformers.BertConfig(
            vocab_size=30, hidden_size=12, num_hidden_layers=3, num_attention_heads=3, intermediate_size=24))
        shrink, grow = {"layers": 2, "hidden": 8, "heads": 2, "ffn": 16}, {"hidden": 18, "heads": 3, "ffn": 36}
    else:
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
            vocab_size=40, hidden_size=12, intermediate_size=24, num_hidden_layers=3, num_attention_heads=3,
            num_key_value_heads=3, tie_word_embeddings=False))
        shrink, grow = ({"layers": 2, "hidden": 8, "heads": 2, "kv_heads": 2, "ffn": 16},
                        {"hidden": 18, "heads": 3, "kv_heads": 3, "ffn": 36})
    params, cfg = dict(model.state_dict()), model.config.to_dict()
    for target, expected in ((shrink, SHRINK_FRACTIONAL.get(family, "area")), (grow, "area")):
        sizes = plan_model(params, target, config=cfg).sizes
        assert default_fractional(family, plan_model(params, None, config=cfg).sizes, sizes) == expected
        default = resize_model(params, target, config=cfg).params
        for fractional in ("select", "area"):
            explicit = resize_model(params, target, config=cfg, fractional=fractional).params
            same = all(np.array_equal(np.asarray(default[k]), np.asarray(explicit[k])) for k in default)
            assert same is (fractional == expected), (target, fractional)


def test_an_unknown_fractional_step_is_refused_before_any_work():
    model = _llama()
    with pytest.raises(OptionError, match=r"fractional='nearest' is not offered; expected 'area', 'select'"):
        resize_model(dict(model.state_dict()), {"hidden": 8}, config=model.config.to_dict(), fractional="nearest")
