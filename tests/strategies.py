"""Hypothesis strategies shared by the property tests."""

import numpy as np
from hypothesis import strategies as st

WAVELETS = ["haar", "db2", "sym4", "coif3", "bior6.8"]
ORTHOGONAL = ["haar", "db2", "sym4", "coif3"]


@st.composite
def arrays(draw, *, min_dims=1, max_dims=3, min_side=1, max_side=12, dtype=np.float64):
    shape = draw(st.lists(st.integers(min_side, max_side), min_size=min_dims, max_size=max_dims))
    seed = draw(st.integers(0, 2**32 - 1))
    return np.random.default_rng(seed).normal(size=shape).astype(dtype)


@st.composite
def dyadic_pairs(draw, *, max_dims=3):
    """A small array and a target that differs from it by powers of two per axis."""
    ndim = draw(st.integers(1, max_dims))
    small = draw(st.lists(st.integers(1, 5), min_size=ndim, max_size=ndim))
    levels = draw(st.lists(st.integers(0, 2), min_size=ndim, max_size=ndim))
    big = [s << lv for s, lv in zip(small, levels)]
    seed = draw(st.integers(0, 2**32 - 1))
    return np.random.default_rng(seed).normal(size=small), tuple(big)
