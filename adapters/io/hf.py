"""Hugging Face checkpoints: model directories and weight files in, sharded directories out.

Contract. :class:`HFReader` reads a model directory (``config.json`` with
``model.safetensors``, sharded ``model-*.safetensors`` + index, or
``pytorch_model.bin`` / its sharded index), a single ``.safetensors`` file or a
single ``.bin`` file (with ``config=``). Safetensors
headers are validated before anything is read; tensors are read one at a time
(or row tiles of one) straight from the file, in their stored dtype: bfloat16
and float16 stay narrow. ``.bin`` files are opened with
``torch.load(weights_only=True, mmap=True)``: pickles are never executed, and a
file that needs more than plain tensors is refused with the fix (convert to
safetensors). Symlinks in the source folder that point outside it are never
followed. A reader is picklable (paths only), so Dask workers can read too.

:class:`HFWriter` writes a directory as ``save_pretrained`` does: one
``model.safetensors``, or ``model-0000k-of-0000n.safetensors`` shards of at most
``max_shard_size`` plus ``model.safetensors.index.json``; ``config.json``; the
source's tokenizer, generation config and other non-weight files; and a fresh
``README.md`` model card (:mod:`botcore.adapters.io.card`) instead of the
source's. Shard headers are laid out from the plan before any data exists and
tensors are written by offset as soon as they are final; the directory appears
atomically (:class:`~botcore.adapters.io.staging.Stage`).

Examples
--------
>>> parse_size("5GB"), parse_size("500MiB"), parse_size(1024)
(5000000000, 524288000, 1024)
>>> shard_names(1), shard_names(3)[2]
(['model.safetensors'], 'model-00003-of-00003.safetensors')
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np

from botcore.errors import OptionError, OutputError, UnsupportedModelError

from .base import OutputPlan, TensorInfo, numpy_dtype
from .card import model_card
from .safetensors import ShardLayout, read_header, read_tensor, write_at
from .staging import Stage, output_error

__all__ = ["HFReader", "HFWriter", "WEIGHT_SUFFIXES", "open_reader", "open_writer", "parse_size",
           "read_config", "shard_names"]

#: Files never copied from a source directory (they hold weights of the old sizes).
WEIGHT_SUFFIXES = (
    ".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx", ".onnx_data",
    ".gguf", ".index.json", ".pb", ".tflite", ".mlmodel", ".ot", ".npz", ".keras",
)
_MAX_HEAD = 32 * 2**20  # header bytes per shard (safetensors readers refuse more than 100 MiB)
_SKIP_DIRS = {"onnx", "openvino", "coreml", "tf", "flax", ".git", "__pycache__"}
_SKIP_FILES = {"config.json", "README.md", "model_card.md"}
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_size(value, *, name: str = "max_shard_size") -> int:
    """Bytes for ``"5GB"``, ``"200MiB"``, ``"1.5GB"`` or an int (as transformers reads them).

    ``name`` is the option the value came from, for the error message.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    m = re.fullmatch(r"\s*([0-9]{0,30}\.?[0-9]{1,30})\s*([KMGT]?I?B?)\s*", str(value).upper())
    size = 0 if m is None or isinstance(value, bool) else int(float(m.group(1)) * _UNITS[m.group(2)])
    if size < 1:
        raise OptionError(f"{name}={value!r} is not a size; expected e.g. '5GB', "
                          "'500MB', '2GiB' or a positive number of bytes")
    return size


def shard_names(n: int) -> list[str]:
    """File names of ``n`` shards, as ``save_pretrained`` names them."""
    if n == 1:
        return ["model.safetensors"]
    return [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]


def read_config(path) -> dict:
    """A ``config.json`` as a dict, with a clear error for a missing or broken file."""
    path = Path(path)
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UnsupportedModelError(
            f"{path} does not exist; pass config= (or --config) with the model's config") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f" ({exc.msg} at line {exc.lineno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise UnsupportedModelError(
            f"config {str(path)!r} is not valid JSON{where}; fix or re-save it "
            "(model.config.save_pretrained(dir))") from None
    if not isinstance(cfg, dict):
        raise UnsupportedModelError(f"config {str(path)!r} is not a JSON object; expected a "
                                    "Hugging Face model config")
    return cfg


