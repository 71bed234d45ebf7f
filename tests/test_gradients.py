"""Gradients through ``botcore.resize`` / ``select`` on every autodiff backend, against a reference.

Every resize is linear in its input, so the gradient of ``sum(c * resize(x))`` is
``J.T @ c`` with ``J`` the Jacobian of the independent NumPy reference
(tests/reference.py), built column by column from unit inputs. ``gain="std"`` scales by
a factor computed from the data, which the backends treat as a constant (documented in
tests/test_backend_frameworks.py): its gradient is that factor times the paper one.
Finite differences of the NumPy backend check the same for a wavelet without a
closed-form reference on growth (db2).
"""

from __future__ import annotations

import numpy as np
import pytest
import reference

import botcore

CASES = [  # (source shape, target shape, roles, gain, wavelet)
    ((4, 6), (2, 9), ("out", "in"), "function", "haar"),
    ((3, 4, 5), (5, 2, 5), ("depth", "in_head", "head_dim"), "paper", "haar"),
    ((8, 4), (4, 2), ("out", "in_head_dim"), "function", "db2"),
    ((6,), (4,), ("in",), "paper", "haar"),
]


def _jacobian(fn, shape):
    cols = []
    for i in range(int(np.prod(shape))):
        e = np.zeros(int(np.prod(shape)))
        e[i] = 1.0
        cols.append(np.ravel(fn(e.reshape(shape))))
    return np.stack(cols, axis=1)


def _expected(src, dst, roles, gain, wavelet, c):
    j = _jacobian(lambda e: reference.resize(e, dst, roles, gain=gain, wavelet=wavelet), src)
    return (j.T @ c.ravel()).reshape(src)


def _data(src, dst, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=src), rng.normal(size=dst)


@pytest.mark.parametrize("src,dst,roles,gain,wavelet", CASES)
def test_torch_gradient_is_the_reference_jacobian(src, dst, roles, gain, wavelet):
    torch = pytest.importorskip("torch")
    x, c = _data(src, dst)
    t = torch.tensor(x, requires_grad=True)
    y = botcore.resize(t, dst, roles=roles, gain=gain, wavelet=wavelet)
    (grad,) = torch.autograd.grad((y * torch.tensor(c)).sum(), t)
    np.testing.assert_allclose(grad.numpy(), _expected(src, dst, roles, gain, wavelet, c),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_gradient_of_select_is_the_reference_jacobian(dtype):
    torch = pytest.importorskip("torch")
    src, dst, roles = (6, 3), (4, 7), ("out", "in")
    x, c = _data(src, dst)
    t = torch.tensor(x, dtype=getattr(torch, dtype), requires_grad=True)
    y = botcore.select(t, dst, roles=roles)
    (grad,) = torch.autograd.grad((y * torch.tensor(c, dtype=t.dtype)).sum(), t)
    j = _jacobian(lambda e: reference.select(e, dst, roles), src)
    tol = 1e-6 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(grad.double().numpy(), (j.T @ c.ravel()).reshape(src), rtol=tol, atol=tol)


def test_torch_gradient_of_the_std_gain_is_the_scaled_paper_gradient():
    torch = pytest.importorskip("torch")
    src, dst, roles = (4, 6), (2, 3), ("out", "in")
    x, c = _data(src, dst)
    t = torch.tensor(x, requires_grad=True)
    y = botcore.resize(t, dst, roles=roles, gain="std")
    (grad,) = torch.autograd.grad((y * torch.tensor(c)).sum(), t)
    paper = reference.resize(x, dst, roles, gain="paper")
    factor = x.std() / paper.std()
    np.testing.assert_allclose(grad.numpy(), factor * _expected(src, dst, roles, "paper", "haar", c),
                               rtol=1e-10, atol=1e-12)


def test_jax_gradient_is_the_reference_jacobian():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    src, dst, roles, gain, wavelet = CASES[1]
    x, c = _data(src, dst)
    grad = jax.grad(lambda t: (botcore.resize(t, dst, roles=roles, gain=gain, wavelet=wavelet) * c).sum())(
        jax.numpy.asarray(x))
    np.testing.assert_allclose(np.asarray(grad), _expected(src, dst, roles, gain, wavelet, c),
                               rtol=1e-10, atol=1e-12)


def test_tensorflow_gradient_is_the_reference_jacobian():
    tf = pytest.importorskip("tensorflow")
    src, dst, roles, gain, wavelet = CASES[0]
    x, c = _data(src, dst)
    v = tf.Variable(x)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(botcore.resize(v, dst, roles=roles, gain=gain, wavelet=wavelet) * c)
    grad = tape.gradient(loss, v)
    np.testing.assert_allclose(grad.numpy(), _expected(src, dst, roles, gain, wavelet, c),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("wavelet", ["db2", "bior2.2"])
def test_torch_gradient_of_a_growth_matches_finite_differences(wavelet):
    """Growth with a longer filter (no closed form here): central differences of the NumPy backend."""
    torch = pytest.importorskip("torch")
    src, dst, roles = (3, 4), (6, 12), ("depth", "in")
    x, c = _data(src, dst)
    t = torch.tensor(x, requires_grad=True)
    (grad,) = torch.autograd.grad(
        (botcore.resize(t, dst, roles=roles, wavelet=wavelet, gain="function") * torch.tensor(c)).sum(), t)

    def loss(a):
        return float((botcore.resize(a, dst, roles=roles, wavelet=wavelet, gain="function") * c).sum())

    h = 1e-6
    fd = np.zeros(src)
    for i in np.ndindex(*src):
        e = np.zeros(src)
        e[i] = h
        fd[i] = (loss(x + e) - loss(x - e)) / (2 * h)
    np.testing.assert_allclose(grad.numpy(), fd, rtol=1e-6, atol=1e-8)


def test_torch_gradient_through_decompose_and_reconstruct_is_the_identity():
    torch = pytest.importorskip("torch")
    x, c = _data((5, 8), (5, 8))
    t = torch.tensor(x, requires_grad=True)
    y = botcore.reconstruct(botcore.decompose(t, (1, 2), wavelet="db2"))
    (grad,) = torch.autograd.grad((y * torch.tensor(c)).sum(), t)
    np.testing.assert_allclose(grad.numpy(), c, rtol=1e-10, atol=1e-12)
