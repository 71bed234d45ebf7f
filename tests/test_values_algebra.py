"""``botcore.resize`` / ``select`` / ``take`` and the method helpers against the independent
NumPy reference (tests/reference.py): element-wise, for any sizes, roles and gains."""

from __future__ import annotations

import numpy as np
import pytest
import reference
from botcore.adapters.methods import layer_indices, net2net_layers, resize_signal
from hypothesis import assume, example, given
from hypothesis import strategies as st

import botcore

RESIZABLE = ["depth", "out", "in", "head", "head_dim", "in_head", "in_head_dim"]


@st.composite
def problems(draw, *, max_dims=3, max_side=12):
    """An array, a target shape and one role per axis (fixed axes keep their size)."""
    ndim = draw(st.integers(1, max_dims))
    src = tuple(draw(st.integers(1, max_side)) for _ in range(ndim))
    roles = tuple(draw(st.sampled_from(RESIZABLE + ["fixed"])) for _ in range(ndim))
    dst = tuple(n if r == "fixed" else draw(st.integers(1, 2 * max_side)) for n, r in zip(src, roles))
    x = np.random.default_rng(draw(st.integers(0, 2**16))).normal(size=src)
    return x, dst, roles


@given(p=problems(), gain=st.sampled_from(["paper", "function", "std"]))
@example(p=(np.arange(8.0).reshape(2, 4), (1, 2), ("out", "in")), gain="function")
@example(p=(np.arange(8.0).reshape(2, 4), (3, 6), ("out", "in_head_dim")), gain="function")
@example(p=(np.arange(8.0).reshape(2, 4), (3, 6), ("in_head", "head_dim")), gain="paper")
@example(p=(np.arange(12.0).reshape(3, 4), (5, 3), ("depth", "in")), gain="std")
def test_haar_resize_is_the_documented_area_treatment(p, gain):
    x, dst, roles = p
    got = botcore.resize(x, dst, roles=roles, gain=gain)
    want = reference.resize(x, dst, roles, gain=gain)
    if gain == "std" and np.ptp(want) < 1e-12 * max(1.0, np.abs(want).max()) and dst != x.shape:
        return  # a constant result has no spread to match: std promises nothing there
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


@given(data=st.data(), wavelet=st.sampled_from(["db2", "sym4", "coif3", "bior2.2", "bior6.8"]),
       gain=st.sampled_from(["paper", "function"]))
def test_dyadic_shrink_with_other_wavelets_is_the_pywt_approximation(data, wavelet, gain):
    ndim = data.draw(st.integers(1, 3))
    small = [data.draw(st.integers(1, 5)) for _ in range(ndim)]
    levels = [data.draw(st.integers(0, 2)) for _ in range(ndim)]
    roles = tuple(data.draw(st.sampled_from(RESIZABLE)) for _ in range(ndim))
    x = np.random.default_rng(data.draw(st.integers(0, 999))).normal(size=[s << k for s, k in zip(small, levels)])
    got = botcore.resize(x, small, roles=roles, gain=gain, wavelet=wavelet)
    want = reference.resize(x, small, roles, gain=gain, wavelet=wavelet)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def _ties(n: int, m: int) -> bool:
    """Rounded positions i (n - 1) / (m - 1) that fall exactly on .5 (rounding conventions differ)."""
    return m < n and n % m != 0 and m > 1 and any((2 * i * (n - 1)) % (2 * (m - 1)) == m - 1 for i in range(m))


@given(p=problems())
@example(p=(np.arange(6.0), (4,), ("out",)))  # 6 -> 4 picks [0, 2, 3, 5]
@example(p=(np.arange(48.0), (32,), ("in",)))
@example(p=(np.arange(10.0).reshape(2, 5), (3, 7), ("out", "in")))
def test_select_is_uniform_selection_or_replication(p):
    x, dst, roles = p
    assume(not any(_ties(n, m) for n, m in zip(x.shape, dst)))
    np.testing.assert_allclose(botcore.select(x, dst, roles=roles), reference.select(x, dst, roles),
                               rtol=1e-12, atol=0)