def _plain_config(config) -> dict | None:
    if config is None:
        return None
    if hasattr(config, "to_dict"):
        return dict(config.to_dict())
    if isinstance(config, (str, os.PathLike)):
        return read_config(config)
    if isinstance(config, dict) or hasattr(config, "items"):
        return dict(config)
    raise OptionError(f"config= must be a mapping of Hugging Face config keys (or a "
                      f"PretrainedConfig, or a config.json path), got {type(config).__name__}")


def _inside(path: Path, root: Path) -> bool:
    real, base = path.resolve(), root.resolve()
    return real == base or base in real.parents


def _weight_files(folder: Path) -> tuple[str, list[Path]]:
    """``("safetensors" | "bin", files)`` of a model directory."""
    for kind, single, index in (("safetensors", "model.safetensors", "model.safetensors.index.json"),
                                ("bin", "pytorch_model.bin", "pytorch_model.bin.index.json")):
        if (folder / single).is_file():
            return kind, [folder / single]
        if (folder / index).is_file():
            try:
                weight_map = json.loads((folder / index).read_text())["weight_map"]
            except (ValueError, KeyError, TypeError):
                raise UnsupportedModelError(f"{folder / index} is not a valid weight index (no "
                                            "weight_map); re-save the model") from None
            files = [folder / f for f in sorted(set(weight_map.values()))]
            missing = [str(f.name) for f in files if not f.is_file()]
            if missing:
                raise UnsupportedModelError(f"{folder / index} lists shards that are missing: "
                                            f"{missing[:4]}; copy the complete checkpoint")
            return kind, files
    raise UnsupportedModelError(
        f"{folder} has no model.safetensors, model.safetensors.index.json or pytorch_model.bin; "
        "point at a Hugging Face model directory (save one with model.save_pretrained(dir))")


def _torch_load(path: Path, *, mmap: bool):
    import warnings

    import torch

    with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": not the user's concern
        warnings.simplefilter("ignore")
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)


def _load_bin(path: Path) -> dict:
    import torch

    try:
        try:
            state = _torch_load(path, mmap=True)
        except RuntimeError as exc:  # a legacy (non-zip) file cannot be memory-mapped
            if "mmap" not in str(exc):
                raise
            state = _torch_load(path, mmap=False)
    except OSError:
        raise
    except Exception as exc:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError, EOFError, ...
        if "weights only" in str(exc).lower() or "weights_only" in str(exc):
            raise _pickle_refused(path) from None
        raise UnsupportedModelError(
            f"{path} is not a readable PyTorch checkpoint ({exc.__class__.__name__}: truncated or "
            "damaged); expected a file written by torch.save / save_pretrained (re-copy or "
            "re-save it)") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UnsupportedModelError(f"{path} does not hold a plain state dict of tensors; "
                                    "re-save it with model.save_pretrained(dir)")
    return state


def _pickle_refused(path: Path) -> UnsupportedModelError:
    return UnsupportedModelError(
        f"{path} is a pickle that torch.load(weights_only=True) refused (it needs more than plain "
        "tensors to load, or it is damaged); pickles are never executed here: convert it to "
        "safetensors where you trust the file (model.save_pretrained(dir, "
        "safe_serialization=True)), or re-copy it")


def _tensor_to_numpy(t) -> np.ndarray:
    import torch

    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(numpy_dtype("bfloat16")).copy()
    return t.numpy().copy()


