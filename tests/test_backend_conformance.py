"""One conformance suite for every backend, against the NumPy reference.

Every algebra law runs on every installed backend (numpy, torch, tensorflow,
jax, dask) and each result is compared with the NumPy backend on the same input:
float64 max error <= 1e-10, float32 <= 1e-5 relative to the largest reference
value, float16/bfloat16 within their epsilon. ``BOTCORE_TEST_BACKENDS=torch,jax``
narrows the run (an unknown name fails); ``BOTCORE_BACKEND_EXAMPLES`` sets the
hypothesis examples per law and backend (default 8).
"""

from __future__ import annotations

import os

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import botcore
from botcore.backend import BACKENDS, load_backend

WAVELETS = ("haar", "db2", "sym4", "coif3", "bior6.8")
ORTHOGONAL = ("haar", "db2", "sym4", "coif3")
DTYPES = ("float64", "float32", "float16", "bfloat16")
NP_DTYPES = {"float64": np.float64, "float32": np.float32, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16}
EPS = {"float16": 2.0**-10, "bfloat16": 2.0**-7}

LAW = settings(max_examples=int(os.environ.get("BOTCORE_BACKEND_EXAMPLES", "8")), deadline=None)


def _installed(name: str) -> bool:
    try:
        load_backend(name)
    except botcore.BackendError:
        return False
    return True


def _selected() -> list[str]:
    wanted = os.environ.get("BOTCORE_TEST_BACKENDS", "")
    if not wanted.strip():
        return [name for name in BACKENDS if _installed(name)]
    names = [n.strip() for n in wanted.split(",") if n.strip()]
    unknown = [n for n in names if n not in BACKENDS]
    if unknown:
        raise ValueError(f"BOTCORE_TEST_BACKENDS names unknown backends {unknown}; expected among {list(BACKENDS)}")
    return names


