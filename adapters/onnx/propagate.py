"""Following the model's dimensions through an ONNX graph, operator by operator.

Contract: a :class:`Propagation` over a :class:`~botcore.adapters.onnx.graph.GraphIndex`
ties together every tensor axis that must hold the same model dimension
(union-find over ``(value, axis)`` slots; a constant gets one slot set *per use*,
so a de-duplicated initializer shared by unrelated uses never couples them),
takes *seeds* (the axes the family's rules label: the backbone's weights) and
spreads them: elementwise operators and their broadcasting, normalisations,
activations, transposes and residual adds pass a dimension through;
``MatMul``/``Gemm``/``Conv``/``Einsum`` couple the contracted axes of their
operands and carry the others; ``Reshape``/``Flatten`` split and merge axes
(:meth:`~botcore.adapters.onnx.dims.Algebra.unify`); ``Concat``, ``Slice``,
``Split``, ``Tile`` and ``Expand`` cut, join and broadcast them; ONNX Runtime's
fused operators (``Attention``, ``SkipLayerNormalization``,
``EmbedLayerNormalization``, ``BiasGelu``, ``FastGelu``, ...) have rules too.
The result says, for every slot, which :class:`~botcore.adapters.onnx.dims.Dim`
it holds (or none), and lists what a resize must rewrite besides weights:

* :attr:`literals`: elements of integer constants that encode a dimension
  (``Reshape``/``Expand``/``ConstantOfShape``/``Tile``/``Resize`` shapes, directly
  or as ``Concat`` pieces; ``Slice`` bounds; ``Split`` sizes; ``Range`` limits),
  each with the function that gives its new value;
* :attr:`attributes`: attributes that encode one (``num_heads``, a depthwise
  ``Conv``'s ``group``, ``Split``'s ``split``);
* :attr:`scales`: scalar constants next to an attention-score ``MatMul`` that
  equal a power of ``head_dim``;
* :attr:`findings`: what cannot be followed (an operator without a rule
  touching a resized axis, two dimensions meeting on one axis, an ambiguous
  split, a slice at a position that does not scale): each a
  :class:`Finding` that matters only when one of its atoms changes size.

Nothing is modified; ``onnx`` is never imported here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from .dims import Algebra, Dim, UnifyError, mono, mono_div, mono_mul
from .graph import GraphIndex, float_scalar

__all__ = ["Finding", "Literal", "Propagation"]

_BIG = 2**62


@dataclass(frozen=True)
class Finding:
    """Something the propagation could not follow; it blocks a resize that changes ``atoms``."""

    atoms: frozenset
    message: str


@dataclass(frozen=True)
class Literal:
    """Element ``element`` of the constant at ``nodes[node].input[index]``: ``old`` -> ``new(sizes)``."""

    node: int
    index: int
    element: int
    old: int
    dim: Dim
    kind: str = "size"  # size: value(dim); position: where old lies in dim; affine: a + b * value(dim)
    extra: tuple = ()


def _attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            if a.type == 1:
                return a.f
            if a.type == 2:
                return a.i
            if a.type == 3:
                return a.s.decode()
            if a.type == 7:
                return list(a.ints)
            if a.type == 6:
                return list(a.floats)
    return default


@dataclass
class _State:
    parent: dict = field(default_factory=dict)
    label: dict = field(default_factory=dict)


class Propagation:
    """Dimension propagation over one graph (see the module docstring).

    Parameters
    ----------
    index : GraphIndex
        The graph, with shapes inferred.
    algebra : Algebra
        Source sizes and the family's conventions.
    """

    def __init__(self, index: GraphIndex, algebra: Algebra):
        self.index, self.alg = index, algebra
        self.state = _State()
        self.rules: list = []
        self.posts: list = []
        self.unknown: list = []
        self.findings: list = []
        self.literals: list = []
        self.attributes: list = []
        self.scales: list = []
        self.contracted: set = set()
        self.attention: list = []
        self.dead: set = set()
        for i, node in enumerate(index.nodes):
            handler = OPS.get(node.op_type)
            if handler is None:
                if node.op_type not in ("Constant",):
                    self.unknown.append(i)
                continue
            handler(self, i, node)

    # -- keys and shapes ---------------------------------------------------------------
    def key(self, i: int, k: int) -> str | None:
        """The slot-set name of input ``k`` of node ``i`` (constants: one per use)."""
        node = self.index.nodes[i]
        if k >= len(node.input) or not node.input[k]:
            return None
        name = node.input[k]
        return f"{name}@{i}.{k}" if self.index.is_const(name) else name

    def value_of(self, key: str) -> str:
        return key.split("@", 1)[0]

    def inputs(self, i: int) -> list:
        return [self.key(i, k) for k in range(len(self.index.nodes[i].input))]

    def shape(self, key) -> tuple | None:
        if key is None:
            return None
        name = self.value_of(key)
        return self.index.shape(name)

    def rank(self, key) -> int | None:
        s = self.shape(key)
        return None if s is None else len(s)

    def size(self, slot):
        s = self.shape(slot[0])
        return None if s is None or slot[1] >= len(s) else s[slot[1]]

    # -- union-find with labels -------------------------------------------------------
    def find(self, slot):
        parent = self.state.parent
        root = slot
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(slot, slot) != root:
            parent[slot], slot = root, parent[slot]
        return root

    def get(self, key, axis) -> Dim | None:
        """The label of axis ``axis`` of ``key`` (``None``: no model dimension)."""
        return self.state.label.get(self.find((key, axis)))

    def labels(self, key) -> list:
        r = self.rank(key)
        return [] if r is None else [self.get(key, a) for a in range(r)]

    def assign(self, slot, dim: Dim | None, where: str) -> bool:
        """Give ``slot`` the label ``dim`` (merged with what it has); True if anything changed."""
        if dim is None:
            return False
        size = self.size(slot)
        if isinstance(size, int) and self.alg.value(dim) != size:
            self.findings.append(Finding(dim.atoms, (
                f"{where}: axis {slot[1]} of {self.value_of(slot[0])!r} has {size} elements but would "
                f"carry {dim} = {self.alg.value(dim)}; keep {_which(dim)} as it is")))
            return False
        root = self.find(slot)
        old = self.state.label.get(root)
        if old is not None:
            if self.alg.same(old, dim):
                return False
            try:
                new = self.alg.merge(old, dim, where)
            except UnifyError as exc:
                self.findings.append(Finding(old.atoms | dim.atoms, str(exc)))
                return False
            if self.alg.same(new, old):
                return False
            dim = new
        self.state.label[root] = dim
        return True

    def union(self, a, b, where: str) -> None:
        """Tie slots ``a`` and ``b`` (``(key, axis)``) unless their sizes say broadcasting."""
        if a[0] is None or b[0] is None:
            return
        sa, sb = self.size(a), self.size(b)
        if sa == 1 or sb == 1:
            return
        if isinstance(sa, int) and isinstance(sb, int) and sa != sb:
            return
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        la, lb = self.state.label.pop(ra, None), self.state.label.get(rb)
        self.state.parent[ra] = rb
        if la is not None:
            if lb is None:
                self.state.label[rb] = la
            else:
                self.assign(rb, la, where)

    # -- helpers for operator rules ----------------------------------------------------
    def same(self, out, inp, where) -> None:
        """Axis-by-axis ties between two tensors of the same rank (else broadcasting from the right)."""
        self.bcast(out, [inp], where)

    def bcast(self, out, ins, where) -> None:
        """NumPy broadcasting: axes aligned from the right are tied where the sizes agree."""
        ro = self.rank(out)
        if ro is None:
            return
        for inp in ins:
            ri = self.rank(inp)
            if ri is None:
                continue
            for a in range(ri):
                self.union((inp, a), (out, ro - ri + a), where)

    def name(self, i: int) -> str:
        node = self.index.nodes[i]
        return f"{node.name or '<unnamed>'} ({node.op_type})"

    def ints(self, i: int, k: int):
        """Integer values of constant input ``k`` of node ``i``, or ``None``."""
        node = self.index.nodes[i]
        if k >= len(node.input) or not node.input[k] or not self.index.is_const(node.input[k]):
            return None
        value = self.index.const(node.input[k])
        if value is None or not np.issubdtype(value.dtype, np.integer):
            return None
        return [int(v) for v in np.asarray(value).reshape(-1)]

    # -- solving --------------------------------------------------------------------------
    def seed(self, key: str, axis: int, dim: Dim | None, where: str) -> None:
        """Label axis ``axis`` of ``key`` with ``dim`` (a weight's axis, from the family's rules)."""
        self.assign((key, axis), dim, where)

    def solve(self, *, rounds: int = 30) -> None:
        """Spread the seeds to a fixed point, then collect literals, attributes, scales, findings."""
        for _ in range(rounds):
            changed = False
            for rule in self.rules:
                changed = bool(rule()) or changed
            if not changed:
                break
        for post in self.posts:
            post()
        self._unknown_findings()
        self._scales()

    def _unknown_findings(self) -> None:
        for i in self.unknown:
            node = self.index.nodes[i]
            keys = [k for k in self.inputs(i) if k] + [o for o in node.output if o]
            for key in keys:
                for a, dim in enumerate(self.labels(key)):
                    if dim is not None:
                        self.findings.append(Finding(dim.atoms, (
                            f"node {self.name(i)} has no dimension rule, and its tensor "
                            f"{self.value_of(key)!r} carries {dim} on axis {a}; keep {_which(dim)} as "
                            "it is, or export the model without this operator")))
                        break

    # -- literals -------------------------------------------------------------------------
    def entries(self, i: int, k: int, depth: int = 0) -> list | None:
        """The elements of a 1-D integer input: ``(value or None, (node, input, element) or None)``.

        Literal elements come from a constant, or from the constant pieces of a
        ``Concat`` (also through ``Cast``/``Identity``, and ``Unsqueeze`` of a
        scalar constant); runtime pieces give ``None``. ``None`` when the
        number of elements is not known.
        """
        index = self.index
        node = index.nodes[i]
        if k >= len(node.input) or not node.input[k]:
            return None
        values = self.ints(i, k)
        if values is not None:
            return [(v, (i, k, e)) for e, v in enumerate(values)]
        name = node.input[k]
        j = index.producer.get(name)
        prod_node = index.nodes[j] if j is not None else None
        if prod_node is not None and depth < 6:
            if prod_node.op_type == "Concat":
                out = []
                for p in range(len(prod_node.input)):
                    piece = self.entries(j, p, depth + 1)
                    if piece is None:
                        return None
                    out += piece
                return out
            if prod_node.op_type in ("Cast", "Identity") or (
                    prod_node.op_type == "Unsqueeze" and self.ints(j, 0) is not None):
                return self.entries(j, 0, depth + 1)
        shp = index.shape(name)
        if shp is not None and len(shp) == 1 and isinstance(shp[0], int):
            return [(None, None)] * shp[0]
        if shp is not None and len(shp) == 0:
            return [(None, None)]
        return None

    def want(self, site, old: int, dim: Dim, where: str, kind="size", extra=()) -> None:
        """Record that the literal at ``site`` (holding ``old``) must follow ``dim``."""
        node, k, e = site
        self.literals.append(Literal(node, k, e, int(old), dim, kind, tuple(extra)))

    def shape_literals(self, i: int, k: int, out_key, *, align_right=False, skip=(0, -1)) -> None:
        """Literals of a shape input whose elements give the sizes of ``out_key``'s axes."""
        entries = self.entries(i, k)
        labels = self.labels(out_key)
        if entries is None:
            self._opaque(i, labels, out_key)
            return
        offset = len(labels) - len(entries) if align_right else 0
        for e, (value, site) in enumerate(entries):
            a = e + offset
            if not 0 <= a < len(labels) or labels[a] is None:
                continue
            dim = labels[a]
            if value is None or value in skip:
                continue
            if value != self.alg.value(dim):
                self.findings.append(Finding(dim.atoms, (
                    f"node {self.name(i)} sets axis {a} of {self.value_of(out_key)!r} to {value}, but "
                    f"that axis carries {dim} = {self.alg.value(dim)}; keep {_which(dim)} as it is")))
                continue
            self.want(site, value, dim, self.name(i))

    def _opaque(self, i, labels, out_key) -> None:
        for a, dim in enumerate(labels):
            if dim is not None:
                self.findings.append(Finding(dim.atoms, (
                    f"node {self.name(i)} computes the shape of {self.value_of(out_key)!r} at run time, "
                    f"and axis {a} carries {dim}; keep {_which(dim)} as it is")))
                return

    # -- attention scales -------------------------------------------------------------------
    def _scales(self) -> None:
        head_dim = self.alg.dim("head_dim")
        seen = set()
        for i in self.attention:
            node = self.index.nodes[i]
            a = self.inputs(i)[0]
            r = self.rank(a)
            if r is None or not self.alg.same(self.get(a, r - 1), head_dim):
                continue
            for site in _scale_uses(self.index, i):
                if site in seen:
                    continue
                seen.add(site)
                value = float_scalar(self.index.const(self.index.nodes[site[0]].input[site[1]]))
                power = _power(value, self.alg.source["head_dim"])
                if power is not None:
                    self.scales.append((site[0], site[1], value, power))
            del node


