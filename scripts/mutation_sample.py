"""Pick a reproducible random sample of mutants, or report on one.

``mutmut results --all true | python scripts/mutation_sample.py pick N SEED [MODULE ...]``
prints ``N`` mutant names drawn with ``SEED`` from the listed modules (dotted prefixes
such as ``botcore.resize``; all modules when none is given).
``... | python scripts/mutation_sample.py report NAME ...`` prints one line per sampled
mutant and a summary ``sample: K killed, S survived, T timed out of N``.
"""

from __future__ import annotations

import random
import re
import sys

LINE = re.compile(r"^\s*(\S+): (.+)$")


def _results(stream) -> dict:
    return {m.group(1): m.group(2).strip() for line in stream if (m := LINE.match(line))}


def pick(n: int, seed: int, modules: list[str]) -> list[str]:
    names = sorted(_results(sys.stdin))
    if modules:
        names = [x for x in names if any(x.startswith(m + ".") for m in modules)]
    return sorted(random.Random(seed).sample(names, min(n, len(names))))


def report(names: list[str]) -> int:
    status = _results(sys.stdin)
    counts: dict[str, int] = {}
    for name in names:
        s = status.get(name, "missing")
        counts[s] = counts.get(s, 0) + 1
        print(f"{name}: {s}")
    print(f"sample: {counts.get('killed', 0)} killed, {counts.get('survived', 0)} survived, "
          f"{counts.get('timeout', 0)} timed out of {len(names)}")
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "pick":
        print("\n".join(pick(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:])))
    else:
        sys.exit(report(sys.argv[2:]))
