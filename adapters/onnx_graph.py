"""Reading an exported transformer graph: values, constants, module paths, blocks.

Contract: everything here is read-only over an ``onnx.ModelProto``. A
:class:`GraphIndex` answers who produces and who consumes each value, what a
constant value holds (initializers, ``Constant`` nodes and ``Identity`` chains
over them), which PyTorch module a node came from (``pkg.torch.onnx.name_scopes``
metadata of dynamo exports, or the ``/module/path/Op`` node names of TorchScript
exports) and the static shapes ONNX shape inference finds. ``onnx`` is imported
lazily, so importing this module needs NumPy only.

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
import re

import numpy as np

__all__ = ["GraphIndex", "module_path_from_name", "strip_to_root"]

_SCOPES_KEY = "pkg.torch.onnx.name_scopes"


def module_path_from_name(name):
    """Module path encoded in a TorchScript node name, or ``None``.

    Parameters
    ----------
    name : str
        Node name such as ``/encoder/layer.0/attention/self/query/MatMul``.

    Returns
    -------
    str or None
        Dotted module path (the last component, the op, dropped).

    Examples
    --------
    >>> module_path_from_name("/embeddings/LayerNorm/LayerNormalization")
    'embeddings.LayerNorm'
    """
    if not name or not name.startswith("/"):
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
        Dotted prefixes a canonical name starts with (``"encoder"``, ``"h"``...).

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


class GraphIndex:
    """Producers, consumers, constants, module paths and shapes of one graph.

    Parameters
    ----------
    model : onnx.ModelProto
        The model; not modified. External tensors need not be loaded for
        anything but :meth:`const` of those tensors.
    """

    def __init__(self, model):
        from onnx import numpy_helper

        self._nh = numpy_helper
        self.model = model
        self.graph = model.graph
        self.nodes = list(self.graph.node)
        self.initializers = {t.name: t for t in self.graph.initializer}
        self.producer = {}
        self.consumers = {}
        for i, node in enumerate(self.nodes):
            for out in node.output:
                if out:
                    self.producer[out] = i
            for k, inp in enumerate(node.input):
                if inp:
                    self.consumers.setdefault(inp, []).append((i, k))
        self.graph_inputs = {v.name for v in self.graph.input} - set(self.initializers)
        self.graph_outputs = [v.name for v in self.graph.output]
        self._const_cache = {}
        self.shapes = {}
        self.elem_types = {}

    # -- constants ---------------------------------------------------------
    def source(self, name):
        """Follow ``Identity`` nodes back to the value they copy."""
        seen = 0
        while name in self.producer and seen < 64:
            node = self.nodes[self.producer[name]]
            if node.op_type != "Identity":
                break
            name = node.input[0]
            seen += 1
        return name

    def is_const(self, name):
        """Whether ``name`` is an initializer or a ``Constant`` output (through Identity)."""
        src = self.source(name)
        if src in self.initializers:
            return True
        if src in self.producer:
            node = self.nodes[self.producer[src]]
            return node.op_type == "Constant" and any(a.name == "value" for a in node.attribute)
        return False

    def const(self, name):
        """The NumPy value of a constant value name, or ``None``."""
        src = self.source(name)
        if src in self._const_cache:
            return self._const_cache[src]
        value = None
        if src in self.initializers:
            value = self._nh.to_array(self.initializers[src])
        elif src in self.producer:
            node = self.nodes[self.producer[src]]
            if node.op_type == "Constant":
                for a in node.attribute:
                    if a.name == "value":
                        value = self._nh.to_array(a.t)
        self._const_cache[src] = value
        return value

    def const_shape(self, name):
        """Shape of a constant without reading external data, or ``None``."""
        src = self.source(name)
        if src in self.initializers:
            return tuple(int(d) for d in self.initializers[src].dims)
        value = self.const(name)
        return None if value is None else tuple(value.shape)

    # -- modules -----------------------------------------------------------
    def module_path(self, i):
        """Dotted PyTorch module path of node ``i``, or ``None``."""
        node = self.nodes[i]
        for prop in node.metadata_props:
            if prop.key == _SCOPES_KEY:
                try:
                    scopes = ast.literal_eval(prop.value)
                except (ValueError, SyntaxError):
                    scopes = []
                if len(scopes) >= 2:
                    return scopes[-2]
                return None
        return module_path_from_name(node.name)

    # -- shapes ------------------------------------------------------------
    def infer_shapes(self):
        """Fill :attr:`shapes` (name -> tuple of int or None) by ONNX shape inference.

        Runs on a copy without external tensor data, so it also works for
        models over 2 GB (shape inference reads dims, not weights).
        """
        import onnx

        src = self.model
        light = onnx.ModelProto()
        light.ir_version = src.ir_version
        light.opset_import.extend(src.opset_import)
        light.functions.extend(src.functions)
        g = light.graph
        g.node.extend(self.graph.node)
        g.input.extend(self.graph.input)
        g.output.extend(self.graph.output)
        for t in self.graph.initializer:  # big tensors by reference only: no 2 GB limit, no copy
            if t.HasField("raw_data") and len(t.raw_data) > 4096 or t.data_location == onnx.TensorProto.EXTERNAL:
                stub = g.initializer.add()
                stub.name, stub.data_type = t.name, t.data_type
                stub.dims.extend(t.dims)
                stub.data_location = onnx.TensorProto.EXTERNAL
                entry = stub.external_data.add()
                entry.key, entry.value = "location", "__bot_absent__"
            else:
                g.initializer.add().CopyFrom(t)
        try:
            inferred = onnx.shape_inference.infer_shapes(light, data_prop=True)
        except Exception:  # noqa: BLE001 - inference is a hint; rules fall back to literal checks
            inferred = light
        g = inferred.graph
        for vi in list(g.value_info) + list(g.input) + list(g.output):
            tt = vi.type.tensor_type
            self.elem_types[vi.name] = tt.elem_type
            if tt.HasField("shape"):
                self.shapes[vi.name] = tuple(
                    int(d.dim_value) if d.HasField("dim_value") else None for d in tt.shape.dim
                )
        for name, t in self.initializers.items():
            self.shapes[name] = tuple(int(d) for d in t.dims)
            self.elem_types[name] = t.data_type
        return self.shapes

    def shape(self, name):
        """Inferred static shape of ``name`` (``None`` entries for dynamic dims) or ``None``."""
        if name in self.shapes:
            return self.shapes[name]
        shp = self.const_shape(name)
        return shp


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
