"""Writing resized parameters and sizes into an analysed transformer graph.

Contract: :func:`rewrite` takes an :class:`~botcore.adapters.onnx_analysis.Analysis`
of a source graph and a complete set of target parameters (Hugging Face names,
PyTorch layout, as :func:`botcore.adapters.resize_model` returns them) and
returns a *new* ``onnx.ModelProto`` of the target size; the source model is not
touched. It

* rewrites every constant that encodes a width: Reshape targets (literal or
  Concat pieces; ``0``/``-1`` entries are left alone), Split sizes, Expand
  targets, and the attention scale constants (``head_dim ** -0.5`` or
  ``head_dim ** -0.25`` on both operands) when ``head_dim`` changes; each
  rewritten use gets its own constant, so a constant shared with an unrelated
  use is never changed under it;
* changes depth: shrinking keeps the first blocks and reconnects the residual
  stream to what followed the last block (an ``Identity`` bridge keeps every name); growing clones the last block with
  fresh value, node and initializer names and chains the clones;
* puts every parameter into every slot it feeds, with one initializer per
  parameter (so de-duplicated initializers shared by several parameters are
  split, and tied parameters stay one tensor);
* drops dead nodes and initializers, strips ``value_info`` and re-infers the
  output shapes.

Examples
--------
>>> round(scale_for(0.5, 16, 64), 6)  # 16 ** -0.25 -> 64 ** -0.25
0.353553
>>> scale_for(0.7, 16, 64) is None
True
"""

from __future__ import annotations

import math
import re

import numpy as np

from botcore.errors import ParameterKeyError, UnsupportedModelError

from .onnx_analysis import reshape_target
from .onnx_graph import float_scalar

__all__ = ["rewrite", "scale_for"]

_PASS = ("Transpose", "Reshape", "Identity", "Cast")


def scale_for(value, head_dim, new_head_dim):
    """The attention-scale constant for ``new_head_dim`` that replaces ``value``.

    Recognises ``head_dim ** p`` for ``p`` in ``-0.5, -0.25, 0.25, 0.5``.

    Parameters
    ----------
    value : float
        The constant found next to the ``Q @ K^T`` MatMul.
    head_dim, new_head_dim : int
        Source and target head dimension.

    Returns
    -------
    float or None
        The new constant, or ``None`` when ``value`` is no such power.
    """
    if head_dim <= 1:
        return None
    for p in (-0.5, -0.25, 0.25, 0.5):
        if math.isclose(value, head_dim**p, rel_tol=1e-5):
            return float(new_head_dim**p)
    return None


class _Builder:
    def __init__(self, analysis):
        import onnx

        self.onnx = onnx
        self.a = analysis
        self.index = analysis.index
        self.nodes = []
        for n in self.index.nodes:
            c = onnx.NodeProto()
            c.CopyFrom(n)
            self.nodes.append(c)
        self.labels = list(analysis.node_layer)
        self.new_inits = {}
        self.notes = {"shape constants": 0, "split sizes": 0, "attention scales": 0,
                      "blocks removed": 0, "blocks cloned": 0, "parameters written": 0}
        self.counter = 0
        self.taken = set(self.index.producer) | set(self.index.initializers) | self.index.graph_inputs
        self.taken |= {n.name for n in self.index.nodes if n.name}

    def fresh(self, base):
        while True:
            self.counter += 1
            name = f"{base}__bot{self.counter}"
            if name not in self.taken:
                self.taken.add(name)
                return name

    def set_const(self, node, k, array, base):
        from onnx import numpy_helper

        name = self.fresh(base or "const")
        self.new_inits[name] = numpy_helper.from_array(np.asarray(array), name)
        node.input[k] = name


def _sizemap(a, hidden, heads, head_dim, ffn):
    pairs = [(a.hidden, hidden), (a.ffn, ffn)]
    if a.family.name == "gpt2":
        pairs.append((3 * a.hidden, 3 * hidden))
    out = {}
    for old, new in pairs:
        if old in out and out[old] != new:
            return out, old
        out[old] = new
    return out, None


def _rewrite_widths(b, hidden, heads, head_dim, ffn):
    a, index = b.a, b.index
    sizes, clash = _sizemap(a, hidden, heads, head_dim, ffn)
    for i, node in enumerate(index.nodes):
        op = node.op_type
        if op in ("Reshape", "Expand"):
            _rewrite_shape_input(b, i, sizes, clash, heads, head_dim)
        elif op == "Split":
            _rewrite_split(b, i, sizes)
        elif op == "MatMul" and not any(index.is_const(v) for v in node.input) and head_dim != a.head_dim:
            _rewrite_scales(b, i, head_dim)


