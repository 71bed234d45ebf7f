"""Opening checkpoints for the command line: paths, clear errors, weight modules.

Contract: :func:`open_source` turns a command-line ``SRC`` (and ``--config``) into
a reader of :mod:`botcore.adapters.io` — the same readers the pipeline uses, so
there is one way to read a checkpoint — or raises a :class:`botcore.BotError`
whose one line names what is wrong and the fix (a missing path, a folder that is
not a model, an unknown file type, a damaged file). A bare ``.safetensors`` file
takes ``--config`` or the ``config.json`` beside it. :func:`weight_modules`
reads a checkpoint's weight modules (one :class:`botcore.WeightSignal` per role
stacked over layers) through the family adapter that recognises it, or, when
none does and no ``--family`` was given, by grouping names that differ only in a
layer index. Module top imports NumPy and the standard library only.

Examples
--------
>>> import numpy as np
>>> params = {f"enc.layer.{i}.q.weight": np.ones((4, 2)) for i in range(3)}
>>> params["enc.layer.0.q.bias"] = np.ones(4)
>>> mods = group_modules(params)
>>> {k: (v.shape, v.roles) for k, v in mods.items()}
{'q': ((3, 4, 2), ('depth', 'out', 'in'))}
"""

from __future__ import annotations

import os
import re

import numpy as np

from ..errors import ParameterKeyError, ShapeError, UnsupportedModelError
from ..signal import WeightSignal

__all__ = ["FORMATS", "check_onnx", "check_safetensors", "detect_format", "group_modules",
           "load_checkpoint", "open_source", "read_config", "weight_modules"]

FORMATS = ("hf-dir", "safetensors", "bin", "onnx", "gguf", "keras")
_SUFFIXES = {".safetensors": "safetensors", ".bin": "bin", ".onnx": "onnx", ".gguf": "gguf"}
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
            "pytorch_model.bin.index.json")


