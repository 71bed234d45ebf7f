"""Machinery shared by every model family: rules, layouts, canonical signals.

Contract: an :class:`Adapter` maps a checkpoint's native parameters to
canonical :class:`~botcore.WeightSignal` objects and back, exactly.

* Each native parameter is claimed by exactly one :class:`Rule` (a regular
  expression over its name), by a tie (a duplicate of another parameter, such
  as an LM head tied to the word embeddings), or by a drop rule (a
  non-persistent buffer the model rebuilds). A parameter nobody claims raises
  :class:`~botcore.ParameterKeyError`: nothing is silently copied or dropped.
* A rule whose pattern has a ``(?P<layer>\\d+)`` group is *layered*: the
  parameters of all layers are stacked along a leading ``depth`` axis.
* A rule's ``dims`` name the size of every native axis with the model-level
  symbols ``hidden, heads, kv_heads, head_dim, ffn`` (``a*b`` splits one native
  axis into two canonical axes, e.g. ``heads*head_dim``), ``_`` for an axis that
  keeps its size (vocabulary, positions, pixels, classes) or a literal integer.
  ``roles`` gives the :mod:`botcore.roles` role of every canonical axis.
* Fused or transposed layouts (GPT-2 ``Conv1D`` stores ``[in, out]``; fused
  QKV or gate/up projections) are declared as data: :attr:`Adapter.transposed`
  and :attr:`Adapter.fusions`. A fused native tensor is seen as *virtual*
  parameters ``<native>#<part>`` (row blocks, after the transpose), each a
  :class:`View` of it; writing reverses the views exactly.
* Everything here works on shapes (:class:`~botcore.adapters.io.base.TensorInfo`
  records): :meth:`Adapter.layout` plans a checkpoint without reading data; the
  pipeline (:mod:`botcore.adapters.pipeline`) reads, resizes and writes.

Examples
--------
>>> r = Rule(r"layer\\.(?P<layer>\\d+)\\.q\\.weight", "q", "heads*head_dim,hidden", "head*head_dim,in")
>>> r.layered, r.axis_dims, r.axis_roles
(True, ('layers', 'heads', 'head_dim', 'hidden'), ('depth', 'head', 'head_dim', 'in'))
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from botcore.errors import BotError, ParameterKeyError, UnsupportedModelError
from botcore.names import SIZES

__all__ = ["SIZES", "Adapter", "Fusion", "Layout", "NativeOut", "Rule", "Spec", "View"]



def _groups(text: str) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(p.strip() for p in g.split("*")) for g in text.split(","))


@dataclass(frozen=True)
class Rule:
    """How one kind of native parameter becomes (part of) a canonical signal.

    Parameters
    ----------
    pattern : str
        Regular expression matched against the whole (virtual) parameter name;
        a ``(?P<layer>\\d+)`` group makes the rule layered.
    signal : str
        Name of the canonical signal (``"q"``, ``"ffn_out.bias"``, ``"embed.word"``).
    dims, roles : str
        Comma-separated native axes; ``*`` inside an axis splits it, ``_`` keeps its
        size (see the module docstring).
    residual : bool
        The parameter writes into the residual stream (attention output, FFN
        output and their biases); Net2Net zeroes it in inserted layers.
    """

    pattern: str
    signal: str
    dims: str
    roles: str
    residual: bool = False

    def __post_init__(self):
        d, r = _groups(self.dims), _groups(self.roles)
        if [len(g) for g in d] != [len(g) for g in r]:
            raise ValueError(f"rule {self.signal}: dims {self.dims!r} and roles {self.roles!r} differ")
        object.__setattr__(self, "_re", re.compile(self.pattern))

    def match(self, name: str):
        return self._re.fullmatch(name)

    @property
    def layered(self) -> bool:
        return "(?P<layer>" in self.pattern

    @property
    def native_dims(self) -> tuple[tuple[str, ...], ...]:
        return _groups(self.dims)

    @property
    def axis_dims(self) -> tuple[str, ...]:
        flat = tuple(s for g in _groups(self.dims) for s in g)
        return (("layers",) if self.layered else ()) + flat

    @property
    def axis_roles(self) -> tuple[str, ...]:
        flat = tuple(s for g in _groups(self.roles) for s in g)
        return (("depth",) if self.layered else ()) + flat


def _size(symbol: str, sizes: Mapping[str, int], keep: int) -> int:
    if symbol == "_":
        return keep
    if symbol.isdigit():
        return int(symbol)
    return sizes[symbol]


@dataclass(frozen=True)
class Spec:
    """One canonical signal of a concrete checkpoint: its rule, names and source shape."""

    name: str
    rule: Rule
    template: str
    members: tuple[str, ...]
    shape: tuple[int, ...]

    @property
    def roles(self) -> tuple[str, ...]:
        return self.rule.axis_roles

    @property
    def layered(self) -> bool:
        return self.rule.layered

    def target_shape(self, sizes: Mapping[str, int]) -> tuple[int, ...]:
        """The canonical shape for model-level ``sizes`` (``_`` axes keep their size)."""
        return tuple(_size(s, sizes, n) for s, n in zip(self.rule.axis_dims, self.shape))

    def native_shape(self, canonical: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of one native (virtual) parameter for a canonical signal shape."""
        rest = list(canonical[1:] if self.layered else canonical)
        out = []
        for group in self.rule.native_dims:
            out.append(math.prod(rest[: len(group)]))
            del rest[: len(group)]
        return tuple(out)

    def names(self, layers: int) -> list[str]:
        if not self.layered:
            return [self.template]
        return [self.template.replace("{layer}", str(i)) for i in range(layers)]


