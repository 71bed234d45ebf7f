"""``overwrite=True`` / ``--overwrite`` replace an output only once the new one is complete.

A run that fails part-way (weights that turn out non-finite, a progress callback
that raises, as a user's Ctrl-C handler would) must leave the previous output
byte for byte as it was, and leave no staging folder behind.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

safetensors_numpy = pytest.importorskip("safetensors.numpy")

from botcore.adapters import resize_model  # noqa: E402

import botcore  # noqa: E402
from botcore.cli import main  # noqa: E402

CONFIG = {"model_type": "bert", "num_hidden_layers": 2, "hidden_size": 16, "num_attention_heads": 4,
          "intermediate_size": 32, "vocab_size": 30, "max_position_embeddings": 12, "type_vocab_size": 2}
TARGET = {"hidden": 8}


def _params(*, nan=False):
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
    if nan:  # one bad value deep in the last layer: found only when that signal is resized
        params["encoder.layer.1.output.dense.weight"][3, 5] = np.nan
    return params


def _source(folder, **kw):
    folder.mkdir()
    safetensors_numpy.save_file(_params(**kw), str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(CONFIG))
    return folder


def _snapshot(folder):
    return {p: (folder / p).read_bytes() for p in sorted(os.listdir(folder))}


@pytest.fixture
def previous(tmp_path):
    """A good output written first, and its bytes."""
    out = tmp_path / "out"
    resize_model(_source(tmp_path / "good"), TARGET, out=out)
    return out, _snapshot(out)


def _left(tmp_path):
    return sorted(os.listdir(tmp_path))


def test_nonfinite_weights_found_while_writing_keep_the_previous_output(tmp_path, previous):
    out, before = previous
    bad = _source(tmp_path / "bad", nan=True)
    with pytest.raises(botcore.NonFiniteError):
        resize_model(bad, {"hidden": 4}, out=out, overwrite=True)
    assert _snapshot(out) == before
    assert _left(tmp_path) == ["bad", "good", "out"]


def test_a_failing_progress_callback_keeps_the_previous_output(tmp_path, previous):
    out, before = previous

    class Stop(Exception):
        pass

    def stop(done, total, name):
        if done == total - 1:  # almost everything has been written
            raise Stop(name)

    with pytest.raises(Stop):
        resize_model(tmp_path / "good", {"hidden": 4}, out=out, overwrite=True, progress=stop)
    assert _snapshot(out) == before
    assert _left(tmp_path) == ["good", "out"]


def test_cli_overwrite_that_fails_keeps_the_previous_output(tmp_path, previous, capsys):
    out, before = previous
    bad = _source(tmp_path / "bad", nan=True)
    assert main(["resize", str(bad), str(out), "--hidden", "4", "--overwrite", "--quiet"]) == 1
    assert "error:" in capsys.readouterr().err
    assert _snapshot(out) == before
    assert _left(tmp_path) == ["bad", "good", "out"]


def test_a_successful_overwrite_replaces_the_output(tmp_path, previous):
    out, before = previous
    resize_model(tmp_path / "good", {"hidden": 4}, out=out, overwrite=True)
    after = _snapshot(out)
    assert after != before and json.loads(after["config.json"])["hidden_size"] == 4
    assert _left(tmp_path) == ["good", "out"]
