"""Independent references for the documented treatments, in plain NumPy (no botcore).

Everything here is written from the documentation, not from the implementation:

* ``botcore/resize.py``: with Haar, a shrink keeps block means of the piecewise-
  constant signal and a growth replicates (zero detail bands), for any ratio once
  the fractional step is included (``botcore/fractional.py``: area resampling of
  ``n`` equal cells onto ``m`` equal bins). So per axis the resize is the dense
  area matrix ``A[i, j] = m * |bin i  cap  cell j|``, times a scalar set by the gain:
  ``paper`` ``sqrt(n / m)`` (orthonormal: Haar multiplies by sqrt(2) per shrunk level),
  ``function`` 1 on axes that keep means and ``n / m`` on axes that keep sums
  (``in``, ``in_head``, ``in_head_dim``), ``std`` the paper's, then the whole signal
  scaled to the source's standard deviation (left as it is when its own is zero).
* ``botcore.select`` / ``adapters/methods.py``: uniform selection (a stride when the
  target divides, else rounded evenly spaced positions ``round(i (n - 1) / (m - 1))``),
  replication ``floor(i n / m)`` (copies divided by their count on sum axes),
  ``layer_select`` depth ``floor(i (n - 1) / (m - 1) + 1/2)`` (``[n - 1]`` for one
  layer), ``net2net`` depth by replication with the residual writers of inserted
  copies zeroed (in a model with LayerScale, the LayerScale gains instead).
* the adapters' documented layouts (``adapters/families``): per family, which
  native parameter is which canonical signal, with which roles (table ``RULES``).

Other wavelets than Haar are referenced through PyWavelets for power-of-two ratios
only: ``pywt.dwt`` approximation bands when shrinking, ``pywt.idwt`` with zero detail
bands when growing (the function gain: sqrt(2) per level on mean axes, 1/sqrt(2) on sum axes).
"""

from __future__ import annotations

import math
import re

import numpy as np

SUM_ROLES = frozenset({"in", "in_head", "in_head_dim"})


# --------------------------------------------------------------------------- one axis


def area_matrix(n: int, m: int) -> np.ndarray:
    """``(m, n)``: bin ``i`` of ``[i/m, (i+1)/m)`` averages the cells ``[j/n, (j+1)/n)`` it covers."""
    i = np.arange(m)[:, None]
    j = np.arange(n)[None, :]
    # in units of 1 / (n m): bin i is [i n, (i + 1) n), cell j is [j m, (j + 1) m)
    overlap = np.minimum((i + 1) * n, (j + 1) * m) - np.maximum(i * n, j * m)
    return np.clip(overlap, 0, None) / n


def _apply(x: np.ndarray, mat: np.ndarray, axis: int) -> np.ndarray:
    return np.moveaxis(np.tensordot(mat, x, axes=([1], [axis])), 0, axis)


def haar_matrix(n: int, m: int, role: str, gain: str) -> np.ndarray:
    """The documented Haar resize of one axis, ``n -> m``, as a dense ``(m, n)`` matrix."""
    a = area_matrix(n, m)
    if gain in ("paper", "std"):  # std: paper magnitudes, then the whole signal rescaled
        return a * math.sqrt(n / m)
    if gain == "function" and role in SUM_ROLES:
        return a * (n / m)
    return a


def _pywt_shrink(x, axis, n, m, role, gain, wavelet):
    import pywt

    levels = int(round(math.log2(n / m)))
    assert n == m << levels, f"the pywt reference covers power-of-two shrinks only ({n} -> {m})"
    for _ in range(levels):
        x = pywt.dwt(x, wavelet, mode="periodization", axis=axis)[0]
    if gain == "function":
        x = x * (math.sqrt(2) ** levels if role in SUM_ROLES else math.sqrt(0.5) ** levels)
    return x


def _pywt_grow(x, axis, n, m, role, gain, wavelet):
    import pywt

    levels = int(round(math.log2(m / n)))
    assert m == n << levels, f"the pywt reference covers power-of-two growths only ({n} -> {m})"
    for _ in range(levels):  # inverse transform with zero detail bands
        x = pywt.idwt(x, None, wavelet, mode="periodization", axis=axis)
    if gain == "function":
        x = x * (math.sqrt(0.5) ** levels if role in SUM_ROLES else math.sqrt(2) ** levels)
    return x