def _which(dim: Dim) -> str:
    names = sorted(dim.atoms)
    return " and ".join(names) if names else str(dim)


def _power(value, head_dim):
    if value is None or head_dim <= 1:
        return None
    for p in (-0.5, -0.25, 0.25, 0.5, -1.0, 1.0):
        if math.isclose(value, head_dim**p, rel_tol=1e-5):
            return p
    return None


_PASS = ("Transpose", "Reshape", "Identity", "Cast", "Unsqueeze", "Squeeze")


def _scale_uses(index: GraphIndex, i: int) -> list:
    """``(node, input)`` of scalar constants scaling the operands or the output of MatMul ``i``."""
    uses = []
    node = index.nodes[i]
    for v in node.input[:2]:
        for _ in range(5):
            if v not in index.producer:
                break
            p_i = index.producer[v]
            p = index.nodes[p_i]
            if p.op_type in ("Mul", "Div"):
                consts = [k for k, inp in enumerate(p.input)
                          if index.is_const(inp) and float_scalar(index.const(inp)) is not None]
                if len(consts) != 1:
                    break
                uses.append((p_i, consts[0]))
                v = p.input[1 - consts[0]]
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


# =========================================================================== operator rules
def _outs(node):
    return [o for o in node.output]


def _elementwise(eng: Propagation, i, node):
    out = node.output[0]
    eng.bcast(out, [k for k in eng.inputs(i) if k], eng.name(i))


