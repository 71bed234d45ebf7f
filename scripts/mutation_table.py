"""Per-module mutation counts of a mutmut 3 run: ``python scripts/mutation_table.py build/mutation/botcore``.

Reads ``mutants/**/*.py.meta`` (mutmut's own result files) and prints a Markdown
table: generated / killed / survived / timed out / other (no tests, suspicious,
not checked) per module, and the score killed / (generated - other).

``python scripts/mutation_table.py sample build/mutation/backends/sample.txt`` scores a
random sample (the ``name: status`` lines that ``scripts/mutation.sh TREE --sample=N``
writes): per module and in total, killed (timeouts included) over the sampled mutants
that are not listed as equivalent in docs/testing.md, with "no tests" counted as not
killed, and the 95% Wilson interval of that proportion.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

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


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The 95% Wilson score interval of the proportion ``k / n``."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def equivalent(doc: Path = ROOT / "docs" / "testing.md") -> set[str]:
    """The mutants that docs/testing.md lists as equivalent (the same list the sample test reads)."""
    return set(re.findall(r"`(botcore\.[^`\s]+__mutmut_\d+)`", doc.read_text()))


def sample(path: str) -> None:
    """A Markdown table of a sample's statuses per module, the score and its Wilson interval."""
    lines = [ln.rsplit(": ", 1) for ln in Path(path).read_text().splitlines() if "__mutmut_" in ln and ": " in ln]
    eq = equivalent()
    rows: dict[str, dict] = {}
    keys = ("sampled", "killed", "survived", "no tests", "equivalent", "other")
    for name, status in lines:
        module = name.split(".x_")[0].split(".xǁ")[0]
        r = rows.setdefault(module, dict.fromkeys(keys, 0))
        r["sampled"] += 1
        if name in eq:
            r["equivalent"] += 1
        elif status in ("killed", "timeout", "segfault", "caught by type check"):
            r["killed"] += 1
        elif status == "survived":
            r["survived"] += 1
        elif status == "no tests":
            r["no tests"] += 1
        else:
            r["other"] += 1
    total = {k: sum(r[k] for r in rows.values()) for k in keys}
    print("| module | sampled | killed | survived | no tests | equivalent | not run | score | 95% CI |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for module, r in [*sorted(rows.items()), ("**total**", total)]:
        n = r["killed"] + r["survived"] + r["no tests"]
        lo, hi = wilson(r["killed"], n)
        score = f"{100 * r['killed'] / n:.1f}%" if n else "-"
        ci = f"{100 * lo:.1f}-{100 * hi:.1f}%" if n else "-"
        print(f"| {module} | {r['sampled']} | {r['killed']} | {r['survived']} | {r['no tests']} | "
              f"{r['equivalent']} | {r['other']} | {score} | {ci} |")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "sample":
        sample(sys.argv[2])
    else:
        main(sys.argv[1] if len(sys.argv) > 1 else "build/mutation/botcore")
