"""The seam between checkpoint formats and the one resize pipeline: readers and writers.

Contract. Every format is a :class:`Reader` and/or a :class:`Writer`; the pipeline
(:mod:`botcore.adapters.pipeline`) plans the whole model from a reader's
:class:`TensorInfo` records (names, shapes, dtypes: no data), then reads, resizes
and writes one role at a time. A format never resolves sizes or resizes anything.

A **reader** presents a checkpoint under Hugging Face parameter names and
layouts (GGUF, Keras and ONNX readers translate theirs), with a Hugging Face
style ``config`` dict (``model_type`` and the family's size keys):

* ``tensors()`` lists every tensor, in a stable order, without reading data;
* ``read(name)`` returns one tensor as a new NumPy array in its stored dtype
  (``ml_dtypes.bfloat16`` for bfloat16; quantised GGUF tensors dequantised to
  float32); ``read_rows(name, start, stop)`` returns rows ``start:stop`` of its
  first axis, so a tensor larger than memory can be read tile by tile;
* ``copy_extras(dest)`` writes the non-weight files a Hugging Face directory
  needs (tokenizer, generation config, ...) into ``dest``; ``meta`` holds the
  format's own metadata (e.g. GGUF key/values) for a writer of the same format;
* it never writes to the source, and ``close()`` releases file handles.

A **writer** receives an :class:`OutputPlan` first (every output tensor's name,
shape and dtype, the target config, the source reader), so it can lay out
files, headers and offsets before any data exists; then ``write(name, array)``
once per tensor (or ``write_rows`` tiles that cover it exactly), in any order,
with final values in the planned dtype; ``finish()`` makes the output appear
atomically at its path and returns that path; ``abort()`` removes everything
staged. A writer never leaves a partial output under the user's name.

Examples
--------
>>> info = TensorInfo("model.norm.weight", (576,), "bfloat16")
>>> info.nbytes, info.numel
(1152, 576)
>>> itemsize("float32"), itemsize("bfloat16"), itemsize("int64")
(4, 2, 8)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["OutputPlan", "Reader", "TensorInfo", "Writer", "itemsize", "numpy_dtype"]

_ITEMSIZE = {"bfloat16": 2, "float16": 2, "float32": 4, "float64": 8, "int8": 1, "uint8": 1,
             "int16": 2, "int32": 4, "int64": 8, "bool": 1}


def itemsize(dtype: str) -> int:
    """Bytes per element of a dtype name (``bfloat16`` included, without ml_dtypes)."""
    try:
        return _ITEMSIZE[dtype]
    except KeyError:
        return np.dtype(dtype).itemsize


def numpy_dtype(dtype: str) -> np.dtype:
    """The NumPy dtype object of a dtype name; ``bfloat16`` is ``ml_dtypes.bfloat16``.

    >>> numpy_dtype("bfloat16").name, numpy_dtype("float16").name
    ('bfloat16', 'float16')
    """
    if dtype == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(dtype)


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a checkpoint, described without its data.

    ``rule`` lets a reader declare the treatment of a tensor that no family
    adapter knows (an ONNX graph's extra convolution, a Keras head): a pair
    ``(dims, roles)`` in :class:`botcore.adapters.base.Rule` syntax, e.g.
    ``("_,hidden", "fixed,in")`` for a classifier reading the hidden stream.
    ``None`` (the default) leaves the tensor to the family's rules.
    """

    name: str
    shape: tuple
    dtype: str
    rule: tuple | None = None

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * itemsize(self.dtype)


@runtime_checkable
class Reader(Protocol):
    """A checkpoint opened for lazy reading (see the module docstring)."""

    format: str
    path: Path | None
    config: dict
    meta: dict

    def tensors(self) -> dict[str, TensorInfo]: ...

    def read(self, name: str) -> np.ndarray: ...

    def read_rows(self, name: str, start: int, stop: int) -> np.ndarray: ...

    def copy_extras(self, dest: Path) -> list[str]: ...

    def close(self) -> None: ...


@dataclass
class OutputPlan:
    """Everything a writer needs before the first tensor: layout, config, provenance.

    Attributes
    ----------
    tensors : list of TensorInfo
        Every output tensor in the order the pipeline produces them.
    config : dict
        The target's Hugging Face config.
    reader : Reader
        The source (for extras, metadata, tokenizer).
    family : str
        The adapter family (``"llama"``, ``"bert"``, ...).
    sizes, source_sizes : dict
        Target and source model sizes (:data:`botcore.names.SIZES`).
    card : dict
        Provenance for a model card: method, gain, wavelet, command, ...
    """

    tensors: list
    config: dict
    reader: Any
    family: str = ""
    sizes: dict = field(default_factory=dict)
    source_sizes: dict = field(default_factory=dict)
    card: dict = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)


@runtime_checkable
class Writer(Protocol):
    """A checkpoint being written (see the module docstring)."""

    path: Path

    def begin(self, plan: OutputPlan) -> None: ...

    def write(self, name: str, array: np.ndarray) -> None: ...

    def write_rows(self, name: str, start: int, array: np.ndarray) -> None: ...

    def finish(self) -> Path: ...

    def abort(self) -> None: ...
