"""Rotate a decoder's residual stream so that a width shrink keeps its principal subspace.

Contract: :func:`rotate_residual` returns new parameters (and config) of a
Llama-family decoder that compute the same function as the input, with the
residual stream expressed in an orthonormal basis ``Q`` chosen for the coming
hidden-size resize. It is the ``rotate=`` option of
:func:`botcore.adapters.resize_model` (``method="bot"``); the resize itself is
unchanged and runs on the rotated parameters.

Why it is exact. RMSNorm commutes with an orthogonal map once its gain is
folded into the matrices that read its output (``q/k/v`` for ``input_layernorm``,
``gate/up`` for ``post_attention_layernorm``, the LM head for the final norm);
the gains then become ones. Every matrix that writes into the residual stream
(``embed_tokens`` rows, ``o_proj``, ``down_proj`` and their biases) is
multiplied by ``Q.T`` on its hidden side, every matrix that reads it by ``Q``.
A tied LM head cannot absorb the final norm's gain without changing the
embedding, so the head is untied (``tie_word_embeddings=False``, one more
``vocab x hidden`` matrix): that is the price of exactness, reported in the
config. A model without an LM or score head is refused, because its output *is*
the residual stream and would come out rotated.

How ``Q`` is chosen. The caller gives the residual stream's second-moment
matrix (``hidden x hidden``, from real inputs: :func:`residual_moments` computes
it for a PyTorch model). Its eigenvectors ``U``, strongest first, are the
principal directions. The hidden-axis resize is linear, with an analysis matrix
``A`` (``target x source``, the resize of an identity); ``Q`` maps the row space
of ``A`` onto the top ``target`` principal directions, so the approximation
band of the resize holds exactly that subspace. With Haar and a halving,
shrinking after the rotation keeps the top half of the principal components,
where plain BoT keeps the means of arbitrary channel pairs (about half of every
direction's energy). A data-free estimate (the Gram matrices of the weights
that read and write the stream) was tried and lost badly: it misses the few
massive-activation directions that carry most of the stream's energy
(``docs/transfer.md``).

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
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

from botcore.errors import OptionError, UnsupportedModelError

from ._arrays import from_numpy, to_numpy

__all__ = ["principal_basis", "residual_moments", "rotate_residual", "rotation_for"]

_P = r"(?:model\.)?"
_L = _P + r"layers\.\d+\."
_EMBED = _P + r"embed_tokens\.weight"
_FINAL = _P + r"norm\.weight"
_HEADS = (r"lm_head\.weight", r"score\.weight")
#: reader weights (out, hidden) and the norm whose gain they absorb
_READERS = {
    _L + r"self_attn\.(?:q|k|v)_proj\.weight": "input_layernorm",
    _L + r"mlp\.(?:gate|up)_proj\.weight": "post_attention_layernorm",
}
#: writer weights (hidden, in) and writer biases (hidden,)
_WRITERS = (_L + r"self_attn\.o_proj\.weight", _L + r"mlp\.down_proj\.weight")
_WRITER_BIASES = (_L + r"self_attn\.o_proj\.bias", _L + r"mlp\.down_proj\.bias")
_NORMS = (_L + r"input_layernorm\.weight", _L + r"post_attention_layernorm\.weight", _FINAL)


def _match(name: str, patterns) -> bool:
    return any(re.fullmatch(p, name) for p in patterns)


def _layer_prefix(name: str) -> str:
    return name[: re.search(r"layers\.\d+\.", name).end()]


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
    u = vecs[:, np.argsort(-vals, kind="stable")]
    signs = np.sign(u[np.argmax(np.abs(u), axis=0), np.arange(u.shape[1])])
    return u * np.where(signs == 0, 1.0, signs)


def residual_moments(model, batches) -> np.ndarray:
    """Second-moment matrix of a PyTorch decoder's residual stream over ``batches``.

    Every layer's input stream (``output_hidden_states``; the embeddings and the
    input of each decoder layer) contributes ``X.T @ X / |X|_F^2``, so each
    depth counts equally. ``batches`` is an iterable of ``input_ids`` tensors
    (or of keyword dicts for the model). The model is run in ``eval`` mode
    without gradients and is not modified.

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


def rotation_for(basis: np.ndarray, analysis: np.ndarray) -> np.ndarray:
    """Orthogonal ``Q`` mapping the row space of ``analysis`` onto ``basis``'s leading columns.

    ``analysis`` (``m x n``) is the linear map of the coming resize; after
    rotating coordinates by ``Q.T`` the resize keeps the span of ``basis[:, :m]``.

    Examples
    --------
    >>> a = np.array([[1.0, 1.0, 0, 0], [0, 0, 1.0, 1.0]]) / np.sqrt(2)   # Haar halving
    >>> q = rotation_for(np.eye(4), a)
    >>> np.allclose((a @ q.T) @ (a @ q.T).T, np.eye(2)), np.allclose((a @ q.T)[:, 2:], 0)
    (True, True)
    """
    m = analysis.shape[0]
    full, _ = np.linalg.qr(np.asarray(analysis, dtype=np.float64).T, mode="complete")
    if np.linalg.matrix_rank(analysis) < m:
        raise OptionError("rotate: the hidden-size resize is not of full rank; "
                          "use rotate=None for this target")
    return basis @ full.T


