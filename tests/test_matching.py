"""``match=True``: each layer's FFN neurons and heads permuted before a BoT shrink.

The laws: the permutation alone (no resize) leaves every output unchanged to
1e-5 in each family, the permuted parameters load in the stock class; the
orders are permutations; duplicated neurons are found, so a matched Haar shrink
of a model whose FFN neurons come in identical pairs keeps its function (an
unmatched one does not); the option is refused where nothing is averaged, and
it is the same through the command line, on disk, and in memory.
"""

import dataclasses

import numpy as np
import pytest
from botcore.adapters import pipeline, resize_model
from botcore.adapters.matching import align_units, block_factor, group_units
from hypothesis import given, settings
from hypothesis import strategies as st

from botcore.errors import OptionError

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

SHRINK = {"layers": 2, "hidden": 8, "heads": 2, "ffn": 16}


def _models():
    t = transformers
    small = dict(hidden_size=16, num_hidden_layers=4, num_attention_heads=4, intermediate_size=32)
    vision = dict(small, image_size=8, patch_size=4, num_channels=1, num_labels=3)
    llama = dict(small, vocab_size=40, max_position_embeddings=16, tie_word_embeddings=False)
    return {
        "bert": (t.BertForMaskedLM, t.BertConfig(**small, vocab_size=40, max_position_embeddings=16)),
        "gpt2": (t.GPT2LMHeadModel, t.GPT2Config(n_embd=16, n_layer=4, n_head=4, n_inner=32,
                                                 vocab_size=40, n_positions=16)),
        "vit": (t.ViTForImageClassification, t.ViTConfig(**vision)),
        "llama-mha": (t.LlamaForCausalLM, t.LlamaConfig(**llama, num_key_value_heads=4)),
        "llama-gqa": (t.LlamaForCausalLM, t.LlamaConfig(**llama, num_key_value_heads=2)),
        "phi3": (t.Phi3ForCausalLM, t.Phi3Config(**llama, num_key_value_heads=4, pad_token_id=0)),
    }


def _randomize(model, seed=0):
    """Random weights and biases everywhere (zero biases would hide an unpermuted one)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            x = torch.randn(p.shape, generator=g)
            p.copy_(x.abs() * 0.5 + 0.5 if "norm" in name.lower() and name.endswith("weight") else x * 0.3)
    return model.eval()


def _inputs(config):
    g = torch.Generator().manual_seed(1)
    if hasattr(config, "image_size"):
        return {"pixel_values": torch.randn(2, 1, 8, 8, generator=g)}
    return {"input_ids": torch.randint(1, config.vocab_size, (2, 7), generator=g)}


def _outputs(model, x):
    with torch.no_grad():
        return model(**x).logits


def _load(cls, config, params):
    model = cls(config).eval()
    result = model.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in params.items()},
                                   strict=False)
    assert not result.unexpected_keys
    assert all(k.endswith("lm_head.weight") and config.tie_word_embeddings for k in result.missing_keys)
    return model


def _matched_only(params, config, target):
    """The source with ``target``'s matching applied and nothing resized: ``(params, plan)``."""
    shrink = pipeline.plan(params, target, config=config, match=True)
    same = dataclasses.replace(pipeline.plan(params, None, config=config), matching=shrink.matching)
    return pipeline.run(same)[0], shrink


@pytest.mark.parametrize("name", sorted(_models()))
def test_the_matching_alone_keeps_every_output(name):
    cls, cfg = _models()[name]
    model = _randomize(cls(cfg))
    params = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    before = {k: v.copy() for k, v in params.items()}
    matched, shrink = _matched_only(params, cfg.to_dict(), SHRINK)
    assert set(shrink.matching) >= {"ffn"}
    assert ("heads" in shrink.matching) == (name != "llama-gqa")  # GQA heads stay in place
    changed = [k for k in params if not np.array_equal(np.asarray(matched[k]), params[k])]
    assert any("bias" in k for k in changed) or name.startswith(("llama", "phi3"))
    x = _inputs(cfg)
    np.testing.assert_allclose(_outputs(_load(cls, cfg, matched), x), _outputs(model, x), atol=1e-5)
    assert all(np.array_equal(before[k], params[k]) for k in params)  # the input is untouched