def test_select_picks_the_documented_indices():
    np.testing.assert_array_equal(botcore.select(np.arange(6.0), (4,)), [0, 2, 3, 5])
    np.testing.assert_array_equal(botcore.select(np.arange(7.0), (4,)), [0, 2, 4, 6])
    np.testing.assert_array_equal(botcore.select(np.arange(10.0), (4,)), [0, 3, 6, 9])
    np.testing.assert_array_equal(botcore.select(np.arange(3.0), (5,)), [0, 0, 1, 1, 2])
    np.testing.assert_allclose(botcore.select(np.arange(1.0, 3.0), (5,), roles=("in",)),
                               [1 / 3, 1 / 3, 1 / 3, 1, 1])


@given(n=st.integers(1, 40), m=st.integers(1, 40))
def test_layer_indices_and_net2net_layers_follow_the_documentation(n, m):
    assert layer_indices(n, m) == reference.layer_select_indices(n, m)
    if m >= n:
        idx, inserted = net2net_layers(n, m)
        assert idx == reference.replicate_indices(n, m).tolist()
        assert inserted == [i > 0 and idx[i] == idx[i - 1] for i in range(m)]
        assert sum(not f for f in inserted) == n  # every source layer kept once, in order


@given(x=st.integers(0, 999), idx=st.lists(st.integers(-5, 4), min_size=1, max_size=6))
def test_take_is_numpy_take(x, idx):
    a = np.random.default_rng(x).normal(size=(5, 3))
    np.testing.assert_array_equal(botcore.take(a, idx, axis=0), np.take(a, idx, axis=0))
    np.testing.assert_array_equal(botcore.take(a.T, idx, axis=-1), np.take(a.T, idx, axis=-1))


@pytest.mark.parametrize("method", ["bot", "weight_selection", "layer_select", "net2net"])
@pytest.mark.parametrize("residual", [False, True])
def test_resize_signal_is_the_documented_method(method, residual):
    x = np.random.default_rng(3).normal(size=(4, 6, 5))
    roles = ("depth", "out", "in")
    shape = (7, 12, 10)  # growth, so that net2net applies; depth 4 -> 7 inserts copies
    got, note = resize_signal(x, roles, shape, method=method, wavelet="haar", mode="periodization",
                              gain="function", residual=residual)
    want = reference._method(x, shape, roles, method=method, gain="function", wavelet="haar",
                             residual=residual, layered=True)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert method.split("_")[0] in note


@pytest.mark.parametrize("src,dst,text", [
    (12, 5, "12 -> 5: fractional 12 -> 10, then 1 analysis level(s)"),
    (16, 4, "16 -> 4: 2 analysis level(s)"),
    (8, 4, "8 -> 4: 1 analysis level(s)"),
    (5, 12, "5 -> 12: 1 synthesis level(s), then fractional 10 -> 12"),
    (3, 12, "3 -> 12: 2 synthesis level(s)"),
    (6, 9, "6 -> 9: fractional 6 -> 9"),
    (4, 4, "4 -> 4: unchanged"),
])
def test_axis_plans_describe_their_steps(src, dst, text):
    assert botcore.plan((src,), (dst,)).axes[0].describe() == text


def test_signals_store_their_roles_as_a_tuple():
    s = botcore.WeightSignal(np.ones((2, 3)), ["out", "in"])
    assert s.roles == ("out", "in") and isinstance(s.roles, tuple)


def test_output_dtype_keeps_the_source_dtype_by_default():
    from botcore.names import output_dtype

    assert output_dtype("bfloat16") == "bfloat16"
    assert output_dtype("bfloat16", "float32") == "float32"


