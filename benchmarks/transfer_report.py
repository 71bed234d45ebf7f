"""Summaries, markdown tables and loss-curve figures of the transfer benchmark.

Contract: pure functions of the JSON run records (no training, no framework). A
method "reaches" scratch when its evaluation curve first gets to scratch's final
value of the same seed and target (loss <= it, or accuracy >= it); the step is
linearly interpolated between the two evaluations that bracket the crossing.
FLOPs saved = 1 - reach step / scratch's total steps (same model size, so steps
are proportional to training FLOPs; the one-off resize and the source's own
pre-training are not counted). Each number is the mean over seeds with the
min-max spread; a method that does not reach scratch within the budget in some
seed is shown as ``n.r.`` with the count of seeds that did. Files are written to
a temporary name and renamed.

Examples
--------
>>> reach_step([0, 10, 20], [5.0, 3.0, 1.0], 2.0, higher=False)
15.0
>>> reach_step([0, 10], [5.0, 4.0], 2.0, higher=False) is None
True
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

__all__ = ["reach_step", "summarize", "write_figure", "write_markdown"]


def reach_step(steps, values, threshold: float, *, higher: bool) -> float | None:
    """First (interpolated) step at which ``values`` reach ``threshold``; ``None`` if never.

    Examples
    --------
    >>> reach_step([0, 10], [0.5, 0.9], 0.7, higher=True)
    5.0
    >>> reach_step([0, 10], [0.8, 0.9], 0.7, higher=True)
    0.0
    """
    sign = -1.0 if higher else 1.0
    v = [sign * x for x in values]
    t = sign * threshold
    for i, (s, x) in enumerate(zip(steps, v)):
        if x <= t:
            if i == 0:
                return float(s)
            s0, x0 = steps[i - 1], v[i - 1]
            return float(s0 + (s - s0) * (x0 - t) / (x0 - x)) if x0 != x else float(s)
    return None


def _stat(xs) -> dict | None:
    xs = [x for x in xs if x is not None]
    if not xs:
        return None
    return {"mean": float(np.mean(xs)), "min": float(np.min(xs)), "max": float(np.max(xs)), "n": len(xs)}


#: The baselines a BoT variant is compared with (the best of those present, by mean final value).
#: ``weight_selection:<rotation>`` is weight selection after the same rotation of the stream
#: as BoT's ``:pca`` / ``:pca-tied`` / ``:pcaln`` (built for the selection): the control that
#: tells the rotation's share from BoT's.
BASELINES = ("weight_selection", "layer_select", "net2net", "weight_selection:pca",
             "weight_selection:pca-tied", "weight_selection:pcaln")


def best_baseline(methods: dict, *, higher: bool) -> str | None:
    """The baseline (of :data:`BASELINES`) with the best mean final value, or ``None``.

    >>> best_baseline({"net2net": {"end": {"mean": 4.0}}, "scratch": {"end": {"mean": 5.0}}}, higher=False)
    'net2net'
    """
    sign = -1.0 if higher else 1.0
    have = [m for m in BASELINES if m in methods and methods[m]["end"]]
    return min(have, key=lambda m: sign * methods[m]["end"]["mean"], default=None)


def _versus(seeds: dict, base: dict, *, steps: int, higher: bool) -> dict:
    """Against the best baseline, per seed: FLOPs saved to reach its final value, final gap."""
    reach, saved, gap = [], [], []
    for seed, r in sorted(seeds.items()):
        ref = base.get(seed)
        if ref is None:
            continue
        st = reach_step(r["eval_steps"], r["evals"], ref["evals"][-1], higher=higher)
        reach.append(st)
        saved.append(None if st is None else 1.0 - st / steps)
        gap.append(r["evals"][-1] - ref["evals"][-1])
    return {"saved": _stat(saved), "reached": sum(x is not None for x in reach), "compared": len(reach),
            "gap": _stat(gap)}


def summarize(runs: list[dict], *, steps: int, higher: bool) -> dict:
    """Per target and method: start, end, reach step and FLOPs saved over seeds.

    Also ``params`` (trainable parameters) and ``vs_base``: against the best
    baseline of the target (:func:`best_baseline`), the FLOPs saved to reach
    *its* final value and the final-value gap (method minus baseline, same seed).

    Examples
    --------
    >>> runs = [dict(target="t", method=m, seed=0, eval_steps=[0, 10], evals=e)
    ...         for m, e in (("scratch", [9.0, 4.0]), ("bot", [6.0, 2.0]))]
    >>> s = summarize(runs, steps=10, higher=False)["t"]["bot"]
    >>> s["reach"]["mean"], s["flops_saved"]["mean"]
    (5.0, 0.5)
    """
    by = defaultdict(lambda: defaultdict(dict))
    for r in runs:
        by[r["target"]][r["method"]][r["seed"]] = r
    out: dict = {}
    for target, methods in by.items():
        scratch = methods.get("scratch", {})
        out[target] = {}
        for method, seeds in methods.items():
            reach, saved = [], []
            for seed, r in sorted(seeds.items()):
                ref = scratch.get(seed)
                if ref is None:
                    continue
                st = reach_step(r["eval_steps"], r["evals"], ref["evals"][-1], higher=higher)
                reach.append(st)
                saved.append(None if st is None else 1.0 - st / steps)
            out[target][method] = {
                "seeds": sorted(seeds),
                "start": _stat([r["evals"][0] for r in seeds.values()]),
                "end": _stat([r["evals"][-1] for r in seeds.values()]),
                "reach": _stat(reach), "flops_saved": _stat(saved),
                "reached": sum(x is not None for x in reach), "compared": len(reach),
                "wall_s": _stat([r.get("wall_s") for r in seeds.values()]),
                "params": _stat([r.get("params") for r in seeds.values()]),
            }
        base = best_baseline(out[target], higher=higher)
        for method, seeds in methods.items():
            if base is not None:
                out[target][method]["vs_base"] = {"baseline": base, **_versus(
                    seeds, methods[base], steps=steps, higher=higher)}
    return out


def _fmt(st: dict | None, *, pct: bool = False, digits: int = 3) -> str:
    if st is None:
        return "–"
    f = (lambda x: f"{100 * x:.0f}%") if pct else (lambda x: f"{x:.{digits}f}")
    if st["n"] == 1 or st["min"] == st["max"]:
        return f(st["mean"])
    return f"{f(st['mean'])} ({f(st['min'])}–{f(st['max'])})"


def _tmp_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _params(s: dict) -> str:
    p = s.get("params")
    return "–" if not p else f"{p['mean'] / 1e6:.1f}M"


def _versus_cells(s: dict) -> list[str]:
    v = s.get("vs_base")
    if not v or not v["compared"]:
        return ["–", "–"]
    gap = _fmt(v["gap"])
    if v["reached"] < v["compared"]:
        return [gap, f"n.r. in {v['compared'] - v['reached']}/{v['compared']}"]
    return [gap, _fmt(v["saved"], pct=True)]


def table_rows(summary: dict, target: str, *, higher: bool) -> list[list[str]]:
    """Rows ``[method, seeds, params, start, end, reach step, FLOPs saved, gap, saved vs baseline]``.

    Scratch first, then best end first. The last two columns compare with the best
    baseline: final value minus its final (same seed), and the FLOPs saved to reach
    its final value.
    """
    items = list(summary[target].items())
    items.sort(key=lambda kv: (kv[0] != "scratch", (-1 if higher else 1) * (kv[1]["end"] or {"mean": math.inf})["mean"]))
    rows = []
    for method, s in items:
        if s["compared"] and s["reached"] < s["compared"]:
            reach = f"n.r. ({s['reached']}/{s['compared']} seeds reached)"
            saved = f"≤0% in {s['compared'] - s['reached']} seed(s)"
            if s["reached"]:
                saved += f"; {_fmt(s['flops_saved'], pct=True)} in the others"
        else:
            reach = _fmt(s["reach"], digits=0)
            saved = _fmt(s["flops_saved"], pct=True)
        rows.append([f"`{method}`", str(len(s["seeds"])), _params(s), _fmt(s["start"]), _fmt(s["end"]),
                     reach, saved, *_versus_cells(s)])
    return rows


def write_markdown(path: Path, data: dict, summary: dict, *, metric: str, higher: bool) -> None:
    """Write the case's markdown table(s) (one per target)."""
    st = data["settings"]
    b = st["budget"]
    seeds = sorted({seed for runs in summary.values() for s in runs.values() for seed in s["seeds"]})
    lines = [f"# Transfer benchmark: {st['case']}{' (quick smoke run: numbers mean nothing)' if st['quick'] else ''}",
             "",
             f"Source: {st.get('family')} {st.get('source_config', {})}. Task: {st['task']}, metric: {metric} "
             f"({'higher' if higher else 'lower'} is better). Budget per run: {b['steps']} steps of batch "
             f"{b['batch']}, lr {b['lr']}, eval every {b['eval_every']} steps, seeds run {seeds}. "
             f"{st['optimizer']}. Data: {st.get('data', {})}.",
             "",
             "Cells: mean over seeds (min–max). *reach* = first step (interpolated between evaluations) at which "
             "the method reaches scratch's final value of the same seed; FLOPs saved = 1 − reach / "
             f"{b['steps']}. params = trainable parameters (the FLOPs per token follow the architecture, "
             "which every method of a target shares; a tied head counts once). The last two columns compare "
             "with the best baseline (same seed): the final-value gap, and the FLOPs saved to reach the "
             "baseline's final value.", ""]
    for target, spec in st["targets"].items():
        if target not in summary:
            continue
        base = next((s["vs_base"]["baseline"] for s in summary[target].values() if "vs_base" in s), None)
        versus = (f"final − `{base}` | FLOPs saved to `{base}`'s final" if base else
                  "final − best baseline (none ran) | FLOPs saved to its final")
        lines += [f"## {target}: {spec}", "",
                  f"| method | seeds | params | {metric} step 0 | {metric} step {b['steps']} | reach step "
                  f"| FLOPs saved | {versus} |",
                  "|---|---|---|---|---|---|---|---|---|"]
        lines += ["| " + " | ".join(r) + " |" for r in table_rows(summary, target, higher=higher)]
        lines.append("")
    _tmp_write(path, "\n".join(lines))


