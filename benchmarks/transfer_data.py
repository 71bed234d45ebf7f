"""Offline data for the transfer benchmark: prose splits, token chunks, digits, batch orders.

Contract: every function here is deterministic (fixed seeds, sorted inputs) and
reads only data that ships with Python, scikit-learn or the model packages; no
network. Tokenised chunks are cached as ``.npz`` files under :func:`cache_dir`
(``$BOT_TRANSFER_CACHE`` or ``~/.cache/bot-scaling/transfer``), written to a
temporary name and renamed, so an interrupted run never leaves a half-written
cache. Arrays returned are NumPy; the training code converts them.

Examples
--------
>>> train, held = prose_split()
>>> len(train) + len(held) == len(__import__("pydoc_data.topics").topics.topics)
True
>>> order = batch_order(10, steps=3, batch=4, seed=0)
>>> order.shape, bool((order == batch_order(10, steps=3, batch=4, seed=0)).all())
((3, 4), True)
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np

__all__ = [
    "batch_order",
    "cache_dir",
    "chunk_stream",
    "digits",
    "mlm_mask",
    "prose_split",
    "token_chunks",
]

#: Share of pydoc topics held out for evaluation (the issue's 90/10 split).
EVAL_SHARE = 0.1


def cache_dir() -> Path:
    """Folder for cached tokenisations and trained source models (created on demand).

    Examples
    --------
    >>> cache_dir().is_dir()
    True
    """
    root = Path(os.environ.get("BOT_TRANSFER_CACHE", Path.home() / ".cache" / "bot-scaling" / "transfer"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def prose_split(*, seed: int = 0) -> tuple[list[str], list[str]]:
    """Split the English prose of ``pydoc_data.topics`` 90/10 by topic.

    Topic keys are sorted, shuffled with ``random.Random(seed)``, and the first
    10 % (rounded) are held out: the protocol of ``research/calibration.md``.

    Returns
    -------
    (train_texts, eval_texts) : lists of topic texts in that order.

    Examples
    --------
    >>> tr, ev = prose_split()
    >>> len(ev), len(tr) > 8 * len(ev)
    (8, True)
    """
    from pydoc_data.topics import topics

    keys = sorted(topics)
    random.Random(seed).shuffle(keys)
    n_eval = round(len(keys) * EVAL_SHARE)
    return [topics[k] for k in keys[n_eval:]], [topics[k] for k in keys[:n_eval]]


def chunk_stream(docs: list[list[int]], *, length: int, sep: int | None, prefix: int | None = None,
                 suffix: int | None = None) -> np.ndarray:
    """Concatenate token lists (``sep`` after each) and cut into rows of ``length``.

    ``prefix``/``suffix`` (e.g. BERT's ``[CLS]``/``[SEP]``) wrap every row and
    count towards ``length``; the incomplete tail is dropped.

    Examples
    --------
    >>> chunk_stream([[1, 2, 3], [4, 5]], length=3, sep=9)
    array([[1, 2, 3],
           [9, 4, 5]])
    >>> chunk_stream([[1, 2, 3, 4, 5]], length=4, sep=None, prefix=7, suffix=8)
    array([[7, 1, 2, 8],
           [7, 3, 4, 8]])
    """
    stream: list[int] = []
    for d in docs:
        stream.extend(d)
        if sep is not None:
            stream.append(sep)
    body = length - (prefix is not None) - (suffix is not None)
    n = len(stream) // body
    rows = np.asarray(stream[: n * body], dtype=np.int64).reshape(n, body)
    parts = []
    if prefix is not None:
        parts.append(np.full((n, 1), prefix, dtype=np.int64))
    parts.append(rows)
    if suffix is not None:
        parts.append(np.full((n, 1), suffix, dtype=np.int64))
    return np.concatenate(parts, axis=1)


def _save_npz(path: Path, **arrays) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def token_chunks(name: str, tokenize, *, length: int = 128, sep: int | None, prefix: int | None = None,
                 suffix: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Train/eval token chunks of the prose split, cached under ``name``.

    ``tokenize(text) -> list[int]`` is called only when the cache is missing.

    Examples
    --------
    >>> tok = lambda s: [ord(c) % 50 for c in s[:200]]
    >>> tr, ev = token_chunks("doctest-chars", tok, length=16, sep=0)
    >>> tr.shape[1], ev.shape[1], tr.dtype
    (16, 16, dtype('int64'))
    """
    path = cache_dir() / f"{name}-L{length}.npz"
    if path.exists():
        with np.load(path) as z:
            return z["train"], z["eval"]
    train_texts, eval_texts = prose_split()
    kw = dict(length=length, sep=sep, prefix=prefix, suffix=suffix)
    train = chunk_stream([tokenize(t) for t in train_texts], **kw)
    held = chunk_stream([tokenize(t) for t in eval_texts], **kw)
    _save_npz(path, train=train, eval=held)
    return train, held


def digits(*, size: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits, upscaled to ``size`` (nearest), scaled to [0, 1], 80/20 split.

    Returns ``(x_train, y_train, x_test, y_test)`` with images shaped
    ``(n, 1, size, size)`` float32; the split is stratified-free but fixed by ``seed``.

    Examples
    --------
    >>> xtr, ytr, xte, yte = digits()
    >>> xtr.shape[1:], len(xtr) + len(xte), float(xtr.max())
    ((1, 16, 16), 1797, 1.0)
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    rep = size // 8
    x = np.kron(d.images / 16.0, np.ones((rep, rep))).astype(np.float32)[:, None]
    y = d.target.astype(np.int64)
    perm = np.random.default_rng(seed).permutation(len(x))
    n_test = len(x) // 5
    te, tr = perm[:n_test], perm[n_test:]
    return x[tr], y[tr], x[te], y[te]


def batch_order(n: int, *, steps: int, batch: int, seed: int) -> np.ndarray:
    """Row indices for every training step: one permutation per epoch, concatenated.

    The same ``(n, steps, batch, seed)`` gives the same order, so every method
    of a seed sees identical batches.

    Examples
    --------
    >>> batch_order(4, steps=3, batch=2, seed=1).ravel().tolist().count(0)
    2
    """
    rng = np.random.default_rng(seed)
    need = steps * batch
    parts, have = [], 0
    while have < need:
        parts.append(rng.permutation(n))
        have += n
    return np.concatenate(parts)[:need].reshape(steps, batch)


def mlm_mask(ids: np.ndarray, *, seed: int, mask_id: int, vocab: int, special: tuple[int, ...],
             rate: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """BERT masking (15 %; of those 80 % ``[MASK]``, 10 % random, 10 % kept), deterministic in ``seed``.

    Returns ``(inputs, labels)``; labels are ``-100`` where no prediction is made.
    Special tokens are never chosen.

    Examples
    --------
    >>> ids = np.arange(5, 105).reshape(2, 50)
    >>> inp, lab = mlm_mask(ids, seed=0, mask_id=3, vocab=200, special=())
    >>> bool(((lab == -100) | (lab == ids)).all()), bool((inp[lab == -100] == ids[lab == -100]).all())
    (True, True)
    """
    rng = np.random.default_rng(seed)
    pick = rng.random(ids.shape) < rate
    if special:
        pick &= ~np.isin(ids, special)
    labels = np.where(pick, ids, -100)
    u = rng.random(ids.shape)
    inputs = ids.copy()
    inputs[pick & (u < 0.8)] = mask_id
    rand = pick & (u >= 0.8) & (u < 0.9)
    inputs[rand] = rng.integers(0, vocab, size=int(rand.sum()))
    return inputs, labels
