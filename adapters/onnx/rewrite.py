"""Building the resized graph: nodes, size constants, depth, and where every tensor comes from.

Contract: :func:`build` takes an :class:`~botcore.adapters.onnx.analysis.Analysis`
of the source graph, the target model-level sizes and the target shape of
every tensor the pipeline will write (its reader names), and returns a
:class:`Rewritten` graph *without weight data*: the nodes and graph
inputs/outputs of the target, plus one :class:`OutTensor` per initializer
saying where its data comes from (``written`` by the pipeline, ``copy`` of a
source initializer that carries no resized dimension, or a small ``array``
computed here), and :attr:`Rewritten.dests`, the initializer(s) each written
tensor goes to (transposed back to the graph layout, a column block of a fused
tensor, or one block's row of a stacked tensor). It

* rewrites every literal the propagation found (reshape targets, slice bounds,
  split sizes, ranges), the attributes that encode sizes (``num_heads``,
  ``group``), the attention scales when ``head_dim`` changes and the rotary
  frequency tables (recomputed as ``base ** (-j / n)`` for the new length);
  every rewritten use gets its own constant, so a constant shared with an
  unrelated use is never changed under it;
* puts every parameter into every use it has, one initializer per parameter
  (de-duplicated initializers shared by several parameters are split);
* changes depth: shrinking keeps the first blocks and bridges the residual
  stream to what followed the last one; growing clones the last block with
  fresh value, node and initializer names (node names and scope metadata carry
  the new layer number) and chains the clones; per-block graph inputs and
  outputs (a KV cache) are dropped or cloned with the blocks, under names with
  the new layer number; a use of a block's value outside the blocks (a decoder
  tap, a graph output) moves to the block at the same relative depth, the
  block ``ceil((b + 1) * L' / L) - 1``, as the depth resize maps layers;
* sets the static sizes of graph inputs and outputs, and drops dead nodes.

The source model is not modified. ``onnx`` is imported when :func:`build` runs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from botcore.errors import UnsupportedModelError

__all__ = ["Destination", "OutTensor", "Rewritten", "build", "mapped_block"]


@dataclass
class OutTensor:
    """One initializer of the output: its name, shape, dtype and the source of its data."""

    name: str
    shape: tuple
    elem_type: int
    kind: str  # "written", "copy" (source value name in ref) or "array" (ndarray in ref)
    ref: object = None


@dataclass(frozen=True)
class Destination:
    """Where (part of) a written tensor goes: initializer ``out``, transposed, a column block, a row."""

    out: str
    transposed: bool = False
    block: tuple | None = None
    row: int | None = None


@dataclass
class Rewritten:
    """The target graph without weight data (see the module docstring)."""

    model: object
    tensors: dict
    dests: dict
    notes: dict = field(default_factory=dict)


def mapped_block(b: int, old: int, new: int) -> int:
    """The target block that plays source block ``b``'s part at the same relative depth.

    >>> [mapped_block(b, 4, 2) for b in range(4)], [mapped_block(b, 2, 4) for b in range(2)]
    ([0, 0, 1, 1], [1, 3])
    """
    return max(0, math.ceil(Fraction((b + 1) * new, old)) - 1)


class _Builder:
    def __init__(self, analysis, sizes, targets):
        import onnx

        self.onnx = onnx
        self.a = analysis
        self.index = analysis.index
        self.alg = analysis.algebra
        self.sizes = dict(sizes)
        self.targets = targets
        self.nodes = []
        for n in self.index.nodes:
            c = onnx.NodeProto()
            c.CopyFrom(n)
            self.nodes.append(c)
        self.origin = list(range(len(self.nodes)))
        self.tensors: dict = {}
        self.dests: dict = {}
        self.notes = {"size literals": 0, "attributes": 0, "attention scales": 0, "rotary tables": 0,
                      "blocks removed": 0, "blocks cloned": 0, "taps moved": 0}
        self.taken = set(self.index.producer) | set(self.index.initializers) | self.index.graph_inputs
        self.taken |= {n.name for n in self.index.nodes if n.name}
        self.counter = 0
        self._label_like: dict = {}
        self.renamed: dict = {}
        self.inputs = [self._copy_vi(v) for v in self.index.graph.input if v.name not in self.index.initializers]
        self.outputs = [self._copy_vi(v) for v in self.index.graph.output]

    def _copy_vi(self, v):
        c = self.onnx.ValueInfoProto()
        c.CopyFrom(v)
        return c

    def fresh(self, base: str) -> str:
        if base not in self.taken:
            self.taken.add(base)
            return base
        while True:
            self.counter += 1
            name = f"{base}__bot{self.counter}"
            if name not in self.taken:
                self.taken.add(name)
                return name

    def value(self, dim) -> int:
        v = self.alg.value(dim, self.sizes)
        if not isinstance(v, int):
            raise UnsupportedModelError(f"{dim} is {v} at the target sizes, not a whole number; choose "
                                        "sizes that keep it whole")
        return v

    def array(self, node: int, k: int, arr, base: str) -> None:
        """Give input ``k`` of (source) node ``node`` its own new constant ``arr``."""
        from onnx import helper

        arr = np.asarray(arr, order="C")
        name = self.fresh(f"{base}__bot")
        self.tensors[name] = OutTensor(name, tuple(arr.shape), helper.np_dtype_to_tensor_dtype(arr.dtype),
                                       "array", arr)
        self.nodes[node].input[k] = name


# =========================================================================== sizes in constants
def _literal_value(b: _Builder, lit) -> int:
    if lit.kind == "size":
        return b.value(lit.dim)
    if lit.kind == "position":
        new = b.alg.position(lit.dim, lit.extra[0], b.sizes)
        if new.denominator != 1:
            raise UnsupportedModelError(
                f"node {b.index.nodes[lit.node].name!r} cuts {lit.dim} at {lit.extra[0]}, which is "
                f"{new} at the target sizes; choose sizes that keep it whole")
        return int(new)
    start, delta = lit.extra
    return start + delta * b.value(lit.dim)


def _merged(b: _Builder, lits) -> list:
    """Literals of one constant element: their dimensions merged (a use that knows more wins)."""
    from .dims import UnifyError

    out = []
    for lit in lits:
        for k, other in enumerate(out):
            if other.kind == lit.kind == "size":
                try:
                    out[k] = type(lit)(lit.node, lit.index, lit.element, lit.old,
                                       b.alg.merge(other.dim, lit.dim), lit.kind, lit.extra)
                    break
                except UnifyError:
                    pass
        else:
            out.append(lit)
    return out


def _literals(b: _Builder) -> None:
    sites: dict = {}
    for lit in b.a.prop.literals:
        sites.setdefault((lit.node, lit.index), {}).setdefault(lit.element, []).append(lit)
    for (node, k), elements in sites.items():
        src = np.asarray(b.index.const(b.index.nodes[node].input[k]))
        flat = src.reshape(-1).copy()
        for e, lits in elements.items():
            values = {_literal_value(b, lit) for lit in _merged(b, lits)}
            if len(values) > 1:
                atoms = sorted(frozenset().union(*(lit.dim.atoms for lit in lits)))
                raise UnsupportedModelError(
                    f"the constant {b.index.nodes[node].input[k]!r} of node {b.index.nodes[node].name!r} "
                    f"serves uses that need {sorted(values)} at element {e}; keep "
                    f"{' and '.join(atoms)} as they are")
            flat[e] = values.pop()
        if not np.array_equal(flat, src.reshape(-1)):
            b.array(node, k, flat.reshape(src.shape).astype(src.dtype), "shape")
            b.notes["size literals"] += 1


def _attr_value(b: _Builder, what):
    if isinstance(what, tuple):
        return [b.value(d) for d in what]
    return b.value(what)


def _attributes(b: _Builder) -> None:
    for node, name, what in b.a.prop.attributes:
        new = _attr_value(b, what)
        for attr in b.nodes[node].attribute:
            if attr.name != name:
                continue
            if isinstance(new, list):
                if list(attr.ints) != new:
                    del attr.ints[:]
                    attr.ints.extend(new)
                    b.notes["attributes"] += 1
            elif attr.i != new:
                attr.i = new
                b.notes["attributes"] += 1


def _scales(b: _Builder) -> None:
    old_d, new_d = b.alg.source["head_dim"], int(b.sizes["head_dim"])
    if old_d == new_d:
        return
    for node, k, _value, power in b.a.prop.scales:
        src = np.asarray(b.index.const(b.index.nodes[node].input[k]))
        b.array(node, k, np.full(src.shape, new_d**power, dtype=src.dtype), "scale")
        b.notes["attention scales"] += 1


def _ropes(b: _Builder) -> None:
    for rope in b.a.ropes:
        n_old, n_new = b.alg.value(rope.dim), b.value(rope.dim)
        if n_old == n_new:
            continue
        if rope.base is None:
            raise UnsupportedModelError(
                f"the rotary-embedding table {rope.source!r} is not the default base ** (-j / n) table "
                "(RoPE scaling?), so it cannot be recomputed for a new head_dim; keep head_dim as it is")
        for node, k in rope.uses:
            src = np.asarray(b.index.const(b.index.nodes[node].input[k]))
            shape = [n_new if s == n_old else s for s in src.shape]
            table = rope.base ** (-np.arange(n_new, dtype=np.float64) / n_new)
            b.array(node, k, table.astype(src.dtype).reshape(shape), "inv_freq")
        b.notes["rotary tables"] += 1


# =========================================================================== weights
def _exclusive(b: _Builder, source: str, uses) -> bool:
    """Whether every use of ``source`` (through Identity) is in ``uses``."""
    index = b.index
    mine = set(uses)
    stack, seen = [source], set()
    while stack:
        v = stack.pop()
        if v in seen:
            continue
        seen.add(v)
        for c, k in index.consumers.get(v, []):
            if index.nodes[c].op_type == "Identity":
                stack.append(index.nodes[c].output[0])
            elif (c, k) not in mine:
                return False
    return source in index.initializers


def _graph_shape(shape, transposed):
    return tuple(reversed(shape)) if transposed else tuple(shape)


def _params(b: _Builder) -> None:
    a = b.a
    fused: dict = {}
    for p in a.params.values():
        if p.name not in b.targets:  # a parameter of a removed block
            continue
        if p.block is not None:
            fused.setdefault(p.source, []).append(p)
            continue
        target = b.targets[p.name]
        keep = _exclusive(b, p.source, p.uses)
        out = p.source if keep else b.fresh(a.backbone.prefix + p.name)
        b.taken.add(out)
        _add_written(b, out, _graph_shape(target.shape, p.transposed), p.source)
        b.dests.setdefault(p.name, []).append(Destination(out, p.transposed))
        for node, k in p.uses:
            b.nodes[node].input[k] = out
    for source, parts in fused.items():
        _fused(b, source, parts)


def _add_written(b: _Builder, out, shape, like) -> None:
    b.tensors[out] = OutTensor(out, tuple(int(s) for s in shape), b.index.const_type(like), "written")


def _fused(b: _Builder, source, parts, names=None, out=None) -> str:
    """One output tensor holding ``parts`` (fused query/key/value) as blocks; returns its name."""
    parts = sorted(parts, key=lambda p: p.block[1])
    names = names or [p.name for p in parts]
    axis = parts[0].block[0]
    shapes = [list(_graph_shape(b.targets[n].shape, p.transposed)) for p, n in zip(parts, names)]
    full = list(shapes[0])
    full[axis] = sum(s[axis] for s in shapes)
    uses = sorted({u for p in parts for u in p.uses})
    if out is None:
        out = source if _exclusive(b, source, uses) else b.fresh(source)
        for node, k in uses:
            b.nodes[node].input[k] = out
    _add_written(b, out, full, source)
    pos = 0
    for p, n, s in zip(parts, names, shapes):
        b.dests.setdefault(n, []).append(Destination(out, p.transposed, (axis, pos, pos + s[axis])))
        pos += s[axis]
    return out


def _foreign(b: _Builder) -> None:
    for f in b.a.foreign.values():
        target = b.targets[f.name]
        shape = target.shape[1:] if f.stacked else target.shape
        for row, (source, uses) in enumerate(zip(f.members, f.uses)):
            out = source if _exclusive(b, source, uses) else b.fresh(source)
            _add_written(b, out, shape, source)
            b.dests.setdefault(f.name, []).append(Destination(out, row=row if f.stacked else None))
            for node, k in uses:
                b.nodes[node].input[k] = out


# =========================================================================== depth
def _relayer(name: str, pattern: str, new: int) -> str:
    m = re.match(pattern, name)
    return name if not m else name[: m.start(1)] + str(new) + name[m.end(1):]


_LAYER_TOKEN = r"(?<![0-9A-Za-z]){}(?![0-9])"


def relabel_name(text: str, old: int, new: int) -> str:
    """``text`` with the layer number ``old`` (as a ``.N.``/``_N_``/``/layer.N`` token) replaced by ``new``.

    >>> relabel_name("past_key_values.1.key", 1, 5), relabel_name("/m/h.1/attn/MatMul", 1, 3)
    ('past_key_values.5.key', '/m/h.3/attn/MatMul')
    """
    pattern = re.compile(r"(layer|layers|h|past_key_values|present|key_values)([./_])" + str(old) +
                         r"(?![0-9])")
    out = pattern.sub(lambda m: f"{m.group(1)}{m.group(2)}{new}", text)
    if out != text:
        return out
    return re.sub(_LAYER_TOKEN.format(old), str(new), text, count=1)


_SCOPE_KEYS = ("pkg.torch.onnx.name_scopes", "pkg.torch.onnx.class_hierarchy", "namespace")


def _relabel_node(node, old: int, new: int) -> None:
    pattern = re.compile(rf"(?<![\w])(layer|layers|h)([./]){old}(?![\d])")

    def sub(text):
        return pattern.sub(lambda m: f"{m.group(1)}{m.group(2)}{new}", text)

    node.name = sub(node.name)
    for prop in node.metadata_props:
        if prop.key in _SCOPE_KEYS:
            prop.value = sub(prop.value)


def _depth(b: _Builder) -> None:
    old, new = b.a.blocks.layers, int(b.sizes["layers"])
    if new < old:
        _shrink(b, old, new)
    elif new > old:
        _grow(b, old, new)


def _corresponding(b: _Builder, value: str, block: int, target: int, rename=None) -> str | None:
    """The value at ``value``'s place in ``target`` (a source block, or a clone via ``rename``)."""
    blocks = b.a.blocks
    if block == target and rename is None:
        return value
    j = b.index.producer.get(value)
    if j is None or not blocks.same:
        return None
    where = next(((p, k) for p, i in enumerate(blocks.nodes[block]) if i == j
                  for k, o in enumerate(b.index.nodes[i].output) if o == value), None)
    if where is None:
        return None
    p, k = where
    if rename is not None:
        template = blocks.nodes[blocks.layers - 1][p]
        return rename.get(b.index.nodes[template].output[k])
    return b.index.nodes[blocks.nodes[target][p]].output[k]