def write_figure(path: Path, data: dict, *, metric: str) -> None:
    """Eval curves (mean over seeds) per target; scratch black, baselines dashed, BoT by gain colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = [t for t in data["settings"]["targets"] if any(r["target"] == t for r in data["runs"])]
    if not targets:
        return
    fig, axes = plt.subplots(1, len(targets), figsize=(6.5 * len(targets), 4.6), squeeze=False)
    colours = {"paper": "tab:red", "function": "tab:blue", "std": "tab:green"}
    wl_style = {"haar": "-", "db2": (0, (5, 1)), "coif3": (0, (1, 1)), "bior6.8": (0, (3, 1, 1, 1))}
    for ax, target in zip(axes[0], targets):
        curves = defaultdict(list)
        for r in data["runs"]:
            if r["target"] == target:
                curves[r["method"]].append((r["eval_steps"], r["evals"]))
        for method, cs in sorted(curves.items()):
            steps = cs[0][0]
            mean = np.mean([c[1] for c in cs], axis=0)
            parts = method.split(":")
            if method == "scratch":
                kw = dict(color="black", lw=2.2)
            elif parts[0] == "bot":
                kw = dict(color=colours.get(parts[1], "tab:purple"), ls=wl_style.get(parts[2], "-"),
                          lw=2.0 if parts[2] == "haar" else 1.2)
                if len(parts) > 3:
                    kw.update(color="tab:purple", lw=2.0)
            else:
                kw = dict(color={"weight_selection": "tab:orange", "layer_select": "tab:brown",
                                 "net2net": "tab:orange"}.get(method, "gray"), ls="--", lw=2.0)
            ax.plot(steps, mean, label=f"{method} (n={len(cs)})", **kw)
        ax.set_title(f"{data['settings']['case']} {target}")
        ax.set_xlabel("training step")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        if metric != "accuracy":
            lo = min(min(r["evals"]) for r in data["runs"] if r["target"] == target)
            hi = max(r["evals"][min(1, len(r["evals"]) - 1)] for r in data["runs"] if r["target"] == target)
            ax.set_ylim(lo - 0.2, max(hi, lo + 0.5) + 0.3)
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    tmp = path.with_name(path.stem + f".tmp{os.getpid()}.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
