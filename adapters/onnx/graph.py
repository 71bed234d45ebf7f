"""Reading an ONNX graph without its weights: values, constants, module paths, shapes, data.

Contract: everything here is read-only over an ``onnx.ModelProto`` loaded
*without* its external data (:func:`load_proto`). A :class:`GraphIndex`
answers who produces and who consumes each value, what a small constant holds
(initializers, ``Constant`` nodes and ``Identity`` chains over them), which
PyTorch module a node came from (``pkg.torch.onnx.name_scopes`` metadata of
dynamo exports, the ``/module/path/Op`` names of TorchScript exports, or the
path in the names of the values it produces), the static shapes shape
inference finds (ints, symbolic ``dim_param`` strings, ``None`` where unknown),
and reads any initializer's data on demand: inline data from the proto,
external data from its file by offset (a memory map), so a graph larger than
memory is never loaded whole. External-data locations outside the model's
folder are refused when the model is loaded. ``onnx`` is imported lazily, so
importing this module needs NumPy only.

Examples
--------
>>> module_path_from_name("/m/encoder/layer.0/attention/self/query/MatMul")
'm.encoder.layer.0.attention.self.query'
>>> module_path_from_name("MatMul_12") is None
True
>>> strip_to_root("model.0.auto_model.encoder.layer.1.output.dense", ("embeddings", "encoder"))
('model.0.auto_model.', 'encoder.layer.1.output.dense')
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import numpy as np

from botcore.errors import UnsupportedModelError

__all__ = ["GraphIndex", "external_tensors", "float_scalar", "layer_index", "load_proto",
           "module_path_from_name", "strip_to_root"]

_SCOPES_KEY = "pkg.torch.onnx.name_scopes"
_SMALL = 4096  # bytes: constants up to this size are copied into the shape-inference model


def module_path_from_name(name):
    """Module path encoded in a TorchScript node or value name, or ``None``.

    Parameters
    ----------
    name : str
        A node name such as ``/encoder/layer.0/attention/self/query/MatMul``, or a
        value name such as ``/encoder/layer.0/output/Add_output_0``.

    Returns
    -------
    str or None
        Dotted module path (the last component, the op, dropped).

    Examples
    --------
    >>> module_path_from_name("/embeddings/LayerNorm/LayerNormalization")
    'embeddings.LayerNorm'
    """
    if not isinstance(name, str) or not name.startswith("/"):
        return None
    parts = [p for p in name.strip("/").split("/") if p]
    if len(parts) < 2:
        return None
    return ".".join(parts[:-1])


def strip_to_root(path, roots):
    """Split ``path`` at the first component that starts one of ``roots``.

    Parameters
    ----------
    path : str
        Dotted module or parameter path.
    roots : tuple of str
        Dotted prefixes a canonical name starts with (``"encoder"``, ``"model.layers"``...).

    Returns
    -------
    tuple of (str, str) or None
        ``(prefix, canonical)`` or ``None`` when no root occurs.

    Examples
    --------
    >>> strip_to_root("m.h.0.attn.c_attn", ("h", "wte"))
    ('m.', 'h.0.attn.c_attn')
    >>> strip_to_root("m.pooling", ("h",)) is None
    True
    """
    parts = path.split(".")
    for i in range(len(parts)):
        rest = ".".join(parts[i:])
        for root in roots:
            if rest == root or rest.startswith(root + "."):
                prefix = ".".join(parts[:i])
                return (prefix + "." if prefix else ""), rest
    return None


def layer_index(canonical, pattern):
    """Layer number in a canonical parameter/module path, or ``None``.

    Examples
    --------
    >>> layer_index("encoder.layer.3.output.dense", r"^encoder\\.layer\\.(\\d+)(?:\\.|$)")
    3
    """
    m = re.match(pattern, canonical)
    return int(m.group(1)) if m else None


def float_scalar(value):
    """The float in a size-1 floating constant, or ``None``.

    Examples
    --------
    >>> float_scalar(np.array(0.5, dtype=np.float32))
    0.5
    >>> float_scalar(np.array([1, 2])) is None
    True
    """
    if value is None or value.size != 1 or not np.issubdtype(value.dtype, np.floating):
        return None
    return float(value.reshape(()))


def external_tensors(model):
    """Every tensor of ``model`` (initializers, Constant attributes, subgraphs) stored externally."""
    from onnx import TensorProto
    from onnx.external_data_helper import _get_all_tensors

    return [t for t in _get_all_tensors(model) if t.data_location == TensorProto.EXTERNAL]


def _entries(t) -> dict:
    return {e.key: e.value for e in t.external_data}


def load_proto(path):
    """Load an ONNX file's graph without its external data; check every data location.

    Parameters
    ----------
    path : str or Path
        The ``.onnx`` file.

    Returns
    -------
    tuple of (onnx.ModelProto, bool)
        The model (external tensors not loaded) and whether it uses external data.

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    UnsupportedModelError
        When the file is not an ONNX model, or an external-data ``location``
        points outside the model's folder or to a missing file.
    """
    import onnx

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model {str(path)!r} does not exist; give the path of a .onnx file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf DecodeError and friends
        raise UnsupportedModelError(
            f"{str(path)!r} is not a readable ONNX model ({exc.__class__.__name__}); expected a complete "
            ".onnx file (re-export or re-copy it)") from None
    base = path.parent.resolve()
    external = external_tensors(model)
    for t in external:
        loc = _entries(t).get("location", "")
        full = (base / loc).resolve()
        if os.path.isabs(loc) or (full != base and base not in full.parents):
            raise UnsupportedModelError(
                f"tensor {t.name!r} of {str(path)!r} keeps its data at location {loc!r}, which is "
                f"outside the model's folder {str(base)!r}; expected external data files beside the "
                "model: move the data file next to the model and fix the location")
        if not full.is_file():
            raise UnsupportedModelError(
                f"tensor {t.name!r} of {str(path)!r} keeps its data in {loc!r}, which does not exist; "
                "copy the model together with its data file")
        _check_extent(t, full, path)
    for t in model.graph.initializer:
        if t.data_location != onnx.TensorProto.EXTERNAL:
            _check_inline(t, path)
    _check_text(model, path)
    return model, bool(external)


def _check_text(model, path) -> None:
    """Every text field must be UTF-8: protobuf hands an undecodable one back as bytes, and
    copying it into the rewritten graph would fail (or, elsewhere, raise) far from here."""
    from google.protobuf.descriptor import FieldDescriptor
    from onnx import TensorProto

    stack, texts = [model], []
    while stack:
        msg = stack.pop()
        if isinstance(msg, TensorProto):  # never list a tensor's data fields
            texts += [msg.name, msg.doc_string, *(t for e in msg.external_data for t in (e.key, e.value))]
            continue
        for field, value in msg.ListFields():
            many = field.is_repeated
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                stack.extend(value if many else [value])
            elif field.type == FieldDescriptor.TYPE_STRING:
                texts += list(value) if many else [value]
    bad = next((t for t in texts if not isinstance(t, str)), None)
    if bad is not None:
        raise UnsupportedModelError(
            f"{str(path)!r} has a name or text field that is not UTF-8 ({bytes(bad)[:40]!r}); the "
            "file is damaged: re-export the model")


def _itemsize(t, path) -> int:
    from onnx import helper

    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
    except (KeyError, TypeError, ValueError):
        raise UnsupportedModelError(
            f"tensor {t.name!r} of {str(path)!r} has element type {t.data_type}, which ONNX does not "
            "define; the file is damaged: re-export the model") from None


def _elements(t, path) -> int:
    dims = [int(d) for d in t.dims]
    if any(d < 0 for d in dims):
        raise UnsupportedModelError(f"tensor {t.name!r} of {str(path)!r} has negative dimensions {dims}; "
                                    "the file is damaged: re-export the model")
    return int(np.prod(dims, dtype=object)) if dims else 1


def _check_extent(t, full: Path, path) -> None:
    """External data must lie inside its file and hold exactly the tensor's bytes."""
    info = _entries(t)
    try:
        offset = int(info.get("offset", 0))
        length = int(info["length"]) if "length" in info else None
    except ValueError:
        raise UnsupportedModelError(f"tensor {t.name!r} of {str(path)!r} has a non-numeric external-data "
                                    "offset or length; the file is damaged: re-export the model") from None
    need = _elements(t, path) * _itemsize(t, path)
    size = full.stat().st_size
    if offset < 0 or (length is not None and length != need) or offset + need > size:
        raise UnsupportedModelError(
            f"tensor {t.name!r} of {str(path)!r} claims {need} bytes at offset {offset} of "
            f"{full.name!r} (length {length}), but that file has {size} bytes; the model and its data "
            "file do not belong together: copy them again, or re-export the model")


