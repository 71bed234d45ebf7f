"""``resolve_target``: every refusal is justified, every acceptance is the documented completion.

The rules are those of ``adapters/targets.py``'s docstring, restated here as an
independent oracle: sizes not given keep their value (layers, hidden), the attention
width scales with hidden, ``head_dim`` is kept when neither heads nor head_dim is
given, ``kv_heads`` keeps the query group size, ``ffn`` scales with hidden. A target is
refused exactly when no completion by these rules is consistent. Unlike a property
that returns on ``TargetError``, nothing is skipped: a refusal of a target the rules
complete fails, and so does an acceptance of one they cannot.
"""

from __future__ import annotations

from botcore.adapters import resolve_target
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from botcore import TargetError


def oracle(src: dict, target: dict, *, gqa: bool, free: bool) -> dict | None:
    """The documented completion of ``target``, or None when the rules give no consistent one."""
    t = {k: v for k, v in target.items() if v is not None}
    hidden, layers = t.get("hidden", src["hidden"]), t.get("layers", src["layers"])
    heads, head_dim = t.get("heads"), t.get("head_dim")
    if heads is None or head_dim is None:
        width, rest = divmod(src["heads"] * src["head_dim"] * hidden, src["hidden"])
        if rest:
            return None
        if heads is None and head_dim is None:
            head_dim = src["head_dim"]
        if heads is None:
            heads, rest = divmod(width, head_dim)
        else:
            head_dim, rest = divmod(width, heads)
        if rest:
            return None
    if not free and heads * head_dim != hidden:
        return None
    kv = t.get("kv_heads")
    if not gqa:
        if kv is not None and kv != heads:
            return None
        kv = heads
    elif kv is None:
        group = src["heads"] // src["kv_heads"]
        if heads % group:
            return None
        kv = heads // group
    if heads % kv:
        return None
    ffn = t.get("ffn", max(1, round(src["ffn"] * hidden / src["hidden"])))
    return {"layers": layers, "hidden": hidden, "heads": heads, "kv_heads": kv, "head_dim": head_dim,
            "ffn": ffn}


def _source(hidden, heads, group, gqa):
    kv = max(1, heads // group) if gqa else heads
    return {"layers": 4, "hidden": hidden, "heads": heads, "kv_heads": kv, "head_dim": hidden // heads,
            "ffn": 4 * hidden}


@given(
    hidden=st.sampled_from([32, 48, 64, 96]),
    heads=st.sampled_from([1, 2, 4, 8]),
    group=st.sampled_from([1, 2, 4]),
    t_hidden=st.integers(1, 200),
    t_heads=st.one_of(st.none(), st.integers(1, 16)),
    t_head_dim=st.one_of(st.none(), st.integers(1, 64)),
    t_kv=st.one_of(st.none(), st.integers(1, 16)),
    t_ffn=st.one_of(st.none(), st.integers(1, 500)),
    t_layers=st.one_of(st.none(), st.integers(1, 12)),
    gqa=st.booleans(),
    free=st.booleans(),
)
@settings(max_examples=300, deadline=None)
@example(hidden=64, heads=8, group=2, t_hidden=32, t_heads=None, t_head_dim=None, t_kv=None,
         t_ffn=None, t_layers=None, gqa=True, free=True)  # heads 4, kv 2
@example(hidden=64, heads=8, group=4, t_hidden=48, t_heads=None, t_head_dim=None, t_kv=None,
         t_ffn=None, t_layers=2, gqa=True, free=True)  # heads 6 is no multiple of the group 4
@example(hidden=32, heads=4, group=1, t_hidden=30, t_heads=None, t_head_dim=None, t_kv=None,
         t_ffn=None, t_layers=None, gqa=False, free=False)  # width 30 is no multiple of head_dim 8
def test_every_refusal_is_justified_and_every_acceptance_documented(
        hidden, heads, group, t_hidden, t_heads, t_head_dim, t_kv, t_ffn, t_layers, gqa, free):
    src = _source(hidden, heads, group, gqa)
    target = {"hidden": t_hidden, "heads": t_heads, "head_dim": t_head_dim, "kv_heads": t_kv,
              "ffn": t_ffn, "layers": t_layers}
    want = oracle(src, target, gqa=gqa, free=free)
    try:
        got = resolve_target(src, target, gqa=gqa, free_head_dim=free)
    except TargetError as err:
        event("refused")
        assert want is None, f"refused a target the documented rules complete to {want}: {err}"
        assert "=" in str(err), err  # the message names the size that does not work
    else:
        event("accepted")
        assert got == want


@st.composite
def valid_targets(draw):
    """A source and a target that must resolve: sizes built consistent by construction."""
    gqa = draw(st.booleans())
    group = draw(st.sampled_from([1, 2, 3])) if gqa else 1
    heads = group * draw(st.integers(1, 4))
    head_dim = draw(st.sampled_from([4, 8, 16]))
    src = {"layers": 6, "hidden": heads * head_dim, "heads": heads, "kv_heads": heads // group,
           "head_dim": head_dim, "ffn": 4 * heads * head_dim}
    t_heads = group * draw(st.integers(1, 6))
    t_head_dim = draw(st.sampled_from([2, 4, 8, 16, 32]))
    how = draw(st.sampled_from(["heads", "head_dim", "both", "neither"]))
    target = {"hidden": t_heads * (t_head_dim if how in ("heads", "both") else head_dim)}
    if how == "head_dim":
        # the width scales with hidden: hidden = m * head_dim source units keeps head_dim dividing
        target = {"hidden": t_heads * t_head_dim, "head_dim": t_head_dim}
    elif how == "heads":
        target["heads"] = t_heads
    elif how == "both":
        target.update(heads=t_heads, head_dim=t_head_dim)
    if draw(st.booleans()):
        target["layers"] = draw(st.integers(1, 12))
    return src, target, gqa, group


@given(case=valid_targets())
@settings(max_examples=200, deadline=None)
def test_consistent_targets_are_completed_as_documented(case):
    src, target, gqa, group = case
    got = resolve_target(src, target, gqa=gqa, free_head_dim=False)  # never refused
    assert got == oracle(src, target, gqa=gqa, free=False)
    assert got["hidden"] == target["hidden"] and got["heads"] * got["head_dim"] == got["hidden"]
    assert got["heads"] // got["kv_heads"] == group
    assert got["layers"] == target.get("layers", src["layers"])
    if "heads" not in target and "head_dim" not in target:
        assert got["head_dim"] == src["head_dim"]