def _family_outputs(b: _Builder) -> bool:
    """Per-block graph outputs come in families (every block has them): a KV cache, hidden states."""
    outs = b.a.blocks.outputs
    counts = {len(outs.get(blk, [])) for blk in range(b.a.blocks.layers)}
    return len(counts) == 1 and 0 not in counts


def _input_name(b: _Builder, name: str, block: int, target: int) -> str:
    return relabel_name(name, block, target)


def _shrink(b: _Builder, old: int, new: int) -> None:
    blocks, index = b.a.blocks, b.index
    removed = {i for blk in range(new, old) for i in blocks.members[blk]}
    r_out, r_new = blocks.residual_out[old - 1], blocks.residual_out[new - 1]
    _move_taps(b, old, new, None)
    family = _family_outputs(b)
    drop_out = {o for blk in range(new, old) for o in blocks.outputs.get(blk, [])} if family else set()
    kept_outputs = []
    for vi in b.outputs:
        if vi.name in drop_out:
            continue
        kept_outputs.append(vi)
    b.outputs = kept_outputs
    drop_in = {x for blk in range(new, old) for x in blocks.inputs.get(blk, [])}
    b.inputs = [vi for vi in b.inputs if vi.name not in drop_in]
    removed_values = {o for i in removed for o in index.nodes[i].output if o}
    keep_nodes, keep_origin = [], []
    for n, o in zip(b.nodes, b.origin):
        if o in removed:
            continue
        bad = [v for v in n.input if v in removed_values and v != r_out]
        if bad:
            raise UnsupportedModelError(
                f"cannot remove blocks: node {n.name!r} ({n.op_type}) outside them uses {bad[0]!r} from "
                f"a removed block; expected other nodes to use blocks only through the residual stream")
        keep_nodes.append(n)
        keep_origin.append(o)
    at = max(k for k, n in enumerate(keep_nodes) if r_new in n.output) + 1
    keep_nodes.insert(at, b.onnx.helper.make_node("Identity", [r_new], [r_out], name=b.fresh("bot_residual")))
    keep_origin.insert(at, None)
    b.nodes, b.origin = keep_nodes, keep_origin
    b.notes["blocks removed"] = old - new


