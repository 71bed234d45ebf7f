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


#: The issue's targets (paper scale), per case and target, as text.
TARGETS = {
    "bert-l2s": "≥ 50 % FLOPs saved and ≥ 15 points more than weight_selection",
    "decoder-l2s": "≥ 30 % FLOPs saved",
    "bert-s2l": "≥ 50 % FLOPs saved, ahead of net2net",
    "vit": "BoT ahead of weight_selection (shrink) / net2net (grow) in accuracy at equal steps",
}


def _cell(s: dict | None, key: str, pct: bool) -> str:
    if s is None:
        return "–"
    if key == "flops_saved" and s["reached"] < s["compared"]:
        return f"n.r. in {s['compared'] - s['reached']}/{s['compared']}"
    st = s[key]
    if st is None:
        return "–"
    f = (lambda x: f"{100 * x:.0f}%") if pct else (lambda x: f"{x:.3f}")
    spread = "" if st["n"] == 1 else f" ({f(st['min'])}–{f(st['max'])})"
    return f"{f(st['mean'])}{spread} [n={st['n']}]"


def headline() -> str:
    """One table: per case and target, BoT's best and Haar-function variants against the baselines."""
    import json

    rows = ["| case / target | target (paper) | best BoT (by FLOPs saved) | its FLOPs saved | its final "
            "| `bot:function:haar` saved / final | `bot:paper:haar` saved / final | baseline(s) saved / final "
            "| scratch final |", "|---|---|---|---|---|---|---|---|---|"]
    for case in TARGETS:
        path = RESULTS / f"{case}.json"
        if not path.exists():
            continue
        summary = json.loads(path.read_text()).get("summary", {})
        for target, methods in summary.items():
            bots = {m: s for m, s in methods.items() if m.startswith("bot") and s["flops_saved"]}
            best = max(bots, key=lambda m: (bots[m]["flops_saved"]["mean"] if bots[m]["reached"] ==
                                            bots[m]["compared"] else -1), default=None)
            base = [m for m in ("weight_selection", "layer_select", "net2net") if m in methods]
            def both(m, ms=methods):
                return f"{_cell(ms.get(m), 'flops_saved', True)} / {_cell(ms.get(m), 'end', False)}"
            rows.append(" | ".join([
                f"| {case} / {target}", TARGETS[case], f"`{best}`" if best else "–",
                _cell(methods.get(best), "flops_saved", True) if best else "–",
                _cell(methods.get(best), "end", False) if best else "–",
                both("bot:function:haar"), both("bot:paper:haar"),
                "; ".join(f"`{m}` {both(m)}" for m in base), _cell(methods.get("scratch"), "end", False)]) + " |")
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