def _unary(eng: Propagation, i, node):
    k = eng.key(i, 0)
    for out in node.output:
        if out:
            eng.same(out, k, eng.name(i))


def _first_two(eng, i, node):
    """Elementwise over the first two inputs (``BiasGelu(X, bias)``, ``FastGelu``, ``Dropout``)."""
    ins = [k for k in eng.inputs(i)[:2] if k]
    eng.bcast(node.output[0], ins, eng.name(i))
    if node.op_type == "Dropout" and len(node.output) > 1 and node.output[1]:
        eng.same(node.output[1], ins[0], eng.name(i))


def _norm(eng: Propagation, i, node):
    """LayerNormalization-like: output 0 = input 0; scale/bias/skip broadcast on the trailing axes."""
    ins = [k for k in eng.inputs(i) if k]
    where = eng.name(i)
    x = ins[0]
    eng.bcast(node.output[0], ins, where)
    for o in node.output[1:]:
        if o and eng.rank(o) == eng.rank(x):
            eng.bcast(o, [x], where)


def _channel_norm(eng: Propagation, i, node):
    """BatchNormalization / InstanceNormalization: per-channel vectors on axis 1."""
    ins = eng.inputs(i)
    where = eng.name(i)
    eng.same(node.output[0], ins[0], where)
    for k in ins[1:]:
        if k and eng.rank(k) == 1:
            eng.union((k, 0), (ins[0], 1), where)


def _matmul(eng: Propagation, i, node, trans_a=False, trans_b=False):
    a, b = eng.inputs(i)[:2]
    out = node.output[0]
    where = eng.name(i)
    ra, rb, ro = eng.rank(a), eng.rank(b), eng.rank(out)
    if None in (ra, rb, ro):
        eng.unknown.append(i)
        return
    ka = ra - 2 if trans_a and ra >= 2 else ra - 1
    kb = (rb - 1 if trans_b else rb - 2) if rb >= 2 else 0
    eng.union((a, ka), (b, kb), where)
    eng.contracted.update({(a, ka), (b, kb)})
    if ra >= 2:
        eng.union((a, ra - 1 if trans_a else ra - 2), (out, ro - (2 if rb >= 2 else 1)), where)
    if rb >= 2:
        eng.union((b, rb - 2 if trans_b else rb - 1), (out, ro - 1), where)
    batch_a, batch_b = max(ra - 2, 0), max(rb - 2, 0)
    for x, nb in ((a, batch_a), (b, batch_b)):
        for ax in range(nb):
            eng.union((x, ax), (out, ro - 2 - nb + ax), where)
    if not eng.index.is_const(node.input[0]) and not eng.index.is_const(node.input[1]):
        eng.attention.append(i)


def _fused_matmul(eng, i, node):
    _matmul(eng, i, node, bool(_attr(node, "transA", 0)), bool(_attr(node, "transB", 0)))


def _gemm(eng: Propagation, i, node):
    ins = eng.inputs(i)
    a, b = ins[0], ins[1]
    out = node.output[0]
    where = eng.name(i)
    ta, tb = bool(_attr(node, "transA", 0)), bool(_attr(node, "transB", 0))
    eng.union((a, 0 if ta else 1), (b, 1 if tb else 0), where)
    eng.contracted.update({(a, 0 if ta else 1), (b, 1 if tb else 0)})
    eng.union((a, 1 if ta else 0), (out, 0), where)
    eng.union((b, 0 if tb else 1), (out, 1), where)
    if len(ins) > 2 and ins[2]:
        eng.bcast(out, [ins[2]], where)