class HFReader:
    """A Hugging Face checkpoint opened for lazy reading (see the module docstring)."""

    format = "hf"

    def __init__(self, path, *, config=None):
        path = Path(path)
        self.path = path
        self.meta: dict = {}
        self._bins: dict = {}
        config = _plain_config(config)
        if path.is_dir():
            self.folder = path
            kind, files = _weight_files(path)
            if config is None:
                config = read_config(path / "config.json")
        elif path.is_file() and path.suffix in (".safetensors", ".bin"):
            self.folder = None
            kind, files = ("safetensors" if path.suffix == ".safetensors" else "bin"), [path]
            if config is None:
                raise OptionError(f"{path} is a bare weight file, so config= is required: pass "
                                  "config= (--config) with the model's Hugging Face config keys")
        elif not path.exists():
            raise UnsupportedModelError(
                f"source {str(path)!r} does not exist; expected a Hugging Face model directory, a "
                ".safetensors/.bin file, a .gguf or .onnx file, or a keras preset (check the path)")
        else:
            raise UnsupportedModelError(
                f"cannot tell the format of {str(path)!r}; expected a model directory, *.safetensors, "
                "*.bin, *.gguf, *.onnx or a keras preset folder (rename the file, or point at its "
                "model directory)")
        self.config, self.kind, self.files = config, kind, files
        self._where = self._index()

    def _index(self) -> dict:
        where = {}
        for f in self.files:
            if self.folder is not None and not _inside(f, self.folder):
                raise UnsupportedModelError(f"{f} points outside {self.folder}; copy the real file "
                                            "into the model folder")
            if self.kind == "safetensors":
                where.update({n: (f, e) for n, e in read_header(f).items()})
            else:
                state = _load_bin(f)
                self._bins[f] = state
                where.update({n: (f, TensorInfo(n, tuple(t.shape), str(t.dtype).replace("torch.", "")))
                              for n, t in state.items()})
        return where

    def tensors(self) -> dict:
        return {n: (e.info if hasattr(e, "info") else e) for n, (_, e) in self._where.items()}

    def read(self, name: str) -> np.ndarray:
        f, e = self._where[name]
        if self.kind == "safetensors":
            return read_tensor(f, e)
        return _tensor_to_numpy(self._state(f)[name])

    def read_rows(self, name: str, start: int, stop: int) -> np.ndarray:
        f, e = self._where[name]
        if self.kind == "safetensors":
            return read_tensor(f, e, rows=(start, stop))
        return _tensor_to_numpy(self._state(f)[name][start:stop])

    def _state(self, f: Path) -> dict:
        if f not in self._bins:
            self._bins[f] = _load_bin(f)
        return self._bins[f]

    def copy_extras(self, dest: Path) -> list[str]:
        """Copy the folder's non-weight files (tokenizer, generation config, ...) into ``dest``."""
        if self.folder is None:
            return []
        copied = []
        for item in sorted(self.folder.iterdir()):
            name = item.name
            if name in _SKIP_FILES or name.endswith(WEIGHT_SUFFIXES) or not _inside(item, self.folder):
                continue
            if item.is_dir():
                if name in _SKIP_DIRS:
                    continue
                shutil.copytree(item, dest / name, symlinks=False, ignore=_ignore(self.folder))
            else:
                shutil.copyfile(item, dest / name)
            copied.append(name)
        return copied

    def close(self) -> None:
        self._bins.clear()

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_bins"] = {}
        return state


def _ignore(root: Path):
    def ignore(folder, names):
        return [n for n in names if n.endswith(WEIGHT_SUFFIXES)
                or not _inside(Path(folder) / n, root)]
    return ignore


def open_reader(source, *, config=None) -> HFReader:
    """An :class:`HFReader` for a directory or weight file."""
    return HFReader(source, config=config)


class OffsetSink:
    """Writes tensors (or row tiles) into pre-laid-out files by offset; picklable for workers."""

    def __init__(self, table: dict, out=None):
        self.table = table  # name -> (path, offset, shape, dtype)
        self.out = out  # the user's output path, for the error message

    def _put(self, path, offset: int, array: np.ndarray) -> None:
        try:
            write_at(path, offset, array)
        except OSError as exc:  # no space, a file-size limit, ...: one clear error naming out
            raise output_error(exc, self.out or os.path.dirname(path)) from None

    def _check(self, name: str, array: np.ndarray, rows: int) -> tuple:
        path, offset, shape, dtype = self.table[name]
        want = (rows, *shape[1:]) if shape else shape
        if tuple(array.shape) != tuple(want) or array.dtype != numpy_dtype(dtype):
            raise OutputError(f"internal: {name} written as {array.dtype}{list(array.shape)}, "
                              f"planned {dtype}{list(want)}")
        return path, offset, shape, dtype

    def write(self, name: str, array: np.ndarray) -> None:
        path, offset, shape, _ = self._check(name, array, shape_rows(self.table[name][2]))
        self._put(path, offset, array)

    def write_rows(self, name: str, start: int, array: np.ndarray) -> None:
        path, offset, shape, dtype = self._check(name, array, array.shape[0])
        row = int(np.prod(shape[1:], dtype=np.int64)) * numpy_dtype(dtype).itemsize
        self._put(path, offset + start * row, array)


