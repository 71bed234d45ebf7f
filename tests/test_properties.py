"""The laws of the weight-signal algebra, as hypothesis properties (NumPy reference backend)."""

import warnings

import numpy as np
import pytest
import pywt
from hypothesis import given
from hypothesis import strategies as st
from strategies import ORTHOGONAL, WAVELETS, arrays, dyadic_pairs

import botcore
from botcore.fractional import area_operator

wavelets = st.sampled_from(WAVELETS)
gains_linear = st.sampled_from(["paper", "function"])
sizes = st.lists(st.integers(1, 40), min_size=1, max_size=3)


@given(x=arrays(max_side=17), data=st.data(), wavelet=wavelets)
def test_reconstruct_inverts_decompose(x, data, wavelet):
    levels = data.draw(st.lists(st.integers(0, 3), min_size=x.ndim, max_size=x.ndim))
    p = botcore.decompose(x, levels, wavelet=wavelet)
    assert np.allclose(botcore.reconstruct(p), x, atol=1e-10)


@given(x=arrays(max_side=10), data=st.data())
def test_resize_gives_exact_shape_for_any_sizes(x, data):
    shape = tuple(data.draw(st.lists(st.integers(1, 40), min_size=x.ndim, max_size=x.ndim)))
    wavelet = data.draw(wavelets)
    gain = data.draw(st.sampled_from(botcore.GAINS))
    y = botcore.resize(x, shape, wavelet=wavelet, gain=gain)
    assert y.shape == shape
    assert np.all(np.isfinite(y))


@given(x=arrays(), wavelet=wavelets, gain=st.sampled_from(botcore.GAINS))
def test_resize_to_own_shape_is_identity(x, wavelet, gain):
    assert np.array_equal(botcore.resize(x, x.shape, wavelet=wavelet, gain=gain), x)


@given(pair=dyadic_pairs(), wavelet=wavelets, gain=gains_linear)
def test_shrink_of_grow_is_identity_for_dyadic_ratios(pair, wavelet, gain):
    x, big = pair
    grown = botcore.resize(x, big, wavelet=wavelet, gain=gain)
    back = botcore.resize(grown, x.shape, wavelet=wavelet, gain=gain)
    assert np.max(np.abs(back - x)) < 1e-9


@given(x=arrays(max_side=9), data=st.data(), wavelet=wavelets, gain=gains_linear)
def test_resize_is_linear(x, data, wavelet, gain):
    shape = tuple(data.draw(st.lists(st.integers(1, 20), min_size=x.ndim, max_size=x.ndim)))
    y = np.random.default_rng(0).normal(size=x.shape)
    a, b = data.draw(st.floats(-3, 3)), data.draw(st.floats(-3, 3))
    lhs = botcore.resize(a * x + b * y, shape, wavelet=wavelet, gain=gain)
    rhs = a * botcore.resize(x, shape, wavelet=wavelet, gain=gain) + b * botcore.resize(
        y, shape, wavelet=wavelet, gain=gain
    )
    assert np.allclose(lhs, rhs, atol=1e-9)


@given(data=st.data(), wavelet=st.sampled_from(ORTHOGONAL))
def test_parseval_for_orthogonal_wavelets(data, wavelet):
    ndim = data.draw(st.integers(1, 3))
    level = data.draw(st.integers(1, 2))
    shape = [data.draw(st.integers(1, 4)) << level for _ in range(ndim)]
    x = np.random.default_rng(data.draw(st.integers(0, 999))).normal(size=shape)
    p = botcore.decompose(x, level, wavelet=wavelet)
    energy = np.sum(p.approx**2) + sum(np.sum(v**2) for d in p.details for v in d.values())
    assert np.isclose(energy, np.sum(x**2), rtol=1e-10)


