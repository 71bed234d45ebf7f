"""``botcore resize``: resize SRC into DST through the one pipeline and print a summary.

Contract: :func:`run_resize` validates everything it can before any work (a target
is given, the source exists and is readable, the output does not exist unless
``--overwrite``, it is not the source), then calls
:func:`botcore.adapters.resize_model` with ``out=DST``: the writer stages the
output beside DST and renames it into place only when complete, so a failure
leaves nothing. It prints a progress bar (stderr, per signal, only on a terminal)
and a summary table built from the pipeline's own records (per signal: source
shape, target shape, energy kept): the source is read once. ``--quiet`` prints
nothing. It returns 0 on success and raises :class:`botcore.BotError` or
:class:`OSError` on failure (the caller, :func:`botcore.cli.main`, turns those
into one line).

Examples
--------
>>> rep = [dict(signal="q", source_shape=(2, 4, 4), target_shape=(1, 2, 2), treatment="bot",
...             energy=0.25),
...        dict(signal="lm_head", source_shape=(), target_shape=(), treatment="tied to embed")]
>>> h, rows, notes = summary(rep)
>>> rows
[['q', '2x4x4', '1x2x2', '25.0%', '']]
>>> notes
['every signal above: bot', 'lm_head: tied to embed']
"""

from __future__ import annotations

import os
import shlex
import sys
import time

from ..errors import OptionError, ShapeError
from .load import _is_matrix, _onnx_reader, check_onnx, detect_format, open_source

__all__ = ["ProgressBar", "run_resize", "summary"]


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


def _fmt_shape(shape) -> str:
    return "x".join(str(int(d)) for d in shape) if shape else "-"


def _field(rec, name, default=None):
    return rec.get(name, default) if isinstance(rec, dict) else getattr(rec, name, default)


_FIRST = ("q", "k", "v", "o", "ffn_gate", "ffn_in", "ffn_out")


def _order(r):
    name = str(_field(r, "signal", ""))
    return (0 if _is_matrix(_field(r, "roles", ()) or ()) else 1,
            _FIRST.index(name) if name in _FIRST else len(_FIRST))


def summary(report):
    """The resize summary: ``(headers, rows, notes)`` from ``ResizeResult.report``.

    One row per resized signal: name, source shape, target shape, the share of
    its energy the BoT resize kept (its record's ``energy``; ``-`` when not
    measured) and its treatment where it differs from the most common one (which
    goes into ``notes``, with ties and dropped parameters).
    """
    shaped = sorted((r for r in report if _field(r, "source_shape")), key=_order)
    counts: dict = {}
    for r in shaped:
        t = str(_field(r, "treatment", ""))
        counts[t] = counts.get(t, 0) + 1
    common = max(counts, key=counts.get) if counts else ""
    rows = []
    for r in shaped:
        energy = _field(r, "energy")
        kept = "-" if energy is None else f"{100 * energy:.1f}%"
        t = str(_field(r, "treatment", ""))
        rows.append([str(_field(r, "signal", "")), _fmt_shape(_field(r, "source_shape")),
                     _fmt_shape(_field(r, "target_shape")), kept, "" if t == common else t])
    notes = [f"every signal above: {common}" if not any(row[-1] for row in rows)
             else f"other signals: {common}"] if common else []
    notes += [f"{_field(r, 'signal', '')}: {_field(r, 'treatment', '')}" for r in report
              if not _field(r, "source_shape")]
    return ["signal", "source", "target", "energy kept", "treatment"], rows, notes


def _check_output(src, dst, *, overwrite: bool) -> None:
    dst = os.path.abspath(dst)
    parent = os.path.dirname(dst)
    if not os.path.isdir(parent):
        raise ShapeError(f"the folder {parent!r} that should hold the output does not exist; create it "
                         "first or choose another output path")
    if os.path.lexists(dst) and not overwrite:
        raise FileExistsError(f"output {dst!r} already exists; expected a new path (pass --overwrite to "
                              "replace it, or choose another path)")
    s, d = os.path.realpath(src), os.path.realpath(dst)
    if s == d or s.startswith(d.rstrip(os.sep) + os.sep):
        raise ShapeError(f"output {dst!r} is the source or contains it; the source is never modified, "
                         "so choose an output path outside it")


def _options(args) -> dict:
    options = {"method": args.method, "wavelet": args.wavelet, "mode": args.mode,
               "overwrite": args.overwrite, "dtype": args.dtype, "max_shard_size": args.max_shard_size,
               "max_memory": args.max_memory, "allow_nonfinite": args.allow_nonfinite,
               "scheduler": args.scheduler, "chunk_bytes": args.chunk_bytes, "quantize": args.quantize}
    if args.gain is not None:
        options["gain"] = args.gain
    if getattr(args, "fractional", None) is not None:
        options["fractional"] = args.fractional
    if getattr(args, "match", False):
        options["match"] = True
    if args.family:
        options["family"] = args.family
    argv = getattr(args, "argv", None)
    options["card"] = {"command": "botcore " + shlex.join(str(a) for a in argv) if argv else ""}
    return options


def _print_summary(args, res, seconds: float) -> None:
    from .inspection import format_table

    print(f"wrote {args.dst} ({res.family}, method {args.method}) in {seconds:.1f} s")
    headers, rows, notes = summary(getattr(res, "report", None) or [])
    if rows:
        print(format_table(headers, rows, align=["<", ">", ">", ">", "<"]))
    for note in notes:
        print(note)
    if args.method == "bot":
        print("energy kept: share of the signal's energy in the kept wavelet band (orthonormal coefficients; "
              "white noise keeps 1/2 per halved axis, growth keeps all)")


def run_resize(args) -> int:
    """``botcore resize``: resize SRC into DST, atomically; print a summary table."""
    from . import target_from_args

    target = target_from_args(args)
    if not target:
        raise ShapeError(
            "no target size given; expected at least one of --layers, --hidden, --heads, --kv-heads, "
            "--head-dim, --ffn (e.g. --layers 3 --hidden 192 --heads 6 --ffn 768)")
    if detect_format(args.src) == "onnx":
        check_onnx(args.src)
    _check_output(args.src, args.dst, overwrite=args.overwrite)
    if args.config is not None and not os.path.isfile(args.config):
        raise ShapeError(f"--config {args.config!r} does not exist; expected the path of a config.json")
    from ..adapters import resize_model

    legacy_onnx = detect_format(args.src) == "onnx" and not _onnx_reader()
    source = args.src if legacy_onnx else open_source(args.src, config=args.config)
    rotate = None
    if args.retie is not None and args.calibration is None:
        flag = "--tie" if args.retie else "--untie"
        raise OptionError(f"{flag} applies only with --calibration TEXT_FILE (it says how the "
                          f"rotation treats a tied LM head); add --calibration or leave {flag} out")
    if args.calibration is not None:
        from .calibrate import moments_for

        rotate = moments_for(args.src, args.calibration, reader=source, family=args.family)
    bar = ProgressBar(label=f"resizing ({args.method})", enabled=None if not args.quiet else False)
    t0 = time.monotonic()
    try:
        res = resize_model(source, target, out=args.dst, progress=bar, measure=args.method == "bot",
                           rotate=rotate, retie=args.retie, **_options(args))
    finally:
        bar.close()
    if not args.quiet:
        _print_summary(args, res, time.monotonic() - t0)
    sys.stdout.flush()
    return 0