#: Config keys that hold model sizes (every family's), checked before any size is computed.
_CONFIG_SIZES = ("num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads",
                 "intermediate_size", "head_dim", "n_layer", "n_embd", "n_head", "n_inner")
_OPTIONAL_SIZES = ("num_key_value_heads", "head_dim", "n_inner", "intermediate_size")


def rows_of(expr: str, sizes: Mapping[str, int]) -> int:
    """The row count a size expression such as ``"kv_heads*head_dim"`` gives for ``sizes``.

    >>> rows_of("kv_heads*head_dim", {"kv_heads": 3, "head_dim": 64})
    192
    """
    return math.prod(_size(s.strip(), sizes, -1) for s in expr.split("*"))


@dataclass(frozen=True)
class Fusion:
    """A native tensor holding several canonical parameters as row blocks.

    ``pattern`` matches the native name; ``parts`` are ``(suffix, rows)`` pairs in
    row order, ``rows`` a size expression (``"heads*head_dim"``). The blocks are
    taken after the transpose when the tensor is also in :attr:`Adapter.transposed`.
    The virtual parameters are named ``<native><suffix>`` (suffixes start with ``#``).
    """

    pattern: str
    parts: tuple

    def match(self, name: str) -> bool:
        return re.fullmatch(self.pattern, name) is not None

    @property
    def suffixes(self) -> tuple[str, ...]:
        return tuple(p[0] for p in self.parts)

    def rows(self, sizes: Mapping[str, int]) -> list[int]:
        return [rows_of(expr, sizes) for _, expr in self.parts]


@dataclass(frozen=True)
class View:
    """A virtual parameter: rows ``start:stop`` of a native tensor, transposed first if asked."""

    native: str
    shape: tuple
    transpose: bool = False
    rows: tuple | None = None


@dataclass(frozen=True)
class NativeOut:
    """One output tensor: its name, shape, dtype, and the virtual parts it is assembled from."""

    name: str
    shape: tuple
    dtype: str
    parts: tuple
    transpose: bool = False
    alias_of: str | None = None


def native_of(virtual: str) -> str:
    """The native tensor a virtual parameter name belongs to.

    >>> native_of("h.0.attn.c_attn.weight#q"), native_of("h.0.ln_1.weight")
    ('h.0.attn.c_attn.weight', 'h.0.ln_1.weight')
    """
    return virtual.split("#", 1)[0]


