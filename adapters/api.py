"""``resize_model``: resize a whole checkpoint to a model-level target.

Contract: the whole model is planned (shapes only, with :func:`botcore.plan`)
before any tensor is resized, so an impossible target fails fast with
:class:`~botcore.TargetError`. The source (directory, file or mapping) is never
modified. Every parameter gets a treatment recorded in
:attr:`ResizeResult.report`. With ``out=`` a complete Hugging Face directory is
written atomically (see :mod:`botcore.adapters.checkpoint`).

Examples
--------
>>> import numpy as np
>>> from botcore.adapters import resize_model
>>> rng = np.random.default_rng(0)
>>> cfg = dict(model_type="bert", num_hidden_layers=2, hidden_size=8, num_attention_heads=2,
...            intermediate_size=16)
>>> L = "encoder.layer.{}."
>>> params = {}
>>> for i in range(2):
...     for n, s in [("attention.self.query", (8, 8)), ("attention.self.key", (8, 8)),
...                  ("attention.self.value", (8, 8)), ("attention.output.dense", (8, 8)),
...                  ("intermediate.dense", (16, 8)), ("output.dense", (8, 16))]:
...         params[L.format(i) + n + ".weight"] = rng.normal(size=s).astype(np.float32)
...         params[L.format(i) + n + ".bias"] = np.zeros(s[0], np.float32)
>>> new, config = resize_model(params, {"layers": 1, "hidden": 4}, config=cfg)
>>> new["encoder.layer.0.intermediate.dense.weight"].shape, config["num_attention_heads"]
((8, 4), 1)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import botcore
from botcore._checks import check_option
from botcore.errors import OptionError, TargetError, UnsupportedModelError
from botcore.signal import WeightSignal

from .checkpoint import load_source, write_directory
from .methods import METHODS, resize_signal
from .registry import detect_family, get_adapter
from .rotation import rotate_residual
from .targets import resolve_target

__all__ = [
    "DEFAULT_GAIN",
    "SHRINK_GAINS",
    "ModelPlan",
    "Record",
    "ResizeResult",
    "default_gain",
    "plan_model",
    "resize_model",
]

#: The gain :func:`resize_model` uses when growing, and for families without a
#: measured shrink default. Set by the transfer benchmark (``docs/transfer.md``):
#: it is the only gain that never failed badly, and it keeps a grown model's function.
DEFAULT_GAIN = "function"

#: The gain :func:`resize_model` uses when shrinking, per family, from the transfer
#: benchmark (docs/transfer.md): ``"std"`` led ``"function"`` by 8 points of FLOPs
#: saved on BERT (all-MiniLM-L6-v2 -> 3x192, 500 steps) and 10 on the ViT shrink;
#: ``"function"`` led ``"std"`` by 14 on the SmolLM2 decoder (160 steps), where
#: ``"paper"`` never trained back to scratch's loss. GPT-2 follows the pre-norm
#: decoder, DeiT and DINOv2 follow ViT (not measured separately).
SHRINK_GAINS = {
    "bert": "std",
    "vit": "std",
    "deit": "std",
    "dinov2": "std",
    "llama": "function",
    "gpt2": "function",
}


def default_gain(family: str, source_sizes: Mapping, target_sizes: Mapping) -> str:
    """The gain :func:`resize_model` uses when ``gain=None``.

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
    src_h, dst_h = source_sizes.get("hidden"), target_sizes.get("hidden")
    shrinking = dst_h < src_h if dst_h != src_h else \
        target_sizes.get("layers", 0) < source_sizes.get("layers", 0)
    return SHRINK_GAINS.get(family, DEFAULT_GAIN) if shrinking else DEFAULT_GAIN


@dataclass(frozen=True)
class Record:
    """What happened to one canonical signal (or one tied / dropped parameter)."""

    signal: str
    names: tuple
    roles: tuple
    source_shape: tuple
    target_shape: tuple
    treatment: str


@dataclass
class ResizeResult:
    """The resized checkpoint: ``params``, ``config``, per-signal ``report`` and ``out``.

    Iterating yields ``(params, config)``, so ``params, config = resize_model(...)`` works.
    """

    params: dict
    config: dict
    report: list = field(default_factory=list)
    out: Path | None = None
    family: str = ""
    sizes: dict = field(default_factory=dict)
    source_sizes: dict = field(default_factory=dict)

    def __iter__(self):
        return iter((self.params, self.config))