@pytest.mark.parametrize("mode", ["symmetric", "zero", "reflect"])
def test_decompose_odd_lengths_in_other_modes_agree_with_pywt(mode):
    import warnings

    import pywt

    x = np.random.default_rng(0).normal(size=(5, 7))
    p = botcore.decompose(x, 1, wavelet="db2", mode=mode)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ref = pywt.wavedecn(x, "db2", mode=mode, level=1)
    np.testing.assert_allclose(p.approx, ref[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(botcore.reconstruct(p), x, rtol=1e-10, atol=1e-10)


def test_take_on_torch_is_numpy_take():
    torch = pytest.importorskip("torch")
    a = np.random.default_rng(5).normal(size=(5, 3))
    np.testing.assert_array_equal(botcore.take(torch.tensor(a), [4, 0, 0], axis=0).numpy(), a[[4, 0, 0]])
    np.testing.assert_array_equal(botcore.take(torch.tensor(a), [2], axis=1).numpy(), a[:, [2]])


@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("wavelet", ["haar", "db2", "sym4", "coif3", "bior2.2", "bior6.8", "rbio3.1"])
def test_torch_stencils_are_the_pywt_transform(wavelet, grad):
    """The filter-bank stencils (botcore.wavelets) drive the torch/tf/jax kernels: every band,
    analysis and synthesis, odd and even lengths, against PyWavelets. Tensors that need
    gradients run the shared stencil code (``backends/_stencil.py``), the others torch's own
    fast kernels; both are checked."""
    import warnings

    import pywt

    torch = pytest.importorskip("torch")

    def t(a):
        return torch.tensor(a, requires_grad=grad)

    def n(a):
        return a.detach().numpy()

    x = np.random.default_rng(6).normal(size=(6, 10, 7))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ref = pywt.wavedecn(x, wavelet, mode="periodization", level=1)
    p = botcore.decompose(t(x), 1, wavelet=wavelet)
    np.testing.assert_allclose(n(p.approx), ref[0], rtol=1e-10, atol=1e-12)
    for key, band in ref[1].items():
        np.testing.assert_allclose(n(p.details[0][key]), band, rtol=1e-10, atol=1e-12, err_msg=key)
    np.testing.assert_allclose(n(botcore.reconstruct(p)), x, rtol=1e-10, atol=1e-10)
    small = np.random.default_rng(7).normal(size=(3, 5, 4))
    got = botcore.resize(t(small), (6, 20, 4), wavelet=wavelet, roles=("depth", "out", "in"))
    want = reference.resize(small, (6, 20, 4), ("depth", "out", "in"), wavelet=wavelet)
    np.testing.assert_allclose(n(got), want, rtol=1e-10, atol=1e-12)


def test_weight_signal_select_is_select_with_its_roles():
    x = np.random.default_rng(8).normal(size=(3, 4))
    s = botcore.WeightSignal(x, ("out", "in"), name="w").select((5, 6))
    np.testing.assert_array_equal(s.data, reference.select(x, (5, 6), ("out", "in")))
    assert s.roles == ("out", "in") and s.name == "w" and s.shape == (5, 6)


def test_weight_signal_select_passes_its_options():
    """``WeightSignal.select(shape, backend=...)`` is ``select`` with the override: the data
    comes back in that framework (docs/backends.md)."""
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(8).normal(size=(3, 4))
    s = botcore.WeightSignal(x, ("out", "in"), name="w").select((5, 6), backend="torch")
    assert isinstance(s.data, torch.Tensor)
    np.testing.assert_array_equal(s.data.numpy(), reference.select(x, (5, 6), ("out", "in")))


@pytest.mark.parametrize("n", [0, -2, 3])
def test_analysis_stencils_need_a_positive_even_length(n):
    """The stencil builder refuses what no level can analyse (the backends refuse it first,
    with a ShapeError naming the axis; this guards the builder itself)."""
    from botcore.wavelets import _analysis_stencil, filter_bank

    with pytest.raises(ValueError, match=f"^analysis needs a positive even length, got {n}$"):
        _analysis_stencil(filter_bank("db2"), n, "a")
    assert _analysis_stencil(filter_bank("db2"), 2, "a").count == 1


def _apply_stencil(x, st):
    """``y[k] = sum(w * x_ext[start + step * k])``, ``x_ext = x[index]``: the Stencil's definition."""
    ext = x if st.index is None else x[st.index]
    return np.array([sum(w * ext[start + st.step * k] for start, w in st.taps) for k in range(st.count)])


@pytest.mark.parametrize("wavelet", ["haar", "db2", "bior2.2", "coif3"])
def test_stencils_follow_their_definition(wavelet):
    """Each analysis stencil gives PyWavelets' periodized band; each synthesis stencil one output
    phase of PyWavelets' synthesis from that band alone, read by the definition in
    ``botcore.wavelets.Stencil`` (index, taps, step, count), with no backend in between."""
    import pywt

    from botcore.wavelets import _analysis_stencil, _synthesis_stencil, filter_bank

    bank = filter_bank(wavelet)
    rng = np.random.default_rng(9)
    x, c = rng.normal(size=12), rng.normal(size=6)
    bands = dict(zip("ad", pywt.dwt(x, wavelet, mode="periodization")))
    for band in "ad":
        np.testing.assert_allclose(_apply_stencil(x, _analysis_stencil(bank, 12, band)), bands[band],
                                   rtol=1e-12, atol=1e-12)
        want = pywt.idwt(*((c, None) if band == "a" else (None, c)), wavelet, mode="periodization")
        for phase in (0, 1):
            st = _synthesis_stencil(bank, 6, band, phase)
            assert st.step == 1 and st.count == 6
            np.testing.assert_allclose(_apply_stencil(c, st), want[phase::2], rtol=1e-12, atol=1e-12)


def test_stencil_taps_are_the_nonzero_coefficients():
    """Zero coefficients are left out and every other one kept, whatever its value (1.0 too),
    at ``F - 1 - j`` for analysis; a band other than ``a``/``d`` is refused."""
    from botcore.wavelets import FilterBank, _analysis_stencil, _filter, _synthesis_stencil

    f = np.array([1.0, 0.0, 0.5, 0.25])
    bank = FilterBank("custom", f, -f, f[::-1], -f[::-1], False)
    assert _analysis_stencil(bank, 8, "a").taps == ((3, 1.0), (1, 0.5), (0, 0.25))
    weights = [w for p in (0, 1) for _, w in _synthesis_stencil(bank, 4, "a", p).taps]
    assert sorted(weights) == [0.25, 0.5, 1.0]
    with pytest.raises(ValueError, match="^band must be 'a' or 'd', got 'x'$"):
        _filter(bank, "x", analysis=True)


def test_pyramid_to_pywt_is_the_wavedecn_list():
    import pywt

    x = np.random.default_rng(9).normal(size=(32, 16))
    got = botcore.decompose(x, 2, wavelet="db2").to_pywt()
    want = pywt.wavedecn(x, "db2", mode="periodization", level=2)
    assert len(got) == 3 and isinstance(got[1], dict)
    np.testing.assert_allclose(got[0], want[0], atol=1e-12)
    for mine, theirs in zip(got[1:], want[1:]):
        assert sorted(mine) == sorted(theirs)
        for k in theirs:
            np.testing.assert_allclose(mine[k], theirs[k], atol=1e-12)


def test_botcore_resize_model_is_the_adapters_function():
    from botcore.adapters import resize_model

    x = {"encoder.layer.0.attention.self.query.weight": np.arange(16.0, dtype=np.float32).reshape(4, 4)}
    cfg = dict(model_type="bert", num_hidden_layers=1, hidden_size=4, num_attention_heads=2,
               intermediate_size=8)
    a = botcore.resize_model(x, {"hidden": 2}, config=cfg, gain="function")
    b = resize_model(x, {"hidden": 2}, config=cfg, gain="function")
    assert set(a.params) == set(b.params) == set(x) and a.config == b.config
    for k in x:
        np.testing.assert_array_equal(a.params[k], b.params[k])
