"""Reading checkpoints for the command line: format detection, validation, weight modules.

Contract: :func:`detect_format` tells a Hugging Face model directory, a
``.safetensors`` file and an ``.onnx`` graph apart, and raises a
:class:`botcore.BotError` with the fix for anything else. :func:`check_safetensors`
validates a safetensors header with the standard library only (cheap: no tensor
is read), so a truncated or corrupt file fails before any work starts.
:func:`load_checkpoint` returns NumPy arrays and the config dict; the files are
only read. :func:`weight_modules` turns parameters into weight modules (one
:class:`botcore.WeightSignal` per role stacked over layers): through the model
adapter when one recognises the checkpoint, otherwise by grouping names that
differ only in a layer index. Module top imports NumPy and the standard library
only; safetensors, torch and onnx are imported when a file needs them.

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

import json
import os
import re
import struct

import numpy as np

from ..errors import ParameterKeyError, ShapeError, UnsupportedModelError
from ..signal import WeightSignal

__all__ = [
    "FORMATS",
    "check_onnx",
    "check_safetensors",
    "detect_format",
    "group_modules",
    "load_checkpoint",
    "read_config",
    "weight_modules",
]

FORMATS = ("hf-dir", "safetensors", "onnx")


def detect_format(path) -> str:
    """``"hf-dir"``, ``"safetensors"`` or ``"onnx"`` for ``path``; raises if it is none of them.

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
            ".safetensors file or an .onnx file (check the path)"
        )
    if os.path.isdir(path):
        files = os.listdir(path)
        if "config.json" in files and any(
            f.endswith(".safetensors") or f in ("pytorch_model.bin",) for f in files
        ):
            return "hf-dir"
        raise UnsupportedModelError(
            f"directory {path!r} is not a Hugging Face model directory: it needs config.json and "
            "model.safetensors (or model-*.safetensors shards, or pytorch_model.bin); "
            "save one with model.save_pretrained(dir)"
        )
    low = path.lower()
    if low.endswith(".safetensors"):
        return "safetensors"
    if low.endswith(".onnx"):
        return "onnx"
    raise UnsupportedModelError(
        f"cannot tell the format of {path!r} from its name; expected a directory, *.safetensors "
        "or *.onnx (rename the file, or point at its model directory)"
    )


def check_safetensors(path) -> dict:
    """Validate a safetensors file's header; return ``{name: (dtype, shape)}``.

    Raises :class:`botcore.UnsupportedModelError` naming what is wrong (bad
    header length, header not JSON, tensors outside the file, a truncated file).

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
    path = os.fspath(path)
    size = os.path.getsize(path)

    def bad(why):
        return UnsupportedModelError(
            f"{path} is not a readable safetensors file: {why}; expected a complete file "
            "written by safetensors (re-save or re-copy it)"
        )

    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise bad(f"it has only {size} bytes")
        (n,) = struct.unpack("<Q", head)
        if n == 0 or 8 + n > size:
            raise bad(f"its header claims {n} bytes but the file has {size}")
        try:
            header = json.loads(f.read(n).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise bad(f"the header is not JSON ({exc.__class__.__name__})") from None
    if not isinstance(header, dict):
        raise bad("the header is not a JSON object")
    data = size - 8 - n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            start, stop = info["data_offsets"]
            out[name] = (info["dtype"], tuple(info["shape"]))
        except (KeyError, TypeError, ValueError):
            raise bad(f"the entry for {name!r} lacks dtype/shape/data_offsets") from None
        if not 0 <= start <= stop <= data:
            raise bad(f"tensor {name!r} lies at bytes {start}..{stop} but only {data} data bytes exist "
                      "(the file is truncated)")
    return out


def read_config(path) -> dict:
    """The ``config.json`` of a model directory (or a JSON file path) as a dict."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "config.json")
    try:
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
    except FileNotFoundError:
        raise ShapeError(f"config file {path!r} does not exist; pass --config PATH/config.json") from None
    except json.JSONDecodeError as exc:
        raise UnsupportedModelError(
            f"config {path!r} is not valid JSON ({exc.msg} at line {exc.lineno}); fix or re-save it"
        ) from None
    if not isinstance(cfg, dict):
        raise UnsupportedModelError(f"config {path!r} is not a JSON object; expected a model config")
    return cfg


def _safetensors_files(folder):
    files = sorted(f for f in os.listdir(folder) if f.endswith(".safetensors"))
    return [os.path.join(folder, f) for f in files]


def _read_safetensors(path) -> dict:
    check_safetensors(path)
    from safetensors import safe_open

    out = {}
    try:
        with safe_open(path, framework="numpy") as f:
            for k in f:
                out[k] = f.get_tensor(k)
    except (TypeError, ValueError):  # bfloat16 has no NumPy dtype: go through torch
        from safetensors.torch import load_file

        out = {k: v.float().numpy() for k, v in load_file(path).items()}
    return out


