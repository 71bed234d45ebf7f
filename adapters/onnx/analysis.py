"""Everything a resize needs to know about a graph, found once from shapes and names.

Contract: :func:`analyse` runs the family recogniser
(:mod:`botcore.adapters.onnx.families`) and the dimension propagation
(:mod:`botcore.adapters.onnx.propagate`) seeded with the family's rules, and
returns an :class:`Analysis`:

* :attr:`Analysis.params` -- the backbone's parameters under their Hugging Face
  names, each with the initializer uses that hold it and its layout there;
* :attr:`Analysis.foreign` -- every other floating-point initializer that
  carries a model dimension, with the :class:`~botcore.adapters.base.Rule`
  text its axes get from the propagation (an axis a ``MatMul``/``Conv``
  contracts is ``in``, any other ``out``; tensors inside blocks are stacked
  along depth when the blocks have the same structure);
* :attr:`Analysis.ropes` -- rotary-embedding frequency tables (derived from
  ``head_dim``, recomputed, not resized);
* :attr:`Analysis.blocks` -- the nodes of every transformer block, the residual
  stream between blocks, per-block graph inputs/outputs (a KV cache) and the
  uses of block values outside the blocks (decoder taps);
* :meth:`Analysis.check` -- the refusals for a given target: a finding of the
  propagation whose atoms change size, or a depth change the graph cannot take.

Only shapes, names and small constants are read: no weight data.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from botcore.errors import UnsupportedModelError

from ..io.base import TensorInfo
from .dims import Algebra, Dim
from .families import Backbone, recognise, rope_base
from .graph import GraphIndex
from .propagate import Finding, Propagation

__all__ = ["Analysis", "Blocks", "Foreign", "Param", "Rope", "analyse", "FOREIGN_PREFIX"]

#: Reader names of tensors no family rule names start with this.
FOREIGN_PREFIX = "onnx:"
_FLOAT = {1: "float32", 10: "float16", 11: "float64", 16: "bfloat16"}


@dataclass
class Param:
    """One Hugging Face parameter of the backbone: where it is in the graph."""

    name: str
    uses: list
    source: str
    transposed: bool
    block: tuple | None
    shape: tuple
    dtype: str


@dataclass
class Foreign:
    """A tensor no family rule names that carries a model dimension (see the module docstring)."""

    name: str
    members: list
    uses: list
    shape: tuple
    dtype: str
    dims: str
    roles: str
    stacked: bool = False

    @property
    def info(self) -> TensorInfo:
        if self.stacked:
            return TensorInfo(self.name, (len(self.members), *self.shape), self.dtype,
                              ("layers," + self.dims, "depth," + self.roles))
        return TensorInfo(self.name, tuple(self.shape), self.dtype, (self.dims, self.roles))


@dataclass
class Rope:
    """A rotary-embedding frequency table ``base ** (-j / n)`` at ``uses``; ``dim`` is its length."""

    source: str
    uses: list
    dim: Dim
    base: float | None


@dataclass
class Blocks:
    """Transformer blocks: their nodes, the residual stream, per-block inputs/outputs, taps."""

    layers: int
    nodes: list
    same: bool
    residual_out: list
    residual_in: str | None
    inputs: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    taps: list = field(default_factory=list)
    problems: list = field(default_factory=list)
    members: list = field(default_factory=list)


@dataclass
class Analysis:
    """What :func:`analyse` found (see the module docstring)."""

    index: GraphIndex
    backbone: Backbone
    algebra: Algebra
    prop: Propagation
    params: dict
    foreign: dict
    ropes: list
    blocks: Blocks
    findings: list

    @property
    def family(self) -> str:
        return self.backbone.family

    @property
    def config(self) -> dict:
        return dict(self.backbone.config)

    def tensors(self) -> dict:
        """Reader records: the backbone's Hugging Face tensors and the foreign ones (with rules)."""
        out = {n: TensorInfo(n, p.shape, p.dtype) for n, p in self.params.items()}
        out.update({n: f.info for n, f in self.foreign.items()})
        return out

    def changed(self, sizes) -> frozenset:
        """The atoms whose size differs between the source and model-level ``sizes``."""
        new = self.algebra.atom_sizes(sizes)
        return frozenset(a for a, v in self.algebra.source.items() if new[a] != v)

    def check(self, sizes) -> None:
        """Raise :class:`UnsupportedModelError` when the graph cannot be resized to ``sizes``."""
        changed = self.changed(sizes)
        for f in self.findings:
            if f.atoms & changed:
                raise UnsupportedModelError(f"cannot resize this ONNX graph: {f.message}")
        small = sorted(a for a in changed if self.algebra.source[a] == 1)
        if small:
            raise UnsupportedModelError(
                f"{small[0]} is 1 in the source graph, so no axis shows it and the graph cannot follow "
                f"a change of it; keep {small[0]} at 1")
        if int(sizes["layers"]) != self.blocks.layers:
            for message in self.blocks.problems:
                raise UnsupportedModelError(f"cannot change the depth of this ONNX graph: {message}")
            if not self.blocks.same and self.blocks.taps:
                raise UnsupportedModelError(
                    "cannot change the depth of this ONNX graph: its blocks differ in structure and "
                    f"values inside blocks are used outside them (e.g. {self.blocks.taps[0][3]!r}); "
                    "keep layers as it is")
            local = self._block_local_foreign()
            if local:
                raise UnsupportedModelError(
                    f"cannot change the depth of this ONNX graph: tensor {local[0]!r} inside a block has no "
                    "family rule, and the blocks differ in structure, so it has no counterpart in the "
                    "other blocks to resize it with along depth; keep layers as it is")

    def _block_local_foreign(self) -> list:
        """Foreign tensors used inside one block that are not stacked over the blocks."""
        labels = self.backbone.node_layer
        return [f.members[0] for f in self.foreign.values() if not f.stacked and
                {labels[i] for i, _ in f.uses[0]} - {None}]