def _rewrite_shape_input(b, i, sizes, clash, heads, head_dim):
    a, index = b.a, b.index
    node = index.nodes[i]
    src = index.shape(node.input[0])
    target = reshape_target(index, node.input[1])
    if not src or target is None:
        return
    new = list(target)
    last = src[-1]
    producer = index.nodes[index.producer[node.input[0]]] if node.input[0] in index.producer else None
    if node.op_type == "Reshape" and len(target) >= 4 and last == a.hidden and target[-1] == a.head_dim:
        new[-1] = head_dim
        if target[-2] == a.heads:
            new[-2] = heads
    elif len(src) >= 4 and last == a.head_dim and target[-1] == a.hidden and (src[-2] in (None, a.heads)):
        new[-1] = sizes[a.hidden]
    elif producer is not None and producer.op_type == "Conv" and len(src) == 4 and src[1] == a.hidden \
            and len(target) >= 2 and target[1] == a.hidden:
        new[1] = sizes[a.hidden]
    elif last in sizes and target[-1] == last:
        if clash == last:
            raise UnsupportedModelError(
                f"ONNX graph not understood at node {node.name!r} (Reshape): size {last} is both the "
                "hidden size and another width that changes differently. Expected distinct widths.")
        new[-1] = sizes[last]
    if new == target:
        return
    _write_target(b, i, node.input[1], target, new)


def _write_target(b, i, shape_name, old, new):
    index = b.index
    if index.is_const(shape_name):
        b.set_const(b.nodes[i], 1, np.asarray(new, dtype=np.int64), "shape")
        b.notes["shape constants"] += 1
        return
    concat_i = index.producer[shape_name]
    concat = index.nodes[concat_i]
    pos = 0
    for j, piece in enumerate(concat.input):
        if index.is_const(piece):
            value = np.asarray(index.const(piece))
            n = value.size
            if new[pos:pos + n] != old[pos:pos + n]:
                piece = np.asarray(new[pos:pos + n], dtype=value.dtype).reshape(value.shape)
                b.set_const(b.nodes[concat_i], j, piece, "shape")
                b.notes["shape constants"] += 1
        else:
            n = index.shape(piece)[0]
        pos += n


def _rewrite_split(b, i, sizes):
    index = b.index
    node = index.nodes[i]
    if len(node.input) < 2 or not node.input[1] or not index.is_const(node.input[1]):
        for k, attr in enumerate(node.attribute):  # opset < 13: sizes as an attribute
            if attr.name == "split" and attr.ints and all(p in sizes for p in attr.ints):
                new = b.nodes[i].attribute[k]
                del new.ints[:]
                new.ints.extend(sizes[p] for p in attr.ints)
                b.notes["split sizes"] += 1
        return
    parts = [int(v) for v in np.asarray(index.const(node.input[1])).reshape(-1)]
    if all(p in sizes for p in parts):
        b.set_const(b.nodes[i], 1, np.asarray([sizes[p] for p in parts], dtype=np.int64), "split")
        b.notes["split sizes"] += 1


def _scale_uses(index, i):
    """(node index, input index) of scalar constants scaling the Q @ K^T MatMul ``i``."""
    uses = []
    node = index.nodes[i]
    for v in node.input:
        for _ in range(4):
            if v not in index.producer:
                break
            p_i = index.producer[v]
            p = index.nodes[p_i]
            if p.op_type in ("Mul", "Div"):
                for k, inp in enumerate(p.input):
                    if index.is_const(inp) and float_scalar(index.const(inp)) is not None:
                        uses.append((p_i, k))
                        v = p.input[1 - k]
                        break
                else:
                    break
            elif p.op_type in _PASS:
                v = p.input[0]
            else:
                break
    for c_i, _ in index.consumers.get(node.output[0], []):
        c = index.nodes[c_i]
        if c.op_type in ("Mul", "Div"):
            for k, inp in enumerate(c.input):
                if index.is_const(inp) and float_scalar(index.const(inp)) is not None:
                    uses.append((c_i, k))
    return uses


def _rewrite_scales(b, i, head_dim):
    index = b.index
    for n_i, k in _scale_uses(index, i):
        value = float_scalar(index.const(index.nodes[n_i].input[k]))
        new = scale_for(value, b.a.head_dim, head_dim)
        if new is not None:
            old = np.asarray(index.const(index.nodes[n_i].input[k]))
            b.set_const(b.nodes[n_i], k, np.asarray(new, dtype=old.dtype).reshape(old.shape), "scale")
            b.notes["attention scales"] += 1