def _move_taps(b: _Builder, old: int, new: int, rename_for) -> None:
    """Point uses of block values outside the blocks at the block at the same relative depth."""
    blocks, index = b.a.blocks, b.index
    pos = {o: k for k, o in enumerate(b.origin) if o is not None}
    for node, k, blk, value in blocks.taps:
        target = mapped_block(blk, old, new)
        if target == blk:
            continue
        if value in index.graph_inputs:
            moved = _input_name(b, value, blk, target)
            ok = moved in index.graph_inputs or target >= old
        else:
            rename = rename_for(target) if rename_for is not None and target >= old else None
            moved = _corresponding(b, value, blk, target if target < old else blk, rename)
            moved = b.renamed.get(moved, moved) if rename is None else moved
            ok = moved is not None
        if not ok:
            raise UnsupportedModelError(
                f"node {index.nodes[node].name!r} ({index.nodes[node].op_type}) outside the blocks uses "
                f"{value!r} from block {blk}, and block {target} has no value at the same place (blocks "
                "differ in structure); keep layers as it is")
        b.nodes[pos[node]].input[k] = moved
        b.notes["taps moved"] += 1
    _move_outputs(b, old, new, rename_for)


def _move_outputs(b: _Builder, old: int, new: int, rename_for) -> None:
    blocks = b.a.blocks
    if _family_outputs(b):
        return
    for blk, names in blocks.outputs.items():
        target = mapped_block(blk, old, new)
        for name in names:
            if target == blk:
                continue
            rename = rename_for(target) if rename_for is not None and target >= old else None
            moved = _corresponding(b, name, blk, target if target < old else blk, rename)
            moved = b.renamed.get(moved, moved) if rename is None else moved
            if moved is None:
                raise UnsupportedModelError(
                    f"graph output {name!r} comes from inside block {blk}, and block {target} has no "
                    "value at the same place; keep layers as it is")
            _rename_value(b, name, b.fresh(name + "__src"))
            b.nodes.append(b.onnx.helper.make_node("Identity", [moved if moved != name else name],
                                                   [name], name=b.fresh("bot_output")))
            b.origin.append(None)
            b.notes["taps moved"] += 1