def _conv(eng: Propagation, i, node):
    ins = eng.inputs(i)
    x, w = ins[0], ins[1]
    out = node.output[0]
    where = eng.name(i)
    group = int(_attr(node, "group", 1))
    eng.union((x, 0), (out, 0), where)
    eng.union((w, 0), (out, 1), where)
    if len(ins) > 2 and ins[2]:
        eng.union((ins[2], 0), (w, 0), where)
    if group == 1:
        eng.union((x, 1), (w, 1), where)
        eng.contracted.update({(x, 1), (w, 1)})
        return
    eng.rules.append(lambda: _depthwise(eng, i, x, w, out, group))
    eng.posts.append(lambda: _depthwise_post(eng, i, x, group))


def _depthwise(eng, i, x, w, out, group):
    cin = eng.size((x, 1))
    dim = eng.get(x, 1)
    if dim is None or group != cin:
        return False
    cout = eng.size((w, 0))
    if cout == cin:
        return eng.assign((out, 1), dim, eng.name(i))
    return False


def _depthwise_post(eng, i, x, group):
    dim = eng.get(x, 1)
    if dim is None:
        return
    if group == eng.size((x, 1)) and eng.size((eng.key(i, 1), 0)) == group:
        eng.attributes.append((i, "group", dim))
        return
    eng.findings.append(Finding(dim.atoms, (
        f"grouped convolution {eng.name(i)} (group={group}) reads {dim} channels; only plain and "
        f"depthwise convolutions follow a resized channel axis; keep {_which(dim)} as it is")))


def _conv_transpose(eng: Propagation, i, node):
    ins = eng.inputs(i)
    x, w = ins[0], ins[1]
    out = node.output[0]
    where = eng.name(i)
    eng.union((x, 0), (out, 0), where)
    if int(_attr(node, "group", 1)) == 1:
        eng.union((x, 1), (w, 0), where)
        eng.contracted.update({(x, 1), (w, 0)})
        eng.union((w, 1), (out, 1), where)
    else:
        eng.unknown.append(i)
    if len(ins) > 2 and ins[2]:
        eng.union((ins[2], 0), (out, 1), where)


def _pool(eng: Propagation, i, node):
    x = eng.key(i, 0)
    for o in node.output:
        if o:
            eng.union((x, 0), (o, 0), eng.name(i))
            eng.union((x, 1), (o, 1), eng.name(i))


def _resize(eng: Propagation, i, node):
    x = eng.key(i, 0)
    out = node.output[0]
    r = eng.rank(x)
    if r is None:
        return
    for a in range(r):
        if eng.size((x, a)) == eng.size((out, a)):
            eng.union((x, a), (out, a), eng.name(i))
    if len(node.input) > 3 and node.input[3]:
        eng.posts.append(lambda: eng.shape_literals(i, 3, out))


def _transpose(eng: Propagation, i, node):
    x = eng.key(i, 0)
    out = node.output[0]
    r = eng.rank(x)
    if r is None:
        return
    perm = _attr(node, "perm") or list(reversed(range(r)))
    for o, p in enumerate(perm):
        eng.union((x, p), (out, o), eng.name(i))


def _axes(eng, i, node, r_out):
    axes = _attr(node, "axes")
    if axes is None and len(node.input) > 1:
        axes = eng.ints(i, 1)
    return None if axes is None else sorted(a % r_out for a in axes)


def _unsqueeze(eng: Propagation, i, node):
    x, out = eng.key(i, 0), node.output[0]
    ro = eng.rank(out)
    if ro is None:
        return
    axes = _axes(eng, i, node, ro)
    if axes is None:
        return
    kept = [a for a in range(ro) if a not in axes]
    for src, dst in enumerate(kept):
        eng.union((x, src), (out, dst), eng.name(i))


def _squeeze(eng: Propagation, i, node):
    x, out = eng.key(i, 0), node.output[0]
    rx = eng.rank(x)
    if rx is None:
        return
    axes = _axes(eng, i, node, rx)
    if axes is None:
        shp = eng.shape(x)
        axes = [a for a, s in enumerate(shp) if s == 1]
    kept = [a for a in range(rx) if a not in axes]
    for dst, src in enumerate(kept):
        eng.union((x, src), (out, dst), eng.name(i))


def _reduce(eng: Propagation, i, node):
    x, out = eng.key(i, 0), node.output[0]
    rx = eng.rank(x)
    if rx is None:
        return
    axes = _axes(eng, i, node, rx)
    if node.op_type in ("ArgMax", "ArgMin"):
        axes = [int(_attr(node, "axis", 0)) % rx]
    if axes is None:
        axes = [] if _attr(node, "noop_with_empty_axes", 0) else list(range(rx))
    keep = _attr(node, "keepdims", 1)
    kept = [a for a in range(rx) if a not in axes]
    for dst, src in enumerate(kept):
        eng.union((x, src), (out, src if keep else dst), eng.name(i))


def _softmax(eng, i, node):
    _unary(eng, i, node)


def _topk(eng: Propagation, i, node):
    x = eng.key(i, 0)
    r = eng.rank(x)
    if r is None:
        return
    axis = int(_attr(node, "axis", -1)) % r
    for o in node.output:
        for a in range(r):
            if a != axis and o:
                eng.union((x, a), (o, a), eng.name(i))


def _gather(eng: Propagation, i, node):
    data, idx = eng.inputs(i)[:2]
    out = node.output[0]
    rd, ri = eng.rank(data), eng.rank(idx)
    if rd is None or ri is None:
        return
    axis = int(_attr(node, "axis", 0)) % rd
    where = eng.name(i)
    for a in range(axis):
        eng.union((data, a), (out, a), where)
    for a in range(ri):
        eng.union((idx, a), (out, axis + a), where)
    for a in range(axis + 1, rd):
        eng.union((data, a), (out, a - 1 + ri), where)
    eng.posts.append(lambda: _gather_post(eng, i, data, axis))