def _relayer(name, pattern, new_layer):
    m = re.match(pattern, name)
    if not m:
        return name
    return name[: m.start(1)] + str(new_layer) + name[m.end(1):]


_SCOPE_KEYS = ("pkg.torch.onnx.name_scopes", "namespace")


def _relabel(node, old, new):
    """Point a cloned node's module path (name and scope metadata) at block ``new``.

    Examples
    --------
    >>> import onnx
    >>> n = onnx.helper.make_node("MatMul", ["a", "b"], ["c"], name="/encoder/layer.1/attention/MatMul")
    >>> _relabel(n, 1, 5); n.name
    '/encoder/layer.5/attention/MatMul'
    """
    pattern = re.compile(rf"(?<![\w])(layer|layers|h)([./]){old}(?![\d])")

    def sub(text):
        return pattern.sub(lambda m: f"{m.group(1)}{m.group(2)}{new}", text)

    node.name = sub(node.name)
    for prop in node.metadata_props:
        if prop.key in _SCOPE_KEYS:
            prop.value = sub(prop.value)


def _depth(b, layers):
    """Remove or clone blocks; return the list of (node, input, param, transposed) slots."""
    import onnx

    a = b.a
    slots = [(b.nodes[s.node], s.index, s.param, s.transposed) for s in a.slots]
    old = a.layers
    if layers == old:
        return slots
    r_out = a.residual_out[old - 1]
    if layers < old:
        keep = [lab is None or lab < layers for lab in b.labels]
        removed_outputs = {v for n, k in zip(b.nodes, keep) if not k for v in n.output}
        r_new = a.residual_out[layers - 1]
        lost = [v for v in a.index.graph_outputs if v in removed_outputs and v != r_out]
        if lost:
            raise UnsupportedModelError(
                f"ONNX graph not understood for a depth change: graph outputs {lost[:3]} come from "
                "blocks that shrinking removes (per-layer hidden states or attentions). Expected "
                "outputs computed after the last block; export without output_hidden_states / "
                "output_attentions.")
        kept_nodes = []
        for node, k in zip(b.nodes, keep):
            if not k:
                continue
            for j, v in enumerate(node.input):
                if v == r_out:
                    continue
                if v in removed_outputs:
                    raise UnsupportedModelError(
                        f"ONNX graph not understood at node {node.name!r} ({node.op_type}): it uses "
                        f"{v!r} from a removed block. Expected blocks that talk to the rest of the "
                        "graph only through the residual stream.")
            kept_nodes.append(node)
        # what followed the last block now reads the last kept block's output
        at = max(i for i, n in enumerate(kept_nodes) if r_new in n.output) + 1
        bridge = onnx.helper.make_node("Identity", [r_new], [r_out], name=b.fresh("bot_residual"))
        kept_nodes.insert(at, bridge)
        labels = [lab for lab, k in zip(b.labels, keep) if k]
        labels.insert(at, None)
        b.labels = labels
        b.nodes = kept_nodes
        b.notes["blocks removed"] = old - layers
        kept = {id(n) for n in kept_nodes}
        return [s for s in slots if id(s[0]) in kept]
    # grow: clone the last block
    r_in = a.residual_out[old - 2] if old >= 2 else a.residual_in0
    template = [i for i, lab in enumerate(b.labels) if lab == old - 1]
    produced = {v for i in template for v in b.nodes[i].output if v}
    exposed = [v for v in a.index.graph_outputs if v in produced and v != r_out]
    if exposed:
        raise UnsupportedModelError(
            f"ONNX graph not understood for growing: graph outputs {exposed[:3]} come from inside "
            "the last block (per-layer states, attentions or a KV cache), and new blocks would not "
            "have them. Expected outputs computed after the last block.")
    slot_of = {}
    for s in slots:
        slot_of.setdefault(id(s[0]), []).append(s)
    # the template's own residual output gets a fresh name; the last clone takes r_out
    prev = b.fresh(f"{r_out}__l{old - 1}")
    for i in template:
        node = b.nodes[i]
        for j, v in enumerate(node.output):
            if v == r_out:
                node.output[j] = prev
        for j, v in enumerate(node.input):
            if v == r_out:
                node.input[j] = prev
    tmpl_out = prev
    produced = (produced - {r_out}) | {tmpl_out}
    new_nodes = []
    new_slots = []
    pattern = a.family.layer_re
    for layer in range(old, layers):
        rename = {}
        for v in produced:
            rename[v] = r_out if (v == tmpl_out and layer == layers - 1) else b.fresh(f"{v}__l{layer}")
        out_name = rename[tmpl_out]
        for i in template:
            src = b.nodes[i]
            c = onnx.NodeProto()
            c.CopyFrom(src)
            _relabel(c, old - 1, layer)
            if not c.name or c.name in b.taken:
                c.name = b.fresh(c.name or f"{c.op_type}__l{layer}")
            b.taken.add(c.name)
            for j, v in enumerate(c.input):
                if v == r_in:
                    c.input[j] = prev
                elif v in rename:
                    c.input[j] = rename[v]
            for j, v in enumerate(c.output):
                if v in rename:
                    c.output[j] = rename[v]
            new_nodes.append(c)
            for _, k, param, tr in slot_of.get(id(src), []):
                new_slots.append((c, k, _relayer(param, pattern, layer), tr))
        prev = out_name
    at = max(template) + 1
    b.nodes = b.nodes[:at] + new_nodes + b.nodes[at:]
    b.notes["blocks cloned"] = layers - old
    b.labels = b.labels[:at] + [None] * len(new_nodes) + b.labels[at:]
    return slots + new_slots


