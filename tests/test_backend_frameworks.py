"""What only one framework has: autograd, jax.grad and jax.jit, tf.Variable, lazy imports.

(Dask's laziness, chunking and memory are in ``test_backend_dask.py``.)

The shared algebra laws are in ``test_backend_conformance.py``; this module
tests the framework-specific promises of the backends (skipping a framework
that is not installed).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import botcore

FRAMEWORKS = ("torch", "tensorflow", "jax", "dask", "onnx", "onnxruntime", "transformers")


def test_import_botcore_loads_no_framework():
    code = (
        "import sys, json, numpy as np\n"
        "import botcore, botcore.backends, botcore.adapters\n"
        f"names = {FRAMEWORKS!r}\n"
        "after_import = [n for n in names if n in sys.modules]\n"
        "y = botcore.resize(np.ones((4, 6, 8)), (2, 3, 16), wavelet='db2', gain='std')\n"
        "p = botcore.decompose(np.ones((4, 4)), 1)\n"
        "botcore.reconstruct(p)\n"
        "after_call = [n for n in names if n in sys.modules]\n"
        "print(json.dumps([after_import, after_call, list(y.shape)]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    after_import, after_call, shape = json.loads(out.stdout.strip().splitlines()[-1])
    assert after_import == [], f"import botcore loaded {after_import}"
    assert after_call == [], f"botcore.resize on a numpy array loaded {after_call}"
    assert shape == [2, 3, 16]


# -- torch ---------------------------------------------------------------------


def test_torch_autograd_through_resize_decompose_reconstruct():
    torch = pytest.importorskip("torch")
    x = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    for wavelet in ("haar", "db2", "bior6.8"):
        for shape in ((1, 2, 2), (4, 8, 5), (1, 8, 2)):
            assert torch.autograd.gradcheck(
                lambda t, s=shape, w=wavelet: botcore.resize(t, s, wavelet=w), (x,), fast_mode=True
            )
        assert torch.autograd.gradcheck(
            lambda t, w=wavelet: botcore.reconstruct(botcore.decompose(t, 2, wavelet=w)), (x,), fast_mode=True
        )
    # gain="std" scales by a Python float: gradients treat that factor as a constant.
    y = botcore.resize(x, (1, 2, 2), gain="std")
    (g,) = torch.autograd.grad(y.sum(), x)
    assert g.shape == x.shape and bool(torch.isfinite(g).all())


def test_torch_parameter_and_half_precision():
    torch = pytest.importorskip("torch")
    p = torch.nn.Parameter(torch.randn(4, 8))
    y = botcore.resize(p, (2, 4))
    assert type(y) is torch.Tensor and y.requires_grad
    y.sum().backward()
    assert p.grad is not None and p.grad.shape == p.shape
    z = botcore.resize(p, (4, 8))  # identity: a new tensor, not the parameter itself
    assert type(z) is torch.Tensor and z.data_ptr() != p.data_ptr()
    for dtype in (torch.float16, torch.bfloat16):
        h = botcore.resize(torch.ones(4, 8, dtype=dtype), (8, 4), gain="function")
        assert h.dtype == dtype and bool((h == 1).all())


def test_torch_result_does_not_alias_input():
    torch = pytest.importorskip("torch")
    x = torch.randn(4, 4)
    before = x.clone()
    for y in (botcore.resize(x, (4, 4)), botcore.select(x, (4, 4)), botcore.take(x, [0, 1, 2, 3], axis=0)):
        y.add_(1.0)
    assert torch.equal(x, before)


def test_torch_keeps_device():
    """CUDA when there is one, else the shape-only ``meta`` device: never moved to the CPU."""
    torch = pytest.importorskip("torch")
    device = "cuda" if torch.cuda.is_available() else "meta"
    x = torch.randn(4, 8, 6, device=device)
    y = botcore.resize(x, (2, 16, 3), wavelet="db2")
    assert y.device == x.device and y.shape == (2, 16, 3)


# -- jax -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def jax64():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)  # float64 parity; test-only
    return jax


def _numpy_jacobian(shape, dst, wavelet):
    """Jacobian of the (linear) NumPy reference resize, one basis vector at a time."""
    n = int(np.prod(shape))
    cols = [botcore.resize(np.eye(n)[j].reshape(shape), dst, wavelet=wavelet).ravel() for j in range(n)]
    return np.stack(cols, axis=1)


def test_jax_grad_is_the_reference_jacobian(jax64):
    jnp = jax64.numpy
    shape = (2, 4, 3)
    x = jnp.asarray(np.random.default_rng(0).normal(size=shape))
    for wavelet, dst in (("haar", (1, 2, 2)), ("db2", (4, 8, 5)), ("bior6.8", (1, 8, 2))):
        jac = jax64.jit(jax64.jacrev(lambda t, d=dst, w=wavelet: botcore.resize(t, d, wavelet=w)))(x)
        ref = _numpy_jacobian(shape, dst, wavelet)
        assert float(np.abs(np.asarray(jac).reshape(ref.shape) - ref).max()) <= 1e-10
    y = jnp.asarray(np.random.default_rng(1).normal(size=(4, 4)))
    f = jax64.grad(lambda t: (botcore.reconstruct(botcore.decompose(t, 1, wavelet="db2")) ** 2).sum())
    assert float(jnp.abs(f(y) - 2 * y).max()) <= 1e-10  # reconstruct(decompose(y)) == y


def test_jax_jit_equals_eager_and_numpy(jax64):
    jnp = jax64.numpy
    a = np.random.default_rng(1).normal(size=(6, 10, 8)).astype(np.float32)
    for wavelet, shape, gain in (("haar", (3, 5, 4), "paper"), ("db2", (12, 7, 16), "function"),
                                 ("sym4", (2, 20, 3), "function")):
        f = jax64.jit(lambda t, s=shape, w=wavelet, g=gain: botcore.resize(t, s, wavelet=w, gain=g))
        y = f(jnp.asarray(a))
        ref = botcore.resize(a, shape, wavelet=wavelet, gain=gain)
        assert y.dtype == jnp.float32 and y.shape == shape
        assert float(jnp.abs(y - ref).max()) <= 1e-5 * float(np.abs(ref).max())
        eager = botcore.resize(jnp.asarray(a), shape, wavelet=wavelet, gain=gain)
        assert float(jnp.abs(y - eager).max()) <= 1e-5 * float(np.abs(ref).max())
    g = jax64.jit(jax64.grad(lambda t: botcore.resize(t, (3, 5, 4), wavelet="db2").sum()))(jnp.asarray(a))
    assert g.shape == a.shape


def test_jax_std_gain_under_jit_is_a_clear_error(jax64):
    jnp = jax64.numpy
    f = jax64.jit(lambda t: botcore.resize(t, (2, 2), gain="std"))
    with pytest.raises(botcore.OptionError, match="jit"):
        f(jnp.ones((4, 4)))
    assert botcore.resize(jnp.arange(16.0).reshape(4, 4), (2, 2), gain="std").shape == (2, 2)


def test_jax_vmap(jax64):
    jnp = jax64.numpy
    a = np.random.default_rng(2).normal(size=(3, 8, 4))
    y = jax64.vmap(lambda t: botcore.resize(t, (4, 8), wavelet="db2"))(jnp.asarray(a))
    ref = np.stack([botcore.resize(t, (4, 8), wavelet="db2") for t in a])
    assert float(jnp.abs(y - ref).max()) <= 1e-10


# -- tensorflow ----------------------------------------------------------------


def test_tf_variable_in_tensor_out():
    tf = pytest.importorskip("tensorflow")
    a = np.random.default_rng(3).normal(size=(4, 8, 6)).astype(np.float32)
    v = tf.Variable(a)
    y = botcore.resize(v, (2, 16, 3), wavelet="db2")
    assert isinstance(y, tf.Tensor) and not isinstance(y, tf.Variable)
    ref = botcore.resize(a, (2, 16, 3), wavelet="db2")
    assert float(np.abs(y.numpy() - ref).max()) <= 1e-5 * float(np.abs(ref).max())
    np.testing.assert_array_equal(v.numpy(), a)
    z = botcore.resize(v, (4, 8, 6))
    assert isinstance(z, tf.Tensor) and not isinstance(z, tf.Variable)
    np.testing.assert_array_equal(z.numpy(), a)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(botcore.resize(v, (2, 4, 3)) ** 2)
    grad = tape.gradient(loss, v)
    assert grad is not None and tuple(grad.shape) == a.shape


def test_tf_function_graph_mode():
    tf = pytest.importorskip("tensorflow")
    a = np.random.default_rng(4).normal(size=(4, 8)).astype(np.float32)
    f = tf.function(lambda t: botcore.resize(t, (8, 4), wavelet="db2", gain="function"))
    y = f(tf.constant(a))
    ref = botcore.resize(a, (8, 4), wavelet="db2", gain="function")
    assert float(np.abs(y.numpy() - ref).max()) <= 1e-5 * float(np.abs(ref).max())


def test_tf_xla_compiled_levels_equal_the_eager_ops_with_gradients(monkeypatch):
    """Large eager tensors run each level XLA-compiled (uint64 pair packing on the last axis)."""
    tf = pytest.importorskip("tensorflow")
    from botcore.backends import tensorflow as tb

    rng = np.random.default_rng(5)
    # db2: analysis on the last axis (unpacked pairs); Haar: growth of the last axis (packed pairs).
    for wavelet, shape, dst in (("db2", (6, 10, 8), (3, 20, 4)), ("haar", (6, 10, 8), (6, 10, 16))):
        v = tf.Variable(rng.normal(size=shape).astype(np.float32))
        r = tf.constant(rng.normal(size=dst).astype(np.float32))
        results = []
        for threshold in (1, 1 << 62):  # every level compiled, then none
            monkeypatch.setattr(tb, "XLA_MIN_SIZE", threshold)
            with tf.GradientTape() as tape:
                y = botcore.resize(v, dst, wavelet=wavelet)
                loss = tf.reduce_sum(y * r)
            results.append((y.numpy(), tape.gradient(loss, v).numpy()))
        (y_xla, g_xla), (y_eager, g_eager) = results
        assert np.abs(y_xla - y_eager).max() <= 1e-5 * np.abs(y_eager).max()
        assert np.abs(g_xla - g_eager).max() <= 1e-5 * np.abs(g_eager).max()
