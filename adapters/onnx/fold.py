"""Folding shape arithmetic, so shape inference sees the static sizes a graph computes at run time.

Contract: :func:`fold_shapes` evaluates, with NumPy, the small integer (and
scalar float) computations of a shape-inference model that depend only on
constants and on static shapes (``Shape`` of a tensor whose shape is known,
``Gather``/``Slice``/``Concat``/``Cast``/arithmetic/``Sqrt``/``Floor`` ... over
those), and returns a copy of that model in which every shape input
(``Reshape``, ``Expand``, ``ConstantOfShape``, ``Tile``, ``Resize`` sizes,
``Slice`` bounds, ``Range``) that folded to a value is that constant. Exporters
trace code such as ``int(math.sqrt(num_positions))`` into such subgraphs; once
folded, shape inference gives the tensors after them static shapes, and the
dimension propagation can follow the model dimensions through them. The
folded model is used for shapes only: the graph that is rewritten keeps its
run-time shape arithmetic, which adapts to the new sizes by itself. Nothing
larger than :data:`LIMIT` elements is evaluated.

Examples
--------
>>> import onnx
>>> from onnx import helper, TensorProto
>>> g = helper.make_graph(
...     [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Reshape", ["x", "s"], ["y"])],
...     "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
...     [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
>>> folded = fold_shapes(helper.make_model(g), {"x": (2, 3)})
>>> [onnx.numpy_helper.to_array(t).tolist() for t in folded.graph.initializer]
[[2, 3]]
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["LIMIT", "fold_shapes"]

#: Largest number of elements a folded value may have.
LIMIT = 64
_SHAPE_INPUTS = {"Reshape": (1,), "Expand": (1,), "ConstantOfShape": (0,), "Tile": (1,), "Resize": (3,),
                 "Slice": (1, 2, 3, 4), "Range": (0, 1, 2), "Unsqueeze": (1,), "Squeeze": (1,)}


def _attr(node, name, default=None):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _slice(x, starts, ends, axes=None, steps=None):
    axes = list(range(len(starts))) if axes is None else [int(a) for a in axes]
    steps = [1] * len(starts) if steps is None else [int(s) for s in steps]
    index = [slice(None)] * x.ndim
    for a, s, e, st in zip(axes, starts, ends, steps):
        index[a % x.ndim] = slice(int(s), int(e), st)
    return x[tuple(index)]


def _div(a, b):
    if np.issubdtype(a.dtype, np.integer) and np.issubdtype(b.dtype, np.integer):
        return (np.trunc(a / b)).astype(np.result_type(a, b))
    return a / b


_BINARY = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": _div, "Max": np.maximum,
           "Min": np.minimum, "Equal": np.equal, "Mod": np.mod, "Pow": np.power}
_UNARY = {"Floor": np.floor, "Ceil": np.ceil, "Sqrt": np.sqrt, "Neg": np.negative, "Abs": np.abs,
          "Identity": lambda x: x, "Not": np.logical_not}


def _cast(x, node):
    from onnx import helper

    return x.astype(helper.tensor_dtype_to_np_dtype(_attr(node, "to")))


def _unsqueeze(x, axes):
    out = x
    for a in sorted(int(a) % (x.ndim + len(axes)) for a in axes):
        out = np.expand_dims(out, a)
    return out


def _evaluate(node, args, shapes):
    """The value of ``node``'s first output, or ``None`` when it cannot be folded."""
    op = node.op_type
    if op == "Shape":
        shape = shapes.get(node.input[0])
        if shape is None:
            return None
        part = shape[_attr(node, "start", 0):_attr(node, "end", len(shape))]
        if all(isinstance(d, int) for d in part):
            return np.asarray(part, np.int64)
        return np.asarray([d if isinstance(d, int) else None for d in part], dtype=object)  # partly known
    if any(a is None for a in args):
        return None
    if op in _BINARY:
        return _BINARY[op](args[0], args[1])
    if op in _UNARY:
        return _UNARY[op](args[0])
    if op == "Cast":
        return _cast(args[0], node)
    if op == "Gather":
        out = np.asarray(np.take(args[0], args[1].astype(np.int64), axis=_attr(node, "axis", 0)))
        if out.dtype == object and all(v is not None for v in np.asarray(out).reshape(-1)):
            out = out.astype(np.int64)
        return out
    if op == "Slice":
        return _slice(*args) if len(args) >= 3 else None
    if op == "Concat":
        return np.concatenate([np.atleast_1d(a) for a in args], axis=_attr(node, "axis", 0))
    if op == "Unsqueeze":
        return _unsqueeze(args[0], args[1] if len(args) > 1 else _attr(node, "axes"))
    if op == "Squeeze":
        axes = args[1] if len(args) > 1 else _attr(node, "axes")
        return np.squeeze(args[0], axis=None if axes is None else tuple(int(a) for a in axes))
    if op == "Where":
        return np.where(args[0], args[1], args[2])
    if op == "Range":
        return np.arange(args[0], args[1], args[2]).astype(args[0].dtype)
    if op == "ConstantOfShape":
        from onnx import numpy_helper

        value = _attr(node, "value")
        fill = numpy_helper.to_array(value) if value is not None else np.zeros(1, np.float32)
        return np.full(tuple(int(d) for d in args[0]), fill.reshape(-1)[0], fill.dtype)
    return None


def _known(light, limit):
    from onnx import numpy_helper

    values = {}
    for t in light.graph.initializer:
        if int(np.prod(t.dims, dtype=np.int64)) <= limit:
            values[t.name] = numpy_helper.to_array(t)
    return values


def fold_shapes(light, shapes: dict, *, limit: int = LIMIT):
    """A copy of ``light`` with folded shape inputs as constants, or ``None`` if nothing folds.

    ``shapes`` maps value names to static shapes (ints, or symbols for unknown dims).
    """
    import onnx
    from onnx import numpy_helper

    values = _known(light, limit)
    for node in light.graph.node:
        if node.op_type == "Constant":
            value = _attr(node, "value")
            if value is not None:
                values[node.output[0]] = numpy_helper.to_array(value)
            continue
        args = [values.get(v) if v else None for v in node.input]
        try:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # overflow or NaN in a folded value is no error here
                out = _evaluate(node, args, shapes)
        except (ValueError, TypeError, IndexError, ZeroDivisionError, OverflowError, AttributeError):
            out = None
        if out is not None and np.asarray(out).size <= limit:
            values[node.output[0]] = np.asarray(out)
    values = {k: v for k, v in values.items() if v.dtype != object}
    folded = onnx.ModelProto()
    folded.CopyFrom(light)
    inits = {t.name for t in folded.graph.initializer}
    changed = 0
    for node in folded.graph.node:
        for k in _SHAPE_INPUTS.get(node.op_type, ()):
            if k < len(node.input) and node.input[k] and node.input[k] not in inits and node.input[k] in values:
                name = f"{node.input[k]}__bot_folded"
                if name not in inits:
                    folded.graph.initializer.append(numpy_helper.from_array(values[node.input[k]], name))
                    inits.add(name)
                node.input[k] = name
                changed += 1
    return folded if changed else None
