"""Post-LN BERT: a permutation of the residual stream is exact, a rotation only approximate.

``rotate_post_ln`` with a permutation (here: the energy order) keeps a BERT
MLM model's logits to 1e-5 (tied decoder included); with a mean-keeping
rotation it is exact only when every LayerNorm gain is constant.
"""

import numpy as np
import pytest
from botcore.adapters.rotation import (
    energy_order,
    permutation_matrix,
    residual_moments,
    rotate_post_ln,
    rotation_matrix,
)

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def _bert(*, constant_gains=False):
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=24, max_position_embeddings=16)
    model = transformers.BertForMaskedLM(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm.weight" in name:
                p.fill_(1.3) if constant_gains else p.copy_(torch.rand_like(p) + 0.5)
            elif name.endswith("bias"):
                p.normal_(0, 0.3)
    return model


def _check(model, q):
    params = dict(model.state_dict())
    rotated, config = rotate_post_ln(params, model.config.to_dict(), q)
    new = type(model)(type(model.config)(**config)).eval()
    loaded = new.load_state_dict(rotated, strict=False)
    assert not loaded.unexpected_keys and not loaded.missing_keys
    ids = torch.arange(1, 15).reshape(2, 7)
    with torch.no_grad():
        a, b = model(ids).logits, new(ids).logits
    return a, b, new


def test_a_permutation_of_the_post_ln_stream_is_exact():
    model = _bert()
    moments = residual_moments(model, [torch.arange(1, 29).reshape(4, 7)])
    order = energy_order(moments)
    assert sorted(order) == list(range(16))
    a, b, new = _check(model, permutation_matrix(order))
    assert torch.allclose(a, b, atol=1e-5 * a.abs().max().item())
    assert new.cls.predictions.decoder.weight.data_ptr() == new.bert.embeddings.word_embeddings.weight.data_ptr()


def test_a_rotation_is_exact_only_with_constant_gains():
    moments = np.cov(np.random.default_rng(0).normal(size=(16, 80)))
    q = rotation_matrix(moments, layernorm=True, target_hidden=8)
    a, b, _ = _check(_bert(constant_gains=True), q)
    assert torch.allclose(a, b, atol=1e-5 * a.abs().max().item())
    a, b, _ = _check(_bert(), q)
    assert not torch.allclose(a, b, atol=1e-3 * a.abs().max().item())


@pytest.mark.parametrize("target, fractional", [({"hidden": 8, "heads": 2, "ffn": 12}, None),
                                               ({"hidden": 12, "heads": 3, "ffn": 24}, "area"),
                                               ({"hidden": 12, "heads": 3, "ffn": 24}, "select")])
def test_resize_model_rotates_a_post_ln_bert_like_the_two_steps(target, fractional):
    """``resize_model(rotate=)`` on BERT: the approximate rotation for the coming resize
    (dyadic, non-dyadic, its fractional step by selection), then the resize (``:pcaln``)."""
    from botcore.adapters import resize_model

    model = _bert()
    params, cfg = dict(model.state_dict()), model.config.to_dict()
    moments = residual_moments(model, [torch.arange(1, 29).reshape(4, 7)])
    res = resize_model(params, target, config=cfg, rotate=moments, gain="std", fractional=fractional)
    q = rotation_matrix(moments, layernorm=True, target_hidden=target["hidden"], fractional=fractional)
    if fractional == "select":  # another analysis matrix, so another rotation: the option reached it
        assert not np.allclose(q, rotation_matrix(moments, layernorm=True, target_hidden=target["hidden"]))
    rotated, rotated_cfg = rotate_post_ln(params, cfg, q)
    ref = resize_model(rotated, target, config=rotated_cfg, gain="std", fractional=fractional)
    assert set(res.params) == set(ref.params)
    assert all(torch.allclose(res.params[k], ref.params[k], atol=1e-6) for k in res.params)
    plain = resize_model(params, target, config=cfg, gain="std")
    assert not torch.allclose(res.params["bert.embeddings.word_embeddings.weight"],
                              plain.params["bert.embeddings.word_embeddings.weight"])
    notes = [r.treatment for r in res.report if r.signal == "residual stream"]
    assert len(notes) == 1 and "approximately" in notes[0]
    small = transformers.BertForMaskedLM(transformers.BertConfig(**res.config)).eval()
    loaded = small.load_state_dict(res.params, strict=False)
    assert not loaded.unexpected_keys and not loaded.missing_keys


def test_resize_model_rotation_of_bert_is_exact_with_constant_gains():
    from botcore.adapters import resize_model

    model = _bert(constant_gains=True)
    moments = residual_moments(model, [torch.arange(1, 29).reshape(4, 7)])
    res = resize_model(dict(model.state_dict()), None, config=model.config.to_dict(), rotate=moments)
    new = transformers.BertForMaskedLM(transformers.BertConfig(**res.config)).eval()
    assert not new.load_state_dict(res.params, strict=False).unexpected_keys
    ids = torch.arange(1, 15).reshape(2, 7)
    with torch.no_grad():
        a, b = model(ids).logits, new(ids).logits
    assert torch.allclose(a, b, atol=1e-5 * a.abs().max().item())
    assert not torch.equal(res.params["bert.embeddings.word_embeddings.weight"],
                           model.state_dict()["bert.embeddings.word_embeddings.weight"])