def _check_inline(t, path) -> None:
    """Inline data must hold exactly the elements its dims claim."""
    from onnx import TensorProto

    need = _elements(t, path)
    if t.HasField("raw_data") or t.raw_data:
        have, unit = len(t.raw_data), _itemsize(t, path)
        ok = have == need * unit
    else:
        fields = {TensorProto.FLOAT: t.float_data, TensorProto.DOUBLE: t.double_data,
                  TensorProto.INT64: t.int64_data, TensorProto.UINT64: t.uint64_data,
                  TensorProto.STRING: t.string_data}
        data = fields.get(t.data_type, t.int32_data)
        ok = len(data) == need or (need == 0 and not data)
        have = len(data)
    if not ok:
        raise UnsupportedModelError(
            f"tensor {t.name!r} of {str(path)!r} has dims {list(t.dims)} ({need} elements) but holds "
            f"{have} {'bytes' if t.raw_data else 'values'} of data; the file is damaged: re-export the model")


def tensor_array(t, folder: Path | None) -> np.ndarray:
    """The data of a ``TensorProto``: inline, or read from its external file (a read-only memory map)."""
    from onnx import TensorProto, helper, numpy_helper

    if t.data_location != TensorProto.EXTERNAL:
        return numpy_helper.to_array(t)
    if folder is None:
        raise UnsupportedModelError(f"tensor {t.name!r} keeps its data in an external file, but the "
                                    "model was not loaded from a path; load it with load_proto(path)")
    info = _entries(t)
    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type))
    shape = tuple(int(d) for d in t.dims)
    count = int(np.prod(shape, dtype=np.int64))
    offset = int(info.get("offset", 0))
    if count == 0:
        return np.zeros(shape, dtype)
    return np.memmap(folder / info["location"], dtype=dtype, mode="r", offset=offset, shape=shape)


