"""A tied output head keeps the model's function when the width grows (gain="function").

The tied head is a copy of the word embedding (hidden axis ``out``: means kept), where an
untied head's hidden axis consumes (sums kept); the norm feeding the tied head is scaled by
``src_hidden / dst_hidden`` so that the logits stay the source's (``tied_head_factor``).
"""

from __future__ import annotations

import pytest
from botcore.adapters import resize_model

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def _llama(tied: bool):
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32,
                                   num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                   tie_word_embeddings=tied)
    return transformers.LlamaForCausalLM(cfg).eval(), cfg


def _gpt2():
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=50, n_embd=16, n_layer=2, n_head=4, n_positions=32,
                                  tie_word_embeddings=True)
    return transformers.GPT2LMHeadModel(cfg).eval(), cfg


@pytest.mark.parametrize("build", [lambda: _llama(True), lambda: _llama(False), _gpt2],
                         ids=["llama-tied", "llama-untied", "gpt2-tied"])
@pytest.mark.parametrize("method", ["bot", "net2net"])
def test_width_growth_keeps_the_logits_with_tied_and_untied_heads(build, method, tmp_path):
    model, cfg = build()
    model.save_pretrained(tmp_path / "src")
    target = {"hidden": 32} if cfg.model_type == "llama" else {"hidden": 32, "heads": 8}
    r = resize_model(tmp_path / "src", target, method=method, gain="function", out=tmp_path / "out")
    big = type(model).from_pretrained(r.out).eval()
    ids = torch.arange(1, 12)[None]
    with torch.no_grad():
        want, got = model(input_ids=ids).logits, big(input_ids=ids).logits
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    notes = [rec.treatment for rec in r.report if rec.signal.startswith("norm_final")]
    assert any("tied head" in t for t in notes) == bool(cfg.tie_word_embeddings)
