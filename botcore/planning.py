"""Shape-only planning: how each axis goes from its source size to its target size.

Contract: :func:`plan` touches no data. For every axis it decides a signed
number of dyadic wavelet levels (positive: shrink, negative: grow, zero:
untouched) and, when the size ratio is not a power of two, one fractional
area-resampling step of ratio between 1 and 2. The fractional step always sits
at the high-resolution end of the axis (before the analysis levels when
shrinking, after the synthesis levels when growing), so a power-of-two ratio
never has one and the plan then equals the paper's pure wavelet path.

Examples
--------
>>> p = plan((12, 768, 3072), (6, 384, 1536))
>>> [a.levels for a in p.axes]
[1, 1, 1]
>>> p = plan((12, 768), (18, 512))
>>> p.axes[0]
AxisPlan(src=12, dst=18, levels=0, fraction=(12, 18))
>>> p.axes[1]
AxisPlan(src=768, dst=512, levels=0, fraction=(768, 512))
>>> plan((3072,), (3,)).axes[0]
AxisPlan(src=3072, dst=3, levels=10, fraction=None)
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import ModeError, ShapeError
from .wavelets import filter_bank

__all__ = ["MODES", "AxisPlan", "Plan", "check_mode", "plan"]

#: PyWavelets' signal extension modes.
MODES = (
    "zero",
    "constant",
    "symmetric",
    "periodic",
    "smooth",
    "periodization",
    "reflect",
    "antisymmetric",
    "antireflect",
)


@dataclass(frozen=True)
class AxisPlan:
    """One axis of a :class:`Plan`.

    ``levels`` > 0 shrinks by ``2**levels`` with wavelet analysis, < 0 grows by
    ``2**-levels`` with synthesis; ``fraction`` is ``(from_size, to_size)`` of
    the area-resampling step, or ``None``.
    """

    src: int
    dst: int
    levels: int
    fraction: tuple[int, int] | None

    @property
    def direction(self) -> str:
        """``"shrink"``, ``"grow"`` or ``"keep"``."""
        if self.dst < self.src:
            return "shrink"
        if self.dst > self.src:
            return "grow"
        return "keep"

    def describe(self) -> str:
        """One line: ``768 -> 512: fractional 768 -> 512``."""
        steps = []
        if self.levels > 0:
            if self.fraction:
                steps.append(f"fractional {self.fraction[0]} -> {self.fraction[1]}")
            steps.append(f"{self.levels} analysis level(s)")
        elif self.levels < 0:
            steps.append(f"{-self.levels} synthesis level(s)")
            if self.fraction:
                steps.append(f"fractional {self.fraction[0]} -> {self.fraction[1]}")
        elif self.fraction:
            steps.append(f"fractional {self.fraction[0]} -> {self.fraction[1]}")
        return f"{self.src} -> {self.dst}: " + (", then ".join(steps) or "unchanged")


@dataclass(frozen=True)
class Plan:
    """A shape-only resize plan: one :class:`AxisPlan` per axis."""

    axes: tuple[AxisPlan, ...]
    wavelet: str
    mode: str

    @property
    def src_shape(self) -> tuple[int, ...]:
        return tuple(a.src for a in self.axes)

    @property
    def dst_shape(self) -> tuple[int, ...]:
        return tuple(a.dst for a in self.axes)

    @property
    def is_identity(self) -> bool:
        return all(a.src == a.dst for a in self.axes)

    def __str__(self) -> str:
        lines = [f"Plan {self.src_shape} -> {self.dst_shape} ({self.wavelet}, {self.mode})"]
        lines += [f"  axis {i}: {a.describe()}" for i, a in enumerate(self.axes)]
        return "\n".join(lines)


def check_shape(shape: Sequence[int], name: str) -> tuple[int, ...]:
    """Validate a shape: a sequence of positive integers."""
    try:
        dims = tuple(operator.index(d) for d in shape)
    except TypeError:
        raise ShapeError(
            f"{name} must be a sequence of positive integers, got {shape!r}; "
            "pass e.g. (6, 384, 1536)"
        ) from None
    bad = [d for d in dims if d < 1]
    if bad:
        raise ShapeError(
            f"{name} {dims} has size {bad[0]}; every size must be >= 1 "
            "(a weight tensor cannot have an empty axis)"
        )
    return dims


def check_mode(mode: str, wavelet: str) -> str:
    """Validate a mode for resizing: ``periodization`` (any mode for Haar)."""
    if mode not in MODES:
        raise ModeError(f"mode {mode!r} is not a PyWavelets signal extension mode; expected one of {MODES}")
    if mode != "periodization" and filter_bank(wavelet).length != 2:
        raise ModeError(
            f"mode {mode!r} with wavelet {wavelet!r} does not halve lengths exactly "
            f"(a {filter_bank(wavelet).length}-tap filter adds boundary samples), so target "
            "shapes could not be exact; use mode='periodization' (every mode is equivalent "
            "for 'haar')"
        )
    return mode


def _axis_plan(src: int, dst: int) -> AxisPlan:
    if dst == src:
        return AxisPlan(src, dst, 0, None)
    small, large = min(src, dst), max(src, dst)
    levels = 0
    while small << (levels + 1) <= large:
        levels += 1
    mid = small << levels
    fraction = None
    if mid != large:
        fraction = (src, mid) if dst < src else (mid, dst)
    return AxisPlan(src, dst, levels if dst < src else -levels, fraction)


def plan(
    src_shape: Sequence[int],
    dst_shape: Sequence[int],
    *,
    wavelet: str = "haar",
    mode: str = "periodization",
) -> Plan:
    """Plan a resize from ``src_shape`` to ``dst_shape`` without touching data.

    Parameters
    ----------
    src_shape, dst_shape : sequence of int
        Same rank; every size >= 1. Axes may shrink and grow in one plan.
    wavelet : str, keyword-only
        A discrete PyWavelets wavelet; validated here so a bad name fails early.
    mode : str, keyword-only
        ``"periodization"`` (every mode is accepted for Haar, where they agree).

    Returns
    -------
    Plan

    Raises
    ------
    ShapeError
        Rank mismatch or a size below 1.
    WaveletError, ModeError
        Unknown wavelet, or a mode that cannot give exact shapes.

    Examples
    --------
    >>> print(plan((4, 6), (1, 9)))
    Plan (4, 6) -> (1, 9) (haar, periodization)
      axis 0: 4 -> 1: 2 analysis level(s)
      axis 1: 6 -> 9: fractional 6 -> 9
    """
    src = check_shape(src_shape, "src_shape")
    dst = check_shape(dst_shape, "dst_shape")
    if len(src) != len(dst):
        raise ShapeError(
            f"cannot plan {src} -> {dst}: the source has {len(src)} axes and the target "
            f"{len(dst)}; resizing keeps the rank, so give one target size per axis"
        )
    filter_bank(wavelet)
    check_mode(mode, wavelet)
    return Plan(tuple(_axis_plan(s, d) for s, d in zip(src, dst)), wavelet, mode)
