"""Reading checkpoints and writing resized Hugging Face directories atomically.

Contract:

* :func:`load_source` accepts a Hugging Face model directory (``config.json`` and
  ``model.safetensors``, a sharded ``model.safetensors.index.json``, or
  ``pytorch_model.bin`` read with ``torch.load(weights_only=True)``), a single
  ``.safetensors`` file (``config=`` required) or an in-memory mapping of
  arrays (``config=`` required). Safetensors are read as NumPy arrays.
* :func:`write_directory` writes ``config.json``, ``model.safetensors`` and the
  source directory's non-weight files (tokenizer, sentence-transformers module
  configs, README, ...) into a temporary folder beside ``out`` and renames it
  into place: ``out`` is either the complete new directory or untouched. An
  existing ``out`` is refused unless ``overwrite=True``. Weight files of other
  formats (``.bin``, ``.onnx``, ``.gguf``, ``.h5``, ...) are not copied, because
  they would still hold the source's sizes.

Examples
--------
>>> import numpy as np, tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp()) / "tiny"
>>> write_directory(d, {"w": np.ones(2, np.float32)}, {"model_type": "bert"}).name
'tiny'
>>> sorted(p.name for p in d.iterdir())
['config.json', 'model.safetensors']
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from botcore._files import default_permissions
from botcore.errors import OptionError, UnsupportedModelError

from ._arrays import to_numpy

__all__ = ["WEIGHT_SUFFIXES", "load_source", "write_directory"]

#: Files never copied from a source directory (they hold weights of the old sizes).
WEIGHT_SUFFIXES = (
    ".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx", ".onnx_data",
    ".gguf", ".index.json", ".pb", ".tflite", ".mlmodel", ".ot", ".npz",
)
_SKIP_DIRS = {"onnx", "openvino", "coreml", "tf", "flax", ".git", "__pycache__"}


def _read_safetensors(path: Path) -> dict:
    from safetensors.numpy import load_file

    return load_file(str(path))


def _load_weights(folder: Path) -> dict:
    single = folder / "model.safetensors"
    index = folder / "model.safetensors.index.json"
    if single.is_file():
        return _read_safetensors(single)
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        params = {}
        for shard in shards:
            params.update(_read_safetensors(folder / shard))
        return params
    binary = folder / "pytorch_model.bin"
    if binary.is_file():
        import torch

        state = torch.load(str(binary), map_location="cpu", weights_only=True)
        params = {}
        for k, v in state.items():
            a, like = to_numpy(v)
            if like.dtype == "bfloat16":
                import ml_dtypes

                a = a.astype(ml_dtypes.bfloat16)
            params[k] = a
        return params
    raise UnsupportedModelError(
        f"{folder} has no model.safetensors, model.safetensors.index.json or "
        "pytorch_model.bin; point source= at a Hugging Face model directory"
    )


def _plain_config(config) -> dict:
    if config is None:
        return None
    if hasattr(config, "to_dict"):
        return dict(config.to_dict())
    if isinstance(config, Mapping):
        return dict(config)
    raise OptionError(
        f"config= must be a mapping of Hugging Face config keys (or a PretrainedConfig), "
        f"got {type(config).__name__}"
    )


def load_source(source, config=None) -> tuple[dict, dict, Path | None]:
    """``(params, config, source_dir)`` for a directory, a safetensors file or a mapping."""
    config = _plain_config(config)
    if isinstance(source, Mapping):
        if config is None:
            raise OptionError(
                "source is an in-memory mapping, so config= is required: pass a dict of the "
                "model's Hugging Face config keys (e.g. model.config.to_dict())"
            )
        return dict(source), config, None
    if not isinstance(source, (str, os.PathLike)):
        raise OptionError(
            f"source must be a model directory, a .safetensors path or a mapping of arrays, "
            f"got {type(source).__name__}"
        )
    path = Path(source)
    if path.is_dir():
        cfg_file = path / "config.json"
        if config is None:
            if not cfg_file.is_file():
                raise UnsupportedModelError(
                    f"{path} has no config.json; pass config= with the model's config keys"
                )
            config = json.loads(cfg_file.read_text())
        return _load_weights(path), config, path
    if path.is_file() and path.suffix == ".safetensors":
        if config is None:
            raise OptionError(
                f"{path} is a bare safetensors file, so config= is required: pass a dict of "
                "the model's Hugging Face config keys"
            )
        return _read_safetensors(path), config, None
    raise UnsupportedModelError(
        f"source {str(path)!r} is neither a model directory nor a .safetensors file "
        "(nor an .onnx graph); check the path"
    )


def _save_params(params: Mapping, path: Path) -> None:
    arrays = {}
    for name, x in params.items():
        a, like = to_numpy(x)
        if like.dtype == "bfloat16":
            import ml_dtypes

            a = a.astype(ml_dtypes.bfloat16)
        arrays[name] = np.ascontiguousarray(a)
    from safetensors.numpy import save_file

    save_file(arrays, str(path), metadata={"format": "pt"})


def _copy_extras(source_dir: Path, dest: Path, hidden: int | None) -> list[str]:
    copied = []
    for item in sorted(source_dir.iterdir()):
        name = item.name
        if name == "config.json" or name.endswith(WEIGHT_SUFFIXES):
            continue
        if item.is_dir():
            if name in _SKIP_DIRS:
                continue
            shutil.copytree(item, dest / name, ignore=shutil.ignore_patterns(*(
                "*" + s for s in WEIGHT_SUFFIXES)))
        else:
            shutil.copy2(item, dest / name)
        copied.append(name)
    pooling = dest / "1_Pooling" / "config.json"
    if hidden is not None and pooling.is_file():  # sentence-transformers pooling width
        cfg = json.loads(pooling.read_text())
        if "word_embedding_dimension" in cfg:
            cfg["word_embedding_dimension"] = hidden
            pooling.write_text(json.dumps(cfg, indent=2))
    return copied


def write_directory(out, params: Mapping, config: Mapping, *, source_dir=None,
                    overwrite: bool = False, hidden: int | None = None) -> Path:
    """Write a Hugging Face directory at ``out`` atomically; returns ``out`` as a Path.

    Raises
    ------
    OptionError
        ``out`` exists and ``overwrite`` is False, or ``out`` is the source directory.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise OptionError(
            f"out={str(out)!r} already exists; pass overwrite=True to replace it or choose "
            "another directory"
        )
    if out.exists() and not out.is_dir():
        raise OptionError(f"out={str(out)!r} exists and is not a directory; choose another path")
    if source_dir is not None and out.exists() and out.resolve() == Path(source_dir).resolve():
        raise OptionError(
            f"out={str(out)!r} is the source directory; write the resized model elsewhere"
        )
    parent = out.parent if str(out.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    try:
        if source_dir is not None:
            _copy_extras(Path(source_dir), tmp, hidden)
        (tmp / "config.json").write_text(json.dumps(dict(config), indent=2, sort_keys=True))
        _save_params(params, tmp / "model.safetensors")
        default_permissions(tmp)  # mkdtemp made it private; the user's folder gets umask defaults
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=parent))
            os.rename(out, old / out.name)
            try:
                os.rename(tmp, out)
            except BaseException:
                os.rename(old / out.name, out)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