def _gather_post(eng, i, data, axis):
    dim = eng.get(data, axis)
    if dim is not None:
        eng.findings.append(Finding(dim.atoms, (
            f"node {eng.name(i)} picks fixed entries of axis {axis} of {eng.value_of(data)!r}, which "
            f"carries {dim}; keep {_which(dim)} as it is")))


def _gather_elements(eng: Propagation, i, node):
    data, idx = eng.inputs(i)[:2]
    eng.same(node.output[0], idx, eng.name(i))
    r = eng.rank(data)
    axis = int(_attr(node, "axis", 0)) % r if r else 0
    for a in range(r or 0):
        if a != axis:
            eng.union((data, a), (node.output[0], a), eng.name(i))


def _gather_nd(eng: Propagation, i, node):
    data, idx = eng.inputs(i)[:2]
    out = node.output[0]
    rd, ri, ro = eng.rank(data), eng.rank(idx), eng.rank(out)
    shp = eng.shape(idx)
    if None in (rd, ri, ro) or not isinstance(shp[-1], int):
        return
    b = int(_attr(node, "batch_dims", 0))
    for a in range(ri - 1):
        eng.union((idx, a), (out, a), eng.name(i))
    for a in range(b + shp[-1], rd):
        eng.union((data, a), (out, ri - 1 + a - b - shp[-1]), eng.name(i))


def _scatter(eng, i, node):
    eng.same(node.output[0], eng.key(i, 0), eng.name(i))


def _expand(eng: Propagation, i, node):
    x, out = eng.key(i, 0), node.output[0]
    eng.bcast(out, [x], eng.name(i))
    eng.posts.append(lambda: eng.shape_literals(i, 1, out, align_right=True, skip=(1,)))


def _constant_of_shape(eng: Propagation, i, node):
    out = node.output[0]
    eng.posts.append(lambda: eng.shape_literals(i, 0, out, skip=()))


def _where(eng, i, node):
    _elementwise(eng, i, node)


def _flatten(eng: Propagation, i, node):
    x, out = eng.key(i, 0), node.output[0]
    sx = eng.shape(x)
    if sx is None:
        return
    axis = int(_attr(node, "axis", 1)) % (len(sx) + 1) if sx else 0
    groups = [(list(range(axis)), [0]), (list(range(axis, len(sx))), [1])]
    _reshape_groups(eng, i, x, out, groups)


def _reshape(eng: Propagation, i, node):
    x, out = eng.key(i, 0), node.output[0]
    sx, sy = eng.shape(x), eng.shape(out)
    if sx is None or sy is None:
        eng.posts.append(lambda: _opaque_reshape(eng, i, x, out))
        return
    groups = reshape_groups(sx, sy)
    _reshape_groups(eng, i, x, out, groups)
    eng.posts.append(lambda: eng.shape_literals(i, 1, out))
    eng.posts.append(lambda: _reshape_post(eng, i, x, out, groups))


def _opaque_reshape(eng, i, x, out):
    for key in (x, out):
        for a, dim in enumerate(eng.labels(key)):
            if dim is not None:
                eng.findings.append(Finding(dim.atoms, (
                    f"the shapes around {eng.name(i)} are unknown, so {dim} (axis {a} of "
                    f"{eng.value_of(key)!r}) cannot be followed through it; keep {_which(dim)} as it is")))
                return


def _reshape_groups(eng: Propagation, i, x, out, groups):
    where = eng.name(i)
    for left, right in groups:
        if len(left) == 1 and len(right) == 1:
            eng.union((x, left[0]), (out, right[0]), where)
        elif left or right:
            eng.rules.append(lambda left=left, right=right: _unify_rule(eng, i, x, out, left, right))


def _unify_rule(eng: Propagation, i, x, out, left, right):
    tag = (i, tuple(left), tuple(right))
    if tag in eng.dead:
        return False
    lsz = [eng.size((x, a)) for a in left]
    rsz = [eng.size((out, a)) for a in right]
    ll = [eng.get(x, a) for a in left]
    rl = [eng.get(out, a) for a in right]
    labeled = [d for d in ll + rl if d is not None]
    if not labeled or any(s is None for s in lsz + rsz):
        return False
    try:
        new_l, new_r = eng.alg.unify(list(zip(ll, lsz)), list(zip(rl, rsz)), f"node {eng.name(i)}")
    except UnifyError as exc:
        eng.dead.add(tag)
        if all(isinstance(s, int) for s in lsz + rsz):  # else: run-time sizes, see _reshape_post
            atoms = frozenset().union(*(d.atoms for d in labeled))
            eng.findings.append(Finding(atoms, f"{exc}; keep {' and '.join(sorted(atoms))} as it is"))
        return False
    changed = False
    for a, d in zip(left, new_l):
        changed = eng.assign((x, a), d, eng.name(i)) or changed
    for a, d in zip(right, new_r):
        changed = eng.assign((out, a), d, eng.name(i)) or changed
    return changed


def _reshape_post(eng: Propagation, i, x, out, groups):
    """Literal shape elements of axes where a model dimension merged with a run-time size."""
    entries = eng.entries(i, 1) or []
    for left, right in groups:
        lost = frozenset().union(*(d.atoms for a in left if (d := eng.get(x, a)) is not None))
        lost -= frozenset().union(*(d.atoms for a in right if (d := eng.get(out, a)) is not None))
        if not lost:
            continue
        literal = [entries[a][0] for a in right if a < len(entries) and entries[a][0] not in (None, 0, -1)]
        if literal or not entries:
            eng.findings.append(Finding(lost, (
                f"node {eng.name(i)} merges {' and '.join(sorted(lost))} with a size known only at run "
                f"time, and its target shape holds literal {literal or '?'}; keep "
                f"{' and '.join(sorted(lost))} as it is")))


