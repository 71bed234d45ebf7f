"""Model families as data: each module declares one family's parameter rules.

Contract: a family module defines an :class:`~botcore.adapters.base.Adapter`
subclass whose class attributes (rules, ties, drops, transposed, fusions) say
how every native parameter becomes part of a canonical signal, plus the
family's ``sizes``/``write_config`` hooks. Shared rule builders live in
:mod:`botcore.adapters.families.common`. The registry
(:mod:`botcore.adapters.registry`) maps family names to these classes.
"""
