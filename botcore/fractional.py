"""Sparse linear operators along one axis: area resampling and index selection.

Contract: each function returns ``(index, weight)``, two ``(T, m)`` NumPy arrays
that define ``y[i] = sum_t weight[t, i] * x[index[t, i]]`` along one axis, the
form every backend's ``resample`` applies. Nothing here touches data.

:func:`area_operator` treats the source as piecewise constant on ``n`` equal
cells and averages it over ``m`` equal bins (mean-keeping; rows sum to 1). For
``m = n / 2`` it is the Haar low pass divided by sqrt(2); for ``m = 2 n`` it is
the Haar zero-detail synthesis times sqrt(2): the fractional step is the Haar
step generalised to any ratio.

Examples
--------
>>> idx, w = area_operator(4, 2)
>>> idx.tolist(), w.tolist()
([[0, 2], [1, 3]], [[0.5, 0.5], [0.5, 0.5]])
>>> idx, w = area_operator(2, 3)
>>> (w * 1.0).round(3).tolist()
[[1.0, 0.5, 1.0], [0.0, 0.5, 0.0]]
"""

from __future__ import annotations

import numpy as np

__all__ = ["area_operator", "edge_pad_index", "replicate_indices", "uniform_indices"]


def area_operator(n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean-keeping area resampling from ``n`` cells to ``m`` bins."""
    # Coordinates in units of 1/m of a source cell (bins) and 1/n (cells): use n*m grid.
    starts = np.arange(m) * n  # bin i covers [i*n, (i+1)*n) in units of 1/m
    first = starts // m
    last = ((np.arange(1, m + 1) * n) - 1) // m
    taps = int((last - first).max()) + 1
    index = np.zeros((taps, m), dtype=np.int64)
    weight = np.zeros((taps, m), dtype=np.float64)
    for t in range(taps):
        k = first + t
        valid = k <= last
        lo = np.maximum(starts, k * m)
        hi = np.minimum(starts + n, (k + 1) * m)
        overlap = np.where(valid, hi - lo, 0)
        index[t] = np.where(valid, k, 0)
        weight[t] = overlap / n
    return index, weight


def uniform_indices(n: int, m: int) -> np.ndarray:
    """Indices of uniform element selection from ``n`` down to ``m <= n`` (Xu et al. 2024).

    A fixed stride when ``m`` divides ``n``, else evenly spaced rounded positions.

    >>> uniform_indices(6, 3).tolist(), uniform_indices(5, 3).tolist()
    ([0, 2, 4], [0, 2, 4])
    """
    if n % m == 0:
        return np.arange(m, dtype=np.int64) * (n // m)
    return np.round(np.linspace(0, n - 1, m)).astype(np.int64)


def replicate_indices(n: int, m: int) -> np.ndarray:
    """Source index of each of ``m >= n`` outputs when growing by replication.

    >>> replicate_indices(2, 5).tolist()
    [0, 0, 0, 1, 1]
    """
    return (np.arange(m, dtype=np.int64) * n) // m


def edge_pad_index(n: int) -> np.ndarray:
    """Index that pads an odd length by repeating its last sample (PyWavelets' rule)."""
    return np.concatenate([np.arange(n), [n - 1]]).astype(np.int64)
