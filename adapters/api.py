"""``resize_model`` and ``plan_model``: the Python face of the one resize pipeline.

Contract: the whole model is planned (shapes only) before any tensor is resized,
so an impossible target fails fast with :class:`~botcore.TargetError`, and a
resize that cannot fit in memory or on disk is refused before any work
(:class:`~botcore.ResourceError`, :class:`~botcore.OutputError`). The source
(directory, file or mapping) is never modified. Every parameter gets a
treatment recorded in :attr:`ResizeResult.report`. With ``out=`` a complete
checkpoint is written atomically (a Hugging Face directory with sharded
safetensors, or the format ``out`` names); see :mod:`botcore.adapters.pipeline`.

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

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from botcore.errors import OptionError, OutputExistsError

from . import pipeline
from .io import open_reader, open_writer, output_format, source_format
from .pipeline import (
    DEFAULT_GAIN,
    SHRINK_FRACTIONAL,
    SHRINK_GAINS,
    Plan,
    Record,
    default_fractional,
    default_gain,
)
from .preflight import preflight

__all__ = ["DEFAULT_GAIN", "SHRINK_FRACTIONAL", "SHRINK_GAINS", "ModelPlan", "Record", "ResizeResult",
           "default_fractional", "default_gain", "plan_model", "resize_model"]

#: The plan :func:`plan_model` returns (an alias of :class:`botcore.adapters.pipeline.Plan`).
ModelPlan = Plan


class OutputParams(Mapping):
    """The parameters of a written output, read lazily (one tensor per access)."""

    def __init__(self, out: Path):
        self._reader = open_reader(out)

    def __getitem__(self, name):
        return self._reader.read(name)

    def __iter__(self):
        return iter(self._reader.tensors())

    def __len__(self):
        return len(self._reader.tensors())


@dataclass
class ResizeResult:
    """The resized checkpoint: ``params``, ``config``, per-signal ``report`` and ``out``.

    Iterating yields ``(params, config)``, so ``params, config = resize_model(...)`` works.
    With ``out=`` the parameters are not held in memory: ``params`` reads them
    from the written files on access.
    """

    params: Mapping
    config: dict
    report: list = field(default_factory=list)
    out: Path | None = None
    family: str = ""
    sizes: dict = field(default_factory=dict)
    source_sizes: dict = field(default_factory=dict)

    def __iter__(self):
        return iter((self.params, self.config))


def plan_model(source, target=None, *, method="bot", wavelet="haar", gain=None,
               mode="periodization", config=None, family=None, rotate=None,
               retie=None, dtype="keep") -> Plan:
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
    return pipeline.plan(source, target, method=method, wavelet=wavelet, gain=gain, mode=mode,
                         config=config, family=family, rotate=rotate, retie=retie, dtype=dtype)


def _check_out(source, out, overwrite: bool) -> None:
    if out is None:
        return
    if os.path.lexists(out) and not overwrite:
        raise OutputExistsError(
            f"out={str(out)!r} already exists; pass overwrite=True to replace it or choose "
            "another directory")
    if isinstance(source, (str, os.PathLike)) and os.path.exists(source):
        s, d = os.path.realpath(source), os.path.realpath(out)
        if s == d or s.startswith(d.rstrip(os.sep) + os.sep):
            raise OptionError(f"out={str(out)!r} is the source directory or holds it; the source is "
                              "never modified, so write the resized model elsewhere")


def _call_text(source, target, options: Mapping) -> str:
    shown = ", ".join(f"{k}={v!r}" for k, v in options.items() if v not in (None, False))
    return f"botcore.adapters.resize_model({str(source)!r}, {dict(target or {})!r}" + \
        (f", {shown})" if shown else ")")


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
    retie: bool | None = None,
    dtype: str = "keep",
    max_shard_size="5GB",
    max_memory=None,
    allow_nonfinite: bool = False,
    measure: bool = False,
    card: Mapping | None = None,
    depth_growth: str | None = None,
    detail_noise: float | None = None,
    seed: int = 0,
    heads: str | None = None,
    fractional: str | None = None,
    match: bool = False,
    scheduler=None,
    chunk_bytes="1GiB",
    quantize: str | None = None,
) -> ResizeResult:
    """Resize a checkpoint to ``target`` sizes.

    Parameters
    ----------
    source : path or mapping
        A Hugging Face model directory, a ``.safetensors`` or ``.bin`` file (with
        ``config=``), an ``.onnx`` graph, or a mapping of parameter names to numpy /
        torch / tensorflow / jax arrays (with ``config=``). Never modified.
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
        One of :data:`botcore.adapters.FAMILIES` (``"bert"``, ``"gpt2"``, ``"llama"``,
        ``"qwen3"``, ``"gemma"``, ``"gemma2"``, ``"gemma3"``, ``"phi3"``, ``"olmo2"``,
        ``"vit"``, ``"deit"``, ``"dinov2"``); detected when omitted.
    out : path, optional
        Write the result there, atomically: a Hugging Face directory (sharded
        safetensors, config, tokenizer, a fresh model card), or the format the
        path names. Without ``out`` the result is returned in memory.
    overwrite : bool, keyword-only
        Replace an existing ``out`` (only once the new output is complete).
    progress : callable, optional
        Called as ``progress(done, total, signal_name)`` after each signal.
    rotate : array-like, keyword-only, optional
        ``method="bot"``: the ``(hidden, hidden)`` second moments of the source's
        residual stream (:func:`botcore.adapters.rotation.residual_moments`). The
        stream is first rotated so that the hidden-size resize keeps its principal
        subspace: exactly for pre-norm families (RMSNorm, pre-LN LayerNorm),
        approximately for post-LN BERT (each LayerNorm gain on the stream becomes
        its closest diagonal; the variant that trained best on BERT shrinks).
        ``None`` (the default) resizes the weights as they are.
    retie : bool or None, keyword-only
        With ``rotate=`` and a tied LM head: ``True`` keeps the head tied, as the
        source config says, and replaces the final norm's gain by the closest
        diagonal one (exact when that gain is constant); ``False`` writes the head
        untied (one more ``vocab x hidden`` matrix) and keeps the function exactly.
        ``None`` (the default) re-ties when the hidden size shrinks and unties
        otherwise (:func:`botcore.adapters.rotation.default_retie`: what trained
        best in each direction, ``docs/transfer.md``).
    dtype : {"keep", "float32", "float16", "bfloat16"}, keyword-only
        Floating-point dtype of the output tensors; ``"keep"`` keeps each source dtype.
    max_shard_size : str or int, keyword-only
        Largest safetensors shard of a directory output (``"5GB"``, as transformers).
    max_memory : str or int, keyword-only
        Memory the resize may use (default: what the machine has available); a
        plan whose estimated peak exceeds it is refused before any work.
    allow_nonfinite : bool, keyword-only
        Keep NaN/Inf weights instead of refusing them (:class:`~botcore.NonFiniteError`).
    measure : bool, keyword-only
        Record in each report entry the share of the signal's energy the resize kept.
    card : mapping, keyword-only, optional
        Extra model-card fields (``command``: how the output was made).
    depth_growth, detail_noise, seed : keyword-only
        Growth options of ``method="bot"`` (:mod:`botcore.adapters.methods`):
        ``depth_growth="identity"`` inserts new layers whose residual writers are
        zero; ``detail_noise`` fills the detail bands of a growth with noise of
        that relative scale (seeded by ``seed`` and the signal's name).
    heads : {None, "select"}, keyword-only
        Hybrid of ``method="bot"`` (a transfer ablation, :mod:`botcore.adapters.methods`):
        ``heads="select"`` keeps whole attention heads by selection before the wavelet
        resize.
    fractional : {None, "area", "select"}, keyword-only
        How ``method="bot"`` does a non-dyadic step: ``"area"`` by the area
        resampling step, ``"select"`` by uniform selection (only the dyadic levels
        by the wavelet). ``None`` (the default): the family's measured default
        (:func:`default_fractional`: ``"select"`` for BERT shrinks, ``"area"``
        otherwise).
    match : bool, keyword-only
        ``method="bot"`` shrinks: first permute each layer's FFN neurons (and attention
        heads, except in grouped-query models) so that the units the Haar transform
        averages together (across a pair of layers, within a pair of units) are alike
        (:mod:`botcore.adapters.matching`). The permutation alone changes no output;
        only power-of-two ratios are matched. Default ``False``.
    scheduler : str or distributed.Client, keyword-only, optional
        Run the per-signal jobs on the workers of this Dask scheduler
        (``tcp://HOST:PORT``); needs ``out=`` on a file system the workers share.
        The output is bit-identical to a run in this process.
    chunk_bytes : str or int, keyword-only
        Signals whose float32 stack is larger than this (default ``"1GiB"``) are
        read, resized and written block by block through Dask, with ``out=``:
        memory then stays a few blocks whatever the model size. ``None`` keeps
        every signal in memory. Bit-identical either way.
    quantize : {None, "q8_0"}, keyword-only
        GGUF output only: store the 2-D tensors as Q8_0 (``botcore.adapters.io.gguf``).

    Returns
    -------
    ResizeResult

    Raises
    ------
    TargetError, OptionError, UnsupportedModelError, ParameterKeyError, WaveletError, ModeError,
    NonFiniteError, ResourceError, OutputError
    """
    if rotate is not None and isinstance(source, (str, Path)) and str(source).endswith(".onnx"):
        raise OptionError("rotate= is not offered for ONNX graphs; resize the PyTorch / "
                          "safetensors checkpoint instead, or pass rotate=None")
    _check_out(source, out, overwrite)
    from .execute import check_scheduler

    check_scheduler(scheduler)
    plan = pipeline.plan(source, target, method=method, wavelet=wavelet, gain=gain, mode=mode,
                         config=config, family=family, rotate=rotate, retie=retie, dtype=dtype,
                         check=lambda need: preflight(need, out=out, max_memory=max_memory),
                         options=dict(depth_growth=depth_growth, detail_noise=detail_noise,
                                      seed=seed if (depth_growth or detail_noise) else None,
                                      heads=heads, fractional=fractional),
                         chunk_bytes=_chunk(chunk_bytes) if out is not None else None, match=match)
    writer = None
    if out is not None:
        fmt = output_format(out, source_format(source))
        options = {"max_shard_size": max_shard_size} if fmt == "hf" else {}
        if quantize is not None:
            if fmt != "gguf":
                raise OptionError(f"quantize={quantize!r} applies to GGUF outputs only, but out="
                                  f"{str(out)!r} is written as {fmt}; name a .gguf file or leave it out")
            options["quantize"] = quantize
        writer = open_writer(out, source_fmt=source_format(source), fmt=fmt, overwrite=overwrite,
                             **options)
    info = {"command": _call_text(source, target, dict(method=method, wavelet=wavelet, gain=gain,
                                                         dtype=None if dtype == "keep" else dtype))}
    info.update(card or {})
    result, report = pipeline.run(plan, writer=writer, progress=progress, measure=measure,
                                  allow_nonfinite=allow_nonfinite, card=info, scheduler=scheduler,
                                  chunk_bytes=_chunk(chunk_bytes))
    params = result if out is None else OutputParams(Path(result))
    return ResizeResult(params, plan.config, report, None if out is None else Path(result),
                        plan.family, plan.sizes, plan.source_sizes)


def _chunk(chunk_bytes) -> int | None:
    if chunk_bytes is None:
        return None
    from .io.hf import parse_size

    return parse_size(chunk_bytes)