# =========================================================================== seeds
def _rule_dims(alg: Algebra, group) -> Dim | None:
    symbols = [s for s in group if s != "_"]
    return alg.dim(*symbols) if symbols else None


def _native_axes(bb: Backbone, alg: Algebra, layout, name) -> list:
    """Labels of the Hugging Face native tensor ``name``'s axes, from the family's rules."""
    rules = {m: spec.rule for spec in layout.specs.values() for m in spec.members}
    views = [(v, view) for v, view in layout.views.items() if view.native == name]
    per_view = []
    for v, view in views:
        rule = rules.get(v)
        if rule is None:
            return []
        per_view.append((view, [_rule_dims(alg, g) for g in rule.native_dims]))
    if not per_view:
        return []
    view, axes = per_view[0]
    if len(per_view) > 1:  # a fusion: the first (after transpose) axis concatenates the parts
        parts = [(a[0], vw.shape[0]) for vw, a in per_view]
        axes = [alg.concat(parts)] + list(axes[1:])
    return list(reversed(axes)) if view.transpose else axes


def _seed(analysis_prop: Propagation, bb: Backbone, alg: Algebra, params: dict, layout) -> None:
    by_use: dict = {}
    for p in params.values():
        axes = _native_axes(bb, alg, layout, p.name)
        if p.transposed:
            axes = list(reversed(axes))
        for use in p.uses:
            by_use.setdefault(use, []).append((p, axes))
    index = analysis_prop.index
    for (node, k), entries in by_use.items():
        key = analysis_prop.key(node, k)
        shape = index.const_shape(index.nodes[node].input[k])
        if len(entries) == 1 and entries[0][0].block is None:
            for a, dim in enumerate(entries[0][1]):
                analysis_prop.seed(key, a, dim, f"parameter {entries[0][0].name}")
            continue
        entries.sort(key=lambda e: e[0].block[1])
        axis = entries[0][0].block[0]
        joined = alg.concat([(axes[axis], p.block[2] - p.block[1]) for p, axes in entries])
        for a in range(len(shape)):
            dim = joined if a == axis else entries[0][1][a]
            analysis_prop.seed(key, a, dim, f"parameters {[p.name for p, _ in entries]}")


