"""Every error class: raised for its cause, also the right builtin, with a message that helps."""

import subprocess
import sys

import numpy as np
import pytest

import botcore
from botcore import errors

X = np.ones((4, 6))


def test_every_error_is_a_boterror_and_a_builtin():
    builtins = {ValueError, TypeError, KeyError}
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.BotError)
        if cls is not errors.BotError:
            assert builtins & set(cls.__mro__), name


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: botcore.resize(X, (2, 0)), r"size 0.*>= 1"),
        (lambda: botcore.resize(X, (2, 3, 4)), r"3 axes|one target size per axis"),
        (lambda: botcore.plan((4, 6), (2,)), r"one target size per axis"),
        (lambda: botcore.resize(X, "ab"), r"sequence of positive integers"),
        (lambda: botcore.decompose(X, -1), r"negative"),
        (lambda: botcore.decompose(X, 1, axes=(0, 0)), r"repeats an axis"),
        (lambda: botcore.decompose(X, 1, axes=(5,)), r"out of range"),
        (lambda: botcore.decompose(X, (1, 2, 3), axes=(0, 1)), r"one level per axis"),
        (lambda: botcore.take(X, [7], axis=0), r"indices"),
    ],
)
def test_shape_error(call, match):
    with pytest.raises(errors.ShapeError, match=match):
        call()
    with pytest.raises(ValueError):
        call()


@pytest.mark.parametrize("wavelet", ["nope", "morl", 3])
def test_wavelet_error(wavelet):
    with pytest.raises(errors.WaveletError, match="wavelet"):
        botcore.resize(X, (2, 3), wavelet=wavelet)


def test_mode_error():
    with pytest.raises(errors.ModeError, match="periodization"):
        botcore.resize(X, (2, 3), wavelet="db2", mode="symmetric")
    with pytest.raises(errors.ModeError, match="not a PyWavelets"):
        botcore.resize(X, (2, 3), mode="bogus")
    # Haar: every mode halves exactly, so any pywt mode is accepted.
    assert np.array_equal(botcore.resize(X, (2, 3), mode="symmetric"), botcore.resize(X, (2, 3)))


def test_role_error():
    with pytest.raises(errors.RoleError, match="fixed"):
        botcore.resize(X, (2, 3), roles=("fixed", "out"))
    with pytest.raises(errors.RoleError, match="not a role"):
        botcore.resize(X, (2, 3), roles=("out", "width"))
    with pytest.raises(errors.RoleError, match="one role per axis"):
        botcore.resize(X, (2, 3), roles=("out",))
    with pytest.raises(errors.RoleError, match="fixed"):
        botcore.select(X, (4, 3), roles=("out", "fixed"))
    # a fixed axis that keeps its size is fine
    assert botcore.resize(X, (4, 3), roles=("fixed", "in")).shape == (4, 3)


def test_option_error():
    with pytest.raises(errors.OptionError, match="gain='loud'"):
        botcore.resize(X, (2, 3), gain="loud")


def test_dtype_error():
    with pytest.raises(errors.DTypeError, match="int64"):
        botcore.resize(np.ones((4, 6), dtype=np.int64), (2, 3))
    with pytest.raises(TypeError):
        botcore.decompose(np.ones(4, dtype=bool), 1)


def test_backend_error():
    with pytest.raises(errors.BackendError, match="numpy.asarray"):
        botcore.resize([[1.0, 2.0]], (1, 1))
    with pytest.raises(errors.BackendError, match="not a backend"):
        botcore.resize(X, (2, 3), backend="mxnet")
    with pytest.raises(TypeError):
        botcore.resize(object(), (2, 3))


def test_parameter_key_error_reads_as_a_sentence():
    err = errors.ParameterKeyError("missing 'a.weight'; expected it because ...")
    assert str(err) == "missing 'a.weight'; expected it because ..."
    assert isinstance(err, KeyError)


def test_reconstruct_rejects_non_pyramids():
    with pytest.raises(errors.ShapeError, match="Pyramid"):
        botcore.reconstruct({"a": X})


def test_import_botcore_loads_no_framework():
    code = (
        "import sys, numpy as np, botcore, botcore.backends, botcore.adapters\n"
        "botcore.resize(np.ones((4, 6)), (2, 9), wavelet='db2', gain='function')\n"
        "botcore.reconstruct(botcore.decompose(np.ones((5, 3)), 2))\n"
        "heavy = [m for m in ('torch', 'tensorflow', 'jax', 'onnx', 'onnxruntime', 'transformers')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
