"""Every backend against the independent reference, over dtype x gain x wavelet.

For each backend (numpy, torch, tensorflow, jax) and every combination of dtype
(float32, float64, bfloat16, float16), gain (paper, function, std) and wavelet (haar,
db2, bior2.2) there is an explicit example; hypothesis adds derandomised examples in
the default run and a non-derandomised, longer exploration under ``-m slow``. The
expected values come from tests/reference.py in float64 on the (rounded) input, never
from another backend; results keep the input's framework, dtype and shape.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import reference
from hypothesis import example, given, settings
from hypothesis import strategies as st

import botcore

DTYPES = ["float32", "float64", "bfloat16", "float16"]
GAINS = ["paper", "function", "std"]
WAVELETS = ["haar", "db2", "bior2.2"]
TOL = {"float64": 1e-10, "float32": 2e-5, "float16": 4e-3, "bfloat16": 3e-2}
BACKENDS = [b for b, mod in (("numpy", "numpy"), ("torch", "torch"), ("tensorflow", "tensorflow"),
                             ("jax", "jax")) if importlib.util.find_spec(mod)]
ROLES = ["depth", "out", "in", "head", "head_dim", "in_head", "in_head_dim"]


def _to(backend, a, dtype):
    if backend == "numpy":
        if dtype == "bfloat16":
            import ml_dtypes

            return a.astype(ml_dtypes.bfloat16)
        return a.astype(dtype)
    if backend == "torch":
        import torch

        return torch.tensor(a, dtype=torch.float64).to(getattr(torch, dtype))
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.cast(tf.constant(a, dtype=tf.float64), getattr(tf, dtype))
    import jax

    jax.config.update("jax_enable_x64", True)  # float64 parity; test-only (as the conformance suite)
    return jax.numpy.asarray(a, dtype=jax.numpy.float64).astype(getattr(jax.numpy, dtype))


def _numpy(backend, y) -> np.ndarray:
    if backend == "torch":
        return y.double().numpy()
    return np.asarray(y).astype(np.float64)


def _dtype_name(backend, y) -> str:
    if backend == "torch":
        return str(y.dtype).replace("torch.", "")
    if backend == "tensorflow":
        return y.dtype.name
    return str(y.dtype)


@st.composite
def problems(draw, wavelet):
    """(source, target, roles): any sizes for Haar, power-of-two ratios for longer filters."""
    ndim = draw(st.integers(1, 3))
    roles = tuple(draw(st.sampled_from(ROLES)) for _ in range(ndim))
    if wavelet == "haar":
        src = tuple(draw(st.integers(1, 9)) for _ in range(ndim))
        dst = tuple(draw(st.integers(1, 18)) for _ in range(ndim))
    else:
        base = [draw(st.integers(1, 4)) for _ in range(ndim)]
        levels = [draw(st.integers(-1, 1)) for _ in range(ndim)]  # shrink, keep or grow per axis
        src = tuple(b << max(0, lv) for b, lv in zip(base, levels))
        dst = tuple(b << max(0, -lv) for b, lv in zip(base, levels))
    return src, dst, roles


def check(backend, dtype, gain, wavelet, data, seed):
    src, dst, roles = data
    rng = np.random.default_rng(seed)
    x = _to(backend, rng.normal(size=src), dtype)
    x64 = _numpy(backend, x)  # the rounded input: the reference sees what the backend sees
    y = botcore.resize(x, dst, roles=roles, gain=gain, wavelet=wavelet)
    assert type(y).__module__.split(".")[0] == type(x).__module__.split(".")[0]
    assert _dtype_name(backend, y) == dtype
    want = reference.resize(x64, dst, roles, gain=gain, wavelet=wavelet)
    got = _numpy(backend, y)
    assert got.shape == tuple(dst)
    if gain == "std" and np.ptp(want) <= 1e-12 * max(1.0, np.abs(want).max()) and dst != src:
        return  # a constant result has no spread to match (std promises nothing there)
    tol = TOL[dtype]
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * max(1.0, np.abs(want).max()))


def _examples(test):
    shapes = {"haar": ((6, 4), (3, 9), ("out", "in")), "db2": ((8, 2), (4, 4), ("depth", "in_head_dim")),
              "bior2.2": ((4, 4, 2), (2, 8, 2), ("head", "in", "head_dim"))}
    for dtype in DTYPES:
        for gain in GAINS:
            for wavelet in WAVELETS:
                test = example(dtype=dtype, gain=gain, wavelet=wavelet, data=shapes[wavelet], seed=0)(test)
    return test


SLOW_FRAMEWORKS = ("tensorflow", "jax")  # op-by-op dispatch compiles every new shape: seconds each


@pytest.mark.parametrize("backend", [pytest.param(b, marks=pytest.mark.slow) if b in SLOW_FRAMEWORKS else b
                                     for b in BACKENDS])
@settings(max_examples=20)
@given(dtype=st.sampled_from(DTYPES), gain=st.sampled_from(GAINS), wavelet=st.sampled_from(WAVELETS),
       data=st.data(), seed=st.integers(0, 2**16))
@_examples
def test_backend_matches_the_reference(backend, dtype, gain, wavelet, data, seed):
    if not isinstance(data, tuple):
        data = data.draw(problems(wavelet))
    check(backend, dtype, gain, wavelet, data, seed)


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b in SLOW_FRAMEWORKS])
@pytest.mark.parametrize("dtype", DTYPES)
def test_framework_backend_matches_the_reference_per_dtype(backend, dtype):
    """The default run's share of the matrix for TF and JAX: every dtype with every gain
    (Haar, non-dyadic) and every wavelet (power-of-two growth and shrink); the full
    matrix runs under -m slow."""
    for gain in GAINS:
        check(backend, dtype, gain, "haar", ((6, 4), (3, 9), ("out", "in")), 0)
    for wavelet in WAVELETS[1:]:
        check(backend, dtype, "function", wavelet, ((8, 2), (4, 4), ("depth", "in_head_dim")), 1)


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
@settings(derandomize=False, max_examples=400, deadline=None)
@given(dtype=st.sampled_from(DTYPES), gain=st.sampled_from(GAINS), wavelet=st.sampled_from(WAVELETS),
       data=st.data(), seed=st.integers(0, 2**16))
def test_backend_matches_the_reference_explored(backend, dtype, gain, wavelet, data, seed):
    check(backend, dtype, gain, wavelet, data.draw(problems(wavelet)), seed)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_select_keeps_dtype_and_values(backend, dtype):
    x = _to(backend, np.random.default_rng(1).normal(size=(6, 5)), dtype)
    y = botcore.select(x, (4, 8), roles=("out", "in"))
    assert _dtype_name(backend, y) == dtype
    want = reference.select(_numpy(backend, x), (4, 8), ("out", "in"))
    np.testing.assert_allclose(_numpy(backend, y), want, rtol=TOL[dtype], atol=TOL[dtype])
