"""ONNX Runtime's symbolic shape inference, driven without its working-directory side effect."""

from __future__ import annotations

import os

import pytest
from fuzz_support import minilm_onnx, tiny_onnx


def test_the_driver_equals_onnx_runtimes_and_writes_nothing(tmp_path, monkeypatch):
    onnx = pytest.importorskip("onnx")
    from botcore.adapters.onnx.graph import _infer_symbolic, _symbolic_engine

    engine, path = _symbolic_engine(), minilm_onnx()
    if engine is None or path is None:
        pytest.skip("needs onnxruntime's symbolic_shape_infer and the MiniLM ONNX package")
    model = onnx.load(str(tiny_onnx(tmp_path)))  # the real graph's structure, 1 layer
    (tmp_path / 'cwd').mkdir()
    monkeypatch.chdir(tmp_path / 'cwd')  # ORT saves sym_shape_infer_temp.onnx here when it gives up
    ours = _infer_symbolic(engine, model)
    theirs = engine.infer_shapes(model, auto_merge=True, guess_output_rank=True)
    assert ours is not None and ours.graph.value_info == theirs.graph.value_info
    assert len(ours.graph.value_info) > 30
    assert os.listdir(tmp_path / 'cwd') == []
