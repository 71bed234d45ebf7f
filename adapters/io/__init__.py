"""Checkpoint formats: one reader and/or writer per format, chosen from the source and output.

Contract: :func:`open_reader` turns what a user passes as ``source`` (a path or an
in-memory object) into a :class:`~botcore.adapters.io.base.Reader`;
:func:`open_writer` turns ``out`` into a :class:`~botcore.adapters.io.base.Writer`.
The choice is made from the path (suffix, folder contents) or the object's type,
and can be forced with ``fmt=``. Format modules are imported only when chosen,
so a format's dependency (``gguf``, ``onnx``, ``keras``) is needed only for it.

==================== ===================================== ==================================
format               source                                out
==================== ===================================== ==================================
``hf``               model directory (safetensors shards,  a directory (sharded safetensors
                     ``pytorch_model.bin``), ``.safetensors``  + index, config, tokenizer,
                     / ``.bin`` file (with ``config=``)    model card)
``mapping``          dict of numpy/torch/tf/jax arrays     (in memory: no ``out``)
``gguf``             ``.gguf`` file                        ``.gguf`` file
``onnx``             ``.onnx`` file                        ``.onnx`` file (ONNX sources only)
``keras``            keras_hub preset folder or Backbone   keras_hub preset folder
==================== ===================================== ==================================
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path

from botcore.errors import OptionError, UnsupportedModelError

from .base import OutputPlan, Reader, TensorInfo, Writer

__all__ = ["FORMATS", "OutputPlan", "Reader", "TensorInfo", "Writer", "open_reader", "open_writer",
           "source_format"]

#: format name -> module of this package that implements it.
FORMATS = {"hf": "hf", "mapping": "mapping", "gguf": "gguf", "onnx": "onnx", "keras": "keras"}


def _module(fmt: str):
    if fmt not in FORMATS:
        raise OptionError(f"format {fmt!r} is not offered; expected one of {tuple(FORMATS)}")
    return importlib.import_module(f"{__package__}.{FORMATS[fmt]}")


def _is_keras_object(source) -> bool:
    return any(c.__module__.split(".")[0] in ("keras", "keras_hub") for c in type(source).__mro__)


def _keras_preset(path: Path) -> bool:
    return (path / "model.weights.h5").is_file() or (path / "metadata.json").is_file()


def source_format(source) -> str:
    """The format name of ``source`` (see the module table); raises for anything unknown."""
    if hasattr(source, "read_rows") and hasattr(source, "format"):
        return source.format  # an open reader
    if isinstance(source, Mapping):
        return "mapping"
    if _is_keras_object(source):
        return "keras"
    if not isinstance(source, (str, Path)) and not hasattr(source, "__fspath__"):
        raise OptionError(
            f"source must be a path (model directory, .safetensors, .bin, .gguf, .onnx, keras "
            f"preset) or a mapping of arrays, got {type(source).__name__}"
        )
    path = Path(source)
    suffix = path.suffix.lower()
    if suffix == ".gguf":
        return "gguf"
    if suffix == ".onnx":
        return "onnx"
    if path.is_dir() and _keras_preset(path):
        return "keras"
    return "hf"


def open_reader(source, *, config=None, fmt: str | None = None) -> Reader:
    """Open ``source`` for lazy reading; ``config`` overrides or supplies the model config."""
    fmt = fmt or source_format(source)
    return _module(fmt).open_reader(source, config=config)


def output_format(out, source_fmt: str) -> str:
    """The format an output path is written in: by suffix, else the source's family of formats."""
    suffix = Path(out).suffix.lower()
    if suffix == ".gguf":
        return "gguf"
    if suffix == ".onnx":
        if source_fmt != "onnx":
            raise UnsupportedModelError(
                f"out={str(out)!r} asks for an ONNX graph, but the source is a {source_fmt} "
                "checkpoint; ONNX outputs are rewritten source graphs: resize the .onnx export, "
                "or write a directory and export it"
            )
        return "onnx"
    if source_fmt == "onnx":
        raise UnsupportedModelError(
            f"the source is an ONNX graph, so out={str(out)!r} must be an .onnx path"
        )
    return "keras" if source_fmt == "keras" else "hf"


def open_writer(out, *, source_fmt: str, fmt: str | None = None, overwrite: bool = False,
                **options) -> Writer:
    """A writer for ``out``; ``options`` are the format's (e.g. ``max_shard_size`` for hf)."""
    fmt = fmt or output_format(out, source_fmt)
    return _module(fmt).open_writer(out, overwrite=overwrite, **options)