def _write_weights(b, slots, params):
    from onnx import helper, numpy_helper

    a = b.a
    made = {}
    for node, k, param, transposed in slots:
        if param not in params:
            raise ParameterKeyError(
                f"the resized parameters lack {param!r}, which the ONNX graph uses at node "
                f"{node.name!r}. Expected resize_model to return every parameter it was given.")
        value = np.asarray(params[param])
        if param in a.absent:
            if np.any(value != 0):
                raise UnsupportedModelError(
                    f"parameter {param!r} was constant-folded away by the exporter (it was zero) "
                    "but is non-zero after resizing; the graph has no slot for it.")
            continue
        if param not in made:
            dtype = np.float32
            src = node.input[k]
            src = a.index.source(src)
            if src in a.index.initializers:
                dtype = helper.tensor_dtype_to_np_dtype(a.index.initializers[src].data_type)
            arr = np.ascontiguousarray((value.T if transposed else value).astype(dtype))
            name = f"{a.prefix}{param}"
            if name in b.taken and name not in a.index.initializers:
                name = b.fresh(name)
            b.taken.add(name)
            made[param] = name
            b.new_inits[name] = numpy_helper.from_array(arr, name)
            b.notes["parameters written"] += 1
        node.input[k] = made[param]


def _dce(b, graph_outputs):
    needed = set(graph_outputs)
    keep = []
    for node in reversed(b.nodes):
        if any(o in needed for o in node.output if o):
            keep.append(node)
            needed.update(v for v in node.input if v)
    keep.reverse()
    b.nodes = keep
    return needed


def rewrite(analysis, params, *, hidden, heads, head_dim, ffn, layers):
    """Build the target-size model; see the module docstring.

    Parameters
    ----------
    analysis : Analysis
        From :func:`~botcore.adapters.onnx_analysis.analyse` on the source model.
    params : mapping
        Every target parameter, Hugging Face names, PyTorch layout.
    hidden, heads, head_dim, ffn, layers : int
        Target sizes (``hidden == heads * head_dim``).

    Returns
    -------
    tuple of (onnx.ModelProto, dict)
        A new model (the source is not modified) and counts of what was rewritten.
    """
    import onnx

    a = analysis
    if hidden != heads * head_dim:
        raise UnsupportedModelError(f"hidden {hidden} != heads {heads} * head_dim {head_dim}")
    b = _Builder(a)
    _rewrite_widths(b, hidden, heads, head_dim, ffn)
    slots = _depth(b, layers)
    _write_weights(b, slots, params)
    outputs = [o.name for o in a.index.graph.output]
    needed = _dce(b, outputs)

    src = a.index.model
    model = onnx.ModelProto()
    model.ir_version = src.ir_version
    model.opset_import.extend(src.opset_import)
    model.producer_name = src.producer_name
    model.producer_version = src.producer_version
    model.domain = src.domain
    model.model_version = src.model_version
    model.doc_string = src.doc_string
    model.metadata_props.extend(src.metadata_props)
    model.functions.extend(src.functions)
    g = model.graph
    g.name = src.graph.name
    g.node.extend(b.nodes)
    for t in src.graph.initializer:
        if t.name in needed and t.name not in b.new_inits:
            g.initializer.append(t)
    for name, t in b.new_inits.items():
        if name in needed:
            g.initializer.append(t)
    g.input.extend(v for v in src.graph.input if v.name not in a.index.initializers or v.name in needed)
    for v in src.graph.output:
        o = g.output.add()
        o.CopyFrom(v)
        o.type.tensor_type.ClearField("shape")
    return model, dict(b.notes)
