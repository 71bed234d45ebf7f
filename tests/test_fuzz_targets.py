"""Fuzzing target dictionaries and options of ``resize_model`` (any keys, any values).

Property (tests/fuzz_support.py): ``resize_model`` either returns a complete
result (every planned tensor, of the planned shape, finite) or raises a
:class:`botcore.BotError`; with ``out=`` the output loads, or nothing (and no
staging folder) is left. Never another exception, never a hang, never a huge
allocation from a huge target (the preflight refuses it from shapes).
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest
from botcore.adapters import resize_model
from fuzz_support import CONFIG, FUZZ, FUZZ_LONG, bert_params, check_api_outcome, no_hang
from hypothesis import event, given
from hypothesis import strategies as st

from botcore.errors import BotError
from botcore.names import METHODS, SIZES

PARAMS = bert_params()

#: the memory a fuzzed resize may use: a legitimately huge target (a million layers) is refused by
#: the preflight instead of running for minutes (``max_memory=None`` is drawn with small sizes only)
LIMIT = "512MB"
sizes = st.one_of(st.integers(1, 40), st.integers(-3, 0), st.integers(2**20, 2**40), st.just(2**64),
                  st.floats(allow_nan=True), st.booleans(), st.none(), st.text(max_size=3),
                  st.lists(st.integers(1, 8), max_size=2))
keys = st.one_of(st.sampled_from(SIZES), st.sampled_from(["hidden_size", "Layers", "", "depth"]))
targets = st.one_of(st.dictionaries(keys, sizes, max_size=4),
                    st.dictionaries(st.sampled_from(SIZES), st.integers(1, 40), min_size=1, max_size=3),
                    st.none(), st.integers(), st.lists(st.integers(), max_size=2), st.text(max_size=3))
options = st.fixed_dictionaries({}, optional={
    "method": st.sampled_from(METHODS + ("pruning", "")),
    "wavelet": st.sampled_from(["haar", "db2", "sym4", "morl", "nope", "bior2.2"]),
    "gain": st.sampled_from(["paper", "function", "std", "loud", None]),
    "mode": st.sampled_from(["periodization", "zero", "symmetric", "bogus"]),
    "dtype": st.sampled_from(["keep", "float16", "bfloat16", "float32", "int8"]),
    "max_memory": st.sampled_from([LIMIT, "1KB", "64MB", "0", "lots", 1, None]),
})


def _bounded(target, opts) -> dict:
    opts = dict(opts)
    if opts.get("max_memory", LIMIT) is None and not _small(target):
        opts["max_memory"] = LIMIT
    opts.setdefault("max_memory", LIMIT)
    return opts


def _small(target) -> bool:
    return isinstance(target, dict) and all(isinstance(v, int) and v <= 64 for v in target.values())


def _in_memory(target, opts) -> str:
    opts = _bounded(target, opts)
    try:
        with no_hang(60):
            result = resize_model(PARAMS, target, config=CONFIG, **opts)
    except BotError as exc:
        return type(exc).__name__
    params = dict(result.params)
    assert params, "an empty result"
    for name, value in params.items():
        assert isinstance(value, np.ndarray), (name, type(value))
        assert np.all(np.isfinite(value.astype(np.float32))), name
    return "ok"


def _on_disk(target, opts) -> str:
    opts = _bounded(target, opts)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out")
        return check_api_outcome(
            lambda: resize_model(PARAMS, target, config=CONFIG, out=out, **opts), out, tmp)


@FUZZ
@given(targets, options)
def test_fuzz_targets_in_memory(target, opts):
    event(_in_memory(target, opts))


@FUZZ
@given(st.dictionaries(st.sampled_from(SIZES), sizes, min_size=1, max_size=3), options)
def test_fuzz_targets_to_disk(target, opts):
    event(_on_disk(target, opts))


@pytest.mark.slow
@FUZZ_LONG
@given(targets, options)
def test_fuzz_targets_in_memory_long(target, opts):
    event(_in_memory(target, opts))


@pytest.mark.slow
@FUZZ_LONG
@given(st.dictionaries(st.sampled_from(SIZES), sizes, min_size=1, max_size=3), options)
def test_fuzz_targets_to_disk_long(target, opts):
    event(_on_disk(target, opts))
