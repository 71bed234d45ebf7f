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
_BASELINES = ("weight_selection", "layer_select", "net2net")


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


def _spread(xs, fmt) -> str:
    xs = list(xs)
    mean = sum(xs) / len(xs)
    if fmt(min(xs)) == fmt(max(xs)):
        return fmt(mean)
    return f"{fmt(mean)} ({fmt(min(xs))} to {fmt(max(xs))})"


def lead_rows(case: str, path: Path) -> list[str]:
    """Headline rows of one result file: best BoT variant against the best baseline, per target."""
    import json

    data = json.loads(path.read_text())
    steps, higher = data["settings"]["budget"]["steps"], data["settings"]["data"]["metric"] == "accuracy"
    rows = []
    for target in data["settings"]["targets"]:
        per = _per_seed(data["runs"], target, steps=steps, higher=higher)
        bot = _best(per, [m for m in per if m.startswith("bot")], higher=higher)
        base = _best(per, _BASELINES, higher=higher)
        if bot is None or base is None:
            continue
        seeds = sorted(set(per[bot]) & set(per[base]))
        lead = [100 * ((per[bot][sd][0] or 0) - (per[base][sd][0] or 0)) for sd in seeds]
        gap = [per[bot][sd][1] - per[base][sd][1] for sd in seeds]
        better = all(g > 0 for g in gap) if higher else all(g < 0 for g in gap)
        met = "yes" if sum(lead) / len(lead) >= TARGET_POINTS and better else "no"

        def saved(m):
            xs = [per[m][sd][0] for sd in seeds]
            return "n.r." if None in xs else _spread([100 * x for x in xs], lambda v: f"{v:.0f}%")

        rows.append(" | ".join([f"| {case} / {target}", f"{steps} x {len(seeds)} seed(s)", f"`{bot}`",
                                saved(bot), f"`{base}`", saved(base),
                                _spread(lead, lambda v: f"{v:+.0f}"), _spread(gap, lambda v: f"{v:+.3f}"),
                                met]) + " |")
    return rows


def headline() -> str:
    """One table: per case, target and budget, the best BoT variant against the best baseline.

    Budgets: the standard one (``<case>.json``) and the longer ones (``<case>-<N>steps.json``
    with ``N`` above the standard budget).
    """
    import json

    rows = [f"| case / target | budget (steps x seeds) | best BoT variant | its FLOPs saved | best baseline "
            f"| its FLOPs saved | lead (points) | final: BoT − baseline | +{TARGET_POINTS} and better final? |",
            "|---|---|---|---|---|---|---|---|---|"]
    for case in CASES:
        std = RESULTS / f"{case}.json"
        if not std.exists():
            continue
        rows += lead_rows(case, std)
        n = json.loads(std.read_text())["settings"]["budget"]["steps"]
        longer = sorted((int(p.stem.split("-")[-1][:-5]), p) for p in RESULTS.glob(f"{case}-*steps.json"))
        rows += [r for k, p in longer if k > n for r in lead_rows(case, p)]
    return "\n".join(rows)


def main(argv=None) -> int:
    page_path = ROOT / "docs" / "transfer.md"
    page = page_path.read_text()
    for case in re.findall(r"<!-- results:([\w.-]+) -->", page):
        page = splice(page, case, headline() if case == "headline" else case_block(case))
    tmp = page_path.with_name(page_path.name + ".tmp")
    tmp.write_text(page)
    os.replace(tmp, page_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
