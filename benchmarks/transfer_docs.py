"""Refresh the generated parts of ``docs/transfer.md`` from ``benchmarks/results``.

Contract: the page is hand-written except between ``<!-- results:<case> -->`` and
``<!-- /results:<case> -->`` markers; each such block is replaced by the case's
tables (from ``benchmarks/results/<case>.md``, title dropped) and a link to its
figure, copied to ``docs/img/transfer-<case>.png``. Missing results leave a note.
Files are written to a temporary name and renamed.

Examples
--------
>>> page = "a\\n<!-- results:x -->\\nold\\n<!-- /results:x -->\\nb"
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
    pat = re.compile(rf"(<!-- results:{re.escape(case)} -->\n).*?(\n<!-- /results:{re.escape(case)} -->)", re.S)
    return pat.sub(lambda m: m.group(1) + body + m.group(2), page)


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


def main(argv=None) -> int:
    page_path = ROOT / "docs" / "transfer.md"
    page = page_path.read_text()
    for case in re.findall(r"<!-- results:([\w.-]+) -->", page):
        page = splice(page, case, case_block(case))
    tmp = page_path.with_name(page_path.name + ".tmp")
    tmp.write_text(page)
    os.replace(tmp, page_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