def shape_rows(shape) -> int:
    return shape[0] if shape else 1


class HFWriter:
    """A Hugging Face directory being written (see the module docstring)."""

    def __init__(self, out, *, overwrite: bool = False, max_shard_size="5GB"):
        self.path = Path(out)
        self.overwrite = overwrite
        self.max_shard = parse_size(max_shard_size)
        self.stage: Stage | None = None
        self.plan: OutputPlan | None = None
        self._rows: dict = {}

    def begin(self, plan: OutputPlan) -> None:
        self.plan = plan
        self.stage = Stage(self.path, overwrite=self.overwrite, need_bytes=plan.nbytes)
        try:
            self.stage.target.mkdir()
            self._layout(plan.tensors)
        except OSError as exc:
            self.abort()
            raise output_error(exc, self.path) from None

    def _layout(self, tensors) -> None:
        shards, size, head = [[]], 0, 0
        for t in tensors:
            entry = len(t.name) + 96  # its header bytes, about: readers refuse headers > 100 MiB
            if shards[-1] and (size + t.nbytes > self.max_shard or head + entry > _MAX_HEAD):
                shards.append([])
                size, head = 0, 0
            shards[-1].append(t)
            size += t.nbytes
            head += entry
        names = shard_names(len(shards))
        table, self.weight_map = {}, {}
        for fname, group in zip(names, shards):
            layout = ShardLayout(group)
            layout.create(self.stage.target / fname)
            for t in group:
                table[t.name] = (str(self.stage.target / fname), layout.offsets[t.name], t.shape,
                                 t.dtype)
                self.weight_map[t.name] = fname
                self._rows[t.name] = shape_rows(t.shape)
        self.files = names
        self._sink = OffsetSink(table, out=os.path.abspath(self.path))

    def sink(self) -> OffsetSink:
        """A picklable writer of this output's tensors, for other processes (Dask workers)."""
        return self._sink

    def write(self, name: str, array: np.ndarray) -> None:
        self._guard(lambda: self._sink.write(name, array))
        self._rows[name] = 0

    def write_rows(self, name: str, start: int, array: np.ndarray) -> None:
        self._guard(lambda: self._sink.write_rows(name, start, array))
        self._rows[name] -= array.shape[0]

    def mark_written(self, name: str) -> None:
        """Record that another process wrote ``name`` completely through :meth:`sink`."""
        self._rows[name] = 0

    def _guard(self, fn) -> None:
        try:
            fn()
        except OSError as exc:
            raise output_error(exc, self.path) from None

    def finish(self) -> Path:
        missing = [n for n, left in self._rows.items() if left]
        if missing:
            raise OutputError(f"internal: tensors never written: {missing[:5]}")
        try:
            self._metadata(self.stage.target)
        except OSError as exc:
            raise output_error(exc, self.path) from None
        return self.stage.commit()

    def _metadata(self, dest: Path) -> None:
        plan = self.plan
        if len(self.files) > 1:
            index = {"metadata": {"total_size": sum(t.nbytes for t in plan.tensors)},
                     "weight_map": dict(sorted(self.weight_map.items()))}
            (dest / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
        if plan.reader is not None and hasattr(plan.reader, "copy_extras"):
            plan.reader.copy_extras(dest)
        _fix_pooling(dest, plan.sizes.get("hidden"))
        (dest / "config.json").write_text(json.dumps(dict(plan.config), indent=2, sort_keys=True))
        (dest / "README.md").write_text(model_card(plan))

    def abort(self) -> None:
        if self.stage is not None:
            self.stage.abort()


def _fix_pooling(dest: Path, hidden) -> None:
    pooling = dest / "1_Pooling" / "config.json"
    if hidden is not None and pooling.is_file():  # sentence-transformers pooling width
        cfg = json.loads(pooling.read_text())
        if "word_embedding_dimension" in cfg:
            cfg["word_embedding_dimension"] = hidden
            pooling.write_text(json.dumps(cfg, indent=2))


def open_writer(out, *, overwrite: bool = False, max_shard_size="5GB", **options) -> HFWriter:
    """An :class:`HFWriter` for the directory ``out``."""
    if options:
        raise OptionError(f"options {sorted(options)} do not apply to a Hugging Face directory "
                          "output; leave them out")
    return HFWriter(out, overwrite=overwrite, max_shard_size=max_shard_size)