def _hidden_analysis(n: int, m: int, *, wavelet: str, mode: str) -> np.ndarray:
    import botcore

    if m == n:
        return np.eye(n)
    return botcore.resize(np.eye(n), (m, n), wavelet=wavelet, mode=mode, gain="paper")


def _tied(config: Mapping, arrays: Mapping) -> bool:
    if "lm_head.weight" not in arrays:
        return bool(config.get("tie_word_embeddings", False))
    embed = next((k for k in arrays if re.fullmatch(_EMBED, k)), None)
    return embed is not None and np.array_equal(arrays["lm_head.weight"], arrays[embed])


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


def rotate_residual(params: Mapping, config: Mapping, moments, *, target_hidden: int | None = None,
                    wavelet: str = "haar", mode: str = "periodization") -> tuple[dict, dict]:
    """Function-preserving residual rotation of a Llama-family decoder (see the module docstring).

    Parameters
    ----------
    params : mapping
        Native (Hugging Face) parameter names to numpy / torch / tensorflow / jax
        arrays. Never modified; outputs keep each parameter's framework and dtype.
    config : mapping
        The model's config dict (``hidden_size``, ``tie_word_embeddings``).
    moments : array-like
        ``(hidden, hidden)`` second moments of the residual stream
        (:func:`residual_moments`).
    target_hidden : int, keyword-only, optional
        The hidden size of the coming resize (``None``: keep the size; the
        rotation is then the plain principal basis).
    wavelet, mode : str, keyword-only
        Those of the coming resize (they define its analysis matrix).

    Returns
    -------
    (params, config)
        Rotated parameters (norm gains folded, now ones; an ``lm_head.weight`` added
        when the head was tied) and the config (``tie_word_embeddings=False`` then).

    Raises
    ------
    OptionError
        ``moments`` is not a finite symmetric ``(hidden, hidden)`` matrix.
    UnsupportedModelError
        No LM or score head (the rotation would show in the model's outputs), or
        no residual-stream weights found.
    """
    config = dict(config)
    arrays, likes = {}, {}
    for name, x in params.items():
        arrays[name], likes[name] = to_numpy(x)
    n = int(config["hidden_size"])
    basis = principal_basis(_check_moments(moments, n))
    embed = next((k for k in arrays if re.fullmatch(_EMBED, k)), None)
    tied = _tied(config, arrays)
    heads = [k for k in arrays if _match(k, _HEADS)]
    if tied and "lm_head.weight" not in heads:
        if embed is None:
            raise UnsupportedModelError("rotate=: the LM head is tied to embed_tokens, but "
                                        "embed_tokens.weight is missing")
        arrays["lm_head.weight"], likes["lm_head.weight"] = arrays[embed].copy(), likes[embed]
        heads.append("lm_head.weight")
    if not heads:
        raise UnsupportedModelError(
            "rotate= needs an LM head (lm_head.weight) or a score head: without one the "
            "model's output is the residual stream itself and would come out rotated; resize "
            "the ...ForCausalLM checkpoint, or pass rotate=None"
        )
    work = {k: v.astype(np.float64) for k, v in arrays.items()}
    final = next((k for k in work if re.fullmatch(_FINAL, k)), None)
    for name in list(work):  # fold norm gains into the readers of the normalised stream
        for pattern, norm in _READERS.items():
            if re.fullmatch(pattern, name):
                gain = work.get(_layer_prefix(name) + norm + ".weight")
                if gain is not None:
                    work[name] = work[name] * gain[None, :]
        if name in heads and final is not None:
            work[name] = work[name] * work[final][None, :]
    for name in work:
        if _match(name, _NORMS):
            work[name] = np.ones_like(work[name])
    readers = [k for k in work if _match(k, _READERS) or k in heads]
    writers = [k for k in work if _match(k, _WRITERS)]
    if not readers or not writers or embed is None:
        raise UnsupportedModelError("rotate= found no residual-stream weights "
                                    "(embed_tokens, q/k/v/gate/up, o_proj/down_proj) in the checkpoint")
    m = n if target_hidden is None else int(target_hidden)
    # growing (or keeping) the width loses no direction: the principal basis itself will do
    q = basis if m >= n else rotation_for(basis, _hidden_analysis(n, m, wavelet=wavelet, mode=mode))
    for name in readers + [embed]:
        work[name] = work[name] @ q
    for name in writers:
        work[name] = q.T @ work[name]
    for name in [k for k in work if _match(k, _WRITER_BIASES)]:
        work[name] = q.T @ work[name]
    out = {k: from_numpy(v.astype(arrays[k].dtype), likes[k]) for k, v in work.items()}
    if tied:
        config["tie_word_embeddings"] = False
    return out, config
