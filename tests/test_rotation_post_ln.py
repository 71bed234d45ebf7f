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