class GraphIndex:
    """Producers, consumers, constants, module paths, shapes and data of one graph.

    Parameters
    ----------
    model : onnx.ModelProto
        The model; not modified. External tensor data is read on demand.
    folder : Path, optional
        The folder the model was loaded from (where its external data lives).
    """

    def __init__(self, model, folder: Path | None = None):
        self.model = model
        self.folder = Path(folder) if folder is not None else None
        self.graph = model.graph
        self.nodes = list(self.graph.node)
        self.initializers = {t.name: t for t in self.graph.initializer}
        self.producer: dict = {}
        self.consumers: dict = {}
        for i, node in enumerate(self.nodes):
            for out in node.output:
                if out:
                    self.producer[out] = i
            for k, inp in enumerate(node.input):
                if inp:
                    self.consumers.setdefault(inp, []).append((i, k))
        self.inputs = {v.name: v for v in self.graph.input if v.name not in self.initializers}
        self.graph_inputs = set(self.inputs)
        self.graph_outputs = [v.name for v in self.graph.output]
        self._const_cache: dict = {}
        self.shapes: dict = {}
        self.elem_types: dict = {}

    # -- constants ---------------------------------------------------------
    def source(self, name):
        """Follow ``Identity`` nodes back to the value they copy."""
        seen = 0
        while name in self.producer and seen < 64:
            node = self.nodes[self.producer[name]]
            if node.op_type != "Identity" or not node.input:
                break
            name = node.input[0]
            seen += 1
        return name

    def _constant_node(self, name):
        if name in self.producer:
            node = self.nodes[self.producer[name]]
            if node.op_type == "Constant" and any(a.name == "value" or a.name.startswith("value_")
                                                  for a in node.attribute):
                return node
        return None

    def is_const(self, name):
        """Whether ``name`` is an initializer or a ``Constant`` output (through Identity)."""
        src = self.source(name)
        return src in self.initializers or self._constant_node(src) is not None

    def const(self, name):
        """The NumPy value of a constant value name (a memory map for external data), or ``None``."""
        src = self.source(name)
        if src in self._const_cache:
            return self._const_cache[src]
        value = None
        if src in self.initializers:
            value = tensor_array(self.initializers[src], self.folder)
        else:
            node = self._constant_node(src)
            if node is not None:
                value = _constant_value(node)
        if value is not None and value.nbytes <= _SMALL:
            self._const_cache[src] = value
        return value

    def const_shape(self, name):
        """Shape of a constant without reading its data, or ``None``."""
        src = self.source(name)
        if src in self.initializers:
            return tuple(int(d) for d in self.initializers[src].dims)
        value = self.const(name)
        return None if value is None else tuple(value.shape)

    def const_type(self, name):
        """ONNX element type of a constant, or ``None``."""
        src = self.source(name)
        if src in self.initializers:
            return self.initializers[src].data_type
        node = self._constant_node(src)
        if node is not None:
            for a in node.attribute:
                if a.name == "value":
                    return a.t.data_type
        return None

    # -- modules -----------------------------------------------------------
    def module_path(self, i):
        """Dotted PyTorch module path of node ``i`` (from metadata, its name or its outputs), or ``None``."""
        node = self.nodes[i]
        for prop in node.metadata_props:
            if prop.key == _SCOPES_KEY:
                try:
                    scopes = ast.literal_eval(prop.value)
                except (ValueError, SyntaxError):
                    scopes = []
                return scopes[-2] if len(scopes) >= 2 else None
        path = module_path_from_name(node.name)
        if path is None:
            for out in node.output:
                path = module_path_from_name(out)
                if path is not None:
                    break
        return path

    # -- shapes ------------------------------------------------------------
    def light_model(self):
        """A copy of the model for shape inference: large initializers become typed graph inputs.

        Shape inference needs their shapes, never their data, so nothing large is
        read or copied (no 2 GB limit); small constants stay (shape arithmetic reads them).
        """
        import onnx

        src = self.model
        light = onnx.ModelProto()
        light.ir_version = src.ir_version
        light.opset_import.extend(src.opset_import)
        light.functions.extend(src.functions)
        g = light.graph
        g.node.extend(self.graph.node)
        g.input.extend(v for v in self.graph.input if v.name not in self.initializers)
        g.output.extend(self.graph.output)
        g.value_info.extend(self.graph.value_info)
        for t in self.graph.initializer:
            big = t.data_location == onnx.TensorProto.EXTERNAL or len(t.raw_data) > _SMALL
            if big:
                g.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
            else:
                g.initializer.add().CopyFrom(t)
        return light

    def infer_shapes(self):
        """Fill :attr:`shapes` (name -> tuple of int, str or None) and :attr:`elem_types`.

        ONNX Runtime's symbolic shape inference first (it cancels symbolic
        batch and sequence sizes, so a ``-1`` in a reshape gets its static value,
        and it knows ONNX Runtime's fused operators); ONNX shape inference (with
        data propagation) fills whatever it leaves. Shape arithmetic over
        constants and static shapes is then folded
        (:func:`~botcore.adapters.onnx.fold.fold_shapes`) and both run again, so
        tensors behind run-time shape computations get static shapes too.
        """
        from .fold import fold_shapes

        light = self.light_model()
        self._infer(light)
        for _ in range(2):
            folded = fold_shapes(light, self.shapes)
            if folded is None:
                break
            self.shapes, self.elem_types = {}, {}
            self._infer(folded)
            light = folded
        for name, t in self.initializers.items():
            self.shapes[name] = tuple(int(d) for d in t.dims)
            self.elem_types[name] = t.data_type
        return self.shapes

    def _infer(self, light) -> None:
        import onnx

        self._symbolic(light)
        try:
            inferred = onnx.shape_inference.infer_shapes(light, data_prop=True)
        except Exception:  # noqa: BLE001 - inference is a hint; missing shapes are handled
            inferred = light
        self._read_shapes(inferred.graph, only_missing=True)

    def _read_shapes(self, g, *, only_missing=False):
        for vi in list(g.value_info) + list(g.input) + list(g.output):
            if only_missing and vi.name in self.shapes:
                continue
            tt = vi.type.tensor_type
            if not vi.type.HasField("tensor_type"):
                continue
            self.elem_types.setdefault(vi.name, tt.elem_type)
            if tt.HasField("shape"):
                self.shapes[vi.name] = tuple(
                    int(d.dim_value) if d.HasField("dim_value") else (d.dim_param or None)
                    for d in tt.shape.dim)

    def _symbolic(self, light):
        engine = _symbolic_engine()
        if engine is None:
            return
        try:
            out = _infer_symbolic(engine, light)
        except Exception:  # noqa: BLE001 - a hint only; ONNX inference fills in
            return
        if out is not None:
            self._read_shapes(out.graph, only_missing=True)

    def shape(self, name):
        """Static shape of ``name`` (ints, symbols, ``None`` for unknown dims) or ``None``."""
        if name in self.shapes:
            return self.shapes[name]
        return self.const_shape(name) if self.is_const(name) else None