@given(pair=dyadic_pairs(), wavelet=wavelets)
def test_dyadic_shrink_agrees_with_pywt_dwtn(pair, wavelet):
    small, big = pair
    x = np.random.default_rng(1).normal(size=big)
    y = botcore.resize(x, small.shape, wavelet=wavelet, gain="paper")
    ref = x
    for k in range(1, 3):
        axes = [a for a in range(x.ndim) if big[a] >> k >= small.shape[a] and big[a] != small.shape[a]]
        axes = [a for a in axes if big[a] // small.shape[a] >= 2**k]
        if axes:
            ref = pywt.dwtn(ref, wavelet, mode="periodization", axes=axes)["a" * len(axes)]
    assert np.allclose(y, ref, atol=1e-12)


@given(x=arrays(min_side=2, max_side=16), wavelet=wavelets, level=st.integers(1, 3))
def test_decompose_agrees_with_pywt_wavedecn(x, wavelet, level):
    p = botcore.decompose(x, level, wavelet=wavelet)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pywt warns about boundary effects at high levels
        ref = pywt.wavedecn(x, wavelet, mode="periodization", level=level)
    assert np.allclose(p.approx, ref[0], atol=1e-12)
    for mine, theirs in zip(p.details, ref[1:]):
        assert sorted(mine) == sorted(theirs)
        for key in theirs:
            assert np.allclose(mine[key], theirs[key], atol=1e-12)


@given(x=arrays(min_dims=2, max_dims=2, max_side=8), factor=st.sampled_from([2, 4]))
def test_function_gain_haar_width_growth_preserves_a_linear_layer(x, factor):
    w = x  # (out, in)
    v = np.random.default_rng(2).normal(size=w.shape[1])
    big = botcore.resize(w, (w.shape[0] * factor, w.shape[1] * factor), roles=("out", "in"), gain="function")
    assert np.allclose(big @ np.repeat(v, factor), np.repeat(w @ v, factor), atol=1e-10)


@given(x=arrays(min_dims=2, max_dims=2, max_side=8), data=st.data())
def test_select_growth_preserves_a_linear_layer(x, data):
    out_size = data.draw(st.integers(x.shape[0], 20))
    in_size = data.draw(st.integers(x.shape[1], 20))
    big = botcore.select(x, (out_size, in_size), roles=("out", "in"))
    v = np.random.default_rng(3).normal(size=x.shape[1])
    from botcore.fractional import replicate_indices

    v_big = v[replicate_indices(x.shape[1], in_size)]
    assert np.allclose(big @ v_big, (x @ v)[replicate_indices(x.shape[0], out_size)], atol=1e-10)


@given(shape=sizes, data=st.data(), wavelet=wavelets)
def test_function_gain_keeps_a_constant_constant(shape, data, wavelet):
    target = tuple(data.draw(st.lists(st.integers(1, 40), min_size=len(shape), max_size=len(shape))))
    c = data.draw(st.floats(-5, 5))
    y = botcore.resize(np.full(shape, c), target, wavelet=wavelet, gain="function")
    assert np.allclose(y, c, atol=1e-9)


@given(
    dtype=st.sampled_from([np.float16, np.float32, np.float64]),
    data=st.data(),
    gain=st.sampled_from(botcore.GAINS),
)
def test_dtype_kept_and_input_unchanged(dtype, data, gain):
    x = data.draw(arrays(dtype=dtype, max_side=9))
    before = x.copy()
    shape = tuple(data.draw(st.lists(st.integers(1, 20), min_size=x.ndim, max_size=x.ndim)))
    y = botcore.resize(x, shape, gain=gain)
    assert y.dtype == dtype
    assert np.array_equal(x, before)
    p = botcore.decompose(x, 1)
    assert botcore.reconstruct(p).dtype == dtype
    assert np.array_equal(x, before)


def test_bfloat16_kept():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = np.random.default_rng(0).normal(size=(4, 6)).astype(ml_dtypes.bfloat16)
    y = botcore.resize(x, (2, 9), gain="function")
    assert y.dtype == x.dtype and y.shape == (2, 9)
    ref = botcore.resize(x.astype(np.float32), (2, 9), gain="function")
    assert np.allclose(y.astype(np.float32), ref, rtol=1e-2, atol=1e-2)


@given(x=arrays(max_side=9), data=st.data())
def test_results_are_bit_identical_across_runs(x, data):
    shape = tuple(data.draw(st.lists(st.integers(1, 20), min_size=x.ndim, max_size=x.ndim)))
    wavelet = data.draw(wavelets)
    assert np.array_equal(
        botcore.resize(x, shape, wavelet=wavelet), botcore.resize(x.copy(), shape, wavelet=wavelet)
    )


@given(m=st.integers(1, 30), level=st.integers(1, 3))
def test_fractional_operator_is_the_haar_step_at_power_of_two_ratios(m, level):
    n = m << level
    x = np.random.default_rng(m).normal(size=n)
    idx, w = area_operator(n, m)
    area = (w * x[idx]).sum(axis=0)
    haar = botcore.resize(x, (m,), gain="function")
    assert np.allclose(area, haar, atol=1e-12)
    idx, w = area_operator(m, n)
    assert np.allclose((w * haar[idx]).sum(axis=0), botcore.resize(haar, (n,), gain="function"), atol=1e-12)


@given(x=arrays(min_side=2, max_side=20))
def test_std_gain_matches_source_std(x):
    shape = tuple(max(1, s // 2) for s in x.shape)
    y = botcore.resize(x, shape, gain="std")
    if y.size > 1 and np.std(y) > 0:
        assert np.isclose(np.std(y), np.std(x), rtol=1e-9)


@given(
    x=arrays(min_side=1, max_side=9),
    dtype=st.sampled_from([np.float32, np.float64]),
    axis=st.integers(0, 2),
)
def test_numpy_haar_fast_path_is_bit_identical_to_pywt(x, dtype, axis):
    from botcore.backends import numpy as nb

    from botcore.wavelets import filter_bank

    axis = axis % x.ndim
    x = np.concatenate([x, x], axis=axis).astype(dtype)  # even length
    bank = filter_bank("haar")
    a, d = nb.dwt(x, bank, axis=axis, mode="periodization", detail=True)
    ra, rd = pywt.dwt(x, "haar", mode="periodization", axis=axis)
    assert a.dtype == ra.dtype and np.array_equal(a, ra) and np.array_equal(d, rd)
    assert np.array_equal(
        nb.idwt(a, None, bank, axis=axis, mode="periodization"),
        pywt.idwt(a, None, "haar", mode="periodization", axis=axis),
    )


def test_results_never_alias_the_input():
    x = np.arange(12.0).reshape(3, 4)
    for y in (
        botcore.resize(x, x.shape),
        botcore.select(x, x.shape),
        botcore.decompose(x, 0).approx,
        botcore.reconstruct(botcore.decompose(x, 0)),
    ):
        assert not np.shares_memory(x, y)
