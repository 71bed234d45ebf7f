"""The one resize pipeline: plan the whole model from shapes, then read, resize, write per role.

Contract. Every format and every face (the Python API, the command line, the
benchmarks) resizes through :func:`plan` and :func:`run`:

1. **plan** (shapes only): open the source as a reader
   (:mod:`botcore.adapters.io`), detect the family, confirm tied parameters,
   lay out every canonical signal (:meth:`~botcore.adapters.base.Adapter.layout`),
   resolve the target sizes once (:func:`~botcore.adapters.targets.resolve_target`),
   check every signal's resize plan, and list every output tensor with its
   shape and dtype, the output bytes and an estimate of peak memory
   (:class:`Plan`). An impossible target fails here, before any data is read.
2. **run**: the writer gets the whole output layout first; then for each
   signal (one role stacked over layers): read its layers one at a time into
   one float32 (float64 for float64 sources) stack, check it is finite, resize
   it (:func:`~botcore.adapters.methods.resize_signal`), cut it back into native
   tensors, cast to the output dtype, write, release. Tensors fused across
   signals (QKV) are written when their last part is done. Memory is bounded by
   the largest role stack, not the model. Signals larger than ``chunk_bytes``
   go through Dask (:mod:`botcore.adapters.tiles`) tile by tile, bit-identical.
3. The writer makes the output appear atomically; on any error it is aborted
   and nothing is left behind.

The records (:class:`Record`) of the run are the report: one per signal, with
its treatment and, when ``measure=True``, the share of its energy the resize kept.

Examples
--------
>>> import numpy as np
>>> cfg = dict(model_type="llama", num_hidden_layers=2, hidden_size=8,
...            num_attention_heads=4, num_key_value_heads=2, intermediate_size=16)
>>> params = {f"model.layers.{i}.mlp.up_proj.weight": np.ones((16, 8), np.float32)
...           for i in range(2)}
>>> p = plan(params, {"hidden": 4, "layers": 1}, config=cfg)
>>> [(t.name, t.shape) for t in p.tensors]
[('model.layers.0.mlp.up_proj.weight', (8, 4))]
>>> out, records = run(p)
>>> round(float(out["model.layers.0.mlp.up_proj.weight"].sum()), 3)  # "in" axis: sums kept
64.0
>>> records[0].treatment
'bot: wavelet=haar mode=periodization gain=function'

"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import botcore
from botcore._checks import check_option
from botcore.errors import NonFiniteError, OptionError, TargetError
from botcore.names import (
    DTYPE_CHOICES,
    FLOAT_DTYPES,
    FRACTIONAL_STEPS,
    GAINS,
    METHODS,
    compute_dtype,
    output_dtype,
)

from ._arrays import sumsq as _sumsq
from .base import Layout, NativeOut, Spec
from .io import open_reader
from .io.base import OutputPlan, TensorInfo, itemsize, numpy_dtype
from .io.mapping import MappingReader, MemoryWriter
from .matching import permute_units
from .methods import resize_signal
from .registry import detect_family, get_adapter
from .targets import resolve_target

__all__ = ["DEFAULT_GAIN", "SHRINK_FRACTIONAL", "SHRINK_GAINS", "Estimate", "Plan", "Record",
           "default_fractional", "default_gain", "estimate", "plan", "run"]

#: The gain used when growing, and for families without a measured shrink default. Set
#: by the transfer benchmark (``docs/transfer.md``): it is the only gain that never
#: failed badly, and it keeps a grown model's function.
DEFAULT_GAIN = "function"

#: The gain used when shrinking, per family, from the transfer benchmark
#: (docs/transfer.md): ``"std"`` led ``"function"`` by 8 points of FLOPs saved on BERT
#: (all-MiniLM-L6-v2 -> 3x192, 500 steps) and 10 on the ViT shrink; ``"function"`` led
#: ``"std"`` by 14 on the SmolLM2 decoder (160 steps), where ``"paper"`` never trained
#: back to scratch's loss. GPT-2 follows the pre-norm decoder, DeiT and DINOv2 follow
#: ViT (not measured separately).
SHRINK_GAINS = {"bert": "std", "vit": "std", "deit": "std", "dinov2": "std",
                "llama": "function", "gpt2": "function"}


#: How ``method="bot"`` does a non-dyadic (fractional) step when shrinking, per family, when
#: ``fractional=None``; families not listed use the area step (``"area"``). From the
#: transfer benchmark (docs/transfer.md, bert-l2s 4x256, MiniLM 6x384 -> 4x256: every
#: step fractional; 500 steps, 2 seeds): uniform selection ended at 4.115 against the
#: area step's 4.485 (``paper``) and 4.545 (``std``); with the residual rotation
#: (``rotate=``, built for the selection) at 3.829 against 4.139. The other families
#: had no non-dyadic case measured.
SHRINK_FRACTIONAL = {"bert": "select"}


def _shrinking(source_sizes: Mapping, target_sizes: Mapping) -> bool:
    """The hidden size shrinks, or stays and the layer count shrinks."""
    src_h, dst_h = source_sizes.get("hidden"), target_sizes.get("hidden")
    return dst_h < src_h if dst_h != src_h else target_sizes.get("layers", 0) < source_sizes.get("layers", 0)


def default_fractional(family: str, source_sizes: Mapping, target_sizes: Mapping) -> str:
    """The fractional step used when ``fractional=None`` (``method="bot"``).

    >>> default_fractional("bert", {"hidden": 384, "layers": 6}, {"hidden": 256, "layers": 4})
    'select'
    >>> default_fractional("bert", {"hidden": 384, "layers": 6}, {"hidden": 576, "layers": 9})
    'area'
    >>> default_fractional("llama", {"hidden": 576, "layers": 30}, {"hidden": 384, "layers": 20})
    'area'
    """
    return SHRINK_FRACTIONAL.get(family, "area") if _shrinking(source_sizes, target_sizes) else "area"


def default_gain(family: str, source_sizes: Mapping, target_sizes: Mapping) -> str:
    """The gain used when ``gain=None``.

    A resize counts as shrinking when the hidden size shrinks, or stays and the
    layer count shrinks; shrinking uses :data:`SHRINK_GAINS`, everything else
    :data:`DEFAULT_GAIN`.

    Examples
    --------
    >>> default_gain("bert", {"hidden": 384, "layers": 6}, {"hidden": 192, "layers": 3})
    'std'
    >>> default_gain("bert", {"hidden": 384, "layers": 6}, {"hidden": 768, "layers": 12})
    'function'
    >>> default_gain("llama", {"hidden": 576, "layers": 30}, {"hidden": 576, "layers": 15})
    'function'
    """
    return SHRINK_GAINS.get(family, DEFAULT_GAIN) if _shrinking(source_sizes, target_sizes) else DEFAULT_GAIN


@dataclass(frozen=True)
class Record:
    """What happened to one canonical signal (or one tied / dropped parameter)."""

    signal: str
    names: tuple
    roles: tuple
    source_shape: tuple
    target_shape: tuple
    treatment: str
    energy: float | None = None


@dataclass
class Plan:
    """A resize planned from shapes only: what :func:`run` will read, compute and write.

    Attributes
    ----------
    family, source_sizes, sizes, config
        The family, the source and target sizes, the target's config.
    records : list of Record
        One per signal (treatment ``"planned: <method>"``), ties and drops.
    tensors : list of TensorInfo
        Every output tensor (name, shape, output dtype) in the order they are written.
    peak_bytes : int
        Estimated peak memory of the run (the largest signal's working set).
    """

    family: str
    source_sizes: dict
    sizes: dict
    config: dict
    records: list
    tensors: list
    peak_bytes: int
    method: str = "bot"
    wavelet: str = "haar"
    gain: str = DEFAULT_GAIN
    mode: str = "periodization"
    dtype: str = "keep"
    reader: object = field(repr=False, default=None)
    adapter: object = field(repr=False, default=None)
    layout: Layout = field(repr=False, default=None)
    shapes: dict = field(repr=False, default_factory=dict)
    outputs: dict = field(repr=False, default_factory=dict)
    notes: list = field(default_factory=list)
    options: dict = field(default_factory=dict)
    matching: dict = field(repr=False, default_factory=dict)

    @property
    def nbytes(self) -> int:
        """Bytes of every output tensor."""
        return sum(t.nbytes for t in self.tensors)

    @property
    def source_dir(self) -> Path | None:
        return getattr(self.reader, "folder", None)


# -- planning -------------------------------------------------------------------------
#: The methods ``rotate=`` applies to: the rotation is built for the hidden-axis resize that
#: follows it (BoT's analysis matrix, or the uniform selection of the selection methods).
ROTATE_METHODS = tuple(m for m in METHODS if m != "net2net")  # net2net grows by replication

def _check_options(method, gain, dtype, rotate) -> None:
    check_option(method, METHODS, "method")
    if gain is not None:
        check_option(gain, GAINS, "gain")
    check_option(dtype, DTYPE_CHOICES, "dtype")
    if rotate is not None and method not in ROTATE_METHODS:
        raise OptionError(f"rotate= is an option of method={' or '.join(map(repr, ROTATE_METHODS))}, "
                          f"not of method={method!r} (it grows by replication); pass rotate=None")


def _check_target(target) -> None:
    if target is not None and not isinstance(target, Mapping):
        raise TargetError(f"target must be a mapping such as {{'layers': 6, 'hidden': 384}}, "
                          f"got {type(target).__name__}")


def _same(reader, a: str, b: str, rows: int) -> bool:
    """Whether tensors ``a`` and ``b`` hold equal values, compared in tiles of ``rows`` rows."""
    n = reader.tensors()[a].shape[0] if reader.tensors()[a].shape else 0
    if n == 0:
        return bool(np.array_equal(reader.read(a), reader.read(b)))
    return all(np.array_equal(reader.read_rows(a, s, min(n, s + rows)),
                              reader.read_rows(b, s, min(n, s + rows))) for s in range(0, n, rows))


def confirm_ties(reader, adapter) -> dict:
    """The adapter's tie candidates whose values are equal (read tile by tile)."""
    infos = reader.tensors()
    out = {}
    for alias, target in adapter.tie_candidates(infos).items():
        t = infos[alias]
        row = max(1, t.nbytes // max(1, t.shape[0] if t.shape else 1))
        if infos[target].dtype == t.dtype and _same(reader, alias, target, max(1, 2**26 // row)):
            out[alias] = target
    return out


def _family(reader, family):
    infos = reader.tensors()
    return get_adapter(family or detect_family(infos, reader.config))


def _net2net(src: dict, dst: dict) -> None:
    shrinking = [f"{k} {src[k]} -> {dst[k]}" for k in src if dst[k] < src[k]]
    if shrinking:
        raise TargetError(
            f"method='net2net' only grows a model, but the target shrinks {', '.join(shrinking)}; "
            "use method='bot', 'weight_selection' or 'layer_select' to shrink")


def _out_dtype(dtype: str, choice: str) -> str:
    return output_dtype(dtype, choice) if dtype in FLOAT_DTYPES else dtype


def _out_config(adapter, config: dict, sizes: dict, dtype: str) -> dict:
    new = adapter.write_config(config, sizes)
    if dtype != "keep":
        for key in ("torch_dtype", "dtype"):
            if key in new or key == "torch_dtype":
                new[key] = dtype
    return new


@dataclass(frozen=True)
class Estimate:
    """Bytes a plan needs, from shapes only: peak memory, output size, the largest signal."""

    peak: int
    output: int
    largest: str
    largest_shape: tuple


#: Blocks of a tiled signal that may be in memory at once, per worker thread (measured
#: with benchmarks/scale.py; docs/scale.md).
TILED_BLOCKS = 12


def estimate(layout: Layout, shapes: Mapping, dtype: str = "keep", *, chunk_bytes=None,
             tiled=None) -> Estimate:
    """Peak memory and output bytes of a plan, without listing its tensors.

    Peak: the largest signal's source stack and result in the compute dtype, twice
    each (transform temporaries), plus one fused output tensor being assembled; a
    signal that goes through Dask (``tiled(spec)`` and larger than ``chunk_bytes``)
    needs :data:`TILED_BLOCKS` blocks per thread instead.
    """
    from .execute import block_bytes

    threads = max(2, os.cpu_count() or 1)
    peak, output, largest = 0, 0, ("-", ())
    for spec in layout.specs.values():
        src, dst = math.prod(spec.shape), math.prod(shapes[spec.name])
        width = 8 if stack_dtype(layout, spec) == np.float64 else 4
        layer = dst // spec.shape[0] if spec.layered and spec.shape[0] else dst
        need = width * (2 * src + 2 * dst + 3 * layer)
        if chunk_bytes is not None and 4 * src > chunk_bytes and tiled is not None and tiled(spec):
            need = min(need, TILED_BLOCKS * threads * block_bytes(chunk_bytes))
        if need > peak:
            peak, largest = need, (spec.name, tuple(shapes[spec.name]))
        first = layout.views[spec.members[0]].native
        output += dst * itemsize(_out_dtype(layout.dtype_for(first), dtype))
    return Estimate(peak, output, *largest)


def _tileable_early(layout: Layout, spec: Spec, method: str, options: Mapping) -> bool:
    """:func:`botcore.adapters.tiles.tileable` from the layout alone (before outputs exist)."""
    views = [layout.views[m] for m in spec.members]
    return not (any(v.transpose for v in views) or method == "net2net" or options)


def _rotated(reader, adapter, rotate, sizes, wavelet, mode, retie, fractional=None, analysis=None):
    """The source rotated in memory (``rotate=``): a new reader, its layout, and the note."""
    from .rotation import (
        APPROXIMATE,
        check_rotatable,
        rotate_post_ln_principal,
        rotate_residual,
        rotation_note,
    )

    approximate = adapter.family in APPROXIMATE
    if not approximate:
        check_rotatable(adapter.family)
    config = reader.config
    params = {n: reader.read(n) for n in reader.tensors()}
    tied = bool(config.get("tie_word_embeddings")) or bool(confirm_ties(reader, adapter))
    kw = dict(target_hidden=sizes["hidden"], wavelet=wavelet, mode=mode, fractional=fractional, analysis=analysis)
    if approximate:
        params, config = rotate_post_ln_principal(params, config, rotate, **kw)
    else:
        params, config = rotate_residual(params, config, rotate, family=adapter.family, retie=retie, **kw)
    note = rotation_note(adapter.family, tied=tied, retie=retie)
    rotated = MappingReader(params, config=config)
    rotated.likes = {**rotated.likes, **getattr(reader, "likes", {})}
    rotated.path, rotated.folder = reader.path, getattr(reader, "folder", None)
    rotated.copy_extras = reader.copy_extras
    rotated.meta = dict(getattr(reader, "meta", {}) or {})  # GGUF key/values, keras config
    for extra in ("meta_types", "copy_assets"):  # what the GGUF and keras writers duck-type on
        if hasattr(reader, extra):
            setattr(rotated, extra, getattr(reader, extra))
    layout = adapter.layout(rotated.tensors(), config, ties=confirm_ties(rotated, adapter))
    return rotated, layout, note


def _is_reader(source) -> bool:
    return hasattr(source, "tensors") and hasattr(source, "read_rows") and hasattr(source, "config")


def plan(source, target=None, *, method="bot", wavelet="haar", gain=None, mode="periodization",
         config=None, family=None, rotate=None, retie=None, dtype="keep", check=None,
         options: Mapping | None = None, chunk_bytes: int | None = None, match: bool = False) -> Plan:
    """Plan a resize from shapes only (see the module docstring); raises before reading data.

    Takes the arguments of :func:`botcore.adapters.resize_model` that shape the result;
    ``source`` may also be an open reader. ``check`` is called with the plan's
    :class:`Estimate` before the output tensors are listed (the preflight hook).
    ``options`` are further keywords of
    :func:`~botcore.adapters.methods.resize_signal` (``depth_growth``,
    ``detail_noise``, ``seed``: options of ``method="bot"``). ``chunk_bytes`` is the
    tiling threshold :func:`run` will use (it changes the memory estimate). ``match``
    permutes each layer's units before a BoT shrink (:mod:`botcore.adapters.matching`).
    """
    _check_options(method, gain, dtype, rotate)
    if match and method != "bot":
        raise OptionError(f"match=True orders the units that method='bot' averages; method={method!r} "
                          "averages nothing: leave match unset")
    if retie is not None and not isinstance(retie, bool):
        raise OptionError(f"retie={retie!r}: expected True (keep a tied LM head tied after rotate=), "
                          "False (write it untied, function kept exactly) or None (tied only when "
                          "the hidden size shrinks)")
    _check_target(target)
    reader = source if _is_reader(source) else open_reader(source, config=config)
    adapter = _family(reader, family)
    layout = adapter.layout(reader.tensors(), reader.config, ties=confirm_ties(reader, adapter))
    sizes = resolve_target(layout.sizes, target, gqa=adapter.gqa, free_head_dim=adapter.free_head_dim)
    if method == "net2net":
        _net2net(layout.sizes, sizes)
    gain = gain or default_gain(adapter.family, layout.sizes, sizes)
    opts = {k: v for k, v in dict(options or {}).items() if v is not None}
    if method == "bot":  # the area step is the plain (tileable) path: no option
        fractional = opts.pop("fractional", None) or default_fractional(adapter.family, layout.sizes, sizes)
        if fractional not in FRACTIONAL_STEPS:
            raise OptionError(f"fractional={fractional!r} is not offered; expected 'area', 'select' or "
                              "None (the family's measured default)")
        if fractional != "area":
            opts["fractional"] = fractional
    notes = []
    if rotate is not None:
        from .rotation import default_retie, selection_analysis

        if retie is None:
            retie = default_retie(layout.sizes["hidden"], sizes["hidden"])
        reader, layout, note = _rotated(reader, adapter, rotate, sizes, wavelet, mode, retie,
                                        fractional=opts.get("fractional"),
                                        analysis=None if method == "bot" else
                                        selection_analysis(layout.sizes["hidden"], sizes["hidden"]))
        notes.append(note)
    shapes, records = {}, []
    for spec in layout.specs.values():  # plan every signal before touching data
        shapes[spec.name] = spec.target_shape(sizes)
        if method == "bot":
            botcore.plan(spec.shape, shapes[spec.name], wavelet=wavelet, mode=mode)
        records.append(Record(spec.name, spec.members, spec.roles, spec.shape, shapes[spec.name],
                              f"planned: {method}"))
    records += [Record("residual stream", (), (), (), (), note) for note in notes]
    need = estimate(layout, shapes, dtype, chunk_bytes=chunk_bytes,
                    tiled=lambda s: _tileable_early(layout, s, method, opts or match))
    if check is not None:
        check(need)
    matching = _matching(reader, layout, sizes, notes) if match else {}
    outputs = adapter.outputs(layout, shapes)
    tensors = [TensorInfo(o.name, o.shape, _out_dtype(o.dtype, dtype)) for o in outputs.values()]
    return Plan(adapter.family, dict(layout.sizes), sizes, _out_config(adapter, layout.config, sizes,
                dtype), records, tensors, need.peak, method, wavelet, gain,
                mode, dtype, reader, adapter, layout, shapes, outputs, notes, opts, matching)


def _matching(reader, layout: Layout, sizes: Mapping, notes: list) -> dict:
    """The unit orders of ``match=True`` (:mod:`botcore.adapters.matching`); notes what was done."""
    from .matching import matched_keys, plan_matching

    keys = matched_keys(layout, layout.sizes, sizes)
    if not keys:
        notes.append("match: nothing shrinks by a power of two; units kept in their order")
        return {}
    matching = plan_matching(reader, layout, layout.sizes, sizes)
    notes.append("match: " + ", ".join(f"{k} units aligned over blocks of {d} layers and grouped by {f}"
                                       for k, (d, f) in keys.items()))
    return matching


# -- running ----------------------------------------------------------------------------
def read_view(reader, view) -> np.ndarray:
    """One virtual parameter: a native tensor, transposed and/or cut to its rows."""
    if view.transpose:
        a = reader.read(view.native).T
        return a if view.rows is None else a[view.rows[0]:view.rows[1]]
    if view.rows is not None:
        return reader.read_rows(view.native, *view.rows)
    return reader.read(view.native)


def stack_dtype(layout: Layout, spec: Spec) -> np.dtype:
    """float64 when a member is stored in float64, else float32 (the compute dtype)."""
    names = [layout.dtype_for(layout.views[m].native) for m in spec.members]
    bad = [(m, d) for m, d in zip(spec.members, names) if d not in FLOAT_DTYPES]
    if bad:
        raise botcore.DTypeError(
            f"parameter {bad[0][0]!r} has dtype {bad[0][1]}, but signal {spec.name!r} needs "
            f"floating-point weights (expected one of {FLOAT_DTYPES}); re-save the checkpoint "
            "with float weights")
    return np.dtype("float64" if "float64" in {compute_dtype(d) for d in names} else "float32")


def _nonfinite_error(spec: Spec, bad: dict) -> NonFiniteError:
    shown = ", ".join(f"{n!r} ({c} of {t})" for n, (c, t) in list(bad.items())[:6])
    more = f" and {len(bad) - 6} more" if len(bad) > 6 else ""
    return NonFiniteError(
        f"the weights hold NaN or infinite values: {shown}{more} (signal {spec.name!r}, the first "
        "found; the check runs signal by signal as they are read); a resize "
        "would spread them into the output; repair the checkpoint, or pass allow_nonfinite=True "
        "(--allow-nonfinite) to keep them")


def read_stack(reader, layout: Layout, spec: Spec, *, allow_nonfinite: bool = False) -> np.ndarray:
    """Read one signal: its members, one at a time, into one compute-dtype array."""
    out = np.empty(spec.shape, stack_dtype(layout, spec))
    bad = {}
    for i, member in enumerate(spec.members):
        target = out[i] if spec.layered else out
        target[...] = read_view(reader, layout.views[member]).reshape(target.shape)
        finite = int(np.count_nonzero(np.isfinite(target)))
        if finite != target.size:
            bad[member] = (target.size - finite, target.size)
    if bad and not allow_nonfinite:
        raise _nonfinite_error(spec, bad)
    return out


class Emitter:
    """Cuts resized signals back into native tensors and hands them to the writer."""

    def __init__(self, outputs: Mapping, dtypes: Mapping, writer):
        self.writer = writer
        self.outputs = outputs
        self.dtypes = dict(dtypes)
        self.aliases: dict = {}
        for o in outputs.values():
            if o.alias_of is not None:
                self.aliases.setdefault(o.alias_of, []).append(o.name)
        self.pending: dict = {}

    def emit(self, spec: Spec, data: np.ndarray) -> None:
        native = spec.native_shape(tuple(data.shape))
        for i, name in enumerate(spec.names(data.shape[0] if spec.layered else 1)):
            arr = (data[i] if spec.layered else data).reshape(native)
            base = name.split("#", 1)[0]
            out = self.outputs[base]
            if len(out.parts) == 1:
                self._write(out, arr)
                continue
            parts = self.pending.setdefault(base, {})
            parts[name] = arr
            if len(parts) == len(out.parts):
                del self.pending[base]
                self._write(out, np.concatenate([parts[p] for p in out.parts], axis=0))

    def _write(self, out: NativeOut, arr: np.ndarray) -> None:
        if out.transpose:
            arr = arr.T
        arr = np.ascontiguousarray(arr).astype(numpy_dtype(self.dtypes[out.name]), copy=False)
        self.writer.write(out.name, arr)
        for alias in self.aliases.get(out.name, ()):
            self.writer.write(alias, arr)


def energy_kept(data: np.ndarray, out: np.ndarray, spec: Spec, shape, plan: Plan) -> float:
    """Share of a signal's energy the BoT resize kept (orthonormal coefficients).

    Computed from the resized ``out`` and the gain's known scale (``paper``,
    ``function``); ``std`` needs the paper-gain resize itself.
    """
    total = _sumsq(data)
    if total == 0:
        return 1.0
    p = botcore.plan(tuple(data.shape), tuple(shape), wavelet=plan.wavelet, mode=plan.mode)
    if plan.gain == "std":
        y = botcore.resize(data, shape, roles=spec.roles, wavelet=plan.wavelet, mode=plan.mode,
                           gain="paper", check_finite=False)
        return _sumsq(y) / total
    from botcore.resize import gain_factor

    scale = gain_factor(p, spec.roles, "paper") / gain_factor(p, spec.roles, plan.gain)
    return _sumsq(out) * scale * scale / total


def _tail_records(plan: Plan) -> list:
    layout = plan.layout
    out = [Record(a, (a,), (), (), (), f"tied to {t}: written as the resized copy of it (tie kept)")
           for a, t in layout.ties.items()]
    out += [Record(n, (n,), (), (), (), why) for n, why in layout.dropped.items()]
    return out + [r for r in plan.records if r.signal == "residual stream"]


def tied_head_factor(method: str, gain: str, src_hidden: int, dst_hidden: int) -> float:
    """Scale for the norm feeding a tied output head, so the resize keeps the function.

    An untied head is ``(fixed, in)``: its hidden axis keeps sums. A tied head is a
    copy of the embedding, whose hidden axis is ``out`` and keeps means; the two
    treatments differ by ``src_hidden / dst_hidden`` wherever the method keeps the
    function (``gain="function"``; the selection methods when they grow, which divide
    consumed copies). Elsewhere 1.

    >>> tied_head_factor("bot", "function", 576, 1152), tied_head_factor("bot", "std", 576, 1152)
    (0.5, 1.0)
    >>> tied_head_factor("net2net", "function", 384, 768), tied_head_factor("weight_selection", "x", 8, 4)
    (0.5, 1.0)
    """
    if src_hidden == dst_hidden:
        return 1.0
    if (method == "bot" and gain == "function") or (method != "bot" and dst_hidden > src_hidden):
        return src_hidden / dst_hidden
    return 1.0


def head_factor(plan: Plan, spec: Spec) -> float:
    """The function-keeping multiplier of ``spec`` in ``plan``.

    1 unless ``spec`` feeds a tied head or the model multiplies it by a power of
    ``hidden`` (:meth:`~botcore.adapters.base.Adapter.function_scale`, from
    :func:`tied_head_factor`'s ratio).
    """
    adapter = plan.adapter
    if spec.name not in adapter.head_norms and not adapter.hidden_power_of(spec.name):
        return 1.0
    ratio = tied_head_factor(plan.method, plan.gain, plan.source_sizes["hidden"], plan.sizes["hidden"])
    tied = spec.name in adapter.head_norms and adapter.head_is_tied(plan.layout)
    return adapter.function_scale(spec.name, ratio, head_tied=tied)


def _head_norm(plan: Plan, spec: Spec, out: np.ndarray, treatment: str):
    f = head_factor(plan, spec)
    if f == 1.0:
        return out, treatment
    why = ("it feeds the tied head" if spec.name in plan.adapter.head_norms else
           f"the model multiplies it by hidden**{plan.adapter.hidden_power_of(spec.name):g}")
    return out * out.dtype.type(f), treatment + f"; scaled by {f:g} ({why})"


def resize_one(plan: Plan, spec: Spec, *, allow_nonfinite: bool, measure: bool):
    """Read, check and resize one signal: ``(resized array, record)``."""
    shape = plan.shapes[spec.name]
    data = read_stack(plan.reader, plan.layout, spec, allow_nonfinite=allow_nonfinite)
    if plan.matching:
        data = permute_units(data, spec.rule.axis_dims, plan.matching)
    offset = plan.adapter.offset_of(spec.name) if tuple(shape) != tuple(spec.shape) else 0.0
    if offset:  # resize the value the model applies (Gemma: 1 + w), store it back minus the offset
        data += data.dtype.type(offset)
    zeroed = plan.adapter.zeroes_in_new_layers(spec.name, spec.rule, plan.shapes)
    out, treatment = resize_signal(data, spec.roles, shape, method=plan.method, wavelet=plan.wavelet,
                                   mode=plan.mode, gain=plan.gain, residual=zeroed,
                                   name=spec.name, **plan.options)
    if tuple(shape) == tuple(spec.shape) and plan.method == "bot":
        treatment += " (same size: unchanged)"
    energy = energy_kept(data, out, spec, shape, plan) if measure and plan.method == "bot" else None
    out, treatment = _head_norm(plan, spec, out, treatment)
    if offset:
        out = out - out.dtype.type(offset)
        treatment += f"; resized as {offset:g} + w (what the model applies), stored minus {offset:g}"
    return out, Record(spec.name, spec.members, spec.roles, spec.shape, tuple(shape), treatment,
                       energy)


def output_plan(plan: Plan, card: Mapping | None = None) -> OutputPlan:
    """What a writer is told before the first tensor (layout, config, provenance)."""
    base = plan.config.get("_name_or_path") or (Path(plan.reader.path).name if getattr(
        plan.reader, "path", None) else "")
    info = {"base_model": base, "method": plan.method, "gain": plan.gain, "wavelet": plan.wavelet,
            "notes": list(plan.notes)}
    info.update(card or {})
    return OutputPlan(plan.tensors, plan.config, plan.reader, plan.family, plan.sizes,
                      plan.source_sizes, info)


def run(plan: Plan, *, writer=None, progress=None, measure: bool = False,
        allow_nonfinite: bool = False, card: Mapping | None = None, scheduler=None,
        chunk_bytes: int | None = None):
    """Execute ``plan``: ``(result, records)``.

    ``result`` is the dict of resized parameters (no ``writer``: in memory, in the
    source's frameworks) or the output path the writer made appear. ``scheduler``
    (a ``dask.distributed`` address or Client) runs the jobs on a cluster
    (:mod:`botcore.adapters.execute`). Signals whose float32 stack exceeds
    ``chunk_bytes`` are resized through Dask block by block (needs a file writer;
    :mod:`botcore.adapters.tiles`).
    """
    from .execute import run_cluster, run_local

    memory = writer is None
    writer = MemoryWriter(getattr(plan.reader, "likes", None)) if memory else writer
    writer.begin(output_plan(plan, card))
    try:
        options = dict(progress=progress, allow_nonfinite=allow_nonfinite, measure=measure,
                       chunk_bytes=None if memory else chunk_bytes)
        # kept NaN/Inf (allow_nonfinite) make arithmetic warn; the user asked for them
        # ("warn" for all would also warn on underflow, which NumPy ignores by default)
        with np.errstate(all="ignore") if allow_nonfinite else contextlib.nullcontext():
            if scheduler is None:
                records = run_local(plan, writer, **options)
            else:
                records = run_cluster(plan, writer, scheduler, **options)
        result = writer.finish()
    except BaseException:
        writer.abort()
        raise
    return (writer.params if memory else result), records + _tail_records(plan)
