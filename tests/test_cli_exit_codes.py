"""Exit statuses of the public ``botcore`` command, one per class of failure, in fresh processes.

Pinned: 0 success (and ``--help``/``--version``); 2 a command line argparse rejects
(and no subcommand); 1 every error while running (each botcore error class, a
missing file, a missing optional dependency, which adds the install hint); 130
an interrupt (Ctrl-C), which says nothing was written; 1 and silence when the
reader of stdout goes away (``botcore inspect ... | head``). Every failure is one
line on stderr and leaves no output behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

safetensors_numpy = pytest.importorskip("safetensors.numpy")

BOTCORE = [sys.executable, "-m", "botcore"]
CONFIG = {"model_type": "bert", "num_hidden_layers": 2, "hidden_size": 16, "num_attention_heads": 4,
          "intermediate_size": 32, "vocab_size": 30, "max_position_embeddings": 12, "type_vocab_size": 2}


def _params(extra=None):
    rng = np.random.default_rng(0)
    shapes = {"embeddings.word_embeddings.weight": (30, 16),
              "embeddings.position_embeddings.weight": (12, 16),
              "embeddings.token_type_embeddings.weight": (2, 16),
              "embeddings.LayerNorm.weight": (16,), "embeddings.LayerNorm.bias": (16,)}
    for i in range(2):
        for name, shape in [("attention.self.query", (16, 16)), ("attention.self.key", (16, 16)),
                            ("attention.self.value", (16, 16)), ("attention.output.dense", (16, 16)),
                            ("intermediate.dense", (32, 16)), ("output.dense", (16, 32))]:
            shapes[f"encoder.layer.{i}.{name}.weight"] = shape
            shapes[f"encoder.layer.{i}.{name}.bias"] = shape[:1]
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes[f"encoder.layer.{i}.{ln}.weight"] = (16,)
            shapes[f"encoder.layer.{i}.{ln}.bias"] = (16,)
    params = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    params.update(extra or {})
    return params


def _model(folder, extra=None, config=CONFIG):
    folder.mkdir()
    safetensors_numpy.save_file(_params(extra), str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture
def tiny(tmp_path):
    return _model(tmp_path / "tiny")


def _run(*argv, code=None):
    argv = [str(a) for a in argv]
    cmd = BOTCORE + argv if code is None else [sys.executable, "-c", code, *argv]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _one_line(err: str, command: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"botcore {command}: error: "), lines[0]
    assert "Traceback" not in err
    return lines[0]


# --------------------------------------------------------------------------- 0 and 2


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["resize", "--help"], ["inspect", "--help"]])
def test_help_and_version_exit_0(argv):
    r = _run(*argv)
    assert r.returncode == 0 and r.stdout and not r.stderr


@pytest.mark.parametrize("argv", [
    ["resize", "a", "b", "--layers", "0"],
    ["resize", "a", "b", "--hidden", "x"],
    ["resize", "a", "b", "--method", "magic"],
    ["resize", "a", "b", "--gain", "loud"],
    ["resize", "a"],
    ["inspect", "a", "--no-such-flag"],
    ["frobnicate"],
])
def test_command_lines_argparse_rejects_exit_2(argv):
    r = _run(*argv)
    assert r.returncode == 2, r
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("botcore") and "error:" in lines[0], r.stderr
    assert "--help" in lines[0] and "Traceback" not in r.stderr


def test_no_subcommand_exits_2_with_the_usage():
    r = _run()
    assert r.returncode == 2 and "usage:" in r.stderr


# --------------------------------------------------------------------------- 1: each error class


def _cases(tmp_path, tiny):
    bad_key = _model(tmp_path / "extra", {"adapter.down.weight": np.zeros((2, 2), np.float32)})
    out = tmp_path / "out"
    (tmp_path / "existing").mkdir()
    return {
        # class: (argv, a word the line must hold)
        "TargetError": (["resize", tiny, out, "--heads", "5"], "heads"),
        "TargetError (net2net shrinks)": (["resize", tiny, out, "--hidden", "8", "--method", "net2net"],
                                          "grows"),
        "WaveletError": (["resize", tiny, out, "--hidden", "8", "--wavelet", "nope"], "nope"),
        "ModeError": (["resize", tiny, out, "--hidden", "8", "--wavelet", "db2", "--mode", "zero"],
                      "periodization"),
        "ParameterKeyError": (["resize", bad_key, out, "--hidden", "8"], "adapter.down.weight"),
        "UnsupportedModelError": (["resize", tiny, out, "--hidden", "8", "--family", "resnet"],
                                  "resnet"),
        "OutputExistsError": (["resize", tiny, tmp_path / "existing", "--hidden", "8"], "exists"),
        "output folder missing": (["resize", tiny, tmp_path / "no" / "out", "--hidden", "8"], "exist"),
        "source missing (OSError)": (["resize", tmp_path / "nothing", out, "--hidden", "8"], "nothing"),
        "not a model": (["inspect", tmp_path], "tmp"),
    }


CASES = ["TargetError", "TargetError (net2net shrinks)", "WaveletError", "ModeError",
         "ParameterKeyError", "UnsupportedModelError", "OutputExistsError", "output folder missing",
         "source missing (OSError)", "not a model"]


@pytest.mark.parametrize("case", CASES)
def test_every_error_class_exits_1_with_one_line(case, tmp_path, tiny):
    argv, needle = _cases(tmp_path, tiny)[case]
    before = sorted(os.listdir(tmp_path))
    r = _run(*argv)
    assert r.returncode == 1, (r.returncode, r.stderr)
    line = _one_line(r.stderr, argv[0])
    assert needle in line, line
    assert "unexpected" not in line  # a deliberate error, not a bug report
    assert sorted(os.listdir(tmp_path)) == before  # nothing written, no staging left


def test_a_missing_optional_dependency_exits_1_with_the_install_hint(tiny, tmp_path):
    code = ("import sys; sys.modules['matplotlib'] = None; from botcore.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    r = _run("inspect", tiny, "--plot", tmp_path / "s.png", code=code)
    assert r.returncode == 1
    line = _one_line(r.stderr, "inspect")
    assert "matplotlib" in line and "pip install" in line
    assert not (tmp_path / "s.png").exists()


# --------------------------------------------------------------------------- 130 and broken pipes


def test_an_interrupt_exits_130_and_writes_nothing(tmp_path):
    """The source's config is a FIFO nobody writes: the command blocks reading it until Ctrl-C."""
    src = tmp_path / "blocked"
    src.mkdir()
    safetensors_numpy.save_file(_params(), str(src / "model.safetensors"))
    os.mkfifo(src / "config.json")
    p = subprocess.Popen(BOTCORE + ["resize", str(src), str(tmp_path / "out"), "--hidden", "8"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2.0)  # long past start-up; the process waits on the FIFO for ever
        assert p.poll() is None, p.communicate()
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("botcore resize: "), err
    assert "interrupted" in lines[0] and "nothing was written" in lines[0]
    assert sorted(os.listdir(tmp_path)) == ["blocked"]


def test_a_closed_stdout_exits_1_silently(tiny):
    """``botcore inspect DIR | head -0``: the reader left; no traceback, no 'Exception ignored'."""
    p = subprocess.Popen(BOTCORE + ["inspect", str(tiny), "--all"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    p.stdout.close()
    with p.stderr:
        err = p.stderr.read().decode()
    p.wait(timeout=120)
    assert p.returncode == 1, err
    assert err == ""


def test_success_exits_0_and_writes_the_output(tiny, tmp_path):
    r = _run("resize", tiny, tmp_path / "out", "--hidden", "8", "--quiet")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "config.json").is_file()
