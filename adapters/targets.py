"""Model-level targets: one vocabulary for every family, with documented defaults.

Contract: :func:`resolve_target` turns a partial target (any of ``layers,
hidden, heads, kv_heads, head_dim, ffn``) and the source sizes into a complete,
consistent set of sizes, or raises :class:`~botcore.TargetError` naming the
size and why it cannot work. Unspecified sizes follow these rules:

* ``layers``, ``hidden``: unchanged.
* attention width (``heads * head_dim``) scales with ``hidden``; then
  ``heads`` and ``head_dim`` given: used; only one given: the other divides the
  attention width; neither: **head_dim is kept and the head count changes**.
* ``kv_heads``: keeps the source's ``heads / kv_heads`` group size (families
  without grouped-query attention have ``kv_heads == heads``).
* ``ffn``: scales with ``hidden`` (rounded to the nearest integer).

Examples
--------
>>> src = dict(layers=6, hidden=384, heads=12, kv_heads=12, head_dim=32, ffn=1536)
>>> resolve_target(src, {"hidden": 192})
{'layers': 6, 'hidden': 192, 'heads': 6, 'kv_heads': 6, 'head_dim': 32, 'ffn': 768}
>>> resolve_target(src, {"hidden": 256, "heads": 8, "layers": 4})["head_dim"]
32
"""

from __future__ import annotations

import operator
from collections.abc import Mapping

from botcore.errors import TargetError

from .base import SIZES

__all__ = ["resolve_target"]


def _int(name, value) -> int:
    try:
        v = operator.index(value)
    except TypeError:
        raise TargetError(
            f"target {name}={value!r} is not an integer; give a positive int"
        ) from None
    if v < 1:
        raise TargetError(f"target {name}={v} must be >= 1")
    return v


def resolve_target(
    src: Mapping[str, int],
    target: Mapping | None,
    *,
    gqa: bool = False,
    free_head_dim: bool = False,
) -> dict:
    """Complete target sizes from a partial ``target`` and the source ``src`` sizes.

    Parameters
    ----------
    src : mapping
        Source sizes, every key of :data:`~botcore.adapters.base.SIZES`.
    target : mapping or None
        Requested sizes (a subset of the same keys).
    gqa : bool
        The family has grouped-query attention (``kv_heads`` may differ from ``heads``).
    free_head_dim : bool
        The family stores ``head_dim`` in its config, so ``heads * head_dim`` may
        differ from ``hidden``.

    Raises
    ------
    TargetError
        Unknown key, non-integer or non-positive size, or sizes that do not divide.
    """
    target = dict(target or {})
    unknown = sorted(set(target) - set(SIZES))
    if unknown:
        raise TargetError(
            f"target has unknown keys {unknown}; the target vocabulary is {SIZES}"
        )
    t = {k: _int(k, v) for k, v in target.items() if v is not None}
    hidden = t.get("hidden", src["hidden"])
    layers = t.get("layers", src["layers"])
    width_src = src["heads"] * src["head_dim"]
    heads, head_dim = t.get("heads"), t.get("head_dim")
    if heads is None or head_dim is None:
        if (width_src * hidden) % src["hidden"]:
            raise TargetError(
                f"the attention width heads*head_dim={width_src} scaled to hidden={hidden} "
                f"is not an integer; give heads= and head_dim= explicitly"
            )
        width = width_src * hidden // src["hidden"]
        if heads is None and head_dim is None:
            head_dim = src["head_dim"]
            if width % head_dim:
                raise TargetError(
                    f"hidden={hidden} gives an attention width of {width}, which is not a "
                    f"multiple of the kept head_dim={head_dim}; give heads= or head_dim= so "
                    "that heads * head_dim matches"
                )
            heads = width // head_dim
        elif heads is None:
            if width % head_dim:
                raise TargetError(
                    f"head_dim={head_dim} does not divide the attention width {width} "
                    f"(hidden={hidden}); choose a head_dim that divides it or give heads="
                )
            heads = width // head_dim
        else:
            if width % heads:
                raise TargetError(
                    f"heads={heads} does not divide the attention width {width} "
                    f"(hidden={hidden}); choose heads that divide it or give head_dim="
                )
            head_dim = width // heads
    if not free_head_dim and heads * head_dim != hidden:
        raise TargetError(
            f"heads={heads} times head_dim={head_dim} is {heads * head_dim}, but this family "
            f"needs it equal to hidden={hidden}; choose heads dividing hidden"
        )
    kv = t.get("kv_heads")
    if not gqa:
        if kv is not None and kv != heads:
            raise TargetError(
                f"kv_heads={kv} differs from heads={heads}, but this family has no "
                "grouped-query attention; leave kv_heads out"
            )
        kv = heads
    elif kv is None:
        group = src["heads"] // src["kv_heads"]
        if heads % group:
            raise TargetError(
                f"heads={heads} is not a multiple of the source's query group size {group} "
                f"(heads {src['heads']} / kv_heads {src['kv_heads']}); give kv_heads= "
                "dividing heads"
            )
        kv = heads // group
    if heads % kv:
        raise TargetError(
            f"kv_heads={kv} does not divide heads={heads}; grouped-query attention needs "
            "heads to be a multiple of kv_heads"
        )
    ffn = t.get("ffn")
    if ffn is None:
        ffn = max(1, round(src["ffn"] * hidden / src["hidden"]))
    return {"layers": layers, "hidden": hidden, "heads": heads, "kv_heads": kv, "head_dim": head_dim, "ffn": ffn}
