"""Fuzzing ``config.json``: types, missing and contradictory fields, through the command line.

Property (tests/fuzz_support.py): ``botcore resize`` on a real tiny BERT checkpoint
whose config was mangled either succeeds and its output loads, or exits 1 with one
clear line (never the "unexpected" line); nothing partial, no staging folder, no hang.
"""

from __future__ import annotations

import json
import os
import tempfile

import pytest
from fuzz_support import CONFIG, FUZZ, FUZZ_LONG, bert_params, check_cli_outcome, write_model
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

pytest.importorskip("safetensors")

SIZE_KEYS = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size")
OTHER_KEYS = ("model_type", "architectures", "vocab_size", "max_position_embeddings", "type_vocab_size",
              "hidden_act", "layer_norm_eps", "pad_token_id")
#: fields of other families and options that can contradict the BERT ones
EXTRA_KEYS = ("num_key_value_heads", "head_dim", "n_embd", "n_head", "n_layer", "n_inner", "d_model",
              "tie_word_embeddings", "text_config", "torch_dtype", "num_layers")

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64),
                         st.floats(allow_nan=False), st.text(max_size=8))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)), max_leaves=6)
small_sizes = st.integers(1, 64)
EXTRA_VALUES = {"tie_word_embeddings": st.booleans(), "torch_dtype": st.sampled_from(["float16", "int8", "x"]),
                "text_config": st.fixed_dictionaries({"hidden_size": small_sizes})}


@st.composite
def structural_configs(draw):
    """Keys dropped, families and names changed, fields added that contradict: sizes stay small ints."""
    cfg = dict(CONFIG)
    for key in draw(st.lists(st.sampled_from(SIZE_KEYS + OTHER_KEYS), unique=True, max_size=3)):
        del cfg[key]
    for key in draw(st.lists(st.sampled_from(SIZE_KEYS), unique=True, max_size=2)):
        cfg[key] = draw(small_sizes)
    if draw(st.booleans()):
        cfg["model_type"] = draw(st.sampled_from(["gpt2", "llama", "vit", "resnet", "", "BERT", "bert"]))
    if draw(st.booleans()):
        cfg["architectures"] = draw(st.sampled_from(
            [[], ["BertForMaskedLM"], ["LlamaForCausalLM"], ["Nope"], "BertModel", None]))
    for key in draw(st.lists(st.sampled_from(EXTRA_KEYS), unique=True, max_size=3)):
        cfg[key] = draw(EXTRA_VALUES.get(key, st.one_of(small_sizes, st.none())))
    return cfg


@st.composite
def valued_configs(draw):
    """Any JSON value (any type, any range) in the size fields and the others."""
    cfg = dict(CONFIG)
    for key in draw(st.lists(st.sampled_from(SIZE_KEYS + OTHER_KEYS + EXTRA_KEYS), unique=True,
                             min_size=1, max_size=3)):
        cfg[key] = draw(json_values)
    layers = cfg.get("num_hidden_layers")
    if isinstance(layers, int) and layers > 4096:  # REQUESTS 2: a huge count is an uninterruptible
        cfg["num_hidden_layers"] = 4096             # C loop today (see test_bad_input.py, slow)
    return cfg


targets = st.sampled_from([["--hidden", "8"], ["--layers", "1"], ["--hidden", "32", "--heads", "8"],
                           ["--ffn", "16"]])


def _check(cfg, target):
    with tempfile.TemporaryDirectory() as tmp:
        src = write_model(os.path.join(tmp, "src"), bert_params(), json.dumps(cfg))
        out = os.path.join(tmp, "out")
        check_cli_outcome(["resize", src, out, *target, "--quiet"], out, tmp)
        assert sorted(os.listdir(tmp)) in (["src"], ["out", "src"])


@FUZZ
@given(structural_configs(), targets)
def test_fuzz_config_fields(cfg, target):
    _check(cfg, target)


#: a known failure needs no shrinking: report the first one
NO_SHRINK = dict(phases=[Phase.explicit, Phase.reuse, Phase.generate])


@settings(FUZZ)
@given(valued_configs(), targets)
def test_fuzz_config_values(cfg, target):
    _check(cfg, target)


@pytest.mark.slow
@FUZZ_LONG
@given(structural_configs(), targets)
def test_fuzz_config_fields_long(cfg, target):
    _check(cfg, target)


@pytest.mark.slow
@settings(FUZZ_LONG)
@given(valued_configs(), targets)
def test_fuzz_config_values_long(cfg, target):
    _check(cfg, target)
