"""Transfer-quality benchmark: does a BoT-initialised model train faster than the baselines?

Contract: ``python benchmarks/transfer.py --case <case>`` runs one case (``bert-l2s``,
``decoder-l2s``, ``bert-s2l``, ``decoder-s2l``, ``vit``; ``--case all`` runs them in turn) with fixed
seeds and one fixed data order per seed shared by every method, and writes
``benchmarks/results/<case>.json`` (every curve), ``<case>.md`` (the table) and
``<case>.png`` (eval curves). Results are rewritten after every run (temporary file,
then rename), and an interrupted case resumes from its JSON: runs already there are
skipped when the settings match. ``--quick`` is a tiny budget with one seed (a smoke
test of the whole pipeline; its numbers mean nothing) and writes ``<case>-quick.*``
into a new temporary folder (printed), never into ``benchmarks/results``, unless
``--out`` names a folder. ``decoder-s2l`` grows SmolLM2-135M to about twice its
parameters (40 layers, FFN 3072).

Methods are labels: ``scratch``, ``weight_selection``, ``layer_select``, ``net2net``
and ``bot:<gain>:<wavelet>``; all of them except scratch go through
``botcore.adapters.resize_model``. Every method gets the same optimizer, schedule,
budget, data order and evaluation set. ``bot:<gain>:<wavelet>:dsum`` is a
"beyond the paper" variant: after the resize, the residual-writing projections of a
pre-LN model (attention output and FFN output, weights and biases) are scaled by
source layers / target layers, so that depth keeps their sum rather than their mean.
``bot:<gain>:<wavelet>:pca`` first rotates a decoder's residual stream onto its
principal subspace (``resize_model(rotate=...)``, calibrated on the first 16
training rows); ``bot:<gain>:<wavelet>:untie`` is its control (the tied LM head
untied, nothing rotated) and ``:pca-tied`` the rotation with the head kept tied
(approximate). Growth options: ``:id`` (identity layers for depth growth) and
``:noise<alpha>`` (symmetry-breaking detail noise); see ``transfer_models.parse_method``.
Ablation labels: ``<depth method>/<width method>`` and
``<method>+<part>:<other method>``. Every label is read by ``transfer_models.Family.resize``.

Examples
--------
>>> sorted(CASES)
['bert-l2s', 'bert-s2l', 'decoder-l2s', 'decoder-s2l', 'vit']
>>> CASES["bert-l2s"].methods(quick=False)[:3]
['scratch', 'weight_selection', 'layer_select']
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from botcore.names import GAINS

sys.path.insert(0, str(Path(__file__).resolve().parent))


from transfer_report import summarize, write_figure, write_markdown

__all__ = ["CASES", "Case", "main", "merge_runs", "output_folder", "run_case", "source_digest"]

WAVELETS = ("haar", "db2", "coif3", "bior6.8")
RESULTS = Path(__file__).resolve().parent / "results"


def bot_grid(gains=GAINS, wavelets=WAVELETS) -> list[str]:
    """Method labels of the BoT gain x wavelet grid.

    Examples
    --------
    >>> len(bot_grid()), bot_grid()[0]
    (12, 'bot:paper:haar')
    """
    return [f"bot:{g}:{w}" for w in wavelets for g in gains]


#: A documented subset for the expensive cases: every gain with Haar, every wavelet with "function".
BOT_SUBSET = bot_grid(GAINS, ("haar",)) + bot_grid(("function",), WAVELETS[1:])


@dataclass
class Budget:
    """Steps, batch, learning rate, evaluation interval, seeds and eval-set size of a run."""

    steps: int
    batch: int
    lr: float
    eval_every: int
    seeds: tuple = (0, 1)
    eval_rows: int | None = None


@dataclass
class Case:
    """One benchmark case: a source family, targets, methods and budgets (full and quick)."""

    name: str
    family: str
    task: str
    targets: dict
    grow: bool
    full: Budget
    quick: Budget
    bot_methods: list = field(default_factory=bot_grid)
    bot_methods_by_target: dict = field(default_factory=dict)
    extra_methods: list = field(default_factory=list)
    quick_methods: list = field(default_factory=lambda: ["bot:function:haar", "bot:std:db2"])
    quick_targets: dict | None = None

    def baselines(self) -> list[str]:
        return ["net2net"] if self.grow else ["weight_selection", "layer_select"]

    def targets_for(self, *, quick: bool) -> dict:
        return self.quick_targets if quick and self.quick_targets else self.targets

    def methods(self, *, quick: bool, target: str | None = None) -> list[str]:
        if quick:
            return ["scratch", *self.baselines(), *self.quick_methods]
        bot = self.bot_methods_by_target.get(target, self.bot_methods)
        return ["scratch", *self.baselines(), *bot, *self.extra_methods]


#: Where BoT's loss to weight selection comes from (bert-l2s 3x192; docs/transfer.md).
ABLATIONS = ["layer_select/bot:std:haar", "bot:std:haar/weight_selection",
             "bot:std:haar+embeddings:weight_selection", "weight_selection+embeddings:bot:std:haar"]

#: BoT labels with Haar and every gain (the cheapest documented subset).
BOT_HAAR = bot_grid(GAINS, ("haar",))

#: The growth ideas of the transfer issue (docs/transfer.md): symmetry-breaking detail noise,
#: identity depth growth with it (identity depth alone equals net2net on dyadic ratios).
GROWTH = ["bot:function:haar:noise1", "bot:function:haar:id:noise1"]

CASES = {
    "bert-l2s": Case(
        "bert-l2s", "bert", "mlm",
        {"3x192": dict(layers=3, hidden=192, heads=6, ffn=768),
         "4x256": dict(layers=4, hidden=256, heads=8, ffn=1024)},
        grow=False,
        full=Budget(steps=500, batch=8, lr=3e-4, eval_every=31),
        quick=Budget(steps=2, batch=2, lr=3e-4, eval_every=1, seeds=(0,), eval_rows=4),
        bot_methods=BOT_SUBSET, bot_methods_by_target={"4x256": BOT_HAAR, "3x192": BOT_SUBSET + ABLATIONS},
    ),
    "decoder-l2s": Case(
        "decoder-l2s", "llama", "clm",
        {"15x288": dict(layers=15, hidden=288, heads=9, kv_heads=3, ffn=768)},
        grow=False,
        full=Budget(steps=160, batch=4, lr=3e-4, eval_every=10, eval_rows=16),
        quick=Budget(steps=2, batch=2, lr=3e-4, eval_every=1, seeds=(0,), eval_rows=2),
        bot_methods=[*BOT_HAAR, "bot:function:db2"],
        extra_methods=["bot:function:haar:pca", "bot:function:haar:pca-tied", "bot:function:haar:untie",
                       "bot:function:haar:dsum"],
        quick_methods=["bot:function:haar", "bot:function:haar:pca"],
    ),
    "bert-s2l": Case(
        "bert-s2l", "bert", "mlm",
        {"12x768": dict(layers=12, hidden=768, heads=12, head_dim=64, ffn=3072)},
        grow=True,
        full=Budget(steps=200, batch=2, lr=1e-4, eval_every=10, eval_rows=8),
        quick=Budget(steps=1, batch=1, lr=1e-4, eval_every=1, seeds=(0,), eval_rows=1),
        bot_methods=BOT_HAAR, extra_methods=GROWTH,
        quick_methods=["bot:function:haar", "bot:function:haar:noise1"],
    ),
    "decoder-s2l": Case(
        "decoder-s2l", "llama", "clm",
        {"40x576": dict(layers=40, hidden=576, heads=9, kv_heads=3, ffn=3072)},
        grow=True,
        full=Budget(steps=60, batch=2, lr=1e-4, eval_every=6, eval_rows=8),
        quick=Budget(steps=1, batch=1, lr=1e-4, eval_every=1, seeds=(0,), eval_rows=1),
        bot_methods=["bot:function:haar"],
        extra_methods=["bot:function:haar:noise1", "bot:function:haar:id:noise1",
                       "bot:function:haar:id:pca:noise1"],
        quick_methods=["bot:function:haar:id:noise1"],
        quick_targets={"32x576": dict(layers=32, hidden=576, heads=9, kv_heads=3, ffn=1536)},
    ),
    "vit": Case(
        "vit", "vit", "cls",
        {"shrink-2x64": dict(layers=2, hidden=64, heads=2, ffn=128),
         "grow-8x256": dict(layers=8, hidden=256, heads=8, ffn=512)},
        grow=False,
        full=Budget(steps=150, batch=32, lr=5e-4, eval_every=10),
        quick=Budget(steps=2, batch=8, lr=5e-4, eval_every=1, seeds=(0,), eval_rows=64),
        bot_methods=bot_grid(), bot_methods_by_target={
            "grow-8x256": BOT_HAAR + ["bot:function:haar:pca"] + GROWTH,
            "shrink-2x64": bot_grid() + ["bot:std:haar:pca", "bot:paper:haar:pca"]},
        extra_methods=["bot:function:haar:dsum"],
        quick_methods=["bot:function:haar", "bot:std:haar:pca"],
    ),
}


def _vit_baselines(case: Case, target: str) -> list[str]:
    return ["net2net"] if target.startswith("grow") else ["weight_selection", "layer_select"]


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def output_folder(name: str, *, quick: bool, out=None) -> Path:
    """Where a run writes: ``out``, else a new temporary folder for ``--quick``, else ``benchmarks/results``.

    >>> folder = output_folder("vit", quick=True)
    >>> folder.is_relative_to(RESULTS), folder.name.startswith("bot-transfer-vit-quick-")
    (False, True)
    >>> folder.rmdir()  # the example leaves nothing behind
    """
    if out is not None:
        return Path(out)
    if quick:  # a smoke run never writes into benchmarks/results
        return Path(tempfile.mkdtemp(prefix=f"bot-transfer-{name}-quick-"))
    return RESULTS


def run_case(name: str, *, quick: bool = False, out: Path | None = None, seeds=None, methods=None,
             targets=None, steps: int | None = None, log=print) -> dict:
    """Run (or resume) one case and write its JSON, markdown table and figure; return the JSON dict.

    ``steps`` overrides the case's budget (evaluating about 16 times per run) and
    writes ``<case>-<steps>steps.*`` beside the standard results.
    """
    import torch
    from transfer_models import FAMILIES
    from transfer_tasks import make_task

    torch.set_num_threads(int(os.environ.get("BOT_TRANSFER_THREADS", "1")))
    case = CASES[name]
    budget = case.quick if quick else case.full
    if steps:
        budget = replace(budget, steps=steps, eval_every=max(1, steps // 16))
    seeds = tuple(seeds) if seeds else budget.seeds
    out = output_folder(name, quick=quick, out=out)
    if quick:
        log(f"[{name}] --quick writes to {out}")
    out.mkdir(parents=True, exist_ok=True)
    stem = out / (f"{name}-quick" if quick else f"{name}-{steps}steps" if steps else name)
    case_targets = case.targets_for(quick=quick)
    settings = {"case": name, "quick": quick, "budget": asdict(budget) | {"seeds": list(seeds)},
                "targets": case_targets, "family": case.family, "task": case.task,
                "optimizer": "AdamW betas (0.9, 0.95), weight decay 0.01, grad clip 1.0, "
                             "linear warm-up 10% then cosine to 0.1 x lr; dropout off"}
    data = {"settings": settings, "runs": []}
    json_path = stem.with_suffix(".json")
    old_digest = _resume(json_path, data)
    done = {(r["target"], r["method"], r["seed"]) for r in data["runs"]}

    plan = {t: (methods or case.methods(quick=quick, target=t)) for t in case_targets if not targets or t in targets}
    if all((t, m, sd) in done for t, ms in plan.items() for m in ms for sd in seeds) and case.name != "vit":
        log(f"[{name}] every requested run is already in {json_path}")
        return data
    t0 = time.perf_counter()
    family = FAMILIES[case.family](**({"steps": 30} if quick and case.family == "vit" else {}))
    task = make_task(case.task).limit_eval(budget.eval_rows)
    digest = source_digest(family.params())
    if data["runs"] and _other_source(old_digest, digest, case.family):
        # the runs on file came from another source: never mix them with this one's
        stem = stem.with_name(f"{stem.name}-src{digest[:8]}")
        json_path = stem.with_suffix(".json")
        log(f"[{name}] the runs in {stem.name.rsplit('-src', 1)[0]}.json come from another source (digest "
            f"{old_digest or 'not recorded'}, this one {digest[:16]}): writing to {json_path} instead")
        data["runs"] = []
        if _resume(json_path, data) not in (None, digest[:DIGEST_CHARS]):
            raise SystemExit(f"{json_path}: recorded source digest differs from {digest[:16]}")
        done = {(r["target"], r["method"], r["seed"]) for r in data["runs"]}
    data["settings"]["source_digest"] = digest[:DIGEST_CHARS]
    data["settings"]["source_config"] = {k: family.config.get(k) for k in (
        "num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads", "intermediate_size")}
    data["settings"]["data"] = {"train_rows": len(task.train_x), "eval_rows": len(task.eval_x),
                                "metric": task.metric}
    log(f"[{name}] source and data ready in {time.perf_counter() - t0:.0f} s")
    for tname, target in case_targets.items():
        if targets and tname not in targets:
            continue
        todo = methods or case.methods(quick=quick, target=tname)
        if case.name == "vit":
            base = _vit_baselines(case, tname)
            todo = [m for m in todo if m not in ("weight_selection", "layer_select", "net2net")]
            todo = todo[:1] + base + todo[1:]
        for seed in seeds:
            for method in todo:
                if (tname, method, seed) in done:
                    continue
                log(f"[{name}] {tname} seed {seed} {method}")
                t1 = time.perf_counter()
                model, fresh = family.build(method, target, seed=seed)
                build_s = time.perf_counter() - t1
                n_params = sum(p.numel() for p in model.parameters())
                run = train_run(model, task, budget, seed=seed, log=log)
                data["runs"].append({"target": tname, "method": method, "seed": seed, "params": n_params,
                                     "fresh_params": len(fresh) if method != "scratch" else "all",
                                     "build_s": build_s, **run})
                del model
                _write_json(json_path, data)
                write_outputs(stem, data, task_metric=task.metric, higher=task.higher_is_better)
    write_outputs(stem, data, task_metric=task.metric, higher=task.higher_is_better)
    log(f"[{name}] done in {time.perf_counter() - t0:.0f} s -> {stem}.md")
    return data


#: Families whose source is trained by the harness (not read from a published checkpoint): a result
#: file of theirs without a recorded source digest may come from another source (another machine or
#: library version trains another ViT), so it is never resumed.
TRAINED_SOURCES = {"vit"}


#: how many hex digits of :func:`source_digest` a result file records
DIGEST_CHARS = 16


def _other_source(recorded: str | None, digest: str, family: str) -> bool:
    """Whether runs on file, with source digest ``recorded`` (as written), came from another source.

    >>> d = "ab" * 32
    >>> _other_source(d[:DIGEST_CHARS], d, "bert"), _other_source("0" * DIGEST_CHARS, d, "bert")
    (False, True)
    >>> _other_source(None, d, "bert"), _other_source(None, d, "vit")
    (False, True)
    """
    if recorded is None:
        return family in TRAINED_SOURCES
    return recorded != digest[:DIGEST_CHARS]


def source_digest(params) -> str:
    """SHA-256 of a source's parameters (names, dtypes, shapes and bytes, in name order).

    >>> import numpy as np
    >>> a = source_digest({"w": np.zeros(2, np.float32)})
    >>> a == source_digest({"w": np.zeros(2, np.float32)}), a == source_digest({"w": np.ones(2, np.float32)})
    (True, False)
    """
    import hashlib

    import numpy as np

    h = hashlib.sha256()
    for name in sorted(params):
        x = np.ascontiguousarray(np.asarray(params[name]))
        h.update(f"{name}|{x.dtype.str}|{x.shape}|".encode())
        h.update(x.tobytes())
    return h.hexdigest()


def _resume(json_path: Path, data: dict) -> str | None:
    """Load the runs of ``json_path`` into ``data`` when its budget matches; return its source digest."""
    if not json_path.exists():
        return None
    old = json.loads(json_path.read_text())
    if old.get("settings", {}).get("budget", {}) | {"seeds": []} == data["settings"]["budget"] | {"seeds": []}:
        data["runs"] = old["runs"]
    return old.get("settings", {}).get("source_digest")


def train_run(model, task, budget: Budget, *, seed: int, log=None) -> dict:
    from transfer_tasks import train

    res = train(model, task, steps=budget.steps, batch=budget.batch, lr=budget.lr, seed=seed,
                eval_every=budget.eval_every, log=log)
    res["eval_detail"] = [{k: float(v) for k, v in d.items()} for d in res["eval_detail"]]
    res["train_loss"] = [float(x) for x in res["train_loss"]]
    return res


def write_outputs(stem: Path, data: dict, *, task_metric: str, higher: bool) -> None:
    """Rewrite ``<stem>.md`` and ``<stem>.png`` from the JSON dict."""
    summary = summarize(data["runs"], steps=data["settings"]["budget"]["steps"], higher=higher)
    data["summary"] = summary
    _write_json(stem.with_suffix(".json"), data)
    write_markdown(stem.with_suffix(".md"), data, summary, metric=task_metric, higher=higher)
    write_figure(stem.with_suffix(".png"), data, metric=task_metric)


def merge_runs(name: str, paths, *, out: Path | None = None, steps: int | None = None, log=print) -> dict:
    """Add the runs of other result JSONs of case ``name`` (same budget) to its results.

    This is how two processes share one case: each writes its own ``--out``
    folder, and the runs are merged afterwards (a run already present is kept).
    ``steps`` merges into ``<case>-<steps>steps.json`` (the ``--steps`` runs).
    """
    stem = (Path(out) if out else RESULTS) / (f"{name}-{steps}steps" if steps else name)
    data = json.loads(stem.with_suffix(".json").read_text())
    have = {(r["target"], r["method"], r["seed"]) for r in data["runs"]}
    for path in paths:
        other = json.loads(Path(path).read_text())
        if other["settings"]["budget"] | {"seeds": []} != data["settings"]["budget"] | {"seeds": []}:
            raise ValueError(f"{path}: its budget {other['settings']['budget']} differs from "
                             f"{stem}.json's {data['settings']['budget']}; only equal budgets merge")
        mine, theirs = data["settings"].get("source_digest"), other["settings"].get("source_digest")
        if mine and theirs and mine != theirs:
            raise ValueError(f"{path}: its source digest {theirs} differs from {stem}.json's {mine}; "
                             "runs of different sources do not merge")
        new = [r for r in other["runs"] if (r["target"], r["method"], r["seed"]) not in have]
        data["runs"].extend(new)
        have |= {(r["target"], r["method"], r["seed"]) for r in new}
        data["settings"]["budget"]["seeds"] = sorted({*data["settings"]["budget"]["seeds"],
                                                      *other["settings"]["budget"]["seeds"]})
        log(f"[{name}] merged {len(new)} run(s) from {path}")
    metric = data["settings"]["data"]["metric"]
    write_outputs(stem, data, task_metric=metric, higher=metric == "accuracy")
    return data


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--case", required=True, nargs="+", choices=[*CASES, "all"],
                    help="one or more cases, or 'all'")
    ap.add_argument("--quick", action="store_true", help="tiny budget, one seed (smoke test)")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    ap.add_argument("--seeds", type=int, nargs="*", default=None)
    ap.add_argument("--methods", nargs="*", default=None)
    ap.add_argument("--targets", nargs="*", default=None)
    ap.add_argument("--steps", type=int, default=None,
                    help="override the budget's steps (results go to <case>-<steps>steps.*)")
    ap.add_argument("--merge", nargs="+", type=Path, default=None, metavar="JSON",
                    help="add the runs of these result files (same case and budget) to the case's "
                         "results instead of running anything")
    args = ap.parse_args(argv)
    names = list(CASES) if "all" in args.case else list(dict.fromkeys(args.case))
    if args.merge:
        if len(names) != 1:
            raise SystemExit("--merge takes exactly one --case")
        merge_runs(names[0], args.merge, out=args.out, steps=args.steps, log=lambda s: print(s, flush=True))
        return 0
    for n in names:
        run_case(n, quick=args.quick, out=args.out, seeds=args.seeds, methods=args.methods,
                 targets=args.targets, steps=args.steps, log=lambda s: print(s, flush=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