@dataclass
class ModelPlan:
    """A shape-only plan of a resize: what :func:`resize_model` would do, without doing it.

    ``records`` has one :class:`Record` per signal (treatment ``"planned: <method>"``);
    ``config`` is the config the resized model would get.
    """

    family: str
    source_sizes: dict
    sizes: dict
    config: dict
    records: list
    adapter: object = field(repr=False, default=None)
    layout: object = field(repr=False, default=None)
    signals: dict = field(repr=False, default_factory=dict)
    shapes: dict = field(repr=False, default_factory=dict)
    source_dir: Path | None = None
    gain: str = DEFAULT_GAIN


def _check_net2net(src: dict, dst: dict) -> None:
    shrinking = [f"{k} {src[k]} -> {dst[k]}" for k in src if dst[k] < src[k]]
    if shrinking:
        raise TargetError(
            f"method='net2net' only grows a model, but the target shrinks {', '.join(shrinking)}; "
            "use method='bot', 'weight_selection' or 'layer_select' to shrink"
        )


def _prepare(source, target, *, method, wavelet, gain, mode, config, family, rotate=None) -> ModelPlan:
    check_option(method, METHODS, "method")
    if rotate is not None and method != "bot":
        raise OptionError(f"rotate= is an option of method='bot', not of method={method!r}; "
                          "pass rotate=None")
    if gain is not None:
        check_option(gain, botcore.GAINS, "gain")
    if target is not None and not isinstance(target, Mapping):
        raise TargetError(
            f"target must be a mapping such as {{'layers': 6, 'hidden': 384}}, "
            f"got {type(target).__name__}"
        )
    params, config, source_dir = load_source(source, config)
    family = family or detect_family(params, config)
    adapter = get_adapter(family)
    layout, signals = adapter.analyse(params, config)
    sizes = resolve_target(layout.sizes, target, gqa=adapter.gqa,
                           free_head_dim=adapter.free_head_dim)
    if method == "net2net":
        _check_net2net(layout.sizes, sizes)
    if gain is None:
        gain = default_gain(adapter.family, layout.sizes, sizes)
    notes = []
    if rotate is not None:
        if adapter.family != "llama":
            raise UnsupportedModelError(
                f"rotate= needs RMSNorm (Llama-family decoders); {adapter.family} uses "
                "LayerNorm, which an orthogonal rotation does not commute with; pass rotate=None"
            )
        untied = bool(config.get("tie_word_embeddings")) or "lm_head.weight" in layout.ties
        params, config = rotate_residual(params, config, rotate, target_hidden=sizes["hidden"],
                                         wavelet=wavelet, mode=mode)
        layout, signals = adapter.analyse(params, config)
        notes.append("rotated onto its principal subspace before the resize (rotate=): RMSNorm "
                     "gains folded into the readers (now ones)" + ("; the tied LM head is written "
                                                                   "untied" if untied else ""))
    new_config = adapter.write_config(config, sizes)
    shapes, records = {}, []
    for spec in layout.specs.values():  # plan the whole model before touching data
        shapes[spec.name] = spec.target_shape(sizes)
        if method == "bot":
            botcore.plan(spec.shape, shapes[spec.name], wavelet=wavelet, mode=mode)
        records.append(Record(spec.name, spec.members, spec.roles, spec.shape,
                              shapes[spec.name], f"planned: {method}"))
    records += [Record("residual stream", (), (), (), (), note) for note in notes]
    return ModelPlan(adapter.family, dict(layout.sizes), sizes, new_config, records, adapter,
                     layout, signals, shapes, source_dir, gain)


def plan_model(source, target=None, *, method="bot", wavelet="haar", gain=None,
               mode="periodization", config=None, family=None, rotate=None) -> ModelPlan:
    """Plan a resize from shapes only and validate it, without resizing any tensor.

    Takes the arguments of :func:`resize_model` (no ``out``); raises the same errors.

    Examples
    --------
    >>> import numpy as np
    >>> cfg = dict(model_type="llama", num_hidden_layers=2, hidden_size=8,
    ...            num_attention_heads=4, num_key_value_heads=2, intermediate_size=16)
    >>> params = {f"model.layers.{i}.self_attn.k_proj.weight": np.zeros((4, 8), np.float32)
    ...           for i in range(2)}
    >>> p = plan_model(params, {"hidden": 16}, config=cfg)
    >>> p.sizes["kv_heads"], p.records[0].target_shape, p.config["num_key_value_heads"]
    (4, (2, 4, 2, 16), 4)
    """
    return _prepare(source, target, method=method, wavelet=wavelet, gain=gain, mode=mode,
                    config=config, family=family, rotate=rotate)


