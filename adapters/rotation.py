"""Rotate a model's residual stream, exactly, so that a width resize keeps its principal subspace.

Contract: :func:`plan_rotation` builds a :class:`Rotation` (an orthogonal ``Q``
plus the few small vectors the folding needs) and :func:`rotate_parameter`
turns one source parameter into the rotated parameter(s), so a streaming
pipeline can rotate a checkpoint one tensor at a time; :func:`rotate_residual`
is the same for a whole mapping. The rotated parameters load in the source's
own (stock) model class and compute the same function (to float precision);
only the config may change (``tie_word_embeddings=False`` when a tied head had
to be untied, ``qkv_bias=True`` when LayerNorm shifts were folded into
bias-less q/k/v). It is the ``rotate=`` option of
:func:`botcore.adapters.resize_model` (``method="bot"``); the resize itself runs
unchanged on the rotated parameters.

Families: RMSNorm decoders (``llama``: Llama, Mistral, Qwen2) and pre-LN
LayerNorm models (``gpt2``, ``vit``, ``deit``, ``dinov2``, Hugging Face or timm
names). Post-LN BERT is refused here: its residual stream *is* a LayerNorm's
output, so only permutations of the stream commute with the model;
:func:`rotate_post_ln` rotates it approximately, which is what ``rotate=``
does for BERT.

Why it is exact. *RMSNorm*: the norm commutes with an orthogonal map once its
gain is folded into the matrices that read its output (``W diag(g)``); the
gains become ones. Every matrix that writes into the stream (embeddings,
attention and FFN output projections, their biases) gets ``Q.T`` on its hidden
side (new stream ``s = Q.T x``), every reader gets ``Q``. *LayerNorm* (the
SliceGPT mechanism, derived here): first make the stream mean-free by
subtracting, along the hidden axis, the mean of every embedding row and of
every writer's output rows and biases (LayerScale folded into its writer
first). The stream then equals ``P x`` with ``P = I - 11^T/n``, which LayerNorm
cannot tell from ``x``; on a mean-free stream LayerNorm is ``x / rms(x)`` (its
own ``eps`` kept) followed by ``gain * . + shift``. The gain is folded into the
readers as above and the shift into their biases (``b + W shift``); then any
orthogonal ``Q`` with ``Q 1 = 1`` keeps the stock ``nn.LayerNorm`` modules exact,
because ``Q.T`` keeps the stream mean-free and its norm unchanged. A reader
that cannot take a bias (a GPT-2 LM head) keeps the shift inside its norm, in
new coordinates: ``Q.T (shift / gain)``.

A tied LM head cannot absorb the final norm's gain without changing the
embedding, so it is written untied (one more ``vocab x hidden`` matrix);
``retie=True`` keeps the tie instead and approximates the final gain by the
diagonal of ``Q.T diag(g) Q`` (not exact: the benchmark's control for the
extra parameters). A model without an LM, score or classifier head is refused:
its output *is* the stream and would come out rotated.

How ``Q`` is chosen. The caller gives the stream's second-moment matrix
(:func:`residual_moments`; LayerNorm families use its mean-free part). Its
eigenvectors ``U``, strongest first, are the principal directions. The
hidden-axis resize is linear, with analysis matrix ``A`` (``target x source``);
``Q`` maps the row space of ``A`` onto the top ``target`` principal directions
(LayerNorm: the all-ones direction onto itself and the top ``target - 1`` mean-free
directions onto the rest of ``A``'s row space), so the approximation band of the
resize holds exactly that subspace. Growing keeps every direction: ``Q`` is the
principal basis itself.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> cfg = dict(model_type="llama", num_hidden_layers=1, hidden_size=4, num_attention_heads=2,
...            num_key_value_heads=1, intermediate_size=6, tie_word_embeddings=False)
>>> shapes = {"embed_tokens": (5, 4), "layers.0.self_attn.q_proj": (4, 4),
...           "layers.0.self_attn.k_proj": (2, 4), "layers.0.self_attn.v_proj": (2, 4),
...           "layers.0.self_attn.o_proj": (4, 4), "layers.0.mlp.gate_proj": (6, 4),
...           "layers.0.mlp.up_proj": (6, 4), "layers.0.mlp.down_proj": (4, 6)}
>>> p = {f"model.{k}.weight": rng.normal(size=s) for k, s in shapes.items()}
>>> p |= {f"model.layers.0.{n}.weight": rng.uniform(0.5, 2, 4)
...       for n in ("input_layernorm", "post_attention_layernorm")}
>>> p |= {"model.norm.weight": rng.uniform(0.5, 2, 4), "lm_head.weight": rng.normal(size=(5, 4))}
>>> moments = np.cov(rng.normal(size=(4, 50)))
>>> new, cfg2 = rotate_residual(p, cfg, moments, target_hidden=2)
>>> np.allclose(new["model.norm.weight"], 1), new["lm_head.weight"].shape
(True, (5, 4))
>>> q = np.linalg.lstsq(p["model.embed_tokens.weight"], new["model.embed_tokens.weight"],
...                     rcond=None)[0]   # the rotation itself
>>> np.allclose(q.T @ q, np.eye(4))
True

One parameter at a time (what a streaming pipeline does):

>>> rot = plan_rotation(p, cfg, moments, target_hidden=2)
>>> sorted(rotate_parameter(rot, "model.layers.0.mlp.down_proj.weight",
...                         p["model.layers.0.mlp.down_proj.weight"]))
['model.layers.0.mlp.down_proj.weight']
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from botcore.errors import OptionError, ParameterKeyError, UnsupportedModelError

from ._arrays import from_numpy, to_numpy

__all__ = [
    "ROTATABLE",
    "Rotation",
    "APPROXIMATE",
    "check_rotatable",
    "energy_order",
    "moments_from_text",
    "permutation_matrix",
    "plan_rotation",
    "principal_basis",
    "residual_moments",
    "rotate_parameter",
    "rotate_post_ln",
    "rotate_post_ln_principal",
    "rotate_residual",
    "rotation_for",
    "rotation_note",
    "text_batches",
]


@dataclass(frozen=True)
class _Kind:
    """What one native parameter is to the residual stream.

    ``kind``: ``embed`` (hidden = last axis), ``reader`` / ``reader_bias`` (reads
    the output of norm ``key``), ``writer`` / ``writer_bias`` (writes into the
    stream; LayerScale ``key`` folded first), ``norm_weight`` / ``norm_bias``,
    ``scale`` (LayerScale) or ``keep`` (buffers). ``axis``: the hidden axis of
    the native tensor.
    """

    pattern: str
    kind: str
    key: str | None = None
    axis: int = -1

    def __post_init__(self):
        object.__setattr__(self, "_re", re.compile(self.pattern))


def _linear(prefix: str, kind: str, key: str | None, axis: int) -> tuple[_Kind, ...]:
    return (_Kind(prefix + r"\.weight", kind, key, axis), _Kind(prefix + r"\.bias", kind + "_bias", key))


def _norm(prefix: str, key: str, weight_only: bool = False) -> tuple[_Kind, ...]:
    out = (_Kind(prefix + r"\.weight", "norm_weight", key),)
    return out if weight_only else out + (_Kind(prefix + r"\.bias", "norm_bias", key),)


_LL = r"(?:model\.)?layers\.(?P<layer>\d+)\."
_LLAMA = (
    _Kind(r"(?:model\.)?embed_tokens\.weight", "embed"),
    *_linear(_LL + r"self_attn\.[qkv]_proj", "reader", "norm1", 1),
    *_linear(_LL + r"self_attn\.o_proj", "writer", None, 0),
    *_linear(_LL + r"mlp\.(?:gate|up)_proj", "reader", "norm2", 1),
    *_linear(_LL + r"mlp\.down_proj", "writer", None, 0),
    *_norm(_LL + r"input_layernorm", "norm1", weight_only=True),
    *_norm(_LL + r"post_attention_layernorm", "norm2", weight_only=True),
    *_norm(r"(?:model\.)?norm", "final", weight_only=True),
    *_linear(r"lm_head", "reader", "final", 1),
    *_linear(r"score", "reader", "final", 1),
    _Kind(r"(?:model\.)?(?:layers\.\d+\.self_attn\.)?rotary_emb\.inv_freq", "keep"),
)

#: Qwen3: Llama's table plus per-head q/k RMSNorms, which act on head_dim, not on the stream
_QWEN3 = (*_LLAMA, _Kind(_LL + r"self_attn\.[qk]_norm\.weight", "keep"))

_GL = r"(?:transformer\.)?h\.(?P<layer>\d+)\."
_GPT2 = (
    _Kind(r"(?:transformer\.)?wte\.weight", "embed"),
    _Kind(r"(?:transformer\.)?wpe\.weight", "embed"),
    *_norm(_GL + r"ln_1", "norm1"),
    *_norm(_GL + r"ln_2", "norm2"),
    *_linear(_GL + r"attn\.c_attn", "reader", "norm1", 0),  # Conv1D: [in, out]
    *_linear(_GL + r"attn\.c_proj", "writer", None, 1),
    *_linear(_GL + r"mlp\.c_fc", "reader", "norm2", 0),
    *_linear(_GL + r"mlp\.c_proj", "writer", None, 1),
    *_norm(r"(?:transformer\.)?ln_f", "final"),
    *_linear(r"lm_head", "reader", "final", 1),
    *_linear(r"score", "reader", "final", 1),
    _Kind(_GL + r"attn\.(?:bias|masked_bias)", "keep"),
)

_VP = r"(?:vit\.|deit\.|dinov2\.)?"
_VE = _VP + r"embeddings\."
_VL = _VP + r"(?:encoder\.layer|layers)\.(?P<layer>\d+)\."
_TL = r"blocks\.(?P<layer>\d+)\."
_VIT = (
    *(_Kind(_VE + t, "embed") for t in ("cls_token", "distillation_token", "mask_token",
                                         "position_embeddings")),
    *_linear(_VE + r"patch_embeddings\.projection", "writer", None, 0),
    *_linear(_VL + r"attention\.(?:attention\.(?:query|key|value)|[qkv]_proj)", "reader", "norm1", 1),
    *_linear(_VL + r"attention\.(?:output\.dense|o_proj)", "writer", "scale1", 0),
    *_linear(_VL + r"(?:intermediate\.dense|mlp\.fc1)", "reader", "norm2", 1),
    *_linear(_VL + r"(?:output\.dense|mlp\.fc2)", "writer", "scale2", 0),
    *_norm(_VL + r"(?:layernorm_before|norm1)", "norm1"),
    *_norm(_VL + r"(?:layernorm_after|norm2)", "norm2"),
    _Kind(_VL + r"layer_scale1\.lambda1", "scale", "scale1"),
    _Kind(_VL + r"layer_scale2\.lambda1", "scale", "scale2"),
    *_norm(_VP + r"layernorm", "final"),
    *_linear(_VP + r"pooler\.dense", "reader", "final", 1),
    *_linear(r"(?:classifier|cls_classifier|distillation_classifier)", "reader", "final", 1),
    # timm names
    *(_Kind(t, "embed") for t in ("cls_token", "dist_token", "pos_embed")),
    *_linear(r"patch_embed\.proj", "writer", None, 0),
    *_linear(_TL + r"attn\.qkv", "reader", "norm1", 1),
    *_linear(_TL + r"attn\.proj", "writer", "scale1", 0),
    *_linear(_TL + r"mlp\.fc1", "reader", "norm2", 1),
    *_linear(_TL + r"mlp\.fc2", "writer", "scale2", 0),
    *_norm(_TL + r"norm1", "norm1"),
    *_norm(_TL + r"norm2", "norm2"),
    _Kind(_TL + r"ls1\.gamma", "scale", "scale1"),
    _Kind(_TL + r"ls2\.gamma", "scale", "scale2"),
    *_norm(r"(?:norm|fc_norm)", "final"),
    *_linear(r"(?:head|head_dist)", "reader", "final", 1),
    _Kind(_VE + r"position_ids", "keep"),
)

#: The families :func:`plan_rotation` rotates exactly, and whether they use LayerNorm.
ROTATABLE = {"llama": False, "qwen3": False, "gpt2": True, "vit": True, "deit": True, "dinov2": True}
_TABLES = {"llama": _LLAMA, "qwen3": _QWEN3, "gpt2": _GPT2, "vit": _VIT, "deit": _VIT, "dinov2": _VIT}
_MODEL_TYPES = {"llama": "llama", "mistral": "llama", "qwen2": "llama", "qwen3": "qwen3", "gpt2": "gpt2",
                "vit": "vit", "deit": "deit", "dinov2": "dinov2", "bert": "bert"}
#: Heads whose stock module has no bias (a LayerNorm shift cannot be folded into them).
_BIASLESS_HEADS = re.compile(r"lm_head\.weight|score\.weight")
_QKV = re.compile(r".*(?:query|key|value|[qkv]_proj)\.weight")


def _classify(family: str, name: str) -> tuple[_Kind, int | None]:
    for k in _TABLES[family]:
        m = k._re.fullmatch(name)
        if m is not None:
            layer = m.groupdict().get("layer")
            return k, None if layer is None else int(layer)
    raise ParameterKeyError(
        f"rotate=: the {family} rotation has no treatment for parameter {name!r}; expected only "
        f"parameters of one {family} checkpoint (check family=), or pass rotate=None")


def check_rotatable(family: str) -> None:
    """Raise :class:`UnsupportedModelError` unless ``family`` can be rotated exactly.

    Examples
    --------
    >>> check_rotatable("gpt2")
    >>> check_rotatable("bert")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    botcore.errors.UnsupportedModelError: rotate= needs a pre-norm model ...
    """
    if family in ROTATABLE:
        return
    why = _NOT_ROTATABLE.get(family, "rotate= has no parameter table for this family yet")
    raise UnsupportedModelError(
        f"rotate= needs a pre-norm model (RMSNorm or pre-LN LayerNorm: {', '.join(ROTATABLE)}); "
        f"{family}: {why}; pass rotate=None")


_POST_LN = "it is post-LN (its residual stream is a LayerNorm's output, which no rotation commutes with)"
_SANDWICH = ("it normalises each sublayer's output before the residual add (RMSNorm gains on the "
             "stream's writers), which no rotation of the stream commutes with")
#: why a family that is not in ROTATABLE cannot be rotated (the others: no table written yet)
_NOT_ROTATABLE = {"bert": _POST_LN, "gemma2": _SANDWICH, "gemma3": _SANDWICH, "olmo2": _SANDWICH}
#: post-LN families that ``rotate=`` rotates approximately (:func:`rotate_post_ln_principal`)
APPROXIMATE = frozenset({"bert"})


def default_retie(source_hidden: int, target_hidden: int) -> bool:
    """What ``retie=None`` (the default of ``resize_model``) means for a tied LM head.

    Keep the tie when the hidden size shrinks: the resize changes the function
    anyway, the closest-diagonal final gain costs little beside it, and the tied
    start trained best (decoder-l2s, ``docs/transfer.md``). Write the head untied
    otherwise: a grown or unchanged hidden size can keep the function exactly, and
    the re-tie would break it (decoder-s2l: step-0 eval loss 8.14 re-tied against
    3.22 untied).

    >>> default_retie(576, 288), default_retie(576, 1152), default_retie(576, 576)
    (True, False, False)
    """
    return int(target_hidden) < int(source_hidden)


def rotation_note(family: str, *, tied: bool, retie: bool) -> str:
    """The report line of a rotated resize (``ResizeResult.report``).

    >>> rotation_note("gpt2", tied=True, retie=False)[-36:]
    '; the tied LM head is written untied'
    >>> rotation_note("llama", tied=True, retie=True)[-58:]
    'the LM head stays tied (final norm gain: closest diagonal)'
    >>> rotation_note("bert", tied=True, retie=True)[:35]
    'rotated approximately onto its prin'
    """
    if family in APPROXIMATE:
        return ("rotated approximately onto its principal subspace before the resize (rotate=; "
                "post-LN: each LayerNorm gain on the stream replaced by the diagonal of Q.T diag(g) Q)")
    how = ("stream made mean-free, LayerNorm gains and shifts folded into the readers (now ones "
           "and zeros)" if ROTATABLE.get(family) else "RMSNorm gains folded into the readers (now ones)")
    return (f"rotated onto its principal subspace before the resize (rotate=): {how}"
            + (("; the LM head stays tied (final norm gain: closest diagonal)" if retie
                else "; the tied LM head is written untied") if tied else ""))


# -- the rotation matrix ---------------------------------------------------------------
def principal_basis(moments) -> np.ndarray:
    """Orthonormal columns: eigenvectors of a second-moment matrix, strongest first.

    Signs are fixed (largest entry positive) so the basis is reproducible.

    Examples
    --------
    >>> principal_basis(np.diag([1.0, 3.0]))
    array([[0., 1.],
           [1., 0.]])
    """
    vals, vecs = np.linalg.eigh(np.asarray(moments, dtype=np.float64))
    return _fix_signs(vecs[:, np.argsort(-vals, kind="stable")])


def _fix_signs(u: np.ndarray) -> np.ndarray:
    signs = np.sign(u[np.argmax(np.abs(u), axis=0), np.arange(u.shape[1])])
    return u * np.where(signs == 0, 1.0, signs)


def _ones(n: int) -> np.ndarray:
    return np.full(n, 1.0 / np.sqrt(n))


def _complete(head: np.ndarray) -> np.ndarray:
    """An orthogonal matrix whose first columns are the orthonormal columns of ``head``."""
    n, k = head.shape
    full, _ = np.linalg.qr(np.concatenate([head, np.eye(n)], axis=1), mode="reduced")
    full = full[:, :n]
    full[:, :k] = head
    return full


def _mean_free_basis(moments: np.ndarray) -> np.ndarray:
    """``[1/sqrt(n), principal directions of the mean-free subspace, strongest first]``."""
    n = moments.shape[0]
    e = _ones(n)
    b = _complete(e[:, None])[:, 1:]  # orthonormal basis of the mean-free subspace
    vals, vecs = np.linalg.eigh(b.T @ moments @ b)
    u = _fix_signs(b @ vecs[:, np.argsort(-vals, kind="stable")])
    return np.concatenate([e[:, None], u], axis=1)


def rotation_for(basis: np.ndarray, analysis: np.ndarray, *, fixed=None) -> np.ndarray:
    """Orthogonal ``Q`` mapping the row space of ``analysis`` onto ``basis``'s leading columns.

    ``analysis`` (``m x n``) is the linear map of the coming resize; after
    rotating coordinates by ``Q.T`` the resize keeps the span of ``basis[:, :m]``.
    With ``fixed`` (a unit vector, ``basis[:, 0]``), ``Q.T`` maps ``fixed`` to
    itself and ``basis[:, 1:]`` onto the row space projected off ``fixed``.

    Examples
    --------
    >>> a = np.array([[1.0, 1.0, 0, 0], [0, 0, 1.0, 1.0]]) / np.sqrt(2)   # Haar halving
    >>> q = rotation_for(np.eye(4), a)
    >>> np.allclose((a @ q.T) @ (a @ q.T).T, np.eye(2)), np.allclose((a @ q.T)[:, 2:], 0)
    (True, True)
    >>> e = np.full(4, 0.5)
    >>> q = rotation_for(_mean_free_basis(np.diag([4.0, 3, 2, 1])), a, fixed=e)
    >>> np.allclose(q.T @ e, e)
    True
    """
    a = np.asarray(analysis, dtype=np.float64)
    if np.linalg.matrix_rank(a) < a.shape[0]:
        raise OptionError("rotate: the hidden-size resize is not of full rank; "
                          "use rotate=None for this target")
    rows, _ = np.linalg.qr(a.T)
    if fixed is None:
        return basis @ _complete(rows).T
    e = np.asarray(fixed, dtype=np.float64)
    u, s, _ = np.linalg.svd(rows - np.outer(e, e @ rows), full_matrices=False)
    rest = u[:, s > 1e-9 * max(1.0, s.max())]
    return basis @ _complete(np.concatenate([e[:, None], rest], axis=1)).T


def _householder(e: np.ndarray) -> np.ndarray:
    """Symmetric orthogonal ``H`` with ``H[:, 0] = e``."""
    v = np.eye(len(e))[0] - e
    if not v.any():
        return np.eye(len(e))
    return np.eye(len(e)) - 2.0 * np.outer(v, v) / (v @ v)


def selection_analysis(n: int, m: int) -> np.ndarray | None:
    """The ``(m, n)`` matrix of a uniform selection of the hidden axis (``None``: no shrink).

    What ``rotate=`` is built for with ``method="weight_selection"`` or ``"layer_select"``.

    >>> selection_analysis(4, 2).astype(int).tolist(), selection_analysis(4, 4)
    ([[1, 0, 0, 0], [0, 0, 1, 0]], None)
    """
    import botcore

    return botcore.select(np.eye(n), (m, n)) if m < n else None


def _hidden_analysis(n: int, m: int, *, wavelet: str, mode: str, fractional: str | None = None) -> np.ndarray:
    """The ``(m, n)`` matrix of the coming hidden-axis resize (``fractional="select"``: its
    fractional step by uniform selection, as ``resize_model(fractional="select")`` does)."""
    import botcore

    if m == n:
        return np.eye(n)
    if fractional == "select":
        from .methods import _fractional_by_selection

        return _fractional_by_selection(np.eye(n), None, (m, n), wavelet=wavelet, mode=mode, gain="paper")
    return botcore.resize(np.eye(n), (m, n), wavelet=wavelet, mode=mode, gain="paper")


def _check_moments(moments, n: int) -> np.ndarray:
    try:
        m = np.asarray(moments, dtype=np.float64)
    except (TypeError, ValueError):
        raise OptionError(f"rotate= must be a ({n}, {n}) second-moment matrix of the residual "
                          f"stream (see residual_moments), got {type(moments).__name__}") from None
    if m.shape != (n, n):
        raise OptionError(f"rotate= has shape {m.shape}, but the model's hidden size is {n}: "
                          f"expected ({n}, {n}); compute it with residual_moments on the source model")
    if not np.all(np.isfinite(m)) or not np.allclose(m, m.T, rtol=1e-6, atol=1e-12 * np.abs(m).max()):
        raise OptionError("rotate= must be a finite symmetric matrix (a second-moment matrix "
                          "such as X.T @ X); compute it with residual_moments")
    return m


def rotation_matrix(moments, *, layernorm: bool, target_hidden: int | None = None,
                    wavelet: str = "haar", mode: str = "periodization",
                    fractional: str | None = None, analysis=None) -> np.ndarray:
    """The orthogonal ``Q`` (new stream ``Q.T x``) for a coming hidden-size resize.

    ``wavelet``, ``mode`` and ``fractional`` are those of the resize (they define its
    analysis matrix, whose row space ``Q`` maps onto the principal directions);
    ``analysis`` (``target_hidden x hidden``) gives that matrix directly, for a resize
    that is not ``method="bot"``'s (:func:`selection_analysis` for the selection methods).

    Examples
    --------
    >>> q = rotation_matrix(np.diag([1.0, 4, 2, 3]), layernorm=True, target_hidden=2)
    >>> np.allclose(q.T @ q, np.eye(4)), np.allclose(q.sum(axis=0), 1)
    (True, True)
    """
    m = np.asarray(moments, dtype=np.float64)
    n = m.shape[0]
    target = n if target_hidden is None else int(target_hidden)
    a = None if target >= n else np.asarray(analysis, dtype=np.float64) if analysis is not None else \
        _hidden_analysis(n, target, wavelet=wavelet, mode=mode, fractional=fractional)
    if not layernorm:
        basis = principal_basis(m)
        if target >= n:  # growing (or keeping) loses no direction: the principal basis will do
            return basis
        return rotation_for(basis, a)
    e = _ones(n)
    p = np.eye(n) - np.outer(e, e)
    basis = _mean_free_basis(p @ m @ p)  # the stream is P x once it is mean-free
    if target >= n:
        return basis @ _householder(e)
    return rotation_for(basis, a, fixed=e)


# -- the plan --------------------------------------------------------------------------
@dataclass(frozen=True)
class Rotation:
    """Everything :func:`rotate_parameter` needs; built by :func:`plan_rotation`.

    Attributes
    ----------
    family : str
    q : numpy.ndarray
        ``(hidden, hidden)`` float64 orthogonal; the new stream is ``q.T @ x``.
    layernorm : bool
        LayerNorm family: the stream is made mean-free and ``q`` keeps ``1``.
    config : dict
        The rotated model's config.
    norms : mapping
        ``(norm key, layer) -> (gain, shift or None)`` of the source (float64).
    scales : mapping
        ``(LayerScale key, layer) -> gain`` of the source (float64).
    biases : mapping
        Source reader biases by name (float64): folded with their weight.
    kept_shift : frozenset
        Norm keys whose shift stays in the norm (rotated), because a reader of it has no bias.
    untie : tuple or None
        ``(embedding name, head name)``: the embedding's call also writes the untied head.
    retie : bool
        Keep a tied head tied (approximate final gain; see the module docstring).
    added_biases : frozenset
        Names of reader biases the rotation creates (bias-less q/k/v of a LayerNorm model).
    """

    family: str
    q: np.ndarray
    layernorm: bool
    config: dict
    norms: Mapping = field(default_factory=dict)
    scales: Mapping = field(default_factory=dict)
    biases: Mapping = field(default_factory=dict)
    kept_shift: frozenset = frozenset()
    untie: tuple | None = None
    retie: bool = False
    added_biases: frozenset = frozenset()


def _family_of(config: Mapping, family: str | None) -> str:
    family = family or _MODEL_TYPES.get(str(config.get("model_type", "")))
    if family is None:
        raise UnsupportedModelError(
            f"rotate=: cannot tell the model family from model_type={config.get('model_type')!r}; "
            f"pass family= (one of {', '.join(ROTATABLE)})")
    check_rotatable(family)
    return family


def _hidden(config: Mapping, moments) -> int:
    for key in ("hidden_size", "n_embd", "embed_dim", "d_model"):
        if config.get(key):
            return int(config[key])
    return int(np.shape(moments)[0])


def _f64(x) -> np.ndarray:
    return to_numpy(x)[0].astype(np.float64)


def _bias_name(weight: str) -> str:
    head, _, _ = weight.rpartition("weight")
    return head + "bias"


def _tied_head(config: Mapping, params: Mapping, family: str, tied: bool | None) -> tuple | None:
    if family not in ("llama", "qwen3", "gpt2"):  # the families with an LM head
        return None
    embed = next((n for n in params if _classify(family, n)[0].kind == "embed"
                  and re.search(r"(?:embed_tokens|wte)\.weight$", n)), None)
    if tied is None and "lm_head.weight" in params:
        tied = embed is not None and np.array_equal(_f64(params["lm_head.weight"]), _f64(params[embed]))
    elif tied is None:  # no head stored: tied when the config says so and no other head is there
        other = any(_classify(family, n)[0].key == "final" and _classify(family, n)[0].kind == "reader"
                    for n in params)
        tied = bool(config.get("tie_word_embeddings", family == "gpt2")) and not other
    if not tied:
        return None
    if embed is None:
        raise UnsupportedModelError("rotate=: the LM head is tied to the token embedding, but the "
                                    "token embedding is missing from the checkpoint")
    return embed, "lm_head.weight"


def _small(family: str, params: Mapping) -> tuple[dict, dict, dict]:
    """Norm gains/shifts, LayerScale gains and reader biases (the only vectors folding needs)."""
    norms, scales, biases = {}, {}, {}
    for name in params:
        k, layer = _classify(family, name)
        if k.kind == "norm_weight":
            norms.setdefault((k.key, layer), [None, None])[0] = _f64(params[name])
        elif k.kind == "norm_bias":
            norms.setdefault((k.key, layer), [None, None])[1] = _f64(params[name])
        elif k.kind == "scale":
            scales[(k.key, layer)] = _f64(params[name])
        elif k.kind == "reader_bias":
            biases[name] = _f64(params[name])
    return {key: tuple(v) for key, v in norms.items()}, scales, biases


def _readers(family: str, names, untie) -> list[tuple[str, _Kind, int | None]]:
    out = [(n, *_classify(family, n)) for n in names]
    out = [(n, k, i) for n, k, i in out if k.kind == "reader"]
    if untie is not None:
        out.append((untie[1], _classify(family, untie[1])[0], None))
    return out


def _bias_plan(family: str, names, norms, untie) -> tuple[frozenset, frozenset]:
    """Norm keys whose shift stays in the norm, and the reader biases to create."""
    kept, added = set(), set()
    for name, k, layer in _readers(family, names, untie):
        shift = norms.get((k.key, None if k.key == "final" else layer), (None, None))[1]
        if shift is None or _bias_name(name) in names:
            continue
        if k.key != "final" and family in ("vit", "deit", "dinov2") and _QKV.fullmatch(name):
            added.add(_bias_name(name))  # stock ViT-family q/k/v take a bias with qkv_bias=True
        else:
            kept.add((k.key, None if k.key == "final" else layer))
    return frozenset(kept), frozenset(added)


def _check_head(family: str, names, untie) -> None:
    heads = [n for n, k, _ in _readers(family, names, untie) if k.key == "final"
             and not re.search(r"pooler", n)]
    if not heads:
        raise UnsupportedModelError(
            "rotate= needs an LM head (lm_head.weight), a score head or a classifier that reads "
            "the final norm: without one the model's output is the residual stream itself and would come out "
            "rotated; resize the ...ForCausalLM / ...ForImageClassification checkpoint, or pass "
            "rotate=None")


def plan_rotation(params: Mapping, config: Mapping, moments, *, family: str | None = None,
                  target_hidden: int | None = None, wavelet: str = "haar",
                  mode: str = "periodization", tied: bool | None = None,
                  retie: bool = False, fractional: str | None = None, analysis=None) -> Rotation:
    """The :class:`Rotation` of a checkpoint (see the module docstring).

    ``params`` maps every source parameter name to its array; only the
    one-dimensional ones (norms, LayerScale, reader biases) are read (and the
    head and embedding, to confirm a tie, unless ``tied`` says whether the LM
    head is tied), so a lazy mapping over a checkpoint costs little.
    ``family`` defaults to the one of ``config["model_type"]``.

    Raises
    ------
    OptionError
        ``moments`` is not a finite symmetric ``(hidden, hidden)`` matrix.
    UnsupportedModelError
        A post-LN family, no head, or a norm shift that cannot be kept exactly.
    ParameterKeyError
        A parameter the family's rotation has no treatment for.
    """
    family = _family_of(config, family)
    layernorm = ROTATABLE[family]
    n = _hidden(config, moments)
    m = _check_moments(moments, n)
    names = frozenset(params)
    untie = _tied_head(config, params, family, tied)
    _check_head(family, names, untie)
    norms, scales, biases = _small(family, params)
    kept, added = _bias_plan(family, names, norms, untie) if layernorm else (frozenset(), frozenset())
    for key in kept:
        gain, shift = norms[key]
        if gain is not None and np.any((gain == 0) & (shift != 0)):
            raise UnsupportedModelError(f"rotate=: norm {key} has zero gains where its shift is not "
                                        "zero, and a reader of it has no bias; pass rotate=None")
    new_config = dict(config)
    if untie is not None and not retie:
        new_config["tie_word_embeddings"] = False
    if added:
        new_config["qkv_bias"] = True
    q = rotation_matrix(m, layernorm=layernorm, target_hidden=target_hidden, wavelet=wavelet, mode=mode,
                        fractional=fractional, analysis=analysis)
    return Rotation(family, q, layernorm, new_config, norms, scales, biases, kept,
                    untie, retie and untie is not None, added)


# -- one parameter ---------------------------------------------------------------------
def _on_axis(a: np.ndarray, axis: int, fn) -> np.ndarray:
    """``fn`` applied to ``a`` with ``axis`` moved last (and moved back)."""
    moved = np.moveaxis(a, axis, -1)
    return np.moveaxis(fn(moved), -1, axis)


def _norm_of(rot: Rotation, key: str, layer: int | None) -> tuple:
    gain, shift = rot.norms.get((key, None if key == "final" else layer), (None, None))
    n = rot.q.shape[0]
    return (np.ones(n) if gain is None else gain), shift


def _parts(a: np.ndarray, n: int, fn) -> np.ndarray:
    """``fn`` on the last axis, which holds ``k`` concatenated hidden vectors (DINOv2: cls, mean)."""
    k = a.shape[-1] // n
    if k * n != a.shape[-1]:
        raise UnsupportedModelError(f"rotate=: a reader's hidden axis has {a.shape[-1]} entries, "
                                    f"not a multiple of the hidden size {n}")
    return fn(a.reshape(*a.shape[:-1], k, n)).reshape(a.shape)


def _reader(rot: Rotation, name: str, a: np.ndarray, k: _Kind, layer) -> dict:
    gain, shift = _norm_of(rot, k.key, layer)
    n = rot.q.shape[0]
    out = {name: _on_axis(a, k.axis, lambda w: _parts(w, n, lambda x: (x * gain) @ rot.q))}
    fold = rot.layernorm and shift is not None and (k.key, None if k.key == "final" else layer) \
        not in rot.kept_shift
    bias = _bias_name(name)
    if fold and (bias in rot.biases or bias in rot.added_biases):
        moved = np.moveaxis(a, k.axis, -1)
        offset = _parts(moved, n, lambda x: x * shift).sum(axis=-1)  # W @ shift (every part)
        out[bias] = rot.biases.get(bias, 0.0) + offset
    return out


def _writer(rot: Rotation, a: np.ndarray, k: _Kind, layer) -> np.ndarray:
    scale = rot.scales.get((k.key, layer)) if k.key else None

    def fn(w):
        if scale is not None:
            w = w * scale
        if rot.layernorm:
            w = w - w.mean(axis=-1, keepdims=True)
        return w @ rot.q

    return _on_axis(a, k.axis, fn) if a.ndim > 1 else fn(a)


def _norm_param(rot: Rotation, a: np.ndarray, k: _Kind, layer) -> np.ndarray:
    key = (k.key, None if k.key == "final" else layer)
    if k.kind == "norm_weight":
        if rot.retie and k.key == "final":  # best diagonal approximation of Q.T diag(g) Q
            return np.einsum("ij,i,ij->j", rot.q, a, rot.q)
        return np.ones_like(a)
    gain, shift = rot.norms[key]
    if key in rot.kept_shift:
        return (shift / np.where(gain == 0, 1.0, gain)) @ rot.q
    if rot.retie and k.key == "final":
        return shift @ rot.q
    return np.zeros_like(a)


def _rotate64(rot: Rotation, name: str, a: np.ndarray) -> dict:
    k, layer = _classify(rot.family, name)
    if rot.retie and rot.untie is not None and name == rot.untie[1]:
        k = _Kind("", "embed")  # a re-tied head stays equal to the rotated embedding
    if k.kind == "embed":
        e = a - a.mean(axis=-1, keepdims=True) if rot.layernorm else a
        out = {name: e @ rot.q}
        if rot.untie is not None and name == rot.untie[0] and not rot.retie:
            head, kind = rot.untie[1], _classify(rot.family, rot.untie[1])[0]
            out.update(_reader(rot, head, a, kind, None))
        return out
    if k.kind == "reader":
        return _reader(rot, name, a, k, layer)
    if k.kind == "reader_bias":
        folded = rot.layernorm and name in rot.biases and _norm_of(rot, k.key, layer)[1] is not None \
            and (k.key, None if k.key == "final" else layer) not in rot.kept_shift
        return {} if folded else {name: a}
    if k.kind in ("writer", "writer_bias"):
        return {name: _writer(rot, a, k, layer)}
    if k.kind in ("norm_weight", "norm_bias"):
        return {name: _norm_param(rot, a, k, layer)}
    if k.kind == "scale":
        return {name: np.ones_like(a)}
    return {name: a}


def rotate_parameter(rotation: Rotation, name: str, array) -> dict:
    """The rotated parameter(s) that source parameter ``name`` becomes.

    Usually ``{name: rotated}``. The token embedding of an untied head also
    returns ``lm_head.weight``; in LayerNorm families a reader weight also
    returns its bias (``b + W shift``, created for bias-less q/k/v), and a reader
    bias returns ``{}`` (it is written with its weight). Outputs keep the
    source array's framework and dtype.

    Examples
    --------
    >>> rot = Rotation("gpt2", np.eye(2)[::-1], True, {}, {("norm1", 0): (np.ones(2), np.ones(2))},
    ...                biases={"h.0.attn.c_attn.bias": np.zeros(6)})
    >>> out = rotate_parameter(rot, "h.0.attn.c_attn.weight", np.arange(12.0).reshape(2, 6))
    >>> out["h.0.attn.c_attn.weight"][0], out["h.0.attn.c_attn.bias"]
    (array([ 6.,  7.,  8.,  9., 10., 11.]), array([ 6.,  8., 10., 12., 14., 16.]))
    >>> rotate_parameter(rot, "h.0.attn.c_attn.bias", np.zeros(6))
    {}
    """
    a, like = to_numpy(array)
    out = _rotate64(rotation, name, a.astype(np.float64))
    return {k: from_numpy(np.asarray(v, dtype=np.float64).astype(a.dtype), like) for k, v in out.items()}


def rotate_residual(params: Mapping, config: Mapping, moments, *, family: str | None = None,
                    target_hidden: int | None = None, wavelet: str = "haar",
                    mode: str = "periodization", retie: bool = False,
                    fractional: str | None = None, analysis=None) -> tuple[dict, dict]:
    """Function-preserving residual rotation of a whole checkpoint (see the module docstring).

    Parameters
    ----------
    params : mapping
        Native (Hugging Face or timm) parameter names to numpy / torch /
        tensorflow / jax arrays. Never modified; outputs keep each parameter's
        framework and dtype.
    config : mapping
        The model's config dict (hidden size, ``tie_word_embeddings``, ``model_type``).
    moments : array-like
        ``(hidden, hidden)`` second moments of the residual stream (:func:`residual_moments`).
    family : str, keyword-only, optional
        One of :data:`ROTATABLE`; read from ``config["model_type"]`` when omitted.
    target_hidden : int, keyword-only, optional
        The hidden size of the coming resize (``None``: keep the size).
    wavelet, mode : str, keyword-only
        Those of the coming resize (they define its analysis matrix).
    fractional : {None, "area", "select"}, keyword-only
        That of the coming resize (``method="bot"``'s option; ``"select"`` changes the
        analysis matrix of a non-dyadic hidden size).
    analysis : array-like, keyword-only, optional
        The coming hidden-axis resize's matrix itself (:func:`rotation_matrix`).
    retie : bool, keyword-only
        Keep a tied LM head tied (approximate; see the module docstring).

    Returns
    -------
    (params, config)
        Rotated parameters (norm gains folded, now ones; an ``lm_head.weight``
        added when the head was tied) and the rotated model's config.

    Raises
    ------
    OptionError, UnsupportedModelError, ParameterKeyError
        See :func:`plan_rotation`.
    """
    rot = plan_rotation(params, config, moments, family=family, target_hidden=target_hidden,
                        wavelet=wavelet, mode=mode, retie=retie, fractional=fractional, analysis=analysis)
    out = {}
    for name in params:
        out.update(rotate_parameter(rot, name, params[name]))
    return out, dict(rot.config)


# -- post-LN (BERT): permutations exactly, rotations approximately ---------------------
_BP = r"(?:bert\.)?"
_BL = _BP + r"encoder\.layer\.\d+\."
_POST_LN = (
    (_BP + r"embeddings\.(?:word|position|token_type)_embeddings\.weight", "embed"),
    (_BP + r"embeddings\.LayerNorm\.(?:weight|bias)", "norm"),
    (_BL + r"attention\.self\.(?:query|key|value)\.weight", "reader"),
    (_BL + r"attention\.output\.dense\.(?:weight|bias)", "writer"),
    (_BL + r"(?:attention\.output|output)\.LayerNorm\.(?:weight|bias)", "norm"),
    (_BL + r"intermediate\.dense\.weight", "reader"),
    (_BL + r"output\.dense\.(?:weight|bias)", "writer"),
    (_BP + r"pooler\.dense\.weight", "reader"),
    (r"cls\.predictions\.transform\.dense\.weight", "both"),
    (r"cls\.predictions\.transform\.dense\.bias", "writer"),
    (r"cls\.predictions\.transform\.LayerNorm\.(?:weight|bias)", "norm"),
    (r"cls\.predictions\.decoder\.weight", "embed"),  # reads the transform output (tied)
)


def energy_order(moments, *, pairs: bool = True) -> np.ndarray:
    """A channel order from the stream's energy per channel (the moments' diagonal).

    ``pairs=True`` interleaves the strongest with the weakest channels
    (``[r0, r(n-1), r1, r(n-2), ...]`` for energy ranks ``r``), so a Haar halving
    averages every strong channel with a weak one and keeps it mostly intact;
    ``pairs=False`` sorts by energy, strongest first.

    Examples
    --------
    >>> energy_order(np.diag([1.0, 4, 3, 2])).tolist(), energy_order(np.diag([1.0, 4, 3, 2]), pairs=False).tolist()
    ([1, 0, 2, 3], [1, 2, 3, 0])
    """
    ranks = np.argsort(-np.diag(np.asarray(moments, dtype=np.float64)), kind="stable")
    if not pairs:
        return ranks
    n = len(ranks)
    out = np.empty(n, dtype=int)
    out[0::2], out[1::2] = ranks[: (n + 1) // 2], ranks[::-1][: n // 2]
    return out


def permutation_matrix(order) -> np.ndarray:
    """The orthogonal ``Q`` whose new stream ``Q.T x`` is ``x[order]``.

    >>> q = permutation_matrix([2, 0, 1]); (q.T @ np.array([10.0, 11, 12])).tolist()
    [12.0, 10.0, 11.0]
    """
    order = np.asarray(order)
    q = np.zeros((len(order), len(order)))
    q[order, np.arange(len(order))] = 1.0
    return q


def _post_ln_one(kind: str, a: np.ndarray, q: np.ndarray, name: str) -> np.ndarray:
    if kind in ("embed", "reader"):
        return a @ q
    if kind == "writer":
        return q.T @ a
    if kind == "both":
        return q.T @ a @ q
    if name.endswith("weight"):  # LayerNorm gain: the best diagonal approximation of Q.T diag(g) Q
        return np.einsum("ij,i,ij->j", q, a, q)
    return a @ q


def rotate_post_ln(params: Mapping, config: Mapping, q) -> tuple[dict, dict]:
    """A post-LN BERT checkpoint with its residual stream in basis ``q`` (new stream ``q.T x``).

    Exact (to float precision) when ``q`` is a permutation
    (:func:`permutation_matrix`); for any other orthogonal ``q`` that maps the
    all-ones direction to itself (:func:`rotation_matrix` with ``layernorm=True``)
    every LayerNorm gain on the stream becomes the diagonal of ``q.T diag(g) q``,
    the closest a stock LayerNorm can get (exact only where the gains are equal).
    The MLM head's transform is permuted on both sides (its tied decoder stays
    tied); a rotation cannot pass its GELU, so then the transform only reads the
    rotated stream and a stored decoder is written untied
    (``tie_word_embeddings=False``). Other parameters (biases of readers, the
    classifier, the NSP head, buffers) are returned unchanged; outputs keep each
    input's framework and dtype. Returns ``(params, config)``.

    Examples
    --------
    >>> p = {"embeddings.word_embeddings.weight": np.eye(3), "embeddings.LayerNorm.weight": np.arange(3.0)}
    >>> new, _ = rotate_post_ln(p, {}, permutation_matrix([2, 0, 1]))
    >>> new["embeddings.LayerNorm.weight"].tolist()
    [2.0, 0.0, 1.0]
    """
    q = np.asarray(q, dtype=np.float64)
    permutation = bool(np.all((q == 0) | (q == 1)))
    config = dict(config)
    out = {}
    for name, x in params.items():
        kind = next((k for pat, k in _POST_LN if re.fullmatch(pat, name)), None)
        if not permutation and name.startswith("cls.predictions."):
            kind = "reader" if kind == "both" else None  # past the GELU the space stays as it was
            if name == "cls.predictions.decoder.weight":
                config["tie_word_embeddings"] = False
        if kind is None:
            out[name] = x
            continue
        a, like = to_numpy(x)
        out[name] = from_numpy(_post_ln_one(kind, a.astype(np.float64), q, name).astype(a.dtype), like)
    return out, config


def rotate_post_ln_principal(params: Mapping, config: Mapping, moments, *,
                             target_hidden: int | None = None, wavelet: str = "haar",
                             mode: str = "periodization", fractional: str | None = None,
                             analysis=None) -> tuple[dict, dict]:
    """:func:`rotate_post_ln` with the principal rotation of a coming resize (``rotate=`` for BERT).

    Approximate (see :func:`rotate_post_ln`); the variant that trained best on BERT
    shrinks (``docs/transfer.md``, ``:pcaln``). Raises :class:`OptionError` for
    moments that are not a finite symmetric ``(hidden, hidden)`` matrix.
    """
    m = _check_moments(moments, _hidden(config, moments))
    q = rotation_matrix(m, layernorm=True, target_hidden=target_hidden, wavelet=wavelet, mode=mode,
                        fractional=fractional, analysis=analysis)
    return rotate_post_ln(params, config, q)


# -- calibration -----------------------------------------------------------------------
def residual_moments(model, batches) -> np.ndarray:
    """Second-moment matrix of a PyTorch model's residual stream over ``batches``.

    Every layer's input stream (``output_hidden_states``; the embeddings and the
    input of each block) contributes ``X.T @ X / |X|_F^2``, so each depth counts
    equally. ``batches`` is an iterable of ``input_ids`` tensors (or of keyword
    dicts for the model, e.g. ``{"pixel_values": x}``). The model is run in
    ``eval`` mode without gradients and is not modified.

    Returns
    -------
    numpy.ndarray
        ``(hidden, hidden)``, float64, symmetric: pass it as ``rotate=``.
    """
    import torch

    total = None
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in batches:
                kw = batch if isinstance(batch, Mapping) else {"input_ids": batch}
                states = model(**kw, output_hidden_states=True).hidden_states[:-1]
                for h in states:
                    x = h.reshape(-1, h.shape[-1]).double()
                    g = (x.T @ x / (x * x).sum().clamp_min(1e-300)).cpu().numpy()
                    total = g if total is None else total + g
    finally:
        model.train(was_training)
    if total is None:
        raise OptionError("residual_moments: batches was empty; pass at least one batch of input_ids")
    return total


def text_batches(tokenizer, text: str, *, length: int = 128, rows: int = 16, batch: int = 4) -> list:
    """``input_ids`` batches (torch, ``batch x length``) cut from ``text`` with ``tokenizer``.

    The calibration input of ``rotate=`` from a plain text file: the text is
    tokenised once (no special tokens), cut into at most ``rows`` rows of
    ``length`` tokens (the last partial row dropped; a text shorter than one
    row gives one shorter row).

    Examples
    --------
    >>> class Chars:  # any tokenizer callable as tokenizer(text)["input_ids"]
    ...     def __call__(self, text, add_special_tokens=False):
    ...         return {"input_ids": [ord(c) % 50 for c in text]}
    >>> [tuple(b.shape) for b in text_batches(Chars(), "abcdefghij" * 3, length=8, batch=2)]
    [(2, 8), (1, 8)]
    """
    import torch

    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if not ids:
        raise OptionError("rotate=: the calibration text gave no tokens; pass a file with text in it")
    n = max(1, min(rows, len(ids) // length))
    width = min(length, len(ids))
    table = torch.tensor(ids[: n * width], dtype=torch.long).reshape(n, width)
    return [table[i:i + batch] for i in range(0, n, batch)]


def moments_from_text(model, tokenizer, text: str, **kw) -> np.ndarray:
    """:func:`residual_moments` of ``model`` on :func:`text_batches` of ``text`` (what ``--calibration`` needs)."""
    return residual_moments(model, text_batches(tokenizer, text, **kw))
