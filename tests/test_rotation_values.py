"""The rotation's defining property, through the public ``resize_model(..., rotate=moments)``.

``rotate=`` promises that a width shrink after the rotation keeps the residual
stream's principal subspace: the shrunk embedding is ``E @ M`` for a map ``M``
whose columns span exactly the top ``target`` eigenvectors of the given moments
(LayerNorm families: the stream is made mean-free first, so the span is that of
the top ``target - 1`` mean-free eigenvectors; the all-ones direction carries
nothing). The moments here have a known spectrum, and ``M`` is recovered from the
written weights by least squares: the check uses no part of the implementation.
Without the alignment step the shrink keeps means of pairs of principal
directions, weak ones included, and the residual below is of order one.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from botcore.adapters import resize_model  # noqa: E402

HIDDEN, VOCAB = 16, 48


def _model(family: str, seed: int = 0):
    torch.manual_seed(seed)
    if family == "llama":
        cfg = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=24,
                                       num_hidden_layers=2, num_attention_heads=4,
                                       num_key_value_heads=2, tie_word_embeddings=False)
        model = transformers.LlamaForCausalLM(cfg)
    else:
        cfg = transformers.GPT2Config(vocab_size=VOCAB, n_embd=HIDDEN, n_inner=24, n_layer=2,
                                      n_head=4, n_positions=VOCAB, bos_token_id=0,
                                      eos_token_id=0)
        model = transformers.GPT2LMHeadModel(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "ln_" in name:  # non-trivial gains: folding must be exact
                p.copy_(torch.rand_like(p) + 0.5)
    return model.eval(), cfg.to_dict()


def _moments(seed: int = 0):
    """A second-moment matrix with a known, well separated spectrum (and its eigenvectors)."""
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.normal(size=(HIDDEN, HIDDEN)))
    values = np.geomspace(100.0, 0.01, HIDDEN)
    return (u * values) @ u.T


def _top(moments: np.ndarray, k: int) -> np.ndarray:
    vals, vecs = np.linalg.eigh(moments)
    return vecs[:, np.argsort(-vals)[:k]]


def _map(source: np.ndarray, shrunk: np.ndarray) -> np.ndarray:
    """``M`` with ``shrunk = source @ M`` (exact: the residual is checked)."""
    m, *_ = np.linalg.lstsq(source, shrunk, rcond=None)
    np.testing.assert_allclose(source @ m, shrunk, atol=1e-4 * np.abs(shrunk).max())
    return m


def _outside(m: np.ndarray, basis: np.ndarray) -> float:
    """Share of ``m``'s energy outside the span of ``basis``'s orthonormal columns."""
    rest = m - basis @ (basis.T @ m)
    return float(np.linalg.norm(rest) / np.linalg.norm(m))


def _np(x) -> np.ndarray:
    return x.detach().double().numpy()


@pytest.mark.parametrize("target,wavelet", [(8, "haar"), (4, "haar"), (12, "haar"), (8, "db2")])
def test_llama_shrink_keeps_the_top_principal_directions(target, wavelet):
    model, cfg = _model("llama")
    params = dict(model.state_dict())
    moments = _moments()
    r = resize_model(params, {"hidden": target, "heads": 4, "kv_heads": 2}, config=cfg,
                     rotate=moments, wavelet=wavelet, gain="function")
    top = _top(moments, target)
    emb = _map(_np(params["model.embed_tokens.weight"]), _np(r.params["model.embed_tokens.weight"]))
    assert np.linalg.matrix_rank(emb, tol=1e-6 * np.abs(emb).max()) == target
    assert _outside(emb, top) < 1e-5
    # a reader of the stream: the LM head, with the final RMSNorm gain folded in, keeps the same span
    head = _np(params["lm_head.weight"]) * _np(params["model.norm.weight"])[None, :]
    assert _outside(_map(head, _np(r.params["lm_head.weight"])), top) < 1e-5
    assert np.allclose(_np(r.params["model.norm.weight"]), 1.0)


def test_llama_plain_shrink_does_not_keep_them():
    """The control: without rotate= the kept span is far from the principal subspace."""
    model, cfg = _model("llama")
    params = dict(model.state_dict())
    r = resize_model(params, {"hidden": 8, "heads": 4, "kv_heads": 2}, config=cfg, gain="function")
    emb = _map(_np(params["model.embed_tokens.weight"]), _np(r.params["model.embed_tokens.weight"]))
    assert _outside(emb, _top(_moments(), 8)) > 0.3


def test_llama_rotation_alone_keeps_the_logits():
    model, cfg = _model("llama")
    params = dict(model.state_dict())
    r = resize_model(params, None, config=cfg, rotate=_moments())
    new = transformers.LlamaForCausalLM(transformers.LlamaConfig(**r.config)).eval()
    new.load_state_dict(r.params)
    ids = torch.arange(12).reshape(2, 6)
    with torch.no_grad():
        old_logits, new_logits = model(ids).logits, new(ids).logits
    assert not torch.allclose(r.params["model.embed_tokens.weight"], params["model.embed_tokens.weight"])
    np.testing.assert_allclose(new_logits.numpy(), old_logits.numpy(),
                               atol=1e-4 * old_logits.abs().max().item())


@pytest.mark.parametrize("target", [8, 12])
def test_layernorm_shrink_keeps_the_top_mean_free_directions(target):
    model, cfg = _model("gpt2")
    params = dict(model.state_dict())
    moments = _moments(1)
    r = resize_model(params, {"hidden": target, "heads": 4}, config=cfg, rotate=moments,
                     gain="function")
    p = np.eye(HIDDEN) - np.full((HIDDEN, HIDDEN), 1.0 / HIDDEN)
    top = _top(p @ moments @ p, target - 1)
    for name in ("transformer.wte.weight", "transformer.wpe.weight"):
        m = _map(_np(params[name]), _np(r.params[name]))
        assert np.linalg.matrix_rank(m, tol=1e-6 * np.abs(m).max()) == target - 1, name
        assert _outside(m, top) < 1e-5, name