@dataclass
class Layout:
    """A checkpoint planned from shapes: sizes, signals (specs), views, ties and drops."""

    family: str
    config: dict
    sizes: dict
    specs: dict
    ties: dict
    dropped: dict
    views: dict
    infos: dict

    def dtype_for(self, name: str) -> str:
        """The source dtype of native ``name`` (a new layer takes layer 0's)."""
        info = self.infos.get(name)
        if info is None:
            info = self.infos.get(re.sub(r"(?<=\.)\d+(?=\.)", "0", name))
        if info is None:
            info = next(iter(self.infos.values()))
        return info.dtype


class Adapter:
    """Base class of the family adapters; subclasses set the class attributes.

    Attributes
    ----------
    family : str
        Family name (``"bert"``, ``"gpt2"``, ...).
    rules : tuple of Rule
        One rule per kind of parameter; the first matching rule wins.
    ties : tuple of (alias_regex, target_regex)
        An alias parameter equal to its target is written as a copy of the
        resized target (kept tied) instead of being resized on its own.
    drops : tuple of (regex, reason)
        Non-persistent buffers the model rebuilds: reported, not written.
    transposed : tuple of regex
        Native tensors stored ``[in, out]`` (GPT-2 ``Conv1D``).
    fusions : tuple of Fusion
        Native tensors holding several canonical parameters (fused QKV, gate/up).
    head_tie, head_norms : str, tuple of str
        The output head's name pattern when it may be tied to the word embedding,
        and the signals of the norm that feeds it: a tied head takes the
        embedding's treatment, so a function-keeping width change scales that
        norm instead (:func:`botcore.adapters.pipeline.tied_head_factor`).
    offsets : tuple of (signal_regex, float)
        Signals the model uses as ``offset + stored`` (Gemma's RMSNorm computes
        ``x * (1 + w)``). A resize that changes such a signal's shape resizes the
        effective value ``offset + w`` and stores the result minus ``offset``, so
        the gain the model applies is what gets resized (and scaled).
    hidden_powers : tuple of (signal_regex, float)
        Signals the model multiplies by ``hidden ** power`` taken from its config
        (Gemma's embedding: ``sqrt(hidden)``). Where the resize keeps the function
        the signal is multiplied by ``(src_hidden / dst_hidden) ** power``, so that
        the product the model computes is kept (:meth:`function_scale`).
    gates : tuple of (signal_regex, str)
        Residual writers whose branch is multiplied by a gate signal (LayerScale:
        ``x + lambda * (W h + b)``). Function-preserving depth growth zeroes the gate
        of an inserted layer, not the writer: zeroing both would leave the inserted
        branch with no gradient at all (:meth:`zeroes_in_new_layers`).
    """

    family = ""
    model_types: tuple[str, ...] = ()
    rules: tuple[Rule, ...] = ()
    ties: tuple[tuple[str, str], ...] = ()
    drops: tuple[tuple[str, str], ...] = ()
    transposed: tuple[str, ...] = ()
    fusions: tuple[Fusion, ...] = ()
    head_tie: str | None = None
    head_norms: tuple[str, ...] = ()
    offsets: tuple[tuple[str, float], ...] = ()
    hidden_powers: tuple[tuple[str, float], ...] = ()
    gates: tuple[tuple[str, str], ...] = ()
    tie_default = True
    gqa = False
    free_head_dim = False

    # -- family hooks --------------------------------------------------------------
    def sizes(self, config: dict, params: Mapping) -> dict:
        """Model-level sizes ``layers, hidden, heads, kv_heads, head_dim, ffn`` of a checkpoint.

        ``params`` maps native names to objects with a ``shape`` (arrays or TensorInfo).
        """
        raise NotImplementedError

    def write_config(self, config: dict, sizes: Mapping[str, int]) -> dict:
        """A copy of ``config`` with this family's size keys set to ``sizes``."""
        raise NotImplementedError

    @classmethod
    def claims(cls, names, config: dict) -> bool:
        """True if parameter ``names`` (and ``config``) look like this family."""
        return False

    # -- layouts as data -----------------------------------------------------------
    def is_transposed(self, native: str) -> bool:
        return any(re.fullmatch(p, native) for p in self.transposed)

    def fusion_for(self, native: str) -> Fusion | None:
        return next((f for f in self.fusions if f.match(native)), None)

    def head_is_tied(self, layout: Layout) -> bool:
        """Whether the output head is a copy of the word embedding.

        True when the checkpoint holds the head as a tied duplicate, or leaves it out
        because the config ties it (``tie_word_embeddings``, this family's default when
        absent) and ``architectures`` names a model with a language-model head.
        """
        if self.head_tie is None:
            return False
        if any(re.fullmatch(self.head_tie, a) for a in layout.ties):
            return True
        if any(re.fullmatch(self.head_tie, n) for n in layout.infos):
            return False  # the head is stored on its own: untied
        cfg = layout.config
        heads = ("ForCausalLM", "LMHeadModel", "ForMaskedLM", "ForPreTraining")
        named = any(str(a).endswith(heads) for a in cfg.get("architectures") or ())
        return named and bool(cfg.get("tie_word_embeddings", self.tie_default))

    def offset_of(self, signal: str) -> float:
        """The offset the model adds to ``signal`` before using it (0 for most)."""
        return next((float(v) for p, v in self.offsets if re.fullmatch(p, signal)), 0.0)

    def zeroes_in_new_layers(self, signal: str, rule, signals) -> bool:
        """Whether function-preserving depth growth zeroes ``signal`` in inserted layers.

        A residual writer is zeroed unless its branch has a gate (see ``gates``)
        among ``signals``; the gate, itself a residual rule, is zeroed instead.

        >>> from botcore.adapters.registry import get_adapter
        >>> rule = Rule("x", "o", "hidden,hidden", "out,in", residual=True)
        >>> vit = get_adapter("vit")
        >>> vit.zeroes_in_new_layers("o", rule, {"o", "q"}), vit.zeroes_in_new_layers("o", rule, {"o", "scale1"})
        (True, False)
        """
        if not rule.residual:
            return False
        gate = next((g for p, g in self.gates if re.fullmatch(p, signal)), None)
        return gate is None or gate not in signals

    def hidden_power_of(self, signal: str) -> float:
        """The power of ``hidden`` the model multiplies ``signal`` by (0 for most)."""
        return next((float(v) for p, v in self.hidden_powers if re.fullmatch(p, signal)), 0.0)

    def function_scale(self, signal: str, ratio: float, *, head_tied: bool) -> float:
        """Multiplier for resized ``signal`` that keeps what the model computes.

        ``ratio`` is ``src_hidden / dst_hidden`` where the method keeps the function
        and 1 elsewhere (:func:`botcore.adapters.pipeline.tied_head_factor`). A signal
        the model multiplies by ``hidden ** p`` gets ``ratio ** p``; the norm feeding a
        tied head gets ``ratio`` divided by what the tied embedding got.

        >>> class Scaled(Adapter):
        ...     hidden_powers = ((r"embed\\.word", 0.5),)
        ...     head_norms = ("norm_final.weight",)
        >>> a = Scaled()
        >>> a.function_scale("embed.word", 0.25, head_tied=True)
        0.5
        >>> a.function_scale("norm_final.weight", 0.25, head_tied=True)
        0.5
        >>> a.function_scale("norm_final.weight", 0.25, head_tied=False)
        1.0
        """
        f = ratio ** self.hidden_power_of(signal)
        if head_tied and signal in self.head_norms:
            f *= ratio ** (1.0 - self.hidden_power_of("embed.word"))
        return f

    def drop_reason(self, name: str) -> str | None:
        return next((why for p, why in self.drops if re.fullmatch(p, name)), None)

    def tie_candidates(self, infos: Mapping) -> dict:
        """``{alias: target}`` pairs the tie rules allow by name and shape (values unchecked)."""
        out = {}
        for alias_re, target_re in self.ties:
            for alias in [n for n in infos if re.fullmatch(alias_re, n)]:
                targets = [n for n in infos if re.fullmatch(target_re, n) and n != alias]
                if len(targets) == 1 and tuple(infos[alias].shape) == tuple(infos[targets[0]].shape):
                    out[alias] = targets[0]
        return out

    def views(self, natives: Mapping, sizes: Mapping[str, int]) -> dict:
        """``{virtual name: View}`` of native tensors (identity views unless transposed/fused)."""
        out = {}
        for name, info in natives.items():
            shape = tuple(info.shape)
            transpose = self.is_transposed(name)
            if transpose:
                shape = shape[::-1]
            fusion = self.fusion_for(name)
            if fusion is None:
                out[name] = View(name, shape, transpose)
                continue
            rows = fusion.rows(sizes)
            if sum(rows) != shape[0]:
                raise UnsupportedModelError(
                    f"{name} has {shape[0]} fused rows, but the config implies "
                    f"{' + '.join(map(str, rows))} = {sum(rows)} ({', '.join(fusion.suffixes)}); "
                    "pass the checkpoint's own config")
            start = 0
            for suffix, n in zip(fusion.suffixes, rows):
                out[name + suffix] = View(name, (n, *shape[1:]), transpose, (start, start + n))
                start += n
        return out

    def _checked_sizes(self, config: dict, natives: Mapping) -> dict:
        """:meth:`sizes`, refusing any size that is not a positive integer with one clear error."""
        bad = {k: config[k] for k in _CONFIG_SIZES if k in config and not (
            (config[k] is None and k in _OPTIONAL_SIZES) or (type(config[k]) is int and config[k] >= 1))}
        if bad:
            raise UnsupportedModelError(
                f"the {self.family} config gives sizes that are not positive integers: {bad}; expected "
                "the checkpoint's own config.json (re-save it with model.config.save_pretrained)")
        try:
            sizes = self.sizes(config, natives)
        except BotError:
            raise
        except (TypeError, ValueError, ZeroDivisionError, OverflowError) as exc:
            raise UnsupportedModelError(
                f"the {self.family} config has a size that is not a positive integer ({exc}); expected "
                "the checkpoint's own config.json (re-save it with model.config.save_pretrained)") from None
        bad = {k: v for k, v in sizes.items() if type(v) is not int or v < 1}
        if bad:
            raise UnsupportedModelError(
                f"the {self.family} config gives sizes that are not positive integers: {bad}; expected "
                "the checkpoint's own config.json (re-save it with model.config.save_pretrained)")
        return sizes

    def layout(self, infos: Mapping, config: Mapping, *, ties: Mapping | None = None) -> Layout:
        """Plan a checkpoint from its tensor records (no data); ``ties`` are confirmed ties."""
        config = dict(config)
        ties = dict(ties or {})
        dropped = {n: why for n in infos if (why := self.drop_reason(n)) is not None}
        natives = {n: i for n, i in infos.items() if n not in dropped and n not in ties}
        sizes = self._checked_sizes(config, natives)
        foreign = {n: i for n, i in natives.items() if getattr(i, "rule", None) is not None}
        views = self.views({n: i for n, i in natives.items() if n not in foreign}, sizes)
        views.update({n: View(n, tuple(i.shape)) for n, i in foreign.items()})
        rules = tuple(Rule(re.escape(n), n, *i.rule) for n, i in foreign.items()) + self.rules
        specs = self._specs(views, sizes, rules)
        return Layout(self.family, config, sizes, specs, ties, dropped, views, dict(infos))

    def _specs(self, virtual: Mapping, sizes: Mapping[str, int], rules: tuple) -> dict:
        found: dict[str, dict] = {}
        unknown = []
        for name, view in virtual.items():
            rule, m = next(((r, m) for r in rules if (m := r.match(name)) is not None), (None, None))
            if rule is None:
                unknown.append(name)
                continue
            _check_native_shape(name, tuple(view.shape), rule, sizes)
            entry = found.setdefault(rule.signal, {"rule": rule, "layers": {}, "template": None})
            if entry["rule"] is not rule:
                raise UnsupportedModelError(
                    f"{name!r} and {entry['template']!r} both map to signal {rule.signal!r}; "
                    "the checkpoint mixes naming conventions; pass one model's parameters")
            i, template = _layer_of(name, m, rule)
            if entry["template"] not in (None, template):
                raise UnsupportedModelError(
                    f"signal {rule.signal!r} matches both {entry['template']!r} and {template!r}; "
                    "pass the parameters of one model (one prefix) at a time")
            entry["template"] = template
            entry["layers"][i] = name
        if unknown:
            shown = ", ".join(repr(n) for n in unknown[:8])
            more = f" and {len(unknown) - 8} more" if len(unknown) > 8 else ""
            raise ParameterKeyError(
                f"the {self.family} adapter has no treatment for {shown}{more}; expected only "
                f"parameters of a {self.family} checkpoint (check family= and that the mapping "
                "holds one model's parameters)")
        return {signal: _spec(signal, entry, virtual, sizes) for signal, entry in found.items()}

    def outputs(self, layout: Layout, shapes: Mapping[str, tuple]) -> dict:
        """``{native: NativeOut}`` of the resized checkpoint, in the order they complete.

        ``shapes`` maps every signal to its target canonical shape. Virtual parts
        are joined back into their native tensor (transposed back where stored so);
        tied aliases follow their target. Work is per signal, not per name: the
        fusion, transpose and dtype of a layered template are looked up once.
        """
        parts: dict[str, dict] = {}
        out: dict[str, NativeOut] = {}
        for spec in layout.specs.values():
            shape = tuple(shapes[spec.name])
            native = spec.native_shape(shape)
            base_t = native_of(spec.template)
            suffix = spec.template[len(base_t):]
            probe = base_t.replace("{layer}", "0")
            fusion = self.fusion_for(probe) if suffix else None
            want = fusion.suffixes if fusion is not None else ("",)
            transpose, dtype = self.is_transposed(probe), layout.dtype_for(probe)
            for i in range(shape[0] if spec.layered else 1):
                base = base_t.replace("{layer}", str(i))
                got = parts.setdefault(base, {})
                got[suffix] = native
                if len(got) == len(want) and all(w in got for w in want):
                    full = (sum(got[w][0] for w in want), *got[want[0]][1:])
                    out[base] = NativeOut(base, full[::-1] if transpose else full, dtype,
                                          tuple(base + w for w in want), transpose)
                    del parts[base]
        for alias, target in layout.ties.items():
            t = out.get(target)
            if t is not None:
                out[alias] = NativeOut(alias, t.shape, layout.dtype_for(alias), (), False, t.name)
        return out


