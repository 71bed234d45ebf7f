"""A fresh model card for a resized checkpoint (the source's card describes another model).

Contract: :func:`model_card` returns the ``README.md`` text of an output from its
:class:`~botcore.adapters.io.base.OutputPlan`: Hugging Face front matter
(``base_model``, ``library_name``, ``tags``), what was done (method, gain,
wavelet, source and target sizes), the exact call or command that made it, and
the warning that the model needs training before use. Nothing is copied from
the source's own card.

Examples
--------
>>> from botcore.adapters.io.base import OutputPlan
>>> plan = OutputPlan([], {"model_type": "bert"}, None, family="bert",
...                   sizes={"layers": 3, "hidden": 192}, source_sizes={"layers": 6, "hidden": 384},
...                   card={"base_model": "all-MiniLM-L6-v2", "method": "bot", "gain": "std",
...                         "wavelet": "haar", "command": "botcore resize src out --layers 3"})
>>> text = model_card(plan)
>>> text.splitlines()[1], "needs training" in text, "| layers | 6 | 3 |" in text
('base_model: all-MiniLM-L6-v2', True, True)
"""

from __future__ import annotations

from botcore.names import SIZES

__all__ = ["model_card"]

_METHODS = {
    "bot": "BoT wavelet resizing (shrinking keeps the approximation band, growing runs the "
           "inverse transform with zero detail bands)",
    "weight_selection": "weight selection (uniformly spaced rows, columns and layers)",
    "layer_select": "layer selection (whole layers kept, width by selection)",
    "net2net": "Net2Net growth (function-preserving replication, identity layers)",
}


def _front(card: dict, family: str) -> list[str]:
    tags = ["bot-scaling", "resized", card.get("method", "bot"), family]
    lines = ["---"]
    if card.get("base_model"):
        lines.append(f"base_model: {card['base_model']}")
    lines.append(f"library_name: {card.get('library_name', 'transformers')}")
    lines.append("tags:")
    lines += [f"- {t}" for t in tags if t]
    return lines + ["---", ""]


def _sizes(src: dict, dst: dict) -> list[str]:
    rows = ["| size | source | resized |", "|---|---|---|"]
    rows += [f"| {k} | {src.get(k, '-')} | {dst.get(k, '-')} |" for k in SIZES if k in dst]
    return rows


def model_card(plan) -> str:
    """The ``README.md`` of a resized checkpoint (see the module docstring)."""
    card = dict(plan.card or {})
    method = card.get("method", "bot")
    base = card.get("base_model") or "the source checkpoint"
    how = _METHODS.get(method, method)
    if method == "bot":
        how += f"; wavelet `{card.get('wavelet', 'haar')}`, gain `{card.get('gain', '-')}`"
    lines = _front(card, plan.family)
    lines += [f"# {plan.family} resized from {base}", "",
              f"This checkpoint was made from **{base}** with "
              f"bot-scaling (the `botcore` package) by {how}.", ""]
    lines += _sizes(plan.source_sizes or {}, plan.sizes or {}) + [""]
    if card.get("notes"):
        lines += [f"- {n}" for n in card["notes"]] + [""]
    if card.get("command"):
        lines += ["Made with:", "", "```", card["command"], "```", ""]
    lines += ["**This model needs training before use.** A resized model starts far ahead of a "
              "random initialisation, but it is not a finished model: train (or fine-tune) it "
              "before evaluating or deploying it.", ""]
    return "\n".join(lines)