def test_the_orders_of_a_plan_are_permutations_that_group_by_the_shrink():
    cls, cfg = _models()["bert"]
    params = {k: v.detach().numpy() for k, v in _randomize(cls(cfg)).state_dict().items()}
    plan = pipeline.plan(params, SHRINK, config=cfg.to_dict(), match=True)
    for key, orders in plan.matching.items():
        assert orders.shape[0] == 4
        for order in orders:
            assert sorted(order.tolist()) == list(range(orders.shape[1])), key
    assert any(n.startswith("match: ffn units aligned over blocks of 2 layers and grouped by 2")
               for n in plan.notes)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 5), st.sampled_from([1, 2, 4]), st.integers(1, 6), st.integers(0, 2**16))
def test_grouping_and_alignment_return_permutations(pairs, factor, width, seed):
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(pairs * factor, width))
    assert sorted(group_units(f, factor).tolist()) == list(range(pairs * factor))
    assert sorted(align_units(f, rng.permutation(f)).tolist()) == list(range(pairs * factor))


def test_alignment_finds_a_permuted_copy():
    f = np.random.default_rng(3).normal(size=(40, 7))
    perm = np.random.default_rng(4).permutation(40)
    assert np.array_equal(f[perm][align_units(f, f[perm])], f)


def test_only_power_of_two_shrinks_are_matched():
    assert [block_factor(n, m) for n, m in [(8, 4), (8, 2), (6, 4), (4, 8), (4, 4), (12, 3)]] == \
        [2, 4, 1, 1, 1, 4]


def _duplicated_bert(seed=0):
    """A BERT whose every FFN neuron appears twice (the copies at shuffled positions)."""
    cls, cfg = _models()["bert"]
    model = _randomize(cls(cfg), seed)
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for layer in model.bert.encoder.layer:
            w_in, b_in = layer.intermediate.dense.weight, layer.intermediate.dense.bias
            w_out = layer.output.dense.weight
            half = w_in.shape[0] // 2
            src = torch.as_tensor(rng.permutation(np.repeat(np.arange(half), 2)))
            w_in.copy_(w_in[:half][src])
            b_in.copy_(b_in[:half][src])
            w_out.copy_(w_out[:, :half][:, src] * 0.5)  # the two copies share one neuron's output
    return cls, cfg, model


@pytest.mark.parametrize("match", [True, False])
def test_a_matched_shrink_merges_duplicated_neurons_exactly(match):
    cls, cfg, model = _duplicated_bert()
    params = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    res = resize_model(params, {"ffn": 16}, config=cfg.to_dict(), gain="function", match=match)
    small = _load(cls, transformers.BertConfig(**res.config), res.params)
    x = _inputs(cfg)
    gap = float(np.abs(_outputs(small, x) - _outputs(model, x)).max())
    assert (gap < 1e-4) if match else (gap > 1e-2)


def test_match_is_refused_where_nothing_is_averaged():
    cls, cfg = _models()["bert"]
    params = {k: v.detach().numpy() for k, v in cls(cfg).state_dict().items()}
    with pytest.raises(OptionError, match="match=True.*method='weight_selection'"):
        resize_model(params, SHRINK, config=cfg.to_dict(), method="weight_selection", match=True)
    grown = pipeline.plan(params, {"ffn": 64}, config=cfg.to_dict(), match=True)
    assert grown.matching == {} and any("nothing shrinks by a power of two" in n for n in grown.notes)


def test_the_command_line_writes_what_the_api_returns(tmp_path):
    from botcore.cli import main

    cls, cfg = _models()["bert"]
    model = _randomize(cls(cfg))
    src = tmp_path / "src"
    model.save_pretrained(src)
    out = tmp_path / "out"
    assert main(["resize", str(src), str(out), "--layers", "2", "--ffn", "16", "--match"]) == 0
    from safetensors.numpy import load_file

    written = load_file(str(out / "model.safetensors"))
    api = resize_model(str(src), {"layers": 2, "ffn": 16}, match=True)
    for k, v in written.items():
        np.testing.assert_array_equal(v, np.asarray(api.params[k]), err_msg=k)
    reloaded = cls.from_pretrained(out)
    assert reloaded.config.num_hidden_layers == 2 and reloaded.config.intermediate_size == 16


def test_on_disk_equals_in_memory(tmp_path):
    cls, cfg = _models()["gpt2"]
    params = {k: v.detach().numpy() for k, v in _randomize(cls(cfg)).state_dict().items()}
    memory = resize_model(params, SHRINK, config=cfg.to_dict(), match=True)
    disk = resize_model(params, SHRINK, config=cfg.to_dict(), match=True, out=tmp_path / "o",
                        chunk_bytes=1)  # a tiny chunk: matching must still keep signals whole
    for k, v in memory.params.items():
        np.testing.assert_array_equal(np.asarray(disk.params[k]), np.asarray(v), err_msg=k)