def detect_format(path) -> str:
    """The format of a command-line source: one of :data:`FORMATS`; raises if it is none.

    Examples
    --------
    >>> detect_format("/no/such/model")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    botcore.errors.ShapeError: source '/no/such/model' does not exist; ...
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ShapeError(
            f"source {path!r} does not exist; expected a Hugging Face model directory, a "
            ".safetensors/.bin file, a .gguf or .onnx file or a keras preset folder (check the path)")
    if os.path.isdir(path):
        files = set(os.listdir(path))
        if "model.weights.h5" in files:
            return "keras"
        if "config.json" in files and (files & set(_WEIGHTS) or any(
                f.endswith(".safetensors") for f in files)):
            return "hf-dir"
        raise UnsupportedModelError(
            f"directory {path!r} is not a Hugging Face model directory: it needs config.json and "
            "model.safetensors (or model-*.safetensors shards, or pytorch_model.bin); "
            "save one with model.save_pretrained(dir)")
    fmt = _SUFFIXES.get(os.path.splitext(path)[1].lower())
    if fmt is None:
        raise UnsupportedModelError(
            f"cannot tell the format of {path!r} from its name; expected a directory, *.safetensors, "
            "*.bin, *.gguf or *.onnx (rename the file, or point at its model directory)")
    return fmt


def check_safetensors(path) -> dict:
    """Validate a safetensors file's header; return ``{name: (dtype, shape)}``.

    Examples
    --------
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> p = os.path.join(d, "broken.safetensors")
    >>> with open(p, "wb") as f:
    ...     _ = f.write(b"not a safetensors file")
    >>> check_safetensors(p)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    botcore.errors.UnsupportedModelError: ...broken.safetensors is not a readable safetensors file: ...
    """
    from ..adapters.io.safetensors import read_header

    return {n: (e.dtype, e.shape) for n, e in read_header(path).items()}


def read_config(path) -> dict:
    """The ``config.json`` of a model directory (or a JSON file path) as a dict."""
    from ..adapters.io.hf import read_config as _read

    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "config.json")
    if not os.path.exists(path):
        raise ShapeError(f"config file {path!r} does not exist; pass --config PATH/config.json")
    return _read(path)


def check_onnx(path) -> None:
    """Parse an ONNX file's graph (not its external data); raise a clear error if it is damaged."""
    import onnx

    try:
        onnx.load(os.fspath(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError, ValueError, OSError, ...
        raise UnsupportedModelError(
            f"{os.fspath(path)} is not a readable ONNX model ({exc.__class__.__name__}); expected a "
            "complete .onnx file (re-export or re-copy it)") from None


def _config_for(path: str, fmt: str, config):
    if isinstance(config, (str, os.PathLike)):
        return read_config(config)
    if config is None and fmt in ("safetensors", "bin"):
        beside = os.path.join(os.path.dirname(os.path.abspath(path)), "config.json")
        if os.path.exists(beside):
            return read_config(beside)
    return config


def open_source(path, *, config=None):
    """A reader for a command-line source (see the module docstring); ``config`` may be a path."""
    fmt = detect_format(path)
    if fmt == "onnx":
        check_onnx(path)
    from ..adapters.io import open_reader

    return open_reader(os.fspath(path), config=_config_for(os.fspath(path), fmt, config))


def _widen(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float32) if a.dtype.name == "bfloat16" else a


def _read_all(reader) -> dict:
    return {n: _widen(reader.read(n)) for n in reader.tensors()}


def load_checkpoint(path, *, config=None):
    """Read every tensor of a checkpoint: ``(params, config, fmt)`` with NumPy arrays.

    For tests and small models; the resize and the inspection read one tensor at a time.
    """
    fmt = detect_format(path)
    if fmt == "onnx" and not _onnx_reader():
        check_onnx(path)
        from ..adapters.onnx import load_model
        from ..adapters.onnx_analysis import analyse

        analysis = analyse(load_model(path)[0])
        return dict(analysis.params), dict(config or analysis.config), fmt
    reader = open_source(path, config=config)
    return _read_all(reader), reader.config, fmt


def _onnx_reader() -> bool:
    import importlib.util

    return importlib.util.find_spec("botcore.adapters.io.onnx") is not None


_LAYER = re.compile(r"(?:^|\.)(\d+)\.")


def _short(pattern: str) -> str:
    name = pattern
    for suffix in (".weight", ".kernel"):
        name = name.removesuffix(suffix)
    return name or pattern


def group_modules(params) -> dict:
    """Stack weight matrices that differ only in their layer index into ``(depth, out, in)``.

    The generic view, used when no adapter knows the checkpoint: 2-D tensors
    named ``...<i>...`` with ``i = 0..L-1`` and one shape become one module named
    after the rest of the name (the shared prefix and ``.weight`` dropped).
    Biases, norms and embeddings are left out.
    """
    groups: dict = {}
    for name, value in params.items():
        shape = np.shape(value)
        m = _LAYER.search(name)
        if m is None or len(shape) != 2:
            continue
        pattern = name[: m.start(1)] + "*" + name[m.end(1):]
        groups.setdefault(pattern, {})[int(m.group(1))] = name
    patterns = [p for p, g in groups.items()
                if sorted(g) == list(range(len(g))) and len({np.shape(params[n]) for n in g.values()}) == 1]
    shorts = {p: _short(p.split("*.", 1)[-1]) for p in patterns}
    if len(set(shorts.values())) < len(shorts):  # e.g. encoder and decoder stacks: keep prefixes
        shorts = {p: _short(p) for p in patterns}
    order = list(params)
    out = {}
    for p in sorted(patterns, key=lambda s: order.index(groups[s][0])):
        stack = np.stack([np.asarray(params[groups[p][i]]) for i in range(len(groups[p]))])
        out[shorts[p]] = WeightSignal(stack, ("depth", "out", "in"), name=shorts[p])
    return out


def _is_matrix(roles) -> bool:
    """A weight matrix stacked over layers: a depth axis, a produced axis and a consumed axis."""
    return ("depth" in roles and any(r in ("out", "head", "head_dim") for r in roles)
            and any(r in ("in", "in_head", "in_head_dim") for r in roles))


_FIRST = ("q", "k", "v", "o", "ffn_gate", "ffn_in", "ffn_out")


def _adapter_modules(reader, family, everything: bool) -> tuple[dict, str]:
    from ..adapters.pipeline import confirm_ties, read_stack
    from ..adapters.registry import detect_family, get_adapter

    adapter = get_adapter(family or detect_family(reader.tensors(), reader.config))
    layout = adapter.layout(reader.tensors(), reader.config, ties=confirm_ties(reader, adapter))
    specs = [s for s in layout.specs.values() if everything or _is_matrix(s.roles)]
    specs.sort(key=lambda s: (_FIRST.index(s.name) if s.name in _FIRST else len(_FIRST)))
    mods = {s.name: WeightSignal(read_stack(reader, layout, s, allow_nonfinite=True), s.roles,
                                 name=s.name) for s in specs}
    return mods, f"adapter:{adapter.family}"


def weight_modules(source, config=None, *, family=None, everything: bool = False) -> tuple[dict, str]:
    """Weight modules of a checkpoint: ``({name: WeightSignal}, how)``.

    ``source`` is a reader or a mapping of arrays (with ``config``). ``how`` is
    ``"adapter:<family>"`` when a family adapter produced the signals (its roles
    know heads and layouts), ``"by name"`` for the generic grouping. By default
    only the weight matrices stacked over layers are returned (q, k, v, o, FFN
    in/out: signals with a ``depth`` axis, a produced and a consumed axis);
    ``everything=True`` adds biases, norms and embeddings (adapter path only).
    An explicit ``family`` that does not fit is an error, not a fallback.
    """
    from ..adapters.io.mapping import MappingReader

    reader = source if hasattr(source, "read_rows") else MappingReader(source, config=config or {})
    try:
        mods, how = _adapter_modules(reader, family, everything)
        if mods:
            return mods, how
    except (UnsupportedModelError, ParameterKeyError):
        if family is not None:
            raise
    mods = group_modules(_read_all(reader))
    if not mods:
        raise UnsupportedModelError(
            "found no weight modules: no adapter recognises this checkpoint and no 2-D weights "
            "repeat over numbered layers; expected a transformer checkpoint (BERT, GPT-2, Llama, ViT)")
    return mods, "by name"
