"""Whole-model signals in memory: ``to_signals`` / ``from_signals`` on the pipeline's pieces.

Contract: :func:`to_signals` reads every canonical signal of an in-memory
checkpoint (one :class:`~botcore.WeightSignal` per role, stacked over layers,
in the compute dtype); :func:`from_signals` cuts (possibly resized) signals back
into native parameters named, typed and placed like ``like_params`` — the same
layout, views and emission the streaming pipeline uses, so the two agree by
construction. Inputs are never modified.

Examples
--------
>>> import numpy as np
>>> cfg = dict(model_type="llama", num_hidden_layers=2, hidden_size=4,
...            num_attention_heads=2, num_key_value_heads=1, intermediate_size=8)
>>> p = {f"model.layers.{i}.mlp.up_proj.weight": np.full((8, 4), i, np.float16) for i in range(2)}
>>> s = to_signals(p, cfg)
>>> s["ffn_in"].shape, s["ffn_in"].roles
((2, 8, 4), ('depth', 'out', 'in'))
>>> back = from_signals(s, p, cfg)
>>> back["model.layers.1.mlp.up_proj.weight"].dtype, float(back["model.layers.1.mlp.up_proj.weight"][0, 0])
(dtype('float16'), 1.0)
"""

from __future__ import annotations

from botcore.signal import WeightSignal

from ._arrays import framework_of, to_numpy
from .io.mapping import MappingReader, MemoryWriter
from .pipeline import Emitter, confirm_ties, read_stack
from .registry import detect_family, get_adapter

__all__ = ["from_signals", "to_signals"]


def _open(params, config, family):
    reader = MappingReader(params, config=config)
    adapter = get_adapter(family or detect_family(reader.tensors(), reader.config))
    layout = adapter.layout(reader.tensors(), reader.config, ties=confirm_ties(reader, adapter))
    return reader, adapter, layout


def to_signals(params, config, *, family=None) -> dict:
    """``{signal name: WeightSignal}`` of ``params`` (see the module docstring)."""
    reader, _, layout = _open(params, config, family)
    return {spec.name: WeightSignal(read_stack(reader, layout, spec, allow_nonfinite=True),
                                    spec.roles, spec.name)
            for spec in layout.specs.values()}


def _array(sig):
    data = getattr(sig, "data", sig)
    return data if framework_of(data) == "numpy" else to_numpy(data)[0]


def from_signals(signals, like_params, config, *, family=None) -> dict:
    """Native parameters named like ``like_params`` from ``signals`` (see the module docstring)."""
    reader, adapter, layout = _open(like_params, config, family)
    arrays = {spec.name: _array(signals[spec.name]) for spec in layout.specs.values()}
    outputs = adapter.outputs(layout, {name: a.shape for name, a in arrays.items()})
    writer = MemoryWriter(reader.likes)
    emitter = Emitter(outputs, {o.name: o.dtype for o in outputs.values()}, writer)
    for spec in layout.specs.values():
        emitter.emit(spec, arrays[spec.name])
    return writer.params
