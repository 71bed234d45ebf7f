"""Refresh the generated parts of ``docs/transfer.md`` from ``benchmarks/results``.

Contract: the page is hand-written except between ``<!-- results:<case> -->`` and
``<!-- /results:<case> -->`` markers; each such block is replaced by the case's
tables (from ``benchmarks/results/<case>.md``, title dropped) and a link to its
figure, copied to ``docs/img/transfer-<case>.png``. Missing results leave a note.
Files are written to a temporary name and renamed.

Examples
--------
>>> page = "a\\n<!-- results:x -->\\nold\\n<!-- /results:x -->\\nb"
>>> splice("<!-- results:x -->\\n<!-- /results:x -->", "x", "new")
'<!-- results:x -->\\nnew\\n<!-- /results:x -->'
>>> print(splice(page, "x", "new"))
a
<!-- results:x -->
new
<!-- /results:x -->
b
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def splice(page: str, case: str, body: str) -> str:
    """Replace the marked block of ``case`` in ``page`` with ``body``."""
    pat = re.compile(rf"(<!-- results:{re.escape(case)} -->\n)(?:.*?\n)?(<!-- /results:{re.escape(case)} -->)",
                     re.DOTALL)
    return pat.sub(lambda m: m.group(1) + body + "\n" + m.group(2), page)


def case_block(case: str) -> str:
    """Tables and figure link of one case (or a note that it has not run)."""
    md = RESULTS / f"{case}.md"
    if not md.exists():
        return f"*No results yet: run `python benchmarks/transfer.py --case {case}`.*"
    lines = md.read_text().splitlines()
    body = "\n".join(ln.replace("## ", "#### ", 1) if ln.startswith("## ") else ln for ln in lines[1:]).strip()
    png = RESULTS / f"{case}.png"
    if png.exists():
        dst = ROOT / "docs" / "img" / f"transfer-{case}.png"
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(dst.stem + ".tmp.png")
        shutil.copyfile(png, tmp)
        os.replace(tmp, dst)
        body += f"\n\n![{case} eval curves](img/transfer-{case}.png)"
    return body


#: The target of the transfer issue for every case: the best BoT variant saves >= 15 points more
#: FLOPs than the best baseline of the same run (mean over the seeds) and ends at a better final
#: value (in every seed).
TARGET_POINTS = 15
CASES = ("bert-l2s", "decoder-l2s", "bert-s2l", "decoder-s2l", "vit")


def _per_seed(runs: list, target: str, *, steps: int, higher: bool) -> dict:
    """``{method: {seed: (FLOPs saved or None, final value)}}`` of one target."""
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from transfer_report import reach_step

    scratch = {r["seed"]: r for r in runs if r["target"] == target and r["method"] == "scratch"}
    out: dict = {}
    for r in runs:
        ref = scratch.get(r["seed"])
        if r["target"] != target or ref is None:
            continue
        st = reach_step(r["eval_steps"], r["evals"], ref["evals"][-1], higher=higher)
        out.setdefault(r["method"], {})[r["seed"]] = (None if st is None else 1 - st / steps, r["evals"][-1])
    return out


def _best(rows: dict, names, *, higher: bool) -> str | None:
    """The label with the most seeds, then the highest mean FLOPs saved (n.r. = -1), then the best final."""
    def key(m):
        seeds = rows[m].values()
        saved = [x if x is not None else -1.0 for x, _ in seeds]
        final = sum(f for _, f in seeds) / len(seeds)
        return (len(seeds), sum(saved) / len(saved), final if higher else -final)
    names = [m for m in names if m in rows]
    return max(names, key=key, default=None)



def _contest(data, target, *, steps, higher):
    """Per-seed values, parameter counts, the best BoT variant and the best baseline of a target."""
    per = _per_seed(data["runs"], target, steps=steps, higher=higher)
    params = {r["method"]: r.get("params", 0) for r in data["runs"] if r["target"] == target}
    bot = _best(per, [m for m in per if _is_bot(m)], higher=higher)
    from transfer_report import BASELINES

    return per, params, bot, _best(per, BASELINES, higher=higher)

def _spread(xs, fmt) -> str:
    xs = list(xs)
    mean = sum(xs) / len(xs)
    if fmt(min(xs)) == fmt(max(xs)):
        return fmt(mean)
    return f"{fmt(mean)} ({fmt(min(xs))} to {fmt(max(xs))})"


def _is_bot(label: str) -> bool:
    """A BoT variant (``bot:<gain>:<wavelet>[:options]``), not an ablation hybrid (``/``, ``+``)."""
    return label.startswith("bot:") and "/" not in label and "+" not in label


def _load(path: Path):
    import json

    data = json.loads(path.read_text())
    steps, higher = data["settings"]["budget"]["steps"], data["settings"]["data"]["metric"] == "accuracy"
    return data, steps, higher


def _count(n: int) -> str:
    """A parameter count: ``27.4M``, ``70k``."""
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"


def _compare(per: dict, bot: str, base: str, *, higher: bool, params: dict) -> dict:
    """Per-seed comparison of ``bot`` with ``base`` on their common seeds (cells of a headline row)."""
    seeds = sorted(set(per[bot]) & set(per[base]))
    lead = [100 * ((per[bot][sd][0] or 0) - (per[base][sd][0] or 0)) for sd in seeds]
    gap = [per[bot][sd][1] - per[base][sd][1] for sd in seeds]
    better = all(g > 0 for g in gap) if higher else all(g < 0 for g in gap)
    mean_lead = sum(lead) / len(lead)

    def saved(m):
        xs = [per[m][sd][0] for sd in seeds]
        if None in xs:
            return f"n.r. in {xs.count(None)}/{len(xs)}"
        return _spread([100 * x for x in xs], lambda v: f"{v:.0f}%")

    room = [100 * (1 - (per[base][sd][0] or 0)) for sd in seeds]
    return {"seeds": seeds, "bot_saved": saved(bot), "base_saved": saved(base),
            "lead": _spread(lead, lambda v: f"{v:+.0f}"), "to_target": f"{mean_lead - TARGET_POINTS:+.0f}",
            "room": f"{sum(room) / len(room):.0f}", "gap": _spread(gap, lambda v: f"{v:+.3f}"),
            "params": f"{_count(params.get(bot, 0))} / {_count(params.get(base, 0))}",
            "met": "yes" if mean_lead >= TARGET_POINTS and better else "no"}


def lead_rows(case: str, path: Path) -> list[str]:
    """Headline rows of one result file: best BoT variant against the best baseline, per target.

    Cells: case / target, budget, best BoT variant, its FLOPs saved, best baseline, its
    FLOPs saved, lead (points, per seed), lead minus the target, the most lead possible
    (100 − the baseline's FLOPs saved), final gap (BoT − baseline), trainable parameters
    (BoT / baseline), target met. A target where no BoT variant or no baseline ran gets a
    row that says so.
    """
    data, steps, higher = _load(path)
    rows = []
    for target in data["settings"]["targets"]:
        per, params, bot, base = _contest(data, target, steps=steps, higher=higher)
        if bot is None or base is None:
            ran = ", ".join(f"`{m}`" for m in sorted(per))
            said = f"only {ran} ran at this budget" if ran else "no run at this budget"
            rows.append(f"| {case} / {target} | {steps} steps | {said} |"
                        + " – |" * 8 + " not measured |")
            continue
        c = _compare(per, bot, base, higher=higher, params=params)
        rows.append(" | ".join([f"| {case} / {target}", f"{steps} x {len(c['seeds'])} seed(s)", f"`{bot}`",
                                c["bot_saved"], f"`{base}`", c["base_saved"], c["lead"], c["to_target"],
                                c["room"], c["gap"], c["params"], c["met"]]) + " |")
    return rows


HEADER = (f"| case / target | budget (steps x seeds) | best BoT variant | its FLOPs saved | best baseline "
          f"| its FLOPs saved | lead (points) | lead − {TARGET_POINTS} | most lead possible "
          f"| final: BoT − baseline | params: BoT / baseline | +{TARGET_POINTS} and better final? |\n"
          + "|---" * 12 + "|")


def _files(case: str) -> list[Path]:
    """The standard result file of ``case``, then its longer budgets (``<case>-<N>steps.json``)."""
    import json

    std = RESULTS / f"{case}.json"
    if not std.exists():
        return []
    n = json.loads(std.read_text())["settings"]["budget"]["steps"]
    longer = sorted((int(p.stem.split("-")[-1][:-5]), p) for p in RESULTS.glob(f"{case}-*steps.json"))
    return [std] + [p for k, p in longer if k > n]


def headline() -> str:
    """One table: per case, target and budget, the best BoT variant against the best baseline.

    Budgets: the standard one (``<case>.json``) and the longer ones (``<case>-<N>steps.json``
    with ``N`` above the standard budget). A case without results gets a row that says so.
    """
    rows = [HEADER]
    for case in CASES:
        files = _files(case)
        if not files:
            rows.append(f"| {case} | not run | no committed results: "
                        f"`python benchmarks/transfer.py --case {case}` |" + " – |" * 8 + " not measured |")
        for p in files:
            rows += lead_rows(case, p)
    return "\n".join(rows)


def partial() -> str:
    """BoT variants left out of the headline because they ran fewer seeds than its best variant.

    Each is compared with the headline's best baseline on the seeds it has (same cells as
    :func:`lead_rows`), so a promising idea that lacks a seed is visible, not hidden.
    """
    rows = [HEADER.replace("best BoT variant", "BoT variant")]
    for case in CASES:
        for p in _files(case)[:1]:
            data, steps, higher = _load(p)
            for target in data["settings"]["targets"]:
                per, params, bot, base = _contest(data, target, steps=steps, higher=higher)
                if bot is None or base is None:
                    continue
                for m in sorted(m for m in per if _is_bot(m) and len(per[m]) < len(per[bot])):
                    c = _compare(per, m, base, higher=higher, params=params)
                    rows.append(" | ".join([f"| {case} / {target}", f"{steps} x {len(c['seeds'])} seed(s) "
                                            f"(seed {', '.join(map(str, c['seeds']))})", f"`{m}`",
                                            c["bot_saved"], f"`{base}`", c["base_saved"], c["lead"],
                                            c["to_target"], c["room"], c["gap"], c["params"],
                                            c["met"] + " (too few seeds)"]) + " |")
    return "\n".join(rows) if len(rows) > 1 else "*Every BoT variant ran as many seeds as the headline's.*"


GENERATED = {"headline": headline, "headline-partial": partial}


def main(argv=None) -> int:
    page_path = ROOT / "docs" / "transfer.md"
    page = page_path.read_text()
    for case in re.findall(r"<!-- results:([\w.-]+) -->", page):
        page = splice(page, case, GENERATED[case]() if case in GENERATED else case_block(case))
    tmp = page_path.with_name(page_path.name + ".tmp")
    tmp.write_text(page)
    os.replace(tmp, page_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
