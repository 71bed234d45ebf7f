"""The dimension algebra and the propagation on small hand-built graphs (no exporter, no torch)."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from botcore.adapters.onnx.dims import Algebra, UnifyError  # noqa: E402
from botcore.adapters.onnx.graph import GraphIndex  # noqa: E402
from botcore.adapters.onnx.propagate import Propagation, reshape_groups  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

SIZES = {"hidden": 64, "heads": 4, "kv_heads": 2, "head_dim": 16, "ffn": 128}


def _alg(gqa=True, free=True):
    return Algebra(dict(SIZES, kv_heads=2 if gqa else 4), gqa=gqa, free_head_dim=free)


# -- the algebra ----------------------------------------------------------------------------
def test_a_product_splits_into_its_factors_by_size_and_merges_back():
    alg = _alg()
    q = alg.dim("heads", "head_dim")
    left, right = alg.unify([(q, 64)], [(None, 4), (None, 16)])
    assert [str(d) for d in right] == ["kv_heads*group", "head_dim"]
    left, right = alg.unify([(None, 2), (None, 2), (None, 16)], [(q, 64)])
    assert [str(d) for d in left] == ["kv_heads", "group", "head_dim"]


def test_literal_parts_are_named_by_the_side_that_knows_them():
    alg = _alg()
    merged = alg.merge(alg.dim("kv_heads", 2), alg.dim("heads"))
    assert str(merged) == "kv_heads*group"


def test_an_atom_split_in_a_way_sizes_do_not_determine_is_refused():
    alg = _alg()
    with pytest.raises(UnifyError, match="cannot be split"):
        alg.unify([(alg.dim("hidden"), 64)], [(None, 16), (None, 4)])  # hidden is no product in Llama
    bert = _alg(gqa=False, free=False)  # BERT: hidden = heads * head_dim, so the split is known
    _, right = bert.unify([(bert.dim("hidden"), 64)], [(None, 4), (None, 16)])
    assert [str(d) for d in right] == ["heads", "head_dim"]


def test_two_atoms_on_one_axis_are_refused():
    alg = Algebra(dict(SIZES, ffn=64), gqa=True, free_head_dim=True)
    with pytest.raises(UnifyError, match="meet"):
        alg.merge(alg.dim("ffn"), alg.dim("hidden"))
    with pytest.raises(UnifyError, match="cannot be split"):
        alg.merge(alg.dim("ffn"), alg.dim(2, "head_dim", 2))


def test_cuts_and_concatenations_scale_with_the_sizes():
    alg = _alg()
    half = alg.cut(alg.dim("head_dim"), 8, 16)
    assert str(half) == "1/2*head_dim"
    assert str(alg.concat([(half, 8), (half, 8)])) == "head_dim"
    qkv = alg.concat([(alg.dim("heads", "head_dim"), 64), (alg.dim("kv_heads", "head_dim"), 32),
                      (alg.dim("kv_heads", "head_dim"), 32)])
    target = dict(SIZES, heads=8, kv_heads=2, head_dim=8)
    assert alg.value(qkv) == 128 and alg.value(qkv, target) == 96
    assert alg.position(qkv, 96, target) == 80  # the start of v


def test_rule_text_of_an_axis():
    alg = _alg()
    assert alg.rule_text(alg.dim("heads", "head_dim"), contracted=True) == ("heads*head_dim",
                                                                           "in_head*in_head_dim")
    assert alg.rule_text(alg.dim(2, "hidden"), contracted=True) == ("2*hidden", "fixed*in")
    assert alg.rule_text(alg.cut(alg.dim("head_dim"), 0, 8), contracted=False) is None  # a fraction
    assert alg.rule_text(None, contracted=False) == ("_", "fixed")


def test_reshape_groups_pair_axes_of_equal_size_also_with_symbolic_dims():
    assert reshape_groups(("b", "s", 64), ("b", "s", 4, 16)) == [([0], [0]), ([1], [1]), ([2], [2, 3])]
    assert reshape_groups(("b", 4, "s", 16), ("4*b", "s", 16)) == [([0, 1], [0]), ([2], [1]), ([3], [2])]
    assert reshape_groups(("b", 16, 64), (1, "b", 4, 4, 64)) == [([0], [0, 1]), ([1], [2, 3]), ([2], [4])]


# -- the propagation -------------------------------------------------------------------------
def _graph(nodes, inputs, outputs, inits, opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()])
    domains = sorted({n.domain for n in nodes if n.domain})
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)] +
                              [helper.make_opsetid(d, 1) for d in domains])
    index = GraphIndex(model)
    index.infer_shapes()
    return index


def _x(shape=("b", "s", 64)):
    return helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))


def _y():
    return helper.make_tensor_value_info("y", TensorProto.FLOAT, None)


def _propagate(index, seeds, alg=None):
    prop = Propagation(index, alg or _alg(gqa=False, free=False))
    for (node, k), axes in seeds.items():
        for a, dim in enumerate(axes):
            prop.seed(prop.key(node, k), a, dim, "test")
    prop.solve()
    return prop


def test_a_head_split_reshape_constant_is_rewritten_but_a_shared_copy_is_not_touched():
    """``shape`` serves the head split of q (elements heads, head_dim) and a reshape of an unrelated
    tensor whose last axis happens to be 16 too: only q's use is recorded."""
    w = np.zeros((64, 64), np.float32)
    nodes = [helper.make_node("MatMul", ["x", "W"], ["q"]),
             helper.make_node("Reshape", ["q", "shape"], ["y"]),
             helper.make_node("Reshape", ["z", "shape"], ["z4"])]
    index = _graph(nodes, [_x(), helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 1, 64])],
                   [_y(), helper.make_tensor_value_info("z4", TensorProto.FLOAT, None)],
                   {"W": w, "shape": np.array([0, 0, 4, 16], np.int64)})
    alg = _alg(gqa=False, free=False)
    prop = _propagate(index, {(0, 1): [alg.dim("hidden"), alg.dim("heads", "head_dim")]}, alg)
    assert [d and str(d) for d in prop.labels("y")] == [None, None, "heads", "head_dim"]
    assert [d and str(d) for d in prop.labels("z4")] == [None, None, None, None]
    assert [(lit.node, lit.element, str(lit.dim)) for lit in prop.literals] == [(1, 2, "heads"), (1, 3, "head_dim")]
    assert prop.findings == []


