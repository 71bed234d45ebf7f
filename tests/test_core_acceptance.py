"""The algebra issue's concrete acceptance cases, on a BERT-base-sized FFN stack."""

import numpy as np
import pytest
import pywt

import botcore


@pytest.fixture(scope="module")
def ffn_stack():
    return np.random.default_rng(0).normal(size=(12, 768, 3072))


def test_paper_gain_shrink_equals_pywt_approximation_band(ffn_stack):
    y = botcore.resize(ffn_stack, (6, 384, 1536), gain="paper")
    assert np.array_equal(y, pywt.dwtn(ffn_stack, "haar", mode="periodization")["aaa"])


@pytest.mark.parametrize("shape", [(4, 512, 2048), (18, 1024, 4096), (7, 769, 3), (24, 384, 3072)])
def test_exact_shapes(ffn_stack, shape):
    assert botcore.resize(ffn_stack, shape).shape == shape


@pytest.mark.parametrize("wavelet", ["haar", "db2", "coif3", "bior6.8"])
def test_grow_then_shrink_returns_the_input(wavelet):
    x = np.random.default_rng(1).normal(size=(6, 48, 96))
    big = botcore.resize(x, (12, 96, 192), wavelet=wavelet)
    back = botcore.resize(big, x.shape, wavelet=wavelet)
    assert np.max(np.abs(back - x)) < 1e-9