def _params(index: GraphIndex, bb: Backbone) -> dict:
    out: dict = {}
    for s in bb.slots:
        value = index.nodes[s.node].input[s.index]
        src = index.source(value)
        if s.name not in out:
            shape = list(index.const_shape(value))
            if s.block is not None:
                shape[s.block[0]] = s.block[2] - s.block[1]
            shape = tuple(reversed(shape)) if s.transposed else tuple(shape)
            dtype = _FLOAT.get(index.const_type(value))
            if dtype is None:
                raise UnsupportedModelError(
                    f"parameter {s.name!r} ({src!r}) is not stored as a floating-point tensor "
                    "(quantised graphs are not resized); export the float model")
            out[s.name] = Param(s.name, [], src, s.transposed, s.block, shape, dtype)
        out[s.name].uses.append((s.node, s.index))
    return out


# =========================================================================== foreign tensors
def _role(prop: Propagation, key, axis, depth=0) -> bool:
    """Whether axis ``axis`` of ``key`` is contracted (through layout-only operators)."""
    if (key, axis) in prop.contracted:
        return True
    if depth > 3:
        return False
    value = prop.value_of(key)
    node_i = next((i for i, k in ((i, k) for i, k in prop.index.consumers.get(value, []))
                   if prop.key(i, k) == key), None)
    if node_i is None:
        return False
    node = prop.index.nodes[node_i]
    if node.op_type not in ("Transpose", "Cast", "Identity", "Unsqueeze", "Squeeze", "Reshape"):
        return False
    out = node.output[0]
    root = prop.find((key, axis))
    for a in range(prop.rank(out) or 0):
        if prop.find((out, a)) == root:
            return _role(prop, out, a, depth + 1)
    return False


def _uses(index: GraphIndex, claimed: set):
    """Float constant uses not claimed by the backbone: ``{source: [(node, input), ...]}``."""
    out: dict = {}
    for i, node in enumerate(index.nodes):
        if node.op_type in ("Constant", "Identity"):
            continue
        for k, value in enumerate(node.input):
            if not value or (i, k) in claimed or not index.is_const(value):
                continue
            if index.const_type(value) not in _FLOAT:
                continue
            shape = index.const_shape(value)
            if shape is None or math.prod(shape) <= 1:
                continue
            out.setdefault(index.source(value), []).append((i, k))
    return out


def _axes_text(prop: Propagation, uses, where) -> tuple | None:
    """``(labels, dims, roles)`` of a tensor from its uses, or ``None`` when it carries nothing."""
    alg = prop.alg
    labels = None
    for use in uses:
        key = prop.key(*use)
        now = prop.labels(key)
        if labels is None:
            labels = now
        elif any(not alg.same(a, b) for a, b in zip(labels, now)):
            atoms = frozenset().union(*(d.atoms for d in labels + now if d is not None))
            prop.findings.append(Finding(atoms, (
                f"tensor {where!r} is used with different dimensions ({[str(d) for d in labels]} and "
                f"{[str(d) for d in now]}); keep {' and '.join(sorted(atoms))} as they are")))
            return None
    if not labels or all(d is None for d in labels):
        return None
    key = prop.key(*uses[0])
    texts = [alg.rule_text(d, contracted=_role(prop, key, a)) for a, d in enumerate(labels)]
    return labels, texts


def _rope(prop: Propagation, source, uses, labels) -> Rope | None:
    dims = [d for d in labels if d is not None]
    if len(dims) != 1 or dims[0].atoms != {"head_dim"}:
        return None
    value = np.asarray(prop.index.const(prop.index.nodes[uses[0][0]].input[uses[0][1]]))
    base = rope_base(value.reshape(-1)) if value.size == prop.alg.value(dims[0]) else None
    return Rope(source, list(uses), dims[0], base)