def _prefix(sx, sy):
    groups, i, j = [], 0, 0
    while i < len(sx) and j < len(sy):
        a, b = mono(sx[i]), mono(sy[j])
        if a is None or b is None:
            break
        left, right, ii, jj = [i], [j], i + 1, j + 1
        while a != b:
            if mono_div(b, a) is not None and ii < len(sx) and mono(sx[ii]) is not None:
                a = mono_mul(a, mono(sx[ii]))
                left.append(ii)
                ii += 1
            elif mono_div(a, b) is not None and jj < len(sy) and mono(sy[jj]) is not None:
                b = mono_mul(b, mono(sy[jj]))
                right.append(jj)
                jj += 1
            else:
                return groups, i, j
        groups.append((left, right))
        i, j = ii, jj
    return groups, i, j


def reshape_groups(sx, sy) -> list:
    """Pair a reshape's input and output axes into groups of equal size (left, then right, then the rest).

    >>> reshape_groups(("b", "s", 64), ("b", "s", 4, 16))
    [([0], [0]), ([1], [1]), ([2], [2, 3])]
    >>> reshape_groups(("b", "s", 64), (None, 64))
    [([2], [1]), ([0, 1], [0])]
    >>> reshape_groups(("b", 4, "s", 16), ("4*b", "s", 16))
    [([0, 1], [0]), ([2], [1]), ([3], [2])]
    """
    head, i, j = _prefix(list(sx), list(sy))
    rx, ry = list(reversed(sx[i:])), list(reversed(sy[j:]))
    tail, ti, tj = _prefix(rx, ry)
    n, m = len(sx), len(sy)
    tail = [([n - 1 - a for a in reversed(left)], [m - 1 - b for b in reversed(right)])
            for left, right in tail]
    middle = (list(range(i, n - ti)), list(range(j, m - tj)))
    return head + tail + ([middle] if middle[0] or middle[1] else [])


def _concat(eng: Propagation, i, node):
    ins = [k for k in eng.inputs(i) if k]
    out = node.output[0]
    r = eng.rank(out)
    if r is None:
        return
    axis = int(_attr(node, "axis", 0)) % r
    where = eng.name(i)
    for k in ins:
        for a in range(r):
            if a != axis:
                eng.union((k, a), (out, a), where)
    eng.rules.append(lambda: _concat_rule(eng, i, ins, out, axis))


def _concat_rule(eng: Propagation, i, ins, out, axis):
    sizes = [eng.size((k, axis)) for k in ins]
    if not all(isinstance(s, int) for s in sizes):
        return False
    labels = [eng.get(k, axis) for k in ins]
    changed = False
    if any(d is not None for d in labels):
        changed = eng.assign((out, axis), eng.alg.concat(list(zip(labels, sizes))), eng.name(i))
    whole = eng.get(out, axis)
    if whole is not None and eng.alg.value(whole) == sum(sizes):
        pos = 0
        for k, s in zip(ins, sizes):
            changed = eng.assign((k, axis), eng.alg.cut(whole, pos, pos + s), eng.name(i)) or changed
            pos += s
    return changed


def _bounds(start, stop, step, n):
    """Python-style ``start:stop:step`` on length ``n`` as ``(lo, hi)`` or ``None`` for other steps."""
    if step != 1:
        return None
    lo = max(0, min(n, start + n if start < 0 else start))
    hi = max(0, min(n, stop + n if stop < 0 else stop))
    return lo, max(lo, hi)


def _scalable(dim_value, pos) -> bool:
    """A cut position scales with its axis when it is a simple fraction of it."""
    return Fraction(pos, dim_value).denominator <= 8


def _slice(eng: Propagation, i, node):
    x, out = eng.key(i, 0), node.output[0]
    r = eng.rank(x)
    if r is None:
        return
    if len(node.input) < 3:  # opset < 10: attributes
        starts, ends = _attr(node, "starts"), _attr(node, "ends")
        axes = _attr(node, "axes") or list(range(len(starts)))
        steps = [1] * len(starts)
    else:
        starts, ends = eng.ints(i, 1), eng.ints(i, 2)
        axes = eng.ints(i, 3) if len(node.input) > 3 and node.input[3] else None
        steps = eng.ints(i, 4) if len(node.input) > 4 and node.input[4] else None
        if starts is None or ends is None:
            eng.posts.append(lambda: _opaque_slice(eng, i, x, out, None))
            return
        axes = axes if axes is not None else list(range(len(starts)))
        steps = steps if steps is not None else [1] * len(starts)
    axes = [a % r for a in axes]
    where = eng.name(i)
    for a in range(r):
        if a not in axes or eng.size((x, a)) == eng.size((out, a)):
            eng.union((x, a), (out, a), where)
    spec = [(e, a, starts[e], ends[e], steps[e]) for e, a in enumerate(axes)]
    eng.rules.append(lambda: _slice_rule(eng, i, x, out, spec))
    eng.posts.append(lambda: _slice_post(eng, i, x, spec, len(node.input) >= 3))


def _opaque_slice(eng, i, x, out, axes):
    _opaque_reshape(eng, i, x, out)



def _slice_rule(eng: Propagation, i, x, out, spec):
    changed = False
    for _e, a, start, stop, step in spec:
        dim, n = eng.get(x, a), eng.size((x, a))
        if dim is None or not isinstance(n, int):
            continue
        b = _bounds(start, stop, step, n)
        if b is None or b == (0, n):
            continue
        if _scalable(n, b[0]) and _scalable(n, b[1]):
            changed = eng.assign((out, a), eng.alg.cut(dim, *b), eng.name(i)) or changed
    return changed


def _slice_post(eng: Propagation, i, x, spec, as_inputs):
    for e, a, start, stop, step in spec:
        dim, n = eng.get(x, a), eng.size((x, a))
        if dim is None or not isinstance(n, int):
            continue
        b = _bounds(start, stop, step, n)
        if b is None or not as_inputs or not (_scalable(n, b[0]) and _scalable(n, b[1])):
            eng.findings.append(Finding(dim.atoms, (
                f"node {eng.name(i)} slices axis {a} of {eng.value_of(x)!r} ({dim}) at "
                f"{start}:{stop}:{step}, which does not scale with {_which(dim)}; keep it as it is")))
            continue
        for k, value in ((1, start), (2, stop)):
            if value > n or value < -n:
                continue  # "from the start" / "to the end": stays
            pos = value + n if value < 0 else value
            eng.want((i, k, e), value, dim, eng.name(i), kind="position", extra=(pos,))


