"""Preflight: refuse a resize that cannot fit in memory, before any tensor is read.

Contract: :func:`preflight` compares a plan's estimated peak memory (and, for an
in-memory result, the output it must hold) with ``max_memory`` (default: the
memory the machine has available now) and raises one
:class:`~botcore.errors.ResourceError` naming the estimate, the limit, the signal
that needs it and the fixes. Free disk space is checked by the writer's
:class:`~botcore.adapters.io.staging.Stage` against the plan's output bytes.
Standard library only; nothing is allocated.

Examples
--------
>>> available_memory() > 0
True
>>> human(3 * 2**30), human(1536)
('3.0 GiB', '1.5 KiB')
"""

from __future__ import annotations

import math
import os

from botcore.errors import ResourceError

__all__ = ["available_memory", "human", "preflight"]


def human(n: float) -> str:
    """``n`` bytes in binary units."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def available_memory() -> int:
    """Bytes of memory available to a new allocation now (``MemAvailable`` on Linux)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2**63


def _largest(plan) -> tuple[str, tuple]:
    spec = max(plan.layout.specs.values(), key=lambda s: math.prod(s.shape) + math.prod(
        plan.shapes[s.name]), default=None)
    return (spec.name, plan.shapes[spec.name]) if spec is not None else ("-", ())


def preflight(plan, *, out=None, max_memory=None) -> None:
    """Raise :class:`ResourceError` when ``plan`` would exceed ``max_memory`` (see above)."""
    from .io.hf import parse_size

    limit = available_memory() if max_memory is None else parse_size(max_memory)
    need = plan.peak_bytes + (plan.nbytes if out is None else 0)
    if need <= limit:
        return
    name, shape = _largest(plan)
    held = " plus the whole result, which stays in memory without out=" if out is None else ""
    raise ResourceError(
        f"this resize needs about {human(need)} of memory at its peak (signal {name!r} of target "
        f"shape {tuple(shape)}{held}) but the limit is {human(limit)} (max_memory / --max-memory, "
        "default: the memory available now); choose a smaller target, write to disk with out=, "
        "or raise the limit")