class Framework:
    """Makes arrays of one framework from NumPy arrays and reads them back."""

    def __init__(self, name: str):
        self.name = name
        self.module = load_backend(name)
        if name == "jax":
            import jax

            jax.config.update("jax_enable_x64", True)  # float64 parity; test-only

    def make(self, a: np.ndarray):
        """``a`` (already in its dtype) as this framework's array."""
        if self.name == "numpy":
            return a.copy()
        if self.name == "torch":
            import torch

            if a.dtype == ml_dtypes.bfloat16:
                return torch.from_numpy(a.astype(np.float32)).to(torch.bfloat16)
            return torch.from_numpy(a.copy())
        if self.name == "tensorflow":
            import tensorflow as tf

            return tf.constant(a)
        if self.name == "dask":
            import dask.array as da

            return da.from_array(a.copy(), chunks=tuple(max(1, (n + 1) // 2) for n in a.shape))  # 2 blocks
        import jax.numpy as jnp

        return jnp.asarray(a)

    def np(self, x) -> np.ndarray:
        assert self.module.is_array(x), f"{type(x)} is not a {self.name} array"
        if self.name == "dask":  # the least overhead; the threaded scheduler runs in test_backend_dask.py
            return np.asarray(x.compute(scheduler="synchronous"))
        return np.asarray(self.module.to_numpy(x))

    def device(self, x):
        if self.name == "torch":
            return x.device
        if self.name == "tensorflow":
            return x.device
        if self.name == "jax":
            return x.devices()
        return None


@pytest.fixture(scope="module", params=_selected())
def fw(request) -> Framework:
    return Framework(request.param)


def rand(shape, dtype, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(NP_DTYPES[dtype])


def assert_close(got: np.ndarray, ref: np.ndarray, dtype: str, *, scale: float | None = None) -> None:
    got64, ref64 = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    assert got64.shape == ref64.shape
    err = float(np.max(np.abs(got64 - ref64), initial=0.0))
    big = float(np.max(np.abs(ref64), initial=0.0)) if scale is None else scale
    if dtype == "float64":
        assert err <= 1e-10, err
    elif dtype == "float32":
        assert err <= 1e-5 * max(big, 1e-30), (err, big)
    else:
        assert err <= EPS[dtype] * max(big, 1e-30), (err, big)


def check_result(fw: Framework, y, x, shape, dtype: str) -> None:
    """Framework, dtype, device and shape kept."""
    assert fw.module.is_array(y)
    assert fw.module.dtype_name(y) == dtype
    assert tuple(int(d) for d in y.shape) == tuple(shape)
    assert fw.device(y) == fw.device(x)


shapes = st.lists(st.integers(1, 12), min_size=1, max_size=3).map(tuple)


@st.composite
def resize_case(draw):
    src = draw(shapes)
    dst = tuple(draw(st.integers(1, 16)) for _ in src)
    return src, dst


# -- the laws ------------------------------------------------------------------


@LAW
@given(case=resize_case(), wavelet=st.sampled_from(WAVELETS), dtype=st.sampled_from(DTYPES),
       gain=st.sampled_from(botcore.GAINS))
def test_resize_equals_numpy_reference(fw, case, wavelet, dtype, gain):
    src, dst = case
    a = rand(src, dtype)
    x = fw.make(a)
    y = botcore.resize(x, dst, wavelet=wavelet, gain=gain)
    check_result(fw, y, x, dst, dtype)
    assert_close(fw.np(y), botcore.resize(a, dst, wavelet=wavelet, gain=gain), dtype)
    np.testing.assert_array_equal(fw.np(x), a)  # input not mutated


@LAW
@given(shape=shapes, dtype=st.sampled_from(DTYPES))
def test_resize_to_own_shape_is_identity(fw, shape, dtype):
    a = rand(shape, dtype)
    x = fw.make(a)
    y = botcore.resize(x, shape)
    check_result(fw, y, x, shape, dtype)
    np.testing.assert_array_equal(fw.np(y), a)
    assert y is not x


@LAW
@given(shape=shapes, up=st.lists(st.integers(0, 2), min_size=3, max_size=3),
       wavelet=st.sampled_from(WAVELETS), dtype=st.sampled_from(("float64", "float32")))
def test_shrink_after_grow_is_identity(fw, shape, up, wavelet, dtype):
    big = tuple(n * 2 ** k for n, k in zip(shape, up))
    a = rand(shape, dtype)
    y = botcore.resize(botcore.resize(fw.make(a), big, wavelet=wavelet), shape, wavelet=wavelet)
    assert_close(fw.np(y), a, dtype)


@LAW
@given(case=resize_case(), wavelet=st.sampled_from(WAVELETS), dtype=st.sampled_from(("float64", "float32")),
       gain=st.sampled_from(("paper", "function")), coef=st.tuples(st.floats(-3, 3), st.floats(-3, 3)))
def test_resize_is_linear(fw, case, wavelet, dtype, gain, coef):
    src, dst = case
    a, b = rand(src, dtype, 1), rand(src, dtype, 2)
    s, t = (NP_DTYPES[dtype](c) for c in coef)
    kw = {"wavelet": wavelet, "gain": gain}
    lhs = fw.np(botcore.resize(fw.make(s * a + t * b), dst, **kw))
    rhs = s * fw.np(botcore.resize(fw.make(a), dst, **kw)) + t * fw.np(botcore.resize(fw.make(b), dst, **kw))
    scale = (abs(float(s)) + abs(float(t))) * max(np.abs(a).max(), np.abs(b).max()) * 2**1.5 + 1.0
    assert_close(lhs, rhs, dtype, scale=scale)


@LAW
@given(shape=shapes, level=st.lists(st.integers(0, 2), min_size=3, max_size=3),
       wavelet=st.sampled_from(WAVELETS), dtype=st.sampled_from(DTYPES))
def test_decompose_reconstruct_equal_numpy(fw, shape, level, wavelet, dtype):
    a = rand(shape, dtype)
    x = fw.make(a)
    levels = level[: len(shape)]
    p = botcore.decompose(x, levels, wavelet=wavelet)
    ref = botcore.decompose(a, levels, wavelet=wavelet)
    work = "float64" if dtype == "float64" else "float32"  # bands are in the compute dtype
    assert fw.module.is_array(p.approx) and fw.module.dtype_name(p.approx) == work
    assert_close(fw.np(p.approx), ref.approx, work, scale=_scale(ref))
    assert [sorted(d) for d in p.details] == [sorted(d) for d in ref.details]
    for got, want in zip(p.details, ref.details):
        for key in want:
            assert_close(fw.np(got[key]), want[key], work, scale=_scale(ref))
    y = botcore.reconstruct(p)
    check_result(fw, y, x, shape, dtype)
    assert_close(fw.np(y), a, dtype)
    assert_close(fw.np(y), botcore.reconstruct(ref), dtype)
    np.testing.assert_array_equal(fw.np(x), a)


def _scale(pyramid) -> float:
    bands = [pyramid.approx, *[v for d in pyramid.details for v in d.values()]]
    return max(float(np.abs(np.asarray(v, np.float64)).max()) for v in bands)


@LAW
@given(base=st.lists(st.integers(1, 5), min_size=1, max_size=3), level=st.integers(1, 2),
       wavelet=st.sampled_from(ORTHOGONAL))
def test_parseval_for_orthogonal_wavelets(fw, base, level, wavelet):
    shape = tuple(n * 2**level for n in base)
    a = rand(shape, "float64")
    p = botcore.decompose(fw.make(a), level, wavelet=wavelet)
    energy = float((fw.np(p.approx) ** 2).sum())
    energy += sum(float((fw.np(v) ** 2).sum()) for d in p.details for v in d.values())
    assert abs(energy - float((a**2).sum())) <= 1e-9 * float((a**2).sum())


@LAW
@given(case=resize_case(), dtype=st.sampled_from(DTYPES),
       roles=st.sampled_from(("out", "in", "in_head")))
def test_select_and_take_equal_numpy(fw, case, dtype, roles):
    src, dst = case
    a = rand(src, dtype)
    x = fw.make(a)
    r = (roles,) * len(src)
    y = botcore.select(x, dst, roles=r)
    check_result(fw, y, x, dst, dtype)
    assert_close(fw.np(y), botcore.select(a, dst, roles=r), dtype)
    idx = list(range(src[0]))[::-1]
    t = botcore.take(x, idx, axis=0)
    np.testing.assert_array_equal(fw.np(t), botcore.take(a, idx, axis=0))


# -- framework specifics -------------------------------------------------------


def test_acceptance_shape_equals_numpy_reference(fw):
    """The issue's acceptance case, at a tenth of the width to stay fast by default."""
    a = rand((12, 96, 384), "float32")
    x = fw.make(a)
    y = botcore.resize(x, (6, 48, 192))
    check_result(fw, y, x, (6, 48, 192), "float32")
    assert_close(fw.np(y), botcore.resize(a, (6, 48, 192)), "float32")


@pytest.mark.slow
def test_acceptance_full_size(fw):
    a = rand((12, 768, 3072), "float32")
    y = botcore.resize(fw.make(a), (6, 384, 1536))
    assert_close(fw.np(y), botcore.resize(a, (6, 384, 1536)), "float32")


def test_unsupported_mode_is_a_clear_error(fw):
    if fw.name in ("numpy", "dask"):
        pytest.skip(f"the {fw.name} backend supports every PyWavelets mode")
    with pytest.raises(botcore.ModeError, match="periodization"):
        botcore.resize(fw.make(rand((4, 4), "float32")), (2, 2), mode="symmetric", wavelet="db2")


def test_integer_arrays_are_a_dtype_error(fw):
    with pytest.raises(botcore.DTypeError):
        botcore.resize(fw.make(np.arange(8, dtype=np.int64)), (4,))


def test_backend_override_computes_in_that_framework(fw):
    a = rand((4, 6, 8), "float32")
    y = botcore.resize(a, (2, 3, 16), wavelet="db2", backend=fw.name)
    assert fw.module.is_array(y) and fw.module.dtype_name(y) == "float32"
    assert_close(fw.np(y), botcore.resize(a, (2, 3, 16), wavelet="db2"), "float32")
    p = botcore.decompose(a, 1, backend=fw.name)
    assert fw.module.is_array(p.approx)


def test_unknown_backend_override():
    with pytest.raises(botcore.BackendError, match="not a backend"):
        botcore.resize(np.ones(4), (2,), backend="cupy")


def test_mixing_frameworks_is_a_type_error(fw):
    if fw.name == "numpy":
        pytest.skip("needs a second framework")
    x = fw.make(rand((4, 4), "float32"))
    with pytest.raises(TypeError, match="different frameworks"):
        botcore.get_backend(x, np.ones(3))
    p = botcore.decompose(x, 1)
    mixed = botcore.Pyramid(np.asarray(fw.np(p.approx)), p.details, p.axes, p.shapes, p.wavelet, p.mode, like=x)
    with pytest.raises(botcore.BackendError, match="different frameworks"):
        botcore.reconstruct(mixed)
