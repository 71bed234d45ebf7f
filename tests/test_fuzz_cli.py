"""Fuzzing ``botcore`` argument vectors: flags, values and paths in any order.

Property (tests/fuzz_support.py): the command exits 0 (and what it wrote loads),
1 with exactly one clear stderr line (never the "unexpected" line), or 2 (a
command line argparse rejects); it never raises, hangs, writes a partial output
or leaves a staging folder. Every path points into a fresh temporary folder.
``demo`` (minutes of real work) and ``--scheduler`` (network time-outs) are left
out; their refusals are cases of tests/test_bad_input.py.
"""

from __future__ import annotations

import os
import tempfile

import pytest
from fuzz_support import FUZZ, FUZZ_LONG, check_cli_outcome, outcome_label, output_loads, write_model
from hypothesis import event, given
from hypothesis import strategies as st

pytest.importorskip("safetensors")

VALUED = ["--layers", "--hidden", "--heads", "--kv-heads", "--head-dim", "--ffn", "--method", "--wavelet",
          "--gain", "--mode", "--config", "--family", "--dtype", "--max-shard-size", "--max-memory",
          "--plot", "--levels", "--out"]
SWITCHES = ["--overwrite", "--allow-nonfinite", "--quiet", "--all", "--debug", "--help", "--version", "-h"]
VALUES = ["1", "2", "3", "4", "8", "16", "32", "0", "-1", "7", "1000000", "99999999999999999999", "x", "",
          "bot", "net2net", "weight_selection", "layer_select", "haar", "db2", "morl", "paper", "std",
          "function", "zero", "periodization", "bert", "llama", "resnet", "keep", "float16", "int8",
          "1KB", "5GB", "lots", "2GiB"]
PATHS = ["{src}", "{src}/config.json", "{src}/model.safetensors", "{tmp}", "{tmp}/missing", "{tmp}/out",
         "{tmp}/out.onnx", "{tmp}/out.gguf", "{tmp}/s.png", "{tmp}/s.txt", "{tmp}/no/dir/out", "{tmp}/out"]

GOOD_SIZES = ["1", "2", "3", "4", "8", "16", "32", "7"]
sizes = st.sampled_from(GOOD_SIZES * 3 + ["0", "-1", "x", "", "1000000", "99999999999999999999"])
OPTIONS = {"resize": ["--method", "--wavelet", "--gain", "--mode", "--config", "--family", "--dtype",
                      "--max-shard-size", "--max-memory"],
           "inspect": ["--wavelet", "--config", "--family", "--plot", "--levels"]}
OPTION_VALUES = {"--method": ["bot", "weight_selection", "layer_select", "net2net"],
                 "--wavelet": ["haar", "db2", "sym4", "bior2.2", "morl"], "--gain": ["paper", "function", "std"],
                 "--mode": ["periodization", "zero"], "--family": ["bert", "llama", "gpt2", "vit", "resnet"],
                 "--dtype": ["keep", "float16", "bfloat16", "float32"], "--levels": GOOD_SIZES,
                 "--max-shard-size": ["1KB", "5GB", "100", "0"], "--max-memory": ["1KB", "256MB", "0"]}
tokens = st.one_of(st.sampled_from(VALUED), st.sampled_from(SWITCHES), st.sampled_from(VALUES),
                   st.sampled_from(PATHS), st.text(max_size=4))


@st.composite
def argvs(draw, *, clean: bool = False):
    """A subcommand and flag/value pairs; ``clean``: only values the parser accepts."""
    command = draw(st.sampled_from(["resize", "inspect"] if clean else
                                   ["resize", "resize", "inspect", "inspect", "frobnicate", ""]))
    argv = [command] if command else []
    if command == "resize":  # a huge (legitimate) target is refused by the preflight, not run for minutes
        argv += ["--max-memory", "512MB"]
    if clean or (command in ("resize", "inspect") and draw(st.sampled_from([True] * 5 + [False]))):
        argv.append(draw(st.sampled_from(PATHS[:3] + ["{tmp}/missing", "{tmp}"])))
        if command == "resize":
            argv.append(draw(st.sampled_from(PATHS[5:])))
    junk = [] if clean else ["x", "", "0", "lots"]
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["size"] * 5 + ["option"] * 3 + ["switch"] + ([] if clean else ["token"])))
        if kind == "size":
            argv += [draw(st.sampled_from(VALUED[:6])), draw(st.sampled_from(GOOD_SIZES) if clean else sizes)]
        elif kind == "option":
            flag = draw(st.sampled_from(OPTIONS.get(command, VALUED[6:])))
            good = OPTION_VALUES.get(flag, PATHS)
            argv += [flag, draw(st.sampled_from(good * 4 + junk))]
        elif kind == "switch":
            argv.append(draw(st.sampled_from(SWITCHES[:4] * 3 + ([] if clean else SWITCHES[4:]))))
        else:
            argv.append(draw(tokens))
    return argv


any_argv = st.one_of(argvs(clean=True), argvs())


def _check(argv) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        src = str(write_model(os.path.join(tmp, "src")))
        argv = [a.format(src=src, tmp=tmp) if a in PATHS else a for a in argv]
        if argv and argv[0] == "demo" or any(a == "--scheduler" for a in argv):
            return "skipped"
        before = set(os.listdir(tmp))
        outcome = check_cli_outcome(argv, None, tmp)
        if outcome.startswith("botcore"):  # an error: nothing new in the folder
            assert set(os.listdir(tmp)) == before, (argv, outcome)
        for name in set(os.listdir(tmp)) - before:
            if not name.endswith((".png", ".svg", ".pdf")):
                output_loads(os.path.join(tmp, name))
        return outcome_label(outcome)


@FUZZ
@given(any_argv)
def test_fuzz_cli_argv(argv):
    event(_check(argv))


@pytest.mark.slow
@FUZZ_LONG
@given(any_argv)
def test_fuzz_cli_argv_long(argv):
    event(_check(argv))