def _rename_value(b: _Builder, name: str, to: str) -> None:
    for n in b.nodes:
        for j, v in enumerate(n.output):
            if v == name:
                n.output[j] = to
        for j, v in enumerate(n.input):
            if v == name:
                n.input[j] = to


def _grow(b: _Builder, old: int, new: int) -> None:
    blocks, index, a = b.a.blocks, b.index, b.a
    r_out = blocks.residual_out[old - 1]
    r_in = blocks.residual_out[old - 2] if old >= 2 else blocks.residual_in
    pos = {o: k for k, o in enumerate(b.origin)}
    template = [pos[i] for i in blocks.members[old - 1]]
    produced = {v for k in template for v in b.nodes[k].output if v}
    prev = b.fresh(f"{r_out}__l{old - 1}")
    for k in template:
        node = b.nodes[k]
        for j, v in enumerate(node.output):
            if v == r_out:
                node.output[j] = prev
        for j, v in enumerate(node.input):
            if v == r_out:
                node.input[j] = prev
    tmpl_out = prev
    b.renamed = {r_out: tmpl_out}  # the template block's own residual output, for taps on it
    produced = (produced - {r_out}) | {tmpl_out}
    weights = _template_weights(b, old - 1)
    renames, new_nodes = {}, []
    for layer in range(old, new):
        rename = {v: (r_out if v == tmpl_out and layer == new - 1 else b.fresh(f"{v}__l{layer}"))
                  for v in produced}
        rename[r_out] = rename[tmpl_out]
        io = _clone_inputs(b, old - 1, layer)
        for k in template:
            c = b.onnx.NodeProto()
            c.CopyFrom(b.nodes[k])
            _relabel_node(c, old - 1, layer)
            c.name = b.fresh(c.name or f"{c.op_type}__l{layer}")
            for j, v in enumerate(c.input):
                if v == r_in:
                    c.input[j] = prev
                elif v in rename:
                    c.input[j] = rename[v]
                elif v in io:
                    c.input[j] = io[v]
            for j, v in enumerate(c.output):
                if v in rename:
                    c.output[j] = rename[v]
            for j, dest in weights.get(b.origin[k], {}).items():
                c.input[j] = dest(layer)
            new_nodes.append(c)
        _clone_outputs(b, old - 1, layer, {**rename, r_out: rename[tmpl_out]})
        renames[layer] = {**rename, r_out: rename[tmpl_out] if layer < new - 1 else r_out}
        prev = rename[tmpl_out]
    at = max(template) + 1
    b.nodes = b.nodes[:at] + new_nodes + b.nodes[at:]
    b.origin = b.origin[:at] + [None] * len(new_nodes) + b.origin[at:]
    b.notes["blocks cloned"] = new - old
    _move_taps(b, old, new, lambda layer: renames[layer])
    del index, a