def _read_bin(path) -> dict:
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v.float().numpy() for k, v in state.items() if hasattr(v, "numpy")}


def check_onnx(path) -> None:
    """Parse an ONNX file's graph (not its external data); raise a clear error if it is damaged."""
    import onnx

    try:
        onnx.load(os.fspath(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError, ValueError, OSError, ...
        raise UnsupportedModelError(
            f"{os.fspath(path)} is not a readable ONNX model ({exc.__class__.__name__}); expected a "
            "complete .onnx file (re-export or re-copy it)"
        ) from None


def _read_onnx(path):
    """Parameters under Hugging Face names and the config, recovered from the graph's structure."""
    check_onnx(path)
    from ..adapters.onnx import load_model
    from ..adapters.onnx_analysis import analyse

    model, _ = load_model(path)
    analysis = analyse(model)
    return dict(analysis.params), dict(analysis.config)


def load_checkpoint(path, *, config=None):
    """Read a checkpoint; returns ``(params, config, fmt)`` with NumPy arrays.

    ``config`` (a dict or a path to config.json) is required for a bare
    safetensors file that has no config.json beside it.
    """
    fmt = detect_format(path)
    path = os.fspath(path)
    if isinstance(config, (str, os.PathLike)):
        config = read_config(config)
    if fmt == "hf-dir":
        config = config if config is not None else read_config(path)
        files = _safetensors_files(path)
        params = {}
        for f in files:
            params.update(_read_safetensors(f))
        if not files:
            params = _read_bin(os.path.join(path, "pytorch_model.bin"))
    elif fmt == "safetensors":
        if config is None:
            beside = os.path.join(os.path.dirname(os.path.abspath(path)), "config.json")
            if os.path.exists(beside):
                config = read_config(beside)
        params = _read_safetensors(path)
    else:
        params, found = _read_onnx(path)
        config = config if config is not None else found
    return params, config, fmt


_LAYER = re.compile(r"(?:^|\.)(\d+)\.")


def _short(pattern: str, common: str) -> str:
    name = pattern.removeprefix(common)
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
    if not patterns:
        return {}
    shorts = {p: _short(p.split("*.", 1)[-1], "") for p in patterns}
    if len(set(shorts.values())) < len(shorts):  # e.g. encoder and decoder stacks: keep prefixes
        shorts = {p: _short(p, "") for p in patterns}
    out = {}
    order = list(params)
    for p in sorted(patterns, key=lambda s: order.index(groups[s][0])):
        stack = np.stack([np.asarray(params[groups[p][i]]) for i in range(len(groups[p]))])
        out[shorts[p]] = WeightSignal(stack, ("depth", "out", "in"), name=shorts[p])
    return out


def _is_matrix(roles) -> bool:
    """A weight matrix stacked over layers: a depth axis, a produced axis and a consumed axis."""
    return ("depth" in roles and any(r in ("out", "head", "head_dim") for r in roles)
            and any(r in ("in", "in_head", "in_head_dim") for r in roles))


def weight_modules(params, config=None, *, family=None, everything: bool = False) -> tuple[dict, str]:
    """Weight modules of a checkpoint: ``({name: WeightSignal}, how)``.

    ``how`` is ``"adapter:<family>"`` when a model adapter produced the signals
    (its roles know heads and layouts), ``"by name"`` for the generic grouping.
    By default only the weight matrices stacked over layers are returned (q, k,
    v, o, FFN in/out: signals with a ``depth`` axis, a produced and a consumed axis);
    ``everything=True`` adds biases, norms and embeddings (adapter path only).
    """
    try:
        from ..adapters import detect_family, get_adapter
    except ImportError:
        detect_family = get_adapter = None
    if get_adapter is not None and config is not None:
        try:
            fam = family or detect_family(params, config)
            adapter = get_adapter(fam)
            signals = adapter.to_signals(params, config)
        except (UnsupportedModelError, ParameterKeyError, NotImplementedError, AttributeError):
            signals = None
        if signals:
            mods = {}
            for name, s in signals.items():
                if not isinstance(s, WeightSignal):
                    continue
                if not everything and not _is_matrix(s.roles):
                    continue
                mods[name] = WeightSignal(np.asarray(s.data), s.roles, name=name)
            if mods:
                first = ("q", "k", "v", "o", "ffn_gate", "ffn_in", "ffn_out")
                names = sorted(mods, key=lambda n: (first.index(n) if n in first else len(first), list(mods).index(n)))
                return {n: mods[n] for n in names}, f"adapter:{getattr(adapter, 'name', fam)}"
    mods = group_modules(params)
    if not mods:
        raise UnsupportedModelError(
            "found no weight modules: no adapter recognises this checkpoint and no 2-D weights "
            "repeat over numbered layers; expected a transformer checkpoint (BERT, GPT-2, Llama, ViT)"
        )
    return mods, "by name"