def _split(eng: Propagation, i, node):
    x = eng.key(i, 0)
    r = eng.rank(x)
    if r is None:
        return
    axis = int(_attr(node, "axis", 0)) % r
    outs = [o for o in node.output]
    where = eng.name(i)
    for o in outs:
        for a in range(r):
            if a != axis:
                eng.union((x, a), (o, a), where)
    eng.rules.append(lambda: _split_rule(eng, i, x, outs, axis))
    eng.posts.append(lambda: _split_post(eng, i, x, outs, axis))


def _split_sizes(eng, i, x, outs, axis):
    sizes = [eng.size((o, axis)) for o in outs]
    if all(isinstance(s, int) for s in sizes):
        return sizes
    n = eng.size((x, axis))
    given = eng.ints(i, 1) if len(eng.index.nodes[i].input) > 1 else _attr(eng.index.nodes[i], "split")
    if given:
        return list(given)
    if isinstance(n, int) and n % len(outs) == 0:
        return [n // len(outs)] * len(outs)
    return None


def _split_rule(eng: Propagation, i, x, outs, axis):
    dim = eng.get(x, axis)
    sizes = _split_sizes(eng, i, x, outs, axis)
    if sizes is None:
        return False
    if dim is None:
        labels = [eng.get(o, axis) for o in outs]
        if any(d is not None for d in labels):
            return eng.assign((x, axis), eng.alg.concat(list(zip(labels, sizes))), eng.name(i))
        return False
    changed, pos = False, 0
    for o, s in zip(outs, sizes):
        changed = eng.assign((o, axis), eng.alg.cut(dim, pos, pos + s), eng.name(i)) or changed
        pos += s
    return changed


def _split_post(eng: Propagation, i, x, outs, axis):
    dim = eng.get(x, axis)
    node = eng.index.nodes[i]
    if dim is None:
        return
    sizes = _split_sizes(eng, i, x, outs, axis)
    parts = [eng.get(o, axis) for o in outs]
    if sizes is None or any(p is None for p in parts):
        eng.findings.append(Finding(dim.atoms, (
            f"node {eng.name(i)} splits {dim} into parts that do not scale with it; keep "
            f"{_which(dim)} as it is")))
        return
    if len(node.input) > 1 and node.input[1]:
        entries = eng.entries(i, 1) or []
        for (value, site), part in zip(entries, parts):
            if site is not None:
                eng.want(site, value, part, eng.name(i))
    elif _attr(node, "split"):
        eng.attributes.append((i, "split", tuple(parts)))


def _tile(eng: Propagation, i, node):
    x, out = eng.key(i, 0), node.output[0]
    reps = eng.ints(i, 1)
    r = eng.rank(x)
    if r is None:
        return
    for a in range(r):
        if reps is not None and reps[a] == 1:
            eng.union((x, a), (out, a), eng.name(i))
    eng.posts.append(lambda: eng.shape_literals(i, 1, out, skip=(1,)) if _tile_from_one(eng, x) else None)


def _tile_from_one(eng, x):
    shp = eng.shape(x)
    return shp is not None and all(s == 1 or eng.get(x, a) is None for a, s in enumerate(shp))


def _range(eng: Propagation, i, node):
    out = node.output[0]
    eng.posts.append(lambda: _range_post(eng, i, out))


def _range_post(eng: Propagation, i, out):
    dim = eng.get(out, 0)
    if dim is None:
        return
    start, limit, delta = (eng.ints(i, k) for k in range(3))
    if None in (start, limit, delta) or len(limit) != 1:
        eng.findings.append(Finding(dim.atoms, (
            f"node {eng.name(i)} counts {dim} with bounds computed at run time; keep {_which(dim)} "
            "as it is")))
        return
    eng.want((i, 1, 0), limit[0], dim, eng.name(i), kind="affine", extra=(start[0], delta[0]))


def _pad(eng: Propagation, i, node):
    x, out = eng.key(i, 0), node.output[0]
    r = eng.rank(x)
    pads = eng.ints(i, 1) if len(node.input) > 1 else _attr(node, "pads")
    if r is None:
        return
    for a in range(r):
        if pads is not None and len(pads) == 2 * r and pads[a] == 0 and pads[a + r] == 0:
            eng.union((x, a), (out, a), eng.name(i))


def _einsum(eng: Propagation, i, node):
    eq = (_attr(node, "equation") or "").replace(" ", "")
    if "->" not in eq or "." in eq:
        eng.unknown.append(i)
        return
    lhs, rhs = eq.split("->")
    ops = lhs.split(",")
    ins = eng.inputs(i)
    first: dict = {}
    for k, letters in zip(ins, ops):
        for a, ch in enumerate(letters):
            if ch in first:
                eng.union(first[ch], (k, a), eng.name(i))
            else:
                first[ch] = (k, a)
            if ch not in rhs:
                eng.contracted.add((k, a))
    for a, ch in enumerate(rhs):
        if ch in first:
            eng.union(first[ch], (node.output[0], a), eng.name(i))


def _attention(eng: Propagation, i, node):
    """com.microsoft Attention: input [b, s, in], weights [in, q+k+v], bias [q+k+v], output [b, s, v]."""
    ins = eng.inputs(i)
    x, w = ins[0], ins[1]
    out = node.output[0]
    where = eng.name(i)
    eng.union((x, 2), (w, 0), where)
    eng.contracted.update({(x, 2), (w, 0)})
    eng.union((x, 0), (out, 0), where)
    eng.union((x, 1), (out, 1), where)
    if len(ins) > 2 and ins[2]:
        eng.union((ins[2], 0), (w, 1), where)
    eng.rules.append(lambda: _attention_rule(eng, i, w, out))
    eng.posts.append(lambda: _heads_attrs(eng, i, w))


def _qkv_sizes(eng, i, w):
    node = eng.index.nodes[i]
    sizes = _attr(node, "qkv_hidden_sizes")
    n = eng.size((w, 1))
    if sizes:
        return list(sizes)
    return [n // 3] * 3 if isinstance(n, int) and n % 3 == 0 else None


def _attention_rule(eng, i, w, out):
    dim = eng.get(w, 1)
    sizes = _qkv_sizes(eng, i, w)
    if dim is None or sizes is None:
        return False
    return eng.assign((out, 2), eng.alg.cut(dim, sizes[0] + sizes[1], sum(sizes)), eng.name(i))


def _heads_attrs(eng, i, w):
    dim = eng.get(w, 1)
    node = eng.index.nodes[i]
    if dim is None:
        return
    sizes = _qkv_sizes(eng, i, w)
    heads = eng.alg.dim("heads")
    eng.attributes.append((i, "num_heads", heads))
    if _attr(node, "qkv_hidden_sizes"):
        pos = [0, sizes[0], sizes[0] + sizes[1], sum(sizes)]
        eng.attributes.append((i, "qkv_hidden_sizes", tuple(eng.alg.cut(dim, pos[j], pos[j + 1])
                                                            for j in range(3))))
    if _attr(node, "scale"):
        eng.findings.append(Finding(frozenset({"head_dim"}), (
            f"node {eng.name(i)} has an explicit scale attribute; keep head_dim as it is")))


def _mha(eng: Propagation, i, node):
    ins = eng.inputs(i)
    q, k, v = (ins + [None, None, None])[:3]
    out = node.output[0]
    where = eng.name(i)
    if q and k and eng.rank(q) == 3 and eng.rank(k) == 3:
        eng.union((q, 2), (k, 2), where)
        eng.union((q, 0), (out, 0), where)
        eng.union((q, 1), (out, 1), where)
    if v and eng.rank(v) == 3:
        eng.union((v, 2), (out, 2), where)
    eng.attributes.append((i, "num_heads", eng.alg.dim("heads")))


def _embed_layer_norm(eng: Propagation, i, node):
    """com.microsoft EmbedLayerNormalization: ids [b, s], tables [*, H], gamma/beta [H] -> [b, s, H]."""
    ins = eng.inputs(i)
    out = node.output[0]
    where = eng.name(i)
    ids = ins[0]
    eng.union((ids, 0), (out, 0), where)
    eng.union((ids, 1), (out, 1), where)
    for k in ins[2:7]:
        if k:
            r = eng.rank(k)
            if r:
                eng.union((k, r - 1), (out, 2), where)
    if len(node.output) > 2 and node.output[2]:
        eng.same(node.output[2], out, where)


def _shape_like(eng, i, node):
    """Operators whose output holds indices or shapes, not features (no ties)."""


def _random_like(eng, i, node):
    eng.same(node.output[0], eng.key(i, 0), eng.name(i))


_ELEMENTWISE = ("Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Mean", "Sum", "Equal", "Less",
                "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor", "Mod", "PRelu",
                "BitwiseAnd", "BitwiseOr", "BitwiseXor", "BiasAdd")
_UNARY = ("Relu", "Gelu", "Erf", "Tanh", "Sigmoid", "Exp", "Log", "Neg", "Abs", "Sqrt", "Reciprocal",
          "Cast", "CastLike", "Identity", "Sin", "Cos", "Not", "IsNaN", "IsInf", "Sign", "Floor",
          "Ceil", "Round", "Clip", "LeakyRelu", "Elu", "Selu", "HardSigmoid", "HardSwish", "Mish",
          "Softplus", "Softsign", "Celu", "ThresholdedRelu", "Shrink", "QuickGelu", "Trilu",
          "CumSum", "BitwiseNot", "Tan", "Atan", "Asin", "Acos", "Sinh", "Cosh", "Swish",
          "LpNormalization", "MeanVarianceNormalization", "DequantizeLinear", "QuantizeLinear",
          "Softmax", "LogSoftmax", "Hardmax")
OPS = {op: _elementwise for op in _ELEMENTWISE}
OPS.update({op: _unary for op in _UNARY})
OPS.update({
    "Where": _where, "BiasGelu": _first_two, "FastGelu": _first_two, "Dropout": _first_two,
    "LayerNormalization": _norm, "SimplifiedLayerNormalization": _norm, "RMSNormalization": _norm,
    "SkipLayerNormalization": _norm, "SkipSimplifiedLayerNormalization": _norm,
    "BatchNormalization": _channel_norm, "InstanceNormalization": _channel_norm,
    "MatMul": _matmul, "FusedMatMul": _fused_matmul, "Gemm": _gemm, "Conv": _conv,
    "ConvTranspose": _conv_transpose, "MaxPool": _pool, "AveragePool": _pool, "LpPool": _pool,
    "GlobalAveragePool": _pool, "GlobalMaxPool": _pool, "Resize": _resize, "Upsample": _resize,
    "Transpose": _transpose, "Unsqueeze": _unsqueeze, "Squeeze": _squeeze, "Flatten": _flatten,
    "Reshape": _reshape, "Concat": _concat, "Slice": _slice, "Split": _split, "Tile": _tile,
    "Expand": _expand, "ConstantOfShape": _constant_of_shape, "Range": _range, "Pad": _pad,
    "Gather": _gather, "GatherElements": _gather_elements, "GatherND": _gather_nd,
    "ScatterND": _scatter, "ScatterElements": _scatter, "Einsum": _einsum, "TopK": _topk,
    "ArgMax": _reduce, "ArgMin": _reduce, "Attention": _attention, "MultiHeadAttention": _mha,
    "EmbedLayerNormalization": _embed_layer_norm, "Shape": _shape_like, "Size": _shape_like,
    "NonZero": _shape_like, "EyeLike": _shape_like, "RandomNormalLike": _random_like,
    "RandomUniformLike": _random_like, "OneHot": _shape_like,
})
for _op in ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
            "ReduceLogSumExp", "ReduceSumSquare", "ReduceLogSum"):
    OPS[_op] = _reduce
