"""Axis roles: what each axis of a weight signal means.

Contract: a role is one of the strings in :data:`ROLES`. Roles decide two
things only: whether an axis may change size (``fixed`` never does) and how the
``"function"`` gain treats it (mean-keeping for axes a tensor *produces*, sum-
keeping for axes it *consumes*).

============== ============================================ ==================
role           meaning                                      ``"function"`` gain
============== ============================================ ==================
``depth``      the layer axis of a stacked role             keeps means
``out``        features the tensor produces (rows)          keeps means
``in``         features the tensor consumes (columns)       keeps sums
``head``       attention heads on the producing side        keeps means
``head_dim``   per-head features on the producing side      keeps means
``in_head``    attention heads on the consuming side        keeps sums
``in_head_dim`` per-head features on the consuming side     keeps sums
``fixed``      vocabulary, positions, pixels, classes        never resized
============== ============================================ ==================

Examples
--------
>>> from botcore.roles import normalize_roles
>>> normalize_roles(None, 2)
('out', 'out')
>>> normalize_roles(["depth", "out", "in"], 3)
('depth', 'out', 'in')
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import RoleError

__all__ = ["MEAN_ROLES", "ROLES", "SUM_ROLES", "normalize_roles"]

MEAN_ROLES = frozenset({"depth", "out", "head", "head_dim"})
SUM_ROLES = frozenset({"in", "in_head", "in_head_dim"})
ROLES = ("depth", "out", "in", "head", "head_dim", "in_head", "in_head_dim", "fixed")


def normalize_roles(roles: Sequence[str] | None, ndim: int) -> tuple[str, ...]:
    """Return one validated role per axis; ``None`` means every axis is ``"out"``.

    Raises
    ------
    RoleError
        If the number of roles differs from ``ndim`` or a role is unknown.
    """
    if roles is None:
        return ("out",) * ndim
    if isinstance(roles, str):
        raise RoleError(
            f"roles must be a sequence with one role per axis, got the string {roles!r}; "
            f"pass e.g. ({roles!r},) for a 1-D array"
        )
    roles = tuple(roles)
    if len(roles) != ndim:
        raise RoleError(
            f"roles has {len(roles)} entries {roles!r} but the array has {ndim} axes; "
            "give exactly one role per axis"
        )
    for axis, role in enumerate(roles):
        if role not in ROLES:
            raise RoleError(
                f"roles[{axis}] is {role!r}, which is not a role; expected one of {ROLES}"
            )
    return roles
