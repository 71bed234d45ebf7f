"""ONNX-to-ONNX resizing: a transformer graph in, a graph of the target size out.

Contract: :func:`resize` (and :func:`resize_onnx_model`, which
:func:`botcore.adapters.resize_model` calls for ``.onnx`` sources) reads an
exported Hugging Face BERT, GPT-2 or ViT/DeiT graph, finds its parameters by
structure (:mod:`botcore.adapters.onnx_analysis`), resizes them with the same
3-D signal resize as the framework path (:func:`botcore.adapters.resize_model`
on the recovered Hugging Face state dict), and writes them back together with
every size-encoding constant and the new depth
(:mod:`botcore.adapters.onnx_rewrite`).

Guarantees: the input file is never modified; refusals (a graph it does not
understand, an external-data location outside the model's folder, a target that
cannot work) happen before anything is written; the output is written into a
temporary folder beside the destination and moved into place (data file first,
then the graph), so no half-written model ever appears under the destination
name. A source stored with external data (or larger than 2 GB) is written
with external data ``<name>.data`` beside the output; shape inference of the
output then runs through the file path, which works above 2 GB.
``onnx`` is imported when a function runs, never on ``import botcore``.

Examples
--------
>>> resolve_sizes({"hidden": 64, "heads": 4, "head_dim": 16, "ffn": 256, "layers": 2},
...               {"hidden": 32})
{'layers': 2, 'hidden': 32, 'heads': 2, 'head_dim': 16, 'ffn': 128}
>>> resolve_sizes({"hidden": 64, "heads": 4, "head_dim": 16, "ffn": 256, "layers": 2},
...               {"kv_heads": 2})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
botcore.errors.TargetError: kv_heads=2 differs from heads=4, ...
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from botcore.errors import OptionError, TargetError, UnsupportedModelError
from botcore.names import SIZES

__all__ = ["load_model", "resize", "resize_onnx_model", "resolve_sizes", "save_model"]

_TWO_GB = 2**31 - 2**20


def _check_positive(name, value):
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TargetError(f"target {name}={value!r} is not a positive integer. Give an int >= 1.")


def resolve_sizes(source, target):
    """Complete target sizes; :func:`botcore.adapters.targets.resolve_target` without kv_heads.

    Parameters
    ----------
    source : dict
        ``layers, hidden, heads, head_dim, ffn`` of the source graph.
    target : dict or None
        Any of ``layers, hidden, heads, kv_heads, head_dim, ffn``.

    Returns
    -------
    dict
        ``layers, hidden, heads, head_dim, ffn``.

    Raises
    ------
    TargetError
        Unknown keys, non-positive sizes, sizes that do not divide, or
        ``kv_heads != heads`` (these graphs have no grouped-query attention).
    """
    from .targets import resolve_target

    target = dict(target or {})
    unknown = set(target) - set(SIZES)
    if unknown:
        raise TargetError(f"unknown target keys {sorted(unknown)}; expected keys among {list(SIZES)}")
    sizes = resolve_target(dict(source, kv_heads=source["heads"]), target)
    if sizes["kv_heads"] != sizes["heads"]:
        raise TargetError(f"target kv_heads={sizes['kv_heads']} differs from heads={sizes['heads']}, "
                          "but this graph has no grouped-query attention; leave kv_heads out")
    if sizes["heads"] * sizes["head_dim"] != sizes["hidden"]:
        raise TargetError(f"target heads {sizes['heads']} * head_dim {sizes['head_dim']} != hidden "
                          f"{sizes['hidden']}; BERT, GPT-2 and ViT graphs need them equal")
    return {k: sizes[k] for k in ("layers", "hidden", "heads", "head_dim", "ffn")}


def _external_tensors(model):
    from onnx import TensorProto
    from onnx.external_data_helper import _get_all_tensors

    return [t for t in _get_all_tensors(model) if t.data_location == TensorProto.EXTERNAL]


def load_model(path):
    """Load an ONNX file and its external data, refusing locations outside its folder.

    Parameters
    ----------
    path : str or Path
        The ``.onnx`` file.

    Returns
    -------
    tuple of (onnx.ModelProto, bool)
        The model with all tensor data in memory, and whether it used external data.

    Raises
    ------
    UnsupportedModelError
        When an external-data ``location`` points outside the model's folder.
    """
    import onnx
    from onnx.external_data_helper import load_external_data_for_model

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model {str(path)!r} does not exist. Give the path of a .onnx file.")
    base = path.parent.resolve()
    model = onnx.load(str(path), load_external_data=False)
    external = _external_tensors(model)
    for t in external:
        loc = {e.key: e.value for e in t.external_data}.get("location", "")
        full = (base / loc).resolve()
        if os.path.isabs(loc) or (full != base and base not in full.parents):
            raise UnsupportedModelError(
                f"tensor {t.name!r} of {str(path)!r} keeps its data at location {loc!r}, which is "
                f"outside the model's folder {str(base)!r}. Expected external data files beside the "
                "model; move the data file next to the model and fix the location.")
    if external:
        load_external_data_for_model(model, str(base))
    return model, bool(external)


def _data_bytes(model):
    return sum(len(t.raw_data) for t in model.graph.initializer)


def save_model(model, out, *, external=False, overwrite=False):
    """Write ``model`` to ``out`` atomically; external data goes to ``<out name>.data`` beside it.

    Output shapes are re-inferred (through the file path when the model is
    stored with external data) and stale ``value_info`` is dropped.

    Parameters
    ----------
    model : onnx.ModelProto
        Model with tensor data in memory; it is consumed (tensors may be moved out).
    out : str or Path
        Destination ``.onnx`` path; its folder must exist.
    external : bool
        Store tensors in ``<out name>.data`` (forced above 2 GB).
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    Path
    """
    import onnx

    out = Path(out)
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"output folder {str(folder)!r} does not exist. Create it first.")
    data_name = out.name + ".data"
    if not overwrite:
        for p in (out, folder / data_name) if external else (out,):
            if p.exists():
                raise FileExistsError(f"{str(p)!r} exists. Pass overwrite=True to replace it.")
    external = external or _data_bytes(model) > _TWO_GB
    tmpdir = tempfile.mkdtemp(prefix=".bot-onnx-", dir=folder)
    try:
        tmp = Path(tmpdir) / out.name
        if external:
            onnx.save_model(model, str(tmp), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=data_name, size_threshold=1024)
            inferred = Path(tmpdir) / ("inferred-" + out.name)
            onnx.shape_inference.infer_shapes_path(str(tmp), str(inferred))
            small = onnx.load(str(inferred), load_external_data=False)
            del small.graph.value_info[:]
            onnx.save_model(small, str(tmp))
            os.replace(Path(tmpdir) / data_name, folder / data_name)
        else:
            try:
                inferred = onnx.shape_inference.infer_shapes(model)
                del inferred.graph.value_info[:]
                model = inferred
            except Exception as exc:  # noqa: BLE001 - shapes are a convenience; the graph is valid
                del exc  # the outputs keep element types without shapes
            onnx.save_model(model, str(tmp))
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return out


def _sizes_of(analysis):
    return {"layers": analysis.layers, "hidden": analysis.hidden, "heads": analysis.heads,
            "head_dim": analysis.head_dim, "ffn": analysis.ffn}


def _sizes_from_config(family, cfg, fallback):
    if family == "gpt2":
        hidden, heads, layers = cfg.get("n_embd"), cfg.get("n_head"), cfg.get("n_layer")
        ffn = cfg.get("n_inner") or 4 * hidden
    else:
        hidden, heads = cfg.get("hidden_size"), cfg.get("num_attention_heads")
        layers, ffn = cfg.get("num_hidden_layers"), cfg.get("intermediate_size")
    if None in (hidden, heads, layers, ffn):
        return fallback
    head_dim = cfg.get("head_dim") or hidden // heads
    return {"layers": int(layers), "hidden": int(hidden), "heads": int(heads), "head_dim": int(head_dim),
            "ffn": int(ffn)}


def resize_graph(model, target, *, params=None, method="bot", wavelet="haar", gain=None,
                 mode="periodization", progress=None):
    """Resize an in-memory model; return ``(new model, ResizeResult)``.

    Parameters
    ----------
    model : onnx.ModelProto
        Source model with tensor data loaded; not modified.
    target : dict
        Keys among ``layers, hidden, heads, kv_heads, head_dim, ffn``.
    params : mapping, optional
        Target parameters (Hugging Face names) to write instead of calling
        :func:`botcore.adapters.resize_model`; their shapes must match the
        resolved target sizes.
    method, wavelet, gain, mode : str
        Passed to :func:`botcore.adapters.resize_model`.
    progress : callable, optional
        Passed to :func:`botcore.adapters.resize_model` (``progress(done, total, name)``).
    """
    from .api import Record, ResizeResult
    from .onnx_analysis import analyse
    from .onnx_rewrite import rewrite

    analysis = analyse(model)
    sizes = resolve_sizes(_sizes_of(analysis), target)
    config = dict(analysis.config)
    report = []
    if params is None:
        from . import resize_model

        full = {k: v for k, v in dict(target or {}).items() if v is not None}
        result = resize_model(analysis.params, full, method=method, wavelet=wavelet, gain=gain,
                              mode=mode, config=dict(analysis.config), family=analysis.family.name,
                              progress=progress)
        params = result.params
        config = dict(result.config)
        report = list(result.report)
        got = getattr(result, "sizes", None) or {}
        sizes = {k: int(got[k]) for k in sizes} if all(k in got for k in sizes) else \
            _sizes_from_config(analysis.family.name, config, sizes)
    new, notes = rewrite(analysis, params, **sizes)
    source = _sizes_of(analysis)
    change = ", ".join(f"{k} {source[k]}->{sizes[k]}" for k in sizes)
    done = ", ".join(f"{k}: {v}" for k, v in notes.items())
    report.append(Record("onnx graph", (), (), (), (),
                         f"{analysis.family.name} graph rewritten ({change}); {done}"))
    result = ResizeResult(dict(params), config, report, None, analysis.family.name, dict(sizes))
    return new, result


def resize(src, dst, *, layers=None, hidden=None, heads=None, kv_heads=None, head_dim=None, ffn=None,
           method="bot", wavelet="haar", gain=None, mode="periodization", overwrite=False,
           params=None):
    """Resize the ONNX graph at ``src`` and write the result to ``dst``.

    Parameters
    ----------
    src, dst : str or Path
        Source and destination ``.onnx`` files (``src`` is never modified).
    layers, hidden, heads, kv_heads, head_dim, ffn : int, optional
        Target sizes; omitted ones follow from the others (see :func:`resolve_sizes`).
    method, wavelet, gain, mode : str
        As for :func:`botcore.adapters.resize_model`.
    overwrite : bool
        Replace an existing ``dst``.
    params : mapping, optional
        Ready target parameters instead of resizing (for tests and custom methods).

    Returns
    -------
    botcore.adapters.ResizeResult
        ``params``, ``config``, ``report`` (the signal records plus one for the
        graph rewrite), ``out``, ``family`` and ``sizes``.

    Raises
    ------
    UnsupportedModelError, TargetError
        Before anything is written.
    """
    given = {"layers": layers, "hidden": hidden, "heads": heads, "kv_heads": kv_heads,
             "head_dim": head_dim, "ffn": ffn}
    target = {k: v for k, v in given.items() if v is not None}
    return resize_onnx_model(src, target, method=method, wavelet=wavelet, gain=gain, mode=mode,
                             out=dst, overwrite=overwrite, params=params)


def resize_onnx_model(source, target, *, method="bot", wavelet="haar", gain=None,
                      mode="periodization", out=None, overwrite=False, params=None, progress=None):
    """:func:`botcore.adapters.resize_model` for a ``.onnx`` source; see :func:`resize`.

    ``out`` is required: the result of an ONNX resize is a file.
    """
    if out is None:
        raise OptionError("resizing an ONNX graph writes a file: pass out='resized.onnx'.")
    src = Path(source)
    dst = Path(out)
    if src.exists() and dst.exists() and src.resolve() == dst.resolve():
        raise OptionError(f"out {str(dst)!r} is the source file; the input is never modified. "
                          "Choose another output path.")
    if dst.exists() and not overwrite:
        raise FileExistsError(f"{str(dst)!r} exists. Pass overwrite=True to replace it.")
    model, external = load_model(src)
    new, result = resize_graph(model, target, params=params, method=method, wavelet=wavelet,
                               gain=gain, mode=mode, progress=progress)
    result.out = save_model(new, dst, external=external, overwrite=overwrite)
    return result

