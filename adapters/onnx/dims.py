"""Symbolic sizes of tensor axes: which model dimension an axis carries, and how it was laid out.

Contract: a :class:`Dim` says what an axis of a tensor holds in terms of the
model-level sizes the pipeline resizes (``hidden, heads, kv_heads, head_dim,
ffn`` and ``group = heads / kv_heads``): a concatenation of :class:`Term` s,
each a rational multiple of an ordered product of *factors* (atom names, or
integer literals that never change). Order matters: ``heads*head_dim`` (heads
major) is a different layout from ``head_dim*heads``. An :class:`Algebra`
knows the source sizes and the family's conventions (grouped-query attention
or not; ``hidden == heads * head_dim`` or free) and provides what the graph
propagation needs: canonical forms, equality, *unification* of two
descriptions of the same memory (a reshape's input and output axes), cutting
a range out of an axis (``Slice``, ``Split``), concatenation (``Concat``),
evaluation at the source and the target sizes, and the
:class:`~botcore.adapters.base.Rule` text (dims and roles) of an axis. Pure
Python; nothing here reads a graph.

Examples
--------
>>> alg = Algebra({"hidden": 64, "heads": 4, "kv_heads": 2, "head_dim": 16, "ffn": 128},
...               gqa=True, free_head_dim=True)
>>> q = alg.dim("heads", "head_dim")
>>> str(q), alg.value(q), alg.value(q, {"hidden": 32, "heads": 2, "kv_heads": 1, "head_dim": 16, "ffn": 64})
('kv_heads*group*head_dim', 64, 32)
>>> [str(d) for d in alg.unify([(q, 64)], [(None, 4), (None, 16)])[1]]
['kv_heads*group', 'head_dim']
>>> str(alg.cut(alg.dim("head_dim"), 8, 16)), alg.rule_text(q, contracted=False)
('1/2*head_dim', ('heads*head_dim', 'head*head_dim'))
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from math import prod

__all__ = ["ATOMS", "Algebra", "Dim", "Term", "UnifyError", "mono", "mono_div", "mono_mul"]

#: The atoms an axis can carry (``group`` is ``heads // kv_heads``).
ATOMS = ("hidden", "heads", "kv_heads", "group", "head_dim", "ffn")
_OUT_ROLE = {"hidden": "out", "heads": "head", "kv_heads": "head", "head_dim": "head_dim", "ffn": "out"}
_IN_ROLE = {"hidden": "in", "heads": "in_head", "kv_heads": "in_head", "head_dim": "in_head_dim",
            "ffn": "in"}


class UnifyError(ValueError):
    """Two descriptions of the same axes cannot be reconciled (see :meth:`Algebra.unify`)."""


@dataclass(frozen=True)
class Term:
    """``coef * factor_1 * factor_2 * ...``; factors are atom names or int literals, major first."""

    coef: Fraction
    factors: tuple

    def __str__(self) -> str:
        parts = [str(f) for f in self.factors]
        if self.coef != 1 or not parts:
            parts.insert(0, str(self.coef))
        return "*".join(parts)

    @property
    def atoms(self) -> frozenset:
        return frozenset(f for f in self.factors if isinstance(f, str))


@dataclass(frozen=True)
class Dim:
    """An axis: the concatenation of :attr:`terms` (one term for a plain product)."""

    terms: tuple

    def __str__(self) -> str:
        return "|".join(str(t) for t in self.terms)

    @property
    def atoms(self) -> frozenset:
        return frozenset().union(*(t.atoms for t in self.terms))

    @property
    def single(self) -> Term | None:
        return self.terms[0] if len(self.terms) == 1 else None


def mono(size):
    """An axis size as a monomial ``(int, sorted symbols)``: ``"4*b"`` -> ``(4, ('b',))``; ``None`` unknown.

    >>> mono(64), mono("4*b"), mono("p + s")
    ((64, ()), (4, ('b',)), (1, ('p + s',)))
    """
    if size is None:
        return None
    if isinstance(size, int):
        return int(size), ()
    k, syms = 1, []
    for part in str(size).split("*"):
        part = part.strip()
        if part.isdigit():
            k *= int(part)
        elif part:
            syms.append(part)
    if any(c in str(size) for c in "+-/()") or not syms and k == 1:
        return 1, (str(size),)
    return k, tuple(sorted(syms))


def mono_mul(a, b):
    return a[0] * b[0], tuple(sorted(a[1] + b[1]))


def mono_div(a, b):
    """``a / b`` as a monomial, or ``None`` when ``b`` does not divide ``a``."""
    rest = list(a[1])
    for sym in b[1]:
        if sym not in rest:
            return None
        rest.remove(sym)
    if a[0] % b[0]:
        return None
    return a[0] // b[0], tuple(rest)


def _term(coef, factors) -> Term:
    """A term with its leading integer literals folded into the coefficient."""
    coef = Fraction(coef)
    factors = list(factors)
    while factors and isinstance(factors[0], int):
        coef *= factors.pop(0)
    return Term(coef, tuple(f for f in factors if f != 1))


class Algebra:
    """Sizes and conventions of one model (see the module docstring).

    Parameters
    ----------
    sizes : mapping
        Source ``hidden, heads, kv_heads, head_dim, ffn``.
    gqa : bool
        The family has grouped-query attention (``kv_heads`` may differ from ``heads``).
    free_head_dim : bool
        ``heads * head_dim`` may differ from ``hidden``.
    """

    def __init__(self, sizes, *, gqa: bool, free_head_dim: bool):
        self.gqa, self.free = bool(gqa), bool(free_head_dim)
        self.source = self.atom_sizes(sizes)

    # -- sizes ------------------------------------------------------------------
    def atom_sizes(self, sizes) -> dict:
        """Sizes of every atom (``group`` derived) from model-level sizes."""
        out = {k: int(sizes[k]) for k in ("hidden", "heads", "kv_heads", "head_dim", "ffn")}
        out["group"] = out["heads"] // out["kv_heads"] if self.gqa else 1
        return out

    def value(self, dim: Dim, sizes=None) -> Fraction | int:
        """The length of ``dim`` at the source (or at model-level ``sizes``)."""
        at = self.source if sizes is None else self.atom_sizes(sizes)
        total = sum((t.coef * prod(at[f] if isinstance(f, str) else f for f in t.factors)
                     for t in dim.terms), Fraction(0))
        return int(total) if total.denominator == 1 else total

    # -- construction and canonical form ---------------------------------------------
    def _canon_factors(self, factors) -> list:
        out = []
        for f in factors:
            if f == "kv_heads" and not self.gqa:
                f = "heads"
            if f == "group" and not self.gqa:
                continue
            if f == "heads" and self.gqa:
                out += ["kv_heads", "group"]
                continue
            out.append(f)
        return out

    def norm(self, terms) -> Dim | None:
        """Canonical :class:`Dim` of ``terms`` (adjacent equal products merged), or ``None`` if atom-free."""
        merged: list = []
        for t in terms:
            t = _term(t.coef, self._canon_factors(t.factors))
            if t.coef == 0:
                continue
            if merged and merged[-1].factors == t.factors:
                merged[-1] = Term(merged[-1].coef + t.coef, t.factors)
            else:
                merged.append(t)
        dim = Dim(tuple(merged))
        return dim if dim.atoms else None

    def dim(self, *symbols) -> Dim:
        """The axis ``symbols[0] * symbols[1] * ...`` (atom names or ints)."""
        return self.norm([Term(Fraction(1), tuple(int(s) if str(s).isdigit() else s for s in symbols))])

    def same(self, a: Dim | None, b: Dim | None) -> bool:
        """Whether ``a`` and ``b`` describe the same layout."""
        if a is None or b is None:
            return a is b
        if a == b:
            return True
        return not self.free and self._expand(a) == self._expand(b)

    def _expand(self, dim: Dim) -> Dim:
        heads = ["kv_heads", "group"] if self.gqa else ["heads"]
        return Dim(tuple(_term(t.coef, [g for f in t.factors for g in (heads + ["head_dim"]
                                                                       if f == "hidden" else [f])])
                         for t in dim.terms))

    # -- tokens: a layout as a list of (factor, source size) ------------------------------
    def tokens(self, dim: Dim | None, size) -> list:
        """``dim`` (or an unlabeled axis of ``size``) as ``(factor, size monomial)`` tokens.

        A factor is an atom name, ``None`` for literal (splittable) sizes, or a
        whole :class:`Term` when it cannot be split (fractional coefficients).
        """
        if dim is None:
            m = mono(size)
            return [] if m == (1, ()) else [(None, m)]
        out = []
        for t in dim.terms:
            size_t = self.value(Dim((t,)))
            if len(dim.terms) > 1 or t.coef.denominator != 1:
                out.append((t, (size_t, ())))
                continue
            if t.coef != 1:
                out.append((None, (int(t.coef), ())))
            out += [(f, (self.source[f], ())) if isinstance(f, str) else (None, (f, ())) for f in t.factors
                    if not (isinstance(f, str) and self.source[f] == 1)]  # size-1 atoms are invisible
        return out

    def _split_token(self, tok, n):
        """Split ``tok`` into a first part of size ``n`` and the rest, or ``None``."""
        f, s = tok
        rest = mono_div(s, n)
        if rest is None:
            return None
        if f is None:
            return [(None, n), (None, rest)]
        if f == "hidden" and not self.free and not n[1]:
            parts = self.tokens(self._expand(self.dim("hidden")), s[0])
            return parts if parts and parts[0][1] == n else None
        return None

    def _pair(self, a, b, where):
        fa, fb = a[0], b[0]
        if fa is None:
            return fb
        if fb is None or fa == fb:
            return fa
        if isinstance(fa, Term) or isinstance(fb, Term):
            raise UnifyError(f"{where}: {fa} and {fb} describe the same memory differently")
        raise UnifyError(f"{where}: {fa} and {fb} meet on one axis")

    def _align(self, left: list, right: list, where: str) -> list:
        left, right, out = list(left), list(right), []
        while left and right:
            a, b = left[0], right[0]
            if a[1] == b[1]:
                out.append((self._pair(a, b, where), a[1]))
                left.pop(0)
                right.pop(0)
                continue
            if mono_div(a[1], b[1]) is not None:
                big, small = left, right
            elif mono_div(b[1], a[1]) is not None:
                big, small = right, left
            else:
                raise UnifyError(f"{where}: sizes {a[1]} and {b[1]} do not line up")
            parts = self._split_token(big[0], small[0][1])
            if parts is None:
                raise UnifyError(f"{where}: {big[0][0] or big[0][1]} cannot be split into "
                                 f"{small[0][0] or small[0][1]} and the rest")
            big[:1] = parts
        if left or right:
            raise UnifyError(f"{where}: the two sides hold different sizes")
        return out

    def _rebuild(self, unified: list, sizes: list) -> list:
        labels, i = [], 0
        for n in sizes:
            factors, have, want = [], (1, ()), mono(n)
            while have != want and i < len(unified):
                factors.append(unified[i])
                have = mono_mul(have, unified[i][1])
                i += 1
            labels.append(self._label(factors))
        return labels

    def _label(self, tokens) -> Dim | None:
        if tokens and all(isinstance(f, Term) for f, _ in tokens):
            return self.norm([f for f, _ in tokens])
        if any(isinstance(f, Term) for f, _ in tokens) or any(s[1] for _, s in tokens):
            return None if not any(isinstance(f, str) for f, _ in tokens) else self._mixed(tokens)
        return self.norm([Term(Fraction(1), tuple(f if f is not None else s[0] for f, s in tokens))])

    def _mixed(self, tokens):
        return None  # a model dimension merged with a run-time size: no label (see propagate)

    def unify(self, left: list, right: list, where: str = "reshape"):
        """Reconcile two lists of ``(label or None, size)`` axes holding the same memory.

        Sizes are ints or symbolic dims (``"b"``, ``"4*b"``). Returns the labels
        of both sides after unification; raises :class:`UnifyError` when they
        are incompatible (different atoms on the same elements, or an atom
        split in a way the sizes do not determine).
        """
        lt = [t for d, s in left for t in self.tokens(d, s)]
        rt = [t for d, s in right for t in self.tokens(d, s)]
        unified = self._align(lt, rt, where)
        return (self._rebuild(unified, [s for _, s in left]),
                self._rebuild(unified, [s for _, s in right]))

    def merge(self, a: Dim, b: Dim, where: str = "axis") -> Dim:
        """One label saying everything ``a`` and ``b`` say about one axis; :class:`UnifyError` if they differ.

        >>> alg = Algebra({"hidden": 8, "heads": 2, "kv_heads": 2, "head_dim": 4, "ffn": 16},
        ...               gqa=False, free_head_dim=False)
        >>> str(alg.merge(alg.dim("heads", 4), alg.dim(2, "head_dim")))
        'heads*head_dim'
        """
        if self.same(a, b):
            return a
        if self.value(a) != self.value(b):
            raise UnifyError(f"{where}: {a} ({self.value(a)}) and {b} ({self.value(b)}) differ in size")
        left, _ = self.unify([(a, self.value(a))], [(b, self.value(b))], where)
        return left[0]

    # -- cutting and joining ---------------------------------------------------------
    def concat(self, parts: list) -> Dim | None:
        """The concatenation of ``(label or None, size)`` parts along one axis."""
        terms = []
        for d, s in parts:
            terms += list(d.terms) if d is not None else [Term(Fraction(int(s)), ())]
        return self.norm(terms)

    def cut(self, dim: Dim, start: int, stop: int) -> Dim | None:
        """Elements ``start:stop`` (source positions) of ``dim``, scaled with the sizes."""
        terms, pos = [], 0
        for t in dim.terms:
            size_t = self.value(Dim((t,)))
            lo, hi = max(start, pos), min(stop, pos + size_t)
            if hi > lo:
                terms.append(Term(t.coef * Fraction(hi - lo) / size_t, t.factors))
            pos += size_t
        return self.norm(terms)

    def position(self, dim: Dim, start: int, sizes) -> Fraction:
        """Where source position ``start`` of ``dim`` lies at model-level ``sizes``."""
        cut = self.cut(dim, 0, start)
        return Fraction(0) if cut is None else Fraction(self.value(cut, sizes))

    # -- rule text -------------------------------------------------------------------
    def rule_text(self, dim: Dim | None, *, contracted: bool) -> tuple | None:
        """``(dims, roles)`` :class:`~botcore.adapters.base.Rule` text of one axis, or ``None``.

        ``None`` when the axis cannot be written in rule syntax (fractions,
        concatenations of different products, a lone ``group``).
        """
        if dim is None:
            return "_", "fixed"
        t = dim.single
        if t is None or t.coef.denominator != 1:
            return None
        names, roles = ([str(t.coef)], ["fixed"]) if t.coef != 1 else ([], [])
        factors = list(t.factors)
        table = _IN_ROLE if contracted else _OUT_ROLE
        while factors:
            f = factors.pop(0)
            if f == "kv_heads" and self.gqa and factors[:1] == ["group"]:
                factors.pop(0)
                f = "heads"
            if f == "group":
                return None
            names.append(str(f))
            roles.append("fixed" if isinstance(f, int) else table[f])
        return "*".join(names), "*".join(roles)
