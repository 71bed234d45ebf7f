"""Per-module mutation counts of a mutmut 3 run: ``python scripts/mutation_table.py build/mutation/botcore``.

Reads ``mutants/**/*.py.meta`` (mutmut's own result files) and prints a Markdown
table: generated / killed / survived / timed out / other (no tests, suspicious,
not checked) per module, and the score killed / (generated - other).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

KILLED = {1, 3, 37}
SURVIVED = {0}
TIMEOUT = {36, 24, -24, 152, 255}


def counts(meta: Path) -> dict:
    codes = list(json.loads(meta.read_text()).get("exit_code_by_key", {}).values())
    c = {"generated": len(codes),
         "killed": sum(x in KILLED or (x is not None and x < 0 and x not in TIMEOUT) for x in codes),
         "survived": sum(x in SURVIVED for x in codes),
         "timeout": sum(x in TIMEOUT for x in codes)}
    c["other"] = c["generated"] - c["killed"] - c["survived"] - c["timeout"]
    return c


def main(work: str) -> None:
    root = Path(work) / "mutants"
    rows = {}
    for meta in sorted(root.rglob("*.py.meta")):
        module = str(meta.relative_to(root))[: -len(".py.meta")].replace("/", ".")
        c = counts(meta)
        if c["generated"]:
            rows[module] = c
    total = {k: sum(r[k] for r in rows.values()) for k in ("generated", "killed", "survived", "timeout", "other")}
    print("| module | generated | killed | survived | timed out | other | score |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for module, c in [*rows.items(), ("**total**", total)]:
        checked = c["killed"] + c["survived"] + c["timeout"]
        score = f"{100 * (c['killed'] + c['timeout']) / checked:.1f}%" if checked else "-"
        print(f"| {module} | {c['generated']} | {c['killed']} | {c['survived']} | {c['timeout']} | "
              f"{c['other']} | {score} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "build/mutation/botcore")
