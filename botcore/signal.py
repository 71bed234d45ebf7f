"""WeightSignal: an array together with the role of each of its axes.

Contract: a :class:`WeightSignal` is immutable; :meth:`WeightSignal.resize`
returns a new signal, computed by :func:`botcore.resize` with the signal's
roles, and leaves this one untouched. Adapters build signals from native
parameters (stacking a role's layers into ``(depth, out, in)``) and turn the
resized signals back into parameters.

Examples
--------
>>> import numpy as np
>>> s = WeightSignal(np.ones((4, 8, 6)), ("depth", "out", "in"), name="q")
>>> t = s.resize((2, 4, 3), gain="function")
>>> t.shape, t.roles, float(t.data[0, 0, 0])
((2, 4, 3), ('depth', 'out', 'in'), 2.0)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from .backend import get_backend
from .resize import resize, select
from .roles import normalize_roles

__all__ = ["WeightSignal"]


@dataclass(frozen=True, eq=False)
class WeightSignal:
    """An array plus one role per axis (see :mod:`botcore.roles`)."""

    data: Any
    roles: tuple
    name: str = ""

    def __post_init__(self):
        shape = get_backend(self.data).shape(self.data)
        object.__setattr__(self, "roles", normalize_roles(self.roles, len(shape)))

    @property
    def shape(self) -> tuple[int, ...]:
        return get_backend(self.data).shape(self.data)

    def resize(self, shape, **options) -> WeightSignal:
        """A new signal resized with :func:`botcore.resize` using this signal's roles."""
        return replace(self, data=resize(self.data, shape, roles=self.roles, **options))

    def select(self, shape, **options) -> WeightSignal:
        """A new signal resized with :func:`botcore.select` using this signal's roles."""
        return replace(self, data=select(self.data, shape, roles=self.roles, **options))