def test_an_operator_without_a_rule_matters_only_for_the_dimensions_it_touches():
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Mystery", ["h"], ["y"], domain="x.y")]
    index = _graph(nodes, [_x()], [_y()], {"W": np.zeros((64, 128), np.float32)})
    alg = _alg(gqa=False, free=False)
    prop = _propagate(index, {(0, 1): [alg.dim("hidden"), alg.dim("ffn")]}, alg)
    assert [sorted(f.atoms) for f in prop.findings] == [["ffn"]]
    assert "Mystery" in prop.findings[0].message and "'h'" in prop.findings[0].message


def test_a_slice_that_does_not_scale_is_a_finding_and_a_half_is_a_rewrite():
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]),
             helper.make_node("Slice", ["h", "zero", "half", "last"], ["a"]),
             helper.make_node("Slice", ["h", "zero", "minus1", "last"], ["c"]),
             helper.make_node("Concat", ["a", "c"], ["y"], axis=-1)]
    inits = {"W": np.zeros((64, 16), np.float32), "zero": np.array([0], np.int64),
             "half": np.array([8], np.int64), "minus1": np.array([-1], np.int64), "last": np.array([-1], np.int64)}
    index = _graph(nodes, [_x()], [_y()], inits)
    alg = _alg()
    prop = _propagate(index, {(0, 1): [alg.dim("hidden"), alg.dim("head_dim")]}, alg)
    assert str(prop.labels("a")[-1]) == "1/2*head_dim"
    halves = [(lit.node, lit.index, lit.old) for lit in prop.literals]
    assert (1, 2, 8) in halves
    assert any("-1" in f.message and f.atoms == {"head_dim"} for f in prop.findings)


@pytest.mark.parametrize("opset", [11, 13])
def test_split_sizes_are_followed_as_an_input_and_as_an_attribute(opset):
    split = [helper.make_node("Split", ["h"], ["a", "b", "c"], axis=-1, split=[16, 16, 16])] if opset < 13 else \
        [helper.make_node("Split", ["h", "sizes"], ["a", "b", "c"], axis=-1)]
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]), *split,
             helper.make_node("Sum", ["a", "b", "c"], ["y"])]
    inits = {"W": np.zeros((64, 48), np.float32)}
    if opset >= 13:
        inits["sizes"] = np.array([16, 16, 16], np.int64)
    index = _graph(nodes, [_x()], [_y()], inits, opset=opset)
    alg = _alg(gqa=False, free=False)
    prop = _propagate(index, {(0, 1): [alg.dim("hidden"), alg.dim(3, "head_dim")]}, alg)
    if opset < 13:
        assert [(i, name, [str(d) for d in dims]) for i, name, dims in prop.attributes] == [
            (1, "split", ["head_dim", "head_dim", "head_dim"])]
    else:
        assert [(lit.element, str(lit.dim)) for lit in prop.literals] == [(0, "head_dim"), (1, "head_dim"),
                                                                          (2, "head_dim")]


def test_a_depthwise_convolution_follows_its_channels_with_its_group():
    nodes = [helper.make_node("Conv", ["x", "W"], ["h"], group=1),
             helper.make_node("Conv", ["h", "D"], ["y"], group=64)]
    inits = {"W": np.zeros((64, 3, 1, 1), np.float32), "D": np.zeros((64, 1, 3, 3), np.float32)}
    index = _graph(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 3, 8, 8])], [_y()], inits)
    alg = _alg(gqa=False, free=False)
    prop = _propagate(index, {(0, 1): [alg.dim("hidden"), None, None, None]}, alg)
    assert str(prop.labels("y")[1]) == "hidden"
    assert [(i, name, str(d)) for i, name, d in prop.attributes] == [(1, "group", "hidden")]
    assert str(prop.labels(prop.key(1, 1))[0]) == "hidden"


def test_attention_scales_are_found_next_to_the_score_matmul():
    nodes = [helper.make_node("MatMul", ["x", "W"], ["q"]),
             helper.make_node("Transpose", ["q"], ["kt"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["q", "kt"], ["s"]),
             helper.make_node("Mul", ["s", "scale"], ["y"])]
    inits = {"W": np.zeros((64, 16), np.float32), "scale": np.array(0.25, np.float32)}
    index = _graph(nodes, [_x()], [_y()], inits)
    alg = _alg()
    prop = _propagate(index, {(0, 1): [alg.dim("hidden"), alg.dim("head_dim")]}, alg)
    assert [(i, k, p) for i, k, _, p in prop.scales] == [(3, 1, -0.5)]