def _check_native_shape(name: str, shape: tuple, rule: Rule, sizes: Mapping[str, int]) -> None:
    expected = tuple(math.prod(_size(s, sizes, -1) for s in g) for g in rule.native_dims)
    if len(shape) != len(expected) or any(e >= 0 and e != n for e, n in zip(expected, shape)):
        shown = tuple("any" if e < 0 else e for e in expected)
        raise UnsupportedModelError(
            f"parameter {name!r} has shape {shape} but the config "
            f"({', '.join(f'{k}={v}' for k, v in sizes.items())}) implies {shown}; "
            "pass the checkpoint's own config")


def _layer_of(name: str, m, rule: Rule) -> tuple[int, str]:
    if not rule.layered:
        return 0, name
    s, e = m.span("layer")
    return int(m.group("layer")), name[:s] + "{layer}" + name[e:]


def _spec(signal: str, entry: dict, virtual: Mapping, sizes: Mapping[str, int]) -> Spec:
    rule, layers = entry["rule"], entry["layers"]
    n, found = sizes["layers"], set(layers)
    if rule.layered and (len(found) != n or min(found) != 0 or max(found) != n - 1):
        missing = [i for i in range(min(n, len(found) + 8)) if i not in found][:8]
        extra = sorted(i for i in found if i >= n)[:8]
        more = " (the first ones)" if len(missing) == 8 or len(extra) == 8 else ""
        raise ParameterKeyError(
            f"signal {signal!r} ({entry['template']!r}) is missing layers {missing} and has unexpected "
            f"layers {extra}{more}, but the config says {n} layers and the checkpoint has {len(found)}; "
            "pass a complete checkpoint and its own config")
    members = tuple(layers[i] for i in sorted(layers))
    native = iter(virtual[members[0]].shape)
    canonical = []
    for group in rule.native_dims:
        n = next(native)
        canonical.extend([n] if len(group) == 1 else [_size(s, sizes, n) for s in group])
    shape = ((len(members),) if rule.layered else ()) + tuple(canonical)
    return Spec(signal, rule, entry["template"], members, shape)