def _infer_symbolic(engine, model):
    """``SymbolicShapeInference.infer_shapes(model, auto_merge=True, guess_output_rank=True)``
    without its side effect: on an incomplete inference it saves ``sym_shape_infer_temp.onnx``
    and its data files into the working directory; here that case is just None."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 7:
        return None
    sym = engine(2**31 - 1, True, True, 0)
    sym._preprocess(model)
    complete = False
    while sym.run_:
        complete = sym._infer_impl()
    if not complete:
        return None
    sym._update_output_from_vi()
    return sym.out_mp_


_SYMBOLIC: list = []


def _symbolic_engine():
    """ONNX Runtime's ``SymbolicShapeInference``, loaded from its file (``onnxruntime.tools`` imports torch)."""
    if _SYMBOLIC:
        return _SYMBOLIC[0]
    import importlib.util
    import sys

    engine = None
    try:
        spec = importlib.util.find_spec("onnxruntime")
        roots = list(spec.submodule_search_locations or []) if spec else []
        path = Path(roots[0]) / "tools" / "symbolic_shape_infer.py" if roots else None
        if path is not None and path.is_file():
            module_spec = importlib.util.spec_from_file_location("_botcore_symbolic_shape_infer", path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[module_spec.name] = module
            module_spec.loader.exec_module(module)
            engine = module.SymbolicShapeInference
    except Exception:  # noqa: BLE001 - missing sympy or a changed file: ONNX inference only
        engine = None
    _SYMBOLIC.append(engine)
    return engine


def _constant_value(node):
    from onnx import helper, numpy_helper

    for a in node.attribute:
        if a.name == "value":
            return numpy_helper.to_array(a.t)
        if a.name in ("value_int", "value_ints"):
            return np.asarray(helper.get_attribute_value(a), dtype=np.int64)
        if a.name in ("value_float", "value_floats"):
            return np.asarray(helper.get_attribute_value(a), dtype=np.float32)
    return None
