"""Validation shared by the public functions; the only place boundary errors are raised.

Contract: each helper either returns a normalised value or raises a
:class:`botcore.errors.BotError` subclass whose message names the argument, the
value received, what was expected and the fix.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

from .errors import DTypeError, NonFiniteError, OptionError, ShapeError
from .names import FLOAT_DTYPES


def check_dtype(backend, x, func: str) -> None:
    name = backend.dtype_name(x)
    if name not in FLOAT_DTYPES:
        raise DTypeError(
            f"{func} needs floating-point weights, got dtype {name}; "
            f"expected one of {tuple(FLOAT_DTYPES)} (cast first, e.g. x.astype('float32'))"
        )


def check_finite(backend, x, func: str) -> None:
    """Refuse NaN or infinite elements (backends that cannot count without computing skip it)."""
    bad = backend.count_nonfinite(x)
    if bad:
        total = math.prod(backend.shape(x))
        raise NonFiniteError(
            f"{func} got an array with NaN or infinite values ({bad} of {total} elements); "
            "expected finite weights: repair them first, or pass check_finite=False to resize "
            "them anyway (a NaN spreads to the weights its filter taps reach)"
        )


def check_option(value, allowed: Sequence[str], name: str) -> str:
    if value not in allowed:
        raise OptionError(f"{name}={value!r} is not offered; expected one of {tuple(allowed)}")
    return value


def check_axes(axes, ndim: int) -> tuple[int, ...]:
    if axes is None:
        return tuple(range(ndim))
    if isinstance(axes, int):
        axes = (axes,)
    try:
        axes = tuple(operator.index(a) for a in axes)
    except TypeError:
        raise ShapeError(f"axes must be a sequence of ints, got {axes!r}") from None
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ShapeError(
                f"axis {a} is out of range for an array with {ndim} axes; "
                f"expected an int in [{-ndim}, {ndim - 1}]"
            )
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise ShapeError(f"axes {axes} repeats an axis; give each axis once and use level= for depth")
    return tuple(out)


def check_levels(level, naxes: int) -> tuple[int, ...]:
    if isinstance(level, Sequence) and not isinstance(level, str):
        levels = tuple(level)
        if len(levels) != naxes:
            raise ShapeError(
                f"level has {len(levels)} entries {levels} but {naxes} axes are transformed; "
                "give one level per axis or a single int"
            )
    else:
        levels = (level,) * naxes
    try:
        levels = tuple(operator.index(v) for v in levels)
    except TypeError:
        raise ShapeError(f"level must be an int or a sequence of ints, got {level!r}") from None
    if any(v < 0 for v in levels):
        raise ShapeError(f"level {level!r} is negative; levels count analysis steps and must be >= 0")
    return levels
