"""Decoder families on tiny random models of the real transformers classes: Qwen3, Gemma 1/2/3,
Phi-3, OLMo 2, and the sliding-window configs of Mistral and Qwen2 (Llama family).

What the algebra says (docs/adapters.md, "Decoder families"): a Haar width growth by 2 with
``gain="function"`` and head_dim kept replicates every residual feature, every head (and its
KV head, so GQA groups stay aligned) and every FFN unit, and halves the weights that read a
replicated axis. Every norm (RMSNorm over hidden, Qwen3/Gemma 3 per-head q/k norms, OLMo 2
q/k norms over the whole width, Gemma's post-sublayer norms) sees replicated entries, so its
RMS is unchanged; RoPE frequencies are unchanged because head_dim is; soft-capping acts on
pre-cap logits that are unchanged. So the logits are the source's up to float32 rounding. It
needs Gemma's embedding scaled by sqrt(src/dst) (the model multiplies it by sqrt(hidden)) and,
with Gemma's tied head, the final norm's 1 + w scaled by sqrt(src/dst) instead of src/dst.
Not exact, and not asserted: any shrink, any depth change, a head_dim change (RoPE frequencies
move, per-head norms see new widths).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from botcore.adapters import detect_family, plan_model, resize_model
from botcore.adapters.families.windows import period

from botcore.errors import TargetError, UnsupportedModelError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

S, F = "sliding_attention", "full_attention"
_BASE = dict(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
             intermediate_size=64, vocab_size=50, pad_token_id=0, bos_token_id=0, eos_token_id=0)
_GEMMA = dict(_BASE, head_dim=16, query_pre_attn_scalar=16, sliding_window=4)


def _configs():
    t = transformers
    return {  # name: (model class, config, family)
        "qwen3": (t.Qwen3ForCausalLM, t.Qwen3Config(**_BASE, head_dim=16, use_sliding_window=True,
                                                     sliding_window=4, max_window_layers=1), "qwen3"),
        "gemma": (t.GemmaForCausalLM, t.GemmaConfig(**_BASE, head_dim=16), "gemma"),
        "gemma2": (t.Gemma2ForCausalLM, t.Gemma2Config(**_GEMMA, attn_logit_softcapping=2.0,
                                                       final_logit_softcapping=1.5), "gemma2"),
        "gemma3": (t.Gemma3ForCausalLM, t.Gemma3TextConfig(**_GEMMA, layer_types=[S, F]), "gemma3"),
        "phi3": (t.Phi3ForCausalLM, t.Phi3Config(**_BASE, partial_rotary_factor=0.5, sliding_window=4),
                 "phi3"),
        "olmo2": (t.Olmo2ForCausalLM, t.Olmo2Config(**_BASE), "olmo2"),
        "mistral": (t.MistralForCausalLM, t.MistralConfig(**_BASE, sliding_window=4), "llama"),
        "qwen2": (t.Qwen2ForCausalLM, t.Qwen2Config(**_BASE, use_sliding_window=True, sliding_window=4,
                                                    max_window_layers=1), "llama"),
    }


NAMES = tuple(_configs())
IDS = torch.arange(1, 12)[None]  # 11 tokens: longer than the sliding windows (4)


class Source:
    def __init__(self, name, root):
        cls, cfg, self.family = _configs()[name]
        torch.manual_seed(0)
        self.cls, self.model = cls, cls(cfg).eval()
        with torch.no_grad():  # non-trivial norms (Gemma's w != 0), so every tensor matters
            for p in self.model.parameters():
                p.add_(0.1 * torch.randn_like(p))
        self.dir = root / name / "src"
        self.model.save_pretrained(self.dir)
        self.root = root / name
        self.logits = _logits(self.model)
        self.config = self.model.config.to_dict()

    def resize(self, target, tag, **kw):
        r = resize_model(self.dir, target, out=self.root / tag, **kw)
        model, info = self.cls.from_pretrained(r.out, output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"], info
        assert not info["mismatched_keys"], info
        return r, model.eval()


def _logits(model):
    with torch.no_grad():
        return model(input_ids=IDS).logits


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("decoders")
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = Source(name, root)
        return cache[name]

    return get


@pytest.mark.parametrize("name", NAMES)
def test_same_size_resize_loads_and_reproduces_the_logits(sources, name):
    src = sources(name)
    r, model = src.resize(None, "same")
    assert r.family == src.family
    assert torch.equal(_logits(model), src.logits)
    for key in ("layer_types", "sliding_window", "max_window_layers", "head_dim",
                "query_pre_attn_scalar", "attn_logit_softcapping", "final_logit_softcapping"):
        assert model.config.to_dict().get(key) == src.config.get(key), key


@pytest.mark.parametrize("name", NAMES)
def test_haar_width_growth_with_function_gain_keeps_the_logits(sources, name):
    src = sources(name)
    r, model = src.resize({"hidden": 64}, "grow", gain="function", wavelet="haar")
    assert (r.sizes["heads"], r.sizes["kv_heads"], r.sizes["head_dim"]) == (
        8, 4, src.config.get("head_dim") or 8)
    got = _logits(model)
    err = (got - src.logits).abs().max().item()
    assert err < 2e-5, err  # measured 1.2e-6 .. 2.0e-6 (float32 rounding); logits are O(1)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("target", [{"layers": 1, "hidden": 16}, {"layers": 3, "hidden": 64},
                                    {"layers": 5}], ids=["shrink", "grow", "deeper"])
def test_shrink_and_depth_changes_load_with_consistent_layer_patterns(sources, name, target):
    src = sources(name)
    r, model = src.resize(target, "t" + "-".join(f"{k}{v}" for k, v in target.items()))
    assert torch.isfinite(_logits(model)).all()
    cfg, layers = model.config, target["layers"]
    assert cfg.num_hidden_layers == layers and cfg.hidden_size == target.get("hidden", 32)
    assert getattr(cfg, "sliding_window", None) == src.config.get("sliding_window")
    types = src.config.get("layer_types")
    if name.startswith("gemma") and types:  # the source's period repeated
        p = period(types)
        assert cfg.layer_types == [types[i % p] for i in range(layers)]
    if name in ("qwen3", "qwen2"):  # Qwen's own rule rebuilds the written layer_types
        assert cfg.layer_types == [S if i >= cfg.max_window_layers else F for i in range(layers)]
        # source [F, S]: new layer i takes source layer layer_indices(2, m)[i] (ends kept)
        assert cfg.layer_types == {1: [S], 3: [F, S, S], 5: [F, F, S, S, S]}[layers]


def _norms(params):
    return {k: v for k, v in params.items() if k.endswith("norm.weight")}


@pytest.mark.parametrize("gain,wavelet", [("paper", "db2"), ("std", "haar"), ("function", "haar")])
def test_gemma_resizes_the_effective_gain_one_plus_w(sources, gain, wavelet):
    # Gemma (1) has Llama's names; a Llama checkpoint whose norms hold g = 1 + w is the same model.
    src = sources("gemma")
    gemma = {k: v.detach().clone() for k, v in src.model.state_dict().items() if k != "lm_head.weight"}
    llama = {k: v + 1 if k in _norms(gemma) else v for k, v in gemma.items()}
    cfg = {k: v for k, v in src.config.items() if k not in ("model_type", "architectures")}
    target = {"layers": 1, "hidden": 16}
    g = resize_model(gemma, target, config=dict(cfg, model_type="gemma",
                                                architectures=["GemmaForCausalLM"]), gain=gain,
                     wavelet=wavelet)
    ll = resize_model(llama, target, config=dict(cfg, model_type="llama", tie_word_embeddings=True,
                                                 architectures=["LlamaForCausalLM"]), gain=gain,
                      wavelet=wavelet)
    r = 32 / 16 if gain == "function" else 1.0  # src/dst where the resize keeps the function
    for k, want in ll.params.items():
        got = g.params[k].double()
        if k in _norms(gemma):
            got = got + 1
        if k == "model.embed_tokens.weight":
            want = want * r ** 0.5  # Gemma multiplies the embedding by sqrt(hidden)
        if k == "model.norm.weight":  # feeds the tied head: llama got r, Gemma r / sqrt(r)
            want = want / r ** 0.5
        torch.testing.assert_close(got, want.double(), rtol=1e-5, atol=1e-6, msg=k)
    notes = {rec.signal: rec.treatment for rec in g.report}
    assert "1 + w" in notes["norm1.weight"] and "1 + w" not in notes["q"]


@pytest.mark.parametrize("name", ["qwen3", "gemma2", "gemma3", "phi3", "olmo2", "mistral"])
def test_gqa_targets_are_validated_before_reading(sources, name):
    src = sources(name)
    with pytest.raises(TargetError, match="kv_heads=3 does not divide heads=8"):
        plan_model(src.dir, {"heads": 8, "kv_heads": 3})
    with pytest.raises(TargetError, match="query group size 2"):
        plan_model(src.dir, {"hidden": 40})  # 5 heads; kv_heads left out: groups of 2 must stay
    p = plan_model(src.dir, {"heads": 8, "kv_heads": 8})  # multi-head attention is a valid target
    assert p.config["num_key_value_heads"] == 8


def test_gemma_refuses_hidden_not_a_multiple_of_heads(sources):
    with pytest.raises(TargetError, match="hidden=32 is not a multiple of heads=6"):
        plan_model(sources("gemma2").dir, {"heads": 6, "kv_heads": 3, "head_dim": 16})


def test_phi3_refuses_a_head_dim_change_with_longrope_factors(tmp_path):
    rope = {"rope_type": "longrope", "rope_theta": 10000.0, "partial_rotary_factor": 1.0,
            "short_factor": [1.0] * 4, "long_factor": [2.0] * 4}
    cfg = transformers.Phi3Config(**_BASE, rope_parameters=rope, original_max_position_embeddings=16)
    transformers.Phi3ForCausalLM(cfg).save_pretrained(tmp_path / "src")
    with pytest.raises(TargetError, match="keep head_dim=8"):
        plan_model(tmp_path / "src", {"hidden": 64, "heads": 4})
    assert plan_model(tmp_path / "src", {"hidden": 64}).sizes["head_dim"] == 8


def test_multimodal_gemma3_is_refused_with_the_way_out():
    cfg = {"model_type": "gemma3", "text_config": dict(_GEMMA), "vision_config": {}}
    with pytest.raises(UnsupportedModelError, match="gemma3_text"):
        plan_model({"model.embed_tokens.weight": np.zeros((50, 32), np.float32)}, None, config=cfg)


@pytest.mark.parametrize("name", NAMES)
def test_families_are_detected_from_model_type_and_from_names(sources, name):
    src = sources(name)
    names = dict.fromkeys(src.model.state_dict())
    assert detect_family(names, src.config) == src.family
    by_names = "llama" if name == "gemma" else src.family  # Gemma 1's names are Llama's
    assert detect_family(names, {}) == by_names