def _foreign_name(index: GraphIndex, source, use, taken) -> str:
    """A readable name: the consuming module's ``weight``/``bias`` when known, else the initializer's."""
    node = index.nodes[use[0]]
    path = index.module_path(use[0])
    name = source
    if path and node.op_type in ("MatMul", "Gemm", "Conv", "ConvTranspose"):
        name = f"{path}.{'bias' if use[1] == 2 else 'weight'}"
    elif path and node.op_type == "Add":
        other = index.producer.get(node.input[1 - use[1]]) if len(node.input) == 2 else None
        if other is not None and index.nodes[other].op_type in ("MatMul", "Gemm"):
            name = f"{path}.bias"
    name = FOREIGN_PREFIX + name
    while name in taken:
        name += "'"
    return name


def _foreign(index, bb, prop, params, blocks) -> tuple:
    claimed = {u for p in params.values() for u in p.uses}
    foreign, ropes, taken = {}, [], set(params)
    for source, uses in _uses(index, claimed).items():
        found = _axes_text(prop, uses, source)
        if found is None:
            continue
        labels, texts = found
        if any(t is None for t in texts):
            rope = _rope(prop, source, uses, labels)
            if rope is not None:
                ropes.append(rope)
                continue
            atoms = frozenset().union(*(d.atoms for d in labels if d is not None))
            prop.findings.append(Finding(atoms, (
                f"tensor {source!r} (used by {_node_names(index, uses)}) carries "
                f"{[str(d) for d in labels]}, which no resize rule can express; keep "
                f"{' and '.join(sorted(atoms))} as it is")))
            continue
        shape = index.const_shape(index.nodes[uses[0][0]].input[uses[0][1]])
        name = _foreign_name(index, source, uses[0], taken)
        taken.add(name)
        foreign[name] = Foreign(name, [source], [list(uses)], tuple(shape),
                                _FLOAT[index.const_type(index.nodes[uses[0][0]].input[uses[0][1]])],
                                ",".join(t[0] for t in texts), ",".join(t[1] for t in texts))
    return _stack(index, foreign, blocks), ropes


def _node_names(index, uses) -> str:
    names = [index.nodes[i].name or index.nodes[i].op_type for i, _ in uses[:2]]
    return ", ".join(repr(n) for n in names)


def _stack(index: GraphIndex, foreign: dict, blocks: Blocks) -> dict:
    """Foreign tensors inside blocks, one per block at the same place: one stacked tensor."""
    if not blocks.same or blocks.layers < 1:
        return foreign
    position = {i: (b, p) for b, nodes in enumerate(blocks.nodes) for p, i in enumerate(nodes)}
    groups: dict = {}
    for f in foreign.values():
        places = {position.get(i) for i, _ in f.uses[0]}
        if len(places) != 1 or None in places:
            continue
        b, p = places.pop()
        groups.setdefault((p, f.uses[0][0][1]), {})[b] = f
    out = dict(foreign)
    for members in groups.values():
        if sorted(members) != list(range(blocks.layers)):
            continue
        first = members[0]
        if any((f.shape, f.dims, f.roles, f.dtype) != (first.shape, first.dims, first.roles, first.dtype)
               for f in members.values()):
            continue
        for f in members.values():
            del out[f.name]
        name = _stack_name(first.name)
        out[name] = Foreign(name, [members[b].members[0] for b in range(blocks.layers)],
                            [members[b].uses[0] for b in range(blocks.layers)], first.shape, first.dtype,
                            first.dims, first.roles, stacked=True)
    return out


def _stack_name(name: str) -> str:
    m = re.search(r"(?<=[./_])0(?=[./_])", name)
    return name[: m.start()] + "*" + name[m.end():] if m else name + "[blocks]"