def _template_weights(b: _Builder, last: int) -> dict:
    """``{source node: {input: layer -> output initializer name}}`` for the template block's weights."""
    a = b.a
    pattern = a.backbone.spec.layer_re
    out: dict = {}
    for p in a.params.values():
        if a.backbone.spec.layer(p.name) != last:
            continue
        for node, k in p.uses:
            out.setdefault(node, {})[k] = _param_dest(b, p, pattern)
    for f in a.foreign.values():
        if not f.stacked:
            continue
        for node, k in f.uses[last]:
            out.setdefault(node, {})[k] = _foreign_dest(b, f, last)
    return out


def _param_dest(b: _Builder, p, pattern):
    def dest(layer):
        name = _relayer(p.name, pattern, layer)
        found = b.dests.get(name)
        if found:
            return found[0].out
        if name not in b.targets:
            raise UnsupportedModelError(f"internal: the plan has no tensor {name!r} for a cloned block")
        if p.block is not None:
            parts = [q for q in b.a.params.values() if q.source == p.source]
            names = [_relayer(q.name, pattern, layer) for q in sorted(parts, key=lambda q: q.block[1])]
            return _fused(b, p.source, parts, names, b.fresh(f"{p.source}__l{layer}"))
        out = b.fresh(b.a.backbone.prefix + name)
        _add_written(b, out, _graph_shape(b.targets[name].shape, p.transposed), p.source)
        b.dests.setdefault(name, []).append(Destination(out, p.transposed))
        return out
    return dest