def resize(x, shape, roles, *, gain="paper", wavelet="haar") -> np.ndarray:
    """Expected ``botcore.resize(x, shape, roles=roles, gain=gain, wavelet=wavelet)``."""
    x = np.asarray(x, dtype=np.float64)
    shape = tuple(shape)
    if shape == x.shape:
        return x.copy()
    y = x
    for axis, (n, m, role) in enumerate(zip(x.shape, shape, roles)):
        if n == m:
            continue
        assert role != "fixed", "a fixed axis never changes size"
        if wavelet == "haar":
            y = _apply(y, haar_matrix(n, m, role, gain), axis)
        elif m < n:
            y = _pywt_shrink(y, axis, n, m, role, gain, wavelet)
        else:
            y = _pywt_grow(y, axis, n, m, role, gain, wavelet)
    if gain == "std" and y.std() > 0:
        y = y * (x.std() / y.std())
    return y


def uniform_indices(n: int, m: int) -> np.ndarray:
    """Weight selection: a stride when ``m`` divides ``n``, else rounded evenly spaced positions."""
    if n % m == 0:
        return np.arange(m) * (n // m)
    i = np.arange(m)
    # round(i (n - 1) / (m - 1)) in exact integer arithmetic (half up; the tests avoid ties)
    return (2 * i * (n - 1) + (m - 1)) // (2 * (m - 1))


def replicate_indices(n: int, m: int) -> np.ndarray:
    return (np.arange(m) * n) // m


def select(x, shape, roles) -> np.ndarray:
    """Expected ``botcore.select``: selection down, replication up (sum axes divided by copies)."""
    y = np.asarray(x, dtype=np.float64)
    for axis, (n, m, role) in enumerate(zip(y.shape, shape, roles)):
        if n == m:
            continue
        idx = uniform_indices(n, m) if m < n else replicate_indices(n, m)
        y = np.take(y, idx, axis=axis)
        if m > n and role in SUM_ROLES:
            counts = np.bincount(idx, minlength=n)[idx]
            shape_b = [1] * y.ndim
            shape_b[axis] = m
            y = y / counts.reshape(shape_b)
    return y


def layer_select_indices(n: int, m: int) -> list[int]:
    if m == 1:
        return [n - 1]
    return [math.floor(i * (n - 1) / (m - 1) + 0.5) for i in range(m)]


# --------------------------------------------------------------------------- model layouts

#: (name suffix regex, native dims, canonical roles, residual writer). Dims are
#: comma-separated native axes, ``*`` splitting one into canonical axes, with the
#: symbols h (hidden), H (heads), K (kv heads), D (head_dim), f (ffn), _ (kept).
_QW = ("H*D,h", "head*head_dim,in", False)
_KW = ("K*D,h", "head*head_dim,in", False)
_OW = ("h,H*D", "out,in_head*in_head_dim", True)
_UP = ("f,h", "out,in", False)
_DOWN = ("h,f", "out,in", True)
_H = ("h", "out", False)
_HR = ("h", "out", True)
RULES = [
    # attention (BERT / ViT family / Llama)
    (r"(attention\.self|attention\.attention)\.(query|key|value)\.weight", *_QW),
    (r"(attention\.self|attention\.attention)\.(query|key|value)\.bias", "H*D", "head*head_dim", False),
    (r"self_attn\.q_proj\.weight", *_QW),
    (r"self_attn\.[kv]_proj\.weight", *_KW),
    (r"(attention\.output\.dense|self_attn\.o_proj)\.weight", *_OW),
    (r"attention\.output\.dense\.bias", *_HR),
    # GPT-2 (Conv1D weights are stored [in, out]: transposed before these dims apply)
    (r"attn\.c_attn\.weight#[qkv]", *_QW),
    (r"attn\.c_attn\.bias#[qkv]", "H*D", "head*head_dim", False),
    (r"attn\.c_proj\.weight", *_OW),
    (r"attn\.c_proj\.bias", *_HR),
    (r"mlp\.c_fc\.weight", *_UP),
    (r"mlp\.c_fc\.bias", "f", "out", False),
    (r"mlp\.c_proj\.weight", *_DOWN),
    (r"mlp\.c_proj\.bias", *_HR),
    # feed-forward
    (r"(intermediate\.dense|mlp\.fc1|mlp\.gate_proj|mlp\.up_proj)\.weight", *_UP),
    (r"(intermediate\.dense|mlp\.fc1)\.bias", "f", "out", False),
    (r"(layer\.\d+\.output\.dense|mlp\.fc2|mlp\.down_proj)\.weight", *_DOWN),
    (r"(layer\.\d+\.output\.dense|mlp\.fc2)\.bias", *_HR),
    (r"layer_scale[12]\.lambda1", *_HR),
    # norms
    (r"(LayerNorm|layernorm_before|layernorm_after|layernorm|norm1|norm2|ln_1|ln_2|ln_f|"
     r"input_layernorm|post_attention_layernorm|norm)\.(weight|bias)", *_H),
    # embeddings, tokens, patches
    (r"(word_embeddings|position_embeddings|token_type_embeddings|wte|wpe|embed_tokens)\.weight",
     "_,h", "fixed,out", False),
    (r"embeddings\.(cls_token|distillation_token|position_embeddings)", "_,_,h", "fixed,fixed,out", False),
    (r"embeddings\.mask_token", "_,h", "fixed,out", False),
    (r"patch_embeddings\.projection\.weight", "h,_,_,_", "out,fixed,fixed,fixed", False),
    (r"patch_embeddings\.projection\.bias", *_H),
    # heads
    (r"(pooler\.dense|predictions\.transform\.dense)\.weight", "h,h", "out,in", False),
    (r"(pooler\.dense|predictions\.transform\.dense)\.bias", *_H),
    (r"(seq_relationship|classifier|cls_classifier|distillation_classifier|lm_head)\.weight",
     "_,h", "fixed,in", False),
    (r"(seq_relationship|classifier|cls_classifier|distillation_classifier)\.bias|predictions\.bias",
     "_", "fixed", False),
]
_TRANSPOSED = re.compile(r"h\.\d+\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight$")
_FUSED = re.compile(r"h\.\d+\.attn\.c_attn\.(weight|bias)$")
_LAYER = re.compile(r"(?<=\.)(\d+)(?=\.)")
_GATE = re.compile(r"layer_scale[12]\.lambda1")
SYMBOLS = {"h": "hidden", "H": "heads", "K": "kv_heads", "D": "head_dim", "f": "ffn"}


def _rule(name: str):
    for pattern, dims, roles, residual in RULES:
        if re.search(r"(^|\.)(" + pattern + r")$", name):
            return dims, roles, residual
    raise AssertionError(f"the reference has no rule for {name!r}")


def _virtual(params) -> dict:
    """Native tensors as ``(out, in)`` virtual parameters (GPT-2 transposed, c_attn split)."""
    out = {}
    for name, value in params.items():
        a = np.asarray(value, dtype=np.float64)
        if _TRANSPOSED.search(name):
            a = a.T
        if _FUSED.search(name):
            for part, block in zip("qkv", np.split(a, 3, axis=0)):
                out[f"{name}#{part}"] = block
        else:
            out[name] = a
    return out


def _canonical_shape(dims: str, native: tuple, sizes: dict) -> tuple:
    shape = []
    for group, n in zip(dims.split(","), native):
        for s in group.split("*"):
            shape.append(n if s == "_" else sizes[SYMBOLS[s]])
    return tuple(shape)


def _native_shape(dims: str, canonical: tuple) -> tuple:
    out, rest = [], list(canonical)
    for group in dims.split(","):
        k = len(group.split("*"))
        out.append(math.prod(rest[:k]))
        del rest[:k]
    return tuple(out)


def _groups(virtual: dict) -> dict:
    groups: dict = {}
    for name in virtual:
        m = _LAYER.search(name)
        if m is None:
            groups.setdefault(name, {})[None] = name
        else:
            template = name[: m.start()] + "{}" + name[m.end():]
            groups.setdefault(template, {})[int(m.group(1))] = name
    return groups


def _method(x, target, roles, *, method, gain, wavelet, residual, layered):
    if method == "bot":
        return resize(x, target, roles, gain=gain, wavelet=wavelet)
    if method == "weight_selection":
        return select(x, target, roles)
    if layered and target[0] != x.shape[0]:
        n, m = x.shape[0], target[0]
        if method == "layer_select":
            x = x[layer_select_indices(n, m)]
        else:  # net2net: replicate layers, inserted copies of residual writers are zero
            idx = replicate_indices(n, m)
            x = x[idx].copy()
            if residual:
                x[1:][idx[1:] == idx[:-1]] = 0
    return select(x, target, roles)


def tied_head_factor(method: str, gain: str, n: int, m: int) -> float:
    """The norm feeding a tied output head: a tied head is the embedding (``out``, keeps means)
    where an untied one is ``(fixed, in)`` (keeps sums), so where the method keeps the function
    (``gain="function"``; selection methods when growing) that norm is scaled by ``n / m``."""
    keeps_function = (method == "bot" and gain == "function") or (method != "bot" and m > n)
    return n / m if keeps_function and n != m else 1.0


def resized_model(params, src_sizes: dict, dst_sizes: dict, *, method="bot", gain="function",
                  wavelet="haar", tied_head_norm: str | None = None) -> dict:
    """Expected native parameters of a resized checkpoint (float64), from the documentation.

    ``tied_head_norm``: a regex of the norm parameters that feed a tied output head.
    """
    virtual = _virtual(params)
    gated = any(_GATE.search(k) for k in virtual)
    result = {}
    for template, members in _groups(virtual).items():
        layered = None not in members
        first = virtual[members[min(members)]]
        dims, roles, residual = _rule(template.replace("{}", "0"))
        if gated and not _GATE.search(template):  # LayerScale models: the gate is zeroed, not the writer
            residual = False
        canon = _canonical_shape(dims, first.shape, src_sizes)
        roles = tuple(r for g in roles.split(",") for r in g.split("*"))
        if layered:
            assert sorted(members) == list(range(src_sizes["layers"])), template
            x = np.stack([virtual[members[i]].reshape(canon) for i in sorted(members)])
            roles = ("depth", *roles)
        else:
            x = first.reshape(canon)
        target = [n if s == "_" else dst_sizes[SYMBOLS[s]]
                  for group, n in zip(dims.split(","), first.shape) for s in group.split("*")]
        if layered:
            target = [dst_sizes["layers"], *target]
        y = _method(x, tuple(target), roles, method=method, gain=gain, wavelet=wavelet,
                    residual=residual, layered=layered)
        if tied_head_norm and re.search(tied_head_norm, template):
            y = y * tied_head_factor(method, gain, src_sizes["hidden"], dst_sizes["hidden"])
        native = _native_shape(dims, y.shape[1:] if layered else y.shape)
        if layered:
            for i in range(y.shape[0]):
                result[template.format(i)] = y[i].reshape(native)
        else:
            result[template] = y.reshape(native)
    return _join(result)


def _join(virtual: dict) -> dict:
    out = {}
    for name in sorted(virtual):
        base, _, part = name.partition("#")
        if part and part != "q":
            continue
        a = np.concatenate([virtual[f"{base}#{p}"] for p in "qkv"]) if part else virtual[name]
        out[base] = a.T if _TRANSPOSED.search(base) else a
    return out


def assert_params_equal(got: dict, expected: dict, *, rtol=1e-5, atol=1e-6) -> None:
    """Every expected parameter present, of the expected shape, and equal element-wise."""
    assert set(got) == set(expected), (sorted(set(got) ^ set(expected)))
    for name, want in expected.items():
        have = np.asarray(got[name], dtype=np.float64)
        assert have.shape == want.shape, (name, have.shape, want.shape)
        np.testing.assert_allclose(have, want, rtol=rtol, atol=atol, err_msg=name)
