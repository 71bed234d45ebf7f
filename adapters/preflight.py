"""Preflight: refuse a resize that cannot fit in memory, before any tensor is read.

Contract: :func:`preflight` compares a plan's :class:`~botcore.adapters.pipeline.Estimate`
(shapes only: computed before the output tensors are even listed) with the
limits: peak memory (and, for an in-memory result, the output it must hold)
against ``max_memory`` (default: the memory the machine has available now), and
the output bytes against the free disk space beside ``out``. It raises one
:class:`~botcore.errors.ResourceError` or :class:`~botcore.errors.OutputError`
naming the estimate, the limit, the signal that needs it and the fixes. The
writer's :class:`~botcore.adapters.io.staging.Stage` checks the exact bytes again.
Standard library only; nothing is allocated.

Examples
--------
>>> available_memory() > 0
True
>>> human(3 * 2**30), human(1536)
('3.0 GiB', '1.5 KiB')
"""

from __future__ import annotations

import os
import shutil

from botcore.errors import OutputError, ResourceError

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


def _free_disk(out) -> int | None:
    parent = os.path.dirname(os.path.abspath(out))
    return shutil.disk_usage(parent).free if os.path.isdir(parent) else None


def preflight(need, *, out=None, max_memory=None) -> None:
    """Raise when an :class:`~botcore.adapters.pipeline.Estimate` exceeds memory or disk.

    Memory: the peak (plus the whole result without ``out``) against ``max_memory``
    (default: :func:`available_memory`) — :class:`ResourceError`. Disk: the output
    bytes against the free space beside ``out`` — :class:`OutputError`.
    """
    from .io.hf import parse_size

    limit = available_memory() if max_memory is None else parse_size(max_memory, name="max_memory")
    total = need.peak + (need.output if out is None else 0)
    if total > limit:
        held = " plus the whole result, which stays in memory without out=" if out is None else ""
        fix = "write to disk with out= (large signals then go through Dask block by block), " \
            if out is None else "lower chunk_bytes (--chunk-bytes) so more signals go through Dask " \
            "block by block, run on a cluster (--scheduler), "
        raise ResourceError(
            f"this resize needs about {human(total)} of memory at its peak (signal {need.largest!r} "
            f"of target shape {need.largest_shape}{held}) but the limit is {human(limit)} "
            f"(max_memory / --max-memory, default: the memory available now); {fix}choose a "
            "smaller target, or raise the limit")
    free = None if out is None else _free_disk(out)
    if free is not None and need.output > free:
        raise OutputError(
            f"the output {os.path.abspath(out)!r} needs about {human(need.output)} but only "
            f"{human(free)} are free there; free space, choose a smaller target or another disk")