def _foreign_dest(b: _Builder, f, last):
    def dest(layer):
        done = [d for d in b.dests[f.name] if d.row == layer]
        if done:
            return done[0].out
        out = b.fresh(f"{f.members[last]}__l{layer}")
        _add_written(b, out, b.targets[f.name].shape[1:], f.members[last])
        b.dests[f.name].append(Destination(out, row=layer))
        return out
    return dest


def _clone_inputs(b: _Builder, last: int, layer: int) -> dict:
    io = {}
    for name in b.a.blocks.inputs.get(last, []):
        vi = next(v for v in b.inputs if v.name == name)
        c = b._copy_vi(vi)
        c.name = b.fresh(relabel_name(name, last, layer))
        b.inputs.append(c)
        io[name] = c.name
        b._label_like[c.name] = name
    return io


def _clone_outputs(b: _Builder, last: int, layer: int, rename: dict) -> None:
    if not _family_outputs(b):
        return
    for name in b.a.blocks.outputs.get(last, []):
        vi = next(v for v in b.outputs if v.name == name)
        c = b._copy_vi(vi)
        target = b.fresh(relabel_name(name, last, layer))
        b.nodes.append(b.onnx.helper.make_node("Identity", [rename[name]], [target],
                                               name=b.fresh("bot_output")))
        b.origin.append(None)
        c.name = target
        b.outputs.append(c)
        b._label_like[target] = name