# =========================================================================== blocks
def _blocks(index: GraphIndex, bb: Backbone, prop: Propagation, layers: int) -> Blocks:
    labels = bb.node_layer
    nodes = [[i for i, lab in enumerate(labels) if lab == b] for b in range(layers)]
    anchors = [[i for i in ns if _anchor(index, labels, i, b)] for b, ns in enumerate(nodes)]
    ops = [[index.nodes[i].op_type for i in ns] for ns in anchors]
    same = all(o == ops[0] for o in ops)
    hidden = prop.alg.dim("hidden")
    outs, problems = [], []
    for b, ns in enumerate(nodes):
        cands = []
        for i in ns:
            for v in index.nodes[i].output:
                users = [labels[c] for c, _ in index.consumers.get(v, [])]
                if (any(u != b for u in users) or v in index.graph_outputs) and _carries(prop, v, hidden):
                    cands.append((b + 1 in users, i, v))
        if not cands:
            problems.append(f"block {b} has no residual-stream value leaving it")
            outs.append(None)
            continue
        outs.append(max(cands)[2])
    ins = []
    for i in nodes[0] if nodes else []:
        for v in index.nodes[i].input:
            if v in index.producer and labels[index.producer[v]] is None and _carries(prop, v, hidden) \
                    and v not in ins:
                ins.append(v)
    r_in = ins[0] if len(ins) == 1 else None
    if len(ins) != 1:
        problems.append(f"block 0 reads {len(ins)} hidden-sized values from outside ({ins[:3]}); "
                        "expected one residual stream")
    blocks = Blocks(layers, anchors if same else nodes, same, outs, r_in, problems=problems)
    blocks.members = nodes
    _block_io(index, labels, blocks)
    return blocks


def _anchor(index: GraphIndex, labels, i: int, b: int) -> bool:
    """A node of block ``b``'s own computation: a float output, not shared with later blocks.

    Shape arithmetic, constants, and what an exporter computed once in the first
    block for all of them (rotary tables, masks) are not anchors.
    """
    node = index.nodes[i]
    if node.op_type == "Constant" or not any(index.elem_types.get(o) in _FLOAT for o in node.output if o):
        return False
    users = {labels[c] for o in node.output for c, _ in index.consumers.get(o, [])}
    others = users - {b, None}
    return not others or (others == {b + 1} and node.op_type in ("Add", "LayerNormalization",
                                                                  "SkipLayerNormalization", "Mul"))


def _carries(prop: Propagation, value, dim) -> bool:
    labels = prop.labels(value)
    return bool(labels) and prop.alg.same(labels[-1], dim)


def _block_io(index: GraphIndex, labels: list, blocks: Blocks) -> None:
    """Graph inputs read by one block, graph outputs made inside blocks, and uses outside the blocks."""
    for name in index.graph_inputs:
        users = {labels[c] for c, _ in index.consumers.get(name, [])}
        inside = users - {None}
        if len(inside) == 1:
            b = inside.pop()
            blocks.inputs.setdefault(b, []).append(name)
            blocks.taps += [(c, k, b, name) for c, k in index.consumers.get(name, []) if labels[c] is None]
    position = {i: (b, p) for b, ns in enumerate(blocks.members) for p, i in enumerate(ns)}
    last = blocks.residual_out[-1] if blocks.residual_out else None
    for name in index.graph_outputs:
        j = index.producer.get(name)
        if j is not None and j in position and name != last:
            blocks.outputs.setdefault(position[j][0], []).append(name)
    for i, node in enumerate(index.nodes):
        if labels[i] is not None:
            continue
        for k, v in enumerate(node.input):
            j = index.producer.get(v)
            if j is not None and j in position and v != last:
                blocks.taps.append((i, k, position[j][0], v))


def analyse(model, folder=None) -> Analysis:
    """Analyse a graph (see the module docstring); ``folder`` holds its external data.

    Raises
    ------
    UnsupportedModelError
        When no known backbone is found or its parameters cannot be named.
    """
    index = GraphIndex(model, folder)
    index.infer_shapes()
    bb = recognise(index)
    params = _params(index, bb)
    infos = {n: TensorInfo(n, p.shape, p.dtype) for n, p in params.items()}
    layout = bb.adapter.layout(infos, bb.config)
    alg = Algebra(bb.sizes, gqa=bb.adapter.gqa, free_head_dim=bb.adapter.free_head_dim)
    prop = Propagation(index, alg)
    _seed(prop, bb, alg, params, layout)
    prop.solve()
    blocks = _blocks(index, bb, prop, int(bb.sizes["layers"]))
    foreign, ropes = _foreign(index, bb, prop, params, blocks)
    return Analysis(index, bb, alg, prop, params, foreign, ropes, blocks, prop.findings)