def resize_model(
    source,
    target=None,
    *,
    method: str = "bot",
    wavelet: str = "haar",
    gain: str | None = None,
    mode: str = "periodization",
    config=None,
    family: str | None = None,
    out=None,
    overwrite: bool = False,
    progress=None,
    rotate=None,
) -> ResizeResult:
    """Resize a checkpoint to ``target`` sizes.

    Parameters
    ----------
    source : path or mapping
        A Hugging Face model directory, a ``.safetensors`` file (with ``config=``),
        an ``.onnx`` graph, or a mapping of parameter names to numpy / torch /
        tensorflow / jax arrays (with ``config=``). Never modified.
    target : mapping, optional
        Any of ``layers, hidden, heads, kv_heads, head_dim, ffn``; the rest follow
        :func:`botcore.adapters.targets.resolve_target`. ``None`` keeps every size.
    method : {"bot", "weight_selection", "layer_select", "net2net"}, keyword-only
        See :mod:`botcore.adapters.methods`.
    wavelet, gain, mode : str, keyword-only
        Passed to :func:`botcore.resize` (``method="bot"`` only). ``gain=None``
        (the default) picks the measured default for the family and direction:
        :func:`default_gain`.
    config : mapping or PretrainedConfig, optional
        The Hugging Face config; read from ``config.json`` for directories.
    family : str, optional
        ``"bert"``, ``"gpt2"``, ``"llama"``, ``"vit"``, ``"deit"`` or ``"dinov2"``;
        detected when omitted.
    out : path, optional
        Write a loadable Hugging Face directory there (atomically).
    overwrite : bool, keyword-only
        Replace an existing ``out``.
    progress : callable, optional
        Called as ``progress(done, total, signal_name)`` after each signal.
    rotate : array-like, keyword-only, optional
        ``method="bot"``, Llama family: the ``(hidden, hidden)`` second moments of
        the source's residual stream (:func:`botcore.adapters.rotation.residual_moments`).
        The stream is first rotated, exactly, so that the hidden-size resize keeps
        its principal subspace; a tied LM head comes out untied. ``None`` (the
        default) resizes the weights as they are.

    Returns
    -------
    ResizeResult

    Raises
    ------
    TargetError, OptionError, UnsupportedModelError, ParameterKeyError, WaveletError, ModeError
    """
    if isinstance(source, (str, Path)) and str(source).endswith(".onnx"):
        from .onnx import resize_onnx_model

        if rotate is not None:
            raise OptionError("rotate= is not offered for ONNX graphs; resize the PyTorch / "
                              "safetensors checkpoint instead, or pass rotate=None")
        return resize_onnx_model(source, target, method=method, wavelet=wavelet, gain=gain,
                                 mode=mode, out=out, overwrite=overwrite, progress=progress)
    if out is not None and Path(out).exists() and not overwrite:
        raise OptionError(
            f"out={str(out)!r} already exists; pass overwrite=True to replace it or choose "
            "another directory"
        )
    if (out is not None and isinstance(source, (str, Path)) and Path(source).is_dir()
            and Path(out).resolve() == Path(source).resolve()):
        raise OptionError(
            f"out={str(out)!r} is the source directory; write the resized model elsewhere"
        )
    prep = _prepare(source, target, method=method, wavelet=wavelet, gain=gain, mode=mode,
                    config=config, family=family, rotate=rotate)
    adapter, layout, signals, sizes, shapes = prep.adapter, prep.layout, prep.signals, \
        prep.sizes, prep.shapes
    gain = prep.gain
    resized, report = {}, []
    total = len(layout.specs)
    for done, spec in enumerate(layout.specs.values(), 1):
        sig = signals[spec.name]
        data, treatment = resize_signal(
            sig.data, spec.roles, shapes[spec.name], method=method, wavelet=wavelet, mode=mode,
            gain=gain, residual=spec.rule.residual,
        )
        resized[spec.name] = WeightSignal(data, spec.roles, spec.name)
        if shapes[spec.name] == spec.shape and method == "bot":
            treatment += " (same size: unchanged)"
        report.append(Record(spec.name, spec.members, spec.roles, spec.shape,
                             shapes[spec.name], treatment))
        if progress is not None:
            progress(done, total, spec.name)
    for alias, target_name in layout.ties.items():
        report.append(Record(alias, (alias,), (), (), (), f"tied to {target_name}: written as "
                             "the resized copy of it (tie kept)"))
    for name, reason in layout.dropped.items():
        report.append(Record(name, (name,), (), (), (), reason))
    report += [r for r in prep.records if r.signal == "residual stream"]
    new_params = adapter.emit(layout, resized)
    written = None
    if out is not None:
        written = write_directory(out, new_params, prep.config, source_dir=prep.source_dir,
                                  overwrite=overwrite, hidden=sizes["hidden"])
    return ResizeResult(new_params, prep.config, report, written, adapter.family, sizes,
                        dict(layout.sizes))