# =========================================================================== graph inputs/outputs
def _io_dims(b: _Builder) -> None:
    prop = b.a.prop
    for vi in b.inputs + b.outputs:
        like = b._label_like.get(vi.name, vi.name)
        labels = prop.labels(like)
        tt = vi.type.tensor_type
        if not labels or not tt.HasField("shape") or len(tt.shape.dim) != len(labels):
            continue
        for d, dim in zip(tt.shape.dim, labels):
            if dim is not None and d.HasField("dim_value"):
                d.dim_value = b.value(dim)


def _dce(b: _Builder) -> set:
    needed = {vi.name for vi in b.outputs}
    keep = []
    for node in reversed(b.nodes):
        if any(o in needed for o in node.output if o):
            keep.append(node)
            needed.update(v for v in node.input if v)
    keep.reverse()
    b.nodes = keep
    return needed


def _copies(b: _Builder, needed: set) -> None:
    index = b.index
    for name, t in index.initializers.items():
        if name in needed and name not in b.tensors:
            b.tensors[name] = OutTensor(name, tuple(int(d) for d in t.dims), t.data_type, "copy", name)
    b.tensors = {n: t for n, t in b.tensors.items() if n in needed}


def _model(b: _Builder):
    onnx = b.onnx
    src = b.index.model
    model = onnx.ModelProto()
    model.ir_version = src.ir_version
    model.opset_import.extend(src.opset_import)
    for field_name in ("producer_name", "producer_version", "domain", "model_version", "doc_string"):
        setattr(model, field_name, getattr(src, field_name))
    model.metadata_props.extend(src.metadata_props)
    model.functions.extend(src.functions)
    g = model.graph
    g.name = src.graph.name
    g.node.extend(b.nodes)
    g.input.extend(b.inputs)
    g.output.extend(b.outputs)
    return model


def build(analysis, sizes, targets) -> Rewritten:
    """The target graph (see the module docstring).

    Parameters
    ----------
    analysis : Analysis
        Of the source graph.
    sizes : mapping
        Target ``layers, hidden, heads, kv_heads, head_dim, ffn``.
    targets : mapping
        Reader name -> object with the target ``shape`` (the plan's TensorInfo records).

    Raises
    ------
    UnsupportedModelError
        When the target cannot be expressed in this graph (see :meth:`Analysis.check`).
    """
    analysis.check(sizes)
    b = _Builder(analysis, sizes, targets)
    _literals(b)
    _attributes(b)
    _scales(b)
    _ropes(b)
    _params(b)
    _foreign(b)
    _depth(b)
    _io_dims(b)
    needed = _dce(b)
    _copies(b, needed)
    dests = {n: [d for d in ds if d.out in b.tensors] for n, ds in b.dests.items()}
    return Rewritten(_model(b), b.tensors, dests, dict(b.notes))
