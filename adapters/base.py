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
* Fused or transposed layouts (GPT-2 ``Conv1D``, fused QKV) are turned into
  canonical ``(out, in)`` *virtual* parameters by :meth:`Adapter.split` and
  back by :meth:`Adapter.merge` before rules apply.

Signals hold NumPy arrays (bfloat16 widened to float32); :meth:`Adapter.from_signals`
converts every parameter back to the framework, dtype and device of the
matching source parameter, so ``from_signals(to_signals(p, c), p, c)``
reproduces ``p`` bit for bit.

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

import numpy as np

from botcore.errors import ParameterKeyError, UnsupportedModelError
from botcore.names import SIZES
from botcore.signal import WeightSignal

from ._arrays import Like, from_numpy, to_numpy

__all__ = ["SIZES", "Adapter", "Layout", "Rule", "Spec"]



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


@dataclass
class Layout:
    """Everything :meth:`Adapter.from_signals` needs to rebuild native parameters."""

    family: str
    config: dict
    sizes: dict
    specs: dict
    ties: dict
    dropped: dict
    likes: dict

    def like_for(self, name: str) -> Like:
        like = self.likes.get(name)
        if like is None:
            like = self.likes.get(re.sub(r"(?<=\.)\d+(?=\.)", "0", name))
        if like is None:
            like = next(iter(self.likes.values()))
        return like


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
    """

    family = ""
    model_types: tuple[str, ...] = ()
    rules: tuple[Rule, ...] = ()
    ties: tuple[tuple[str, str], ...] = ()
    drops: tuple[tuple[str, str], ...] = ()
    gqa = False
    free_head_dim = False

    # -- family hooks --------------------------------------------------------------
    def sizes(self, config: dict, params: Mapping[str, np.ndarray]) -> dict:
        """Model-level sizes ``layers, hidden, heads, kv_heads, head_dim, ffn`` of a checkpoint."""
        raise NotImplementedError

    def write_config(self, config: dict, sizes: Mapping[str, int]) -> dict:
        """A copy of ``config`` with this family's size keys set to ``sizes``."""
        raise NotImplementedError

    def split(self, params: dict, config: dict) -> dict:
        """Native -> canonical virtual parameters (identity unless the family fuses or transposes)."""
        return dict(params)

    def merge(self, virtual: dict, config: dict) -> dict:
        """Inverse of :meth:`split`."""
        return dict(virtual)

    @classmethod
    def claims(cls, names, config: dict) -> bool:
        """True if parameter ``names`` (and ``config``) look like this family."""
        return False

    # -- shared machinery ----------------------------------------------------------
    def analyse(self, params: Mapping, config: Mapping) -> tuple[Layout, dict]:
        """(layout, signals) of a checkpoint; see :meth:`to_signals`."""
        config = dict(config)
        arrays, likes = {}, {}
        for name, x in params.items():
            arrays[name], likes[name] = to_numpy(x)
        dropped = {}
        for name in list(arrays):
            for pattern, reason in self.drops:
                if re.fullmatch(pattern, name):
                    dropped[name] = reason
                    del arrays[name]
                    break
        ties = {}
        for alias_re, target_re in self.ties:
            for alias in [n for n in arrays if re.fullmatch(alias_re, n)]:
                targets = [n for n in arrays if re.fullmatch(target_re, n) and n != alias]
                if len(targets) == 1 and arrays[alias].shape == arrays[targets[0]].shape and \
                        np.array_equal(arrays[alias], arrays[targets[0]]):
                    ties[alias] = targets[0]
                    del arrays[alias]
        virtual = self.split(arrays, config)
        sizes = self.sizes(config, virtual)
        specs = self._specs(virtual, sizes)
        signals = {}
        for spec in specs.values():
            parts = []
            for member in spec.members:
                a = virtual[member]
                parts.append(a.reshape(spec.shape[1:] if spec.layered else spec.shape))
            data = np.stack(parts) if spec.layered else parts[0]
            signals[spec.name] = WeightSignal(data, spec.roles, spec.name)
        layout = Layout(self.family, config, sizes, specs, ties, dropped, likes)
        return layout, signals

    def _specs(self, virtual: Mapping[str, np.ndarray], sizes: Mapping[str, int]) -> dict:
        found: dict[str, dict] = {}
        unknown = []
        for name, a in virtual.items():
            for rule in self.rules:
                m = rule.match(name)
                if m is not None:
                    break
            else:
                unknown.append(name)
                continue
            entry = found.setdefault(rule.signal, {"rule": rule, "layers": {}, "template": None})
            if entry["rule"] is not rule:
                raise UnsupportedModelError(
                    f"{name!r} and {entry['template']!r} both map to signal {rule.signal!r}; "
                    "the checkpoint mixes naming conventions; pass one model's parameters"
                )
            if rule.layered:
                i = int(m.group("layer"))
                s, e = m.span("layer")
                template = name[:s] + "{layer}" + name[e:]
            else:
                i, template = 0, name
            if entry["template"] not in (None, template):
                raise UnsupportedModelError(
                    f"signal {rule.signal!r} matches both {entry['template']!r} and {template!r}; "
                    "pass the parameters of one model (one prefix) at a time"
                )
            entry["template"] = template
            expected = tuple(
                math.prod(_size(s, sizes, -1) for s in g) for g in rule.native_dims
            )
            if len(a.shape) != len(expected) or any(
                e >= 0 and e != n for e, n in zip(expected, a.shape)
            ):
                shown = tuple("any" if e < 0 else e for e in expected)
                raise UnsupportedModelError(
                    f"parameter {name!r} has shape {tuple(a.shape)} but the config "
                    f"({', '.join(f'{k}={v}' for k, v in sizes.items())}) implies {shown}; "
                    "pass the checkpoint's own config"
                )
            entry["layers"][i] = name
        if unknown:
            shown = ", ".join(repr(n) for n in unknown[:8])
            more = f" and {len(unknown) - 8} more" if len(unknown) > 8 else ""
            raise ParameterKeyError(
                f"the {self.family} adapter has no treatment for {shown}{more}; expected only "
                f"parameters of a {self.family} checkpoint (check family= and that the mapping "
                "holds one model's parameters)"
            )
        specs = {}
        for signal, entry in found.items():
            rule, layers = entry["rule"], entry["layers"]
            if rule.layered and sorted(layers) != list(range(sizes["layers"])):
                missing = sorted(set(range(sizes["layers"])) - set(layers))
                extra = sorted(set(layers) - set(range(sizes["layers"])))
                raise ParameterKeyError(
                    f"signal {signal!r} ({entry['template']!r}) is missing layers {missing} "
                    f"and has unexpected layers {extra}, but the config says "
                    f"{sizes['layers']} layers; pass a complete checkpoint and its own config"
                )
            members = tuple(layers[i] for i in sorted(layers))
            first = virtual[members[0]].shape
            canonical = []
            native = iter(first)
            for group in rule.native_dims:
                n = next(native)
                if len(group) == 1:
                    canonical.append(n)
                else:
                    canonical.extend(_size(s, sizes, n) for s in group)
            shape = ((len(members),) if rule.layered else ()) + tuple(canonical)
            specs[signal] = Spec(signal, rule, entry["template"], members, shape)
        return specs

    def to_signals(self, params: Mapping, config: Mapping) -> dict:
        """Native parameters -> ``{signal name: WeightSignal}`` (NumPy data).

        Parameters
        ----------
        params : mapping of str to array
            Native parameter names to numpy/torch/tensorflow/jax arrays; not modified.
        config : mapping
            The checkpoint's Hugging Face config keys.
        """
        return self.analyse(params, config)[1]

    def emit(self, layout: Layout, signals: Mapping) -> dict:
        """Signals -> native parameters in the source's frameworks and dtypes."""
        virtual = {}
        for spec in layout.specs.values():
            sig = signals[spec.name]
            data = sig.data if hasattr(sig, "data") else sig
            data = data if isinstance(data, np.ndarray) else to_numpy(data)[0]
            shape = tuple(data.shape)
            native = spec.native_shape(shape)
            if spec.layered:
                for i, name in enumerate(spec.names(shape[0])):
                    virtual[name] = data[i].reshape(native)
            else:
                virtual[spec.template] = data.reshape(native)
        arrays = self.merge(virtual, layout.config)
        for alias, target in layout.ties.items():
            arrays[alias] = arrays[target]
        converted = {}
        for name, a in arrays.items():
            converted[name] = from_numpy(a, layout.like_for(name))
        for alias, target in layout.ties.items():
            if layout.like_for(alias) == layout.like_for(target):
                converted[alias] = converted[target]
        return converted

    def from_signals(self, signals: Mapping, like_params: Mapping, config: Mapping) -> dict:
        """Canonical signals -> native parameters named like ``like_params``.

        Parameters
        ----------
        signals : mapping of str to WeightSignal
            As returned by :meth:`to_signals`, possibly resized.
        like_params : mapping
            The source parameters: they fix names, ties, frameworks and dtypes.
        config : mapping
            The source config (sizes of the output come from the signals).
        """
        layout, _ = self.analyse(like_params, config)
        return self.emit(layout, signals)
