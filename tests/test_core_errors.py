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


# --------------------------------------------------------------------------- exact messages and edges
# (each of these was a surviving mutant of the first mutation run: docs/testing.md)


def _message(call, cls=errors.BotError) -> str:
    with pytest.raises(cls) as info:
        call()
    return str(info.value)


def test_messages_name_the_function_and_the_fix():
    assert _message(lambda: botcore.select(X, (2, 3, 4))).startswith("select: the array has shape (4, 6)")
    assert _message(lambda: botcore.take(np.ones((2, 2), int), [0], axis=0)).startswith(
        "take needs floating-point weights, got dtype int64")
    assert _message(lambda: botcore.take(X, [0], axis=2)) == "axis 2 is out of range for shape (4, 6)"
    for bad in ([], [4], [-5], [[0]]):
        msg = _message(lambda b=bad: botcore.take(X, b, axis=0), errors.ShapeError)
        assert msg.endswith("expected a non-empty list of ints in [0, 3]"), msg
    assert _message(lambda: botcore.decompose(X, 1, axes=["a"])) == "axes must be a sequence of ints, got ['a']"
    assert _message(lambda: botcore.decompose(X, "a")) == (
        "level must be an int or a sequence of ints, got 'a'")
    assert _message(lambda: botcore.decompose(X, (1, 2, 3), axes=(0, 1))).endswith(
        "; give one level per axis or a single int")
    assert _message(lambda: botcore.reconstruct([X])) == (
        "reconstruct expects a Pyramid from botcore.decompose, got list")


def test_take_and_decompose_accept_every_valid_axis():
    np.testing.assert_array_equal(botcore.take(X, [0], axis=-2), X[:1])
    np.testing.assert_array_equal(botcore.take(X, [-4, 3], axis=0), X[[0, 3]])
    assert sorted(botcore.decompose(X, 1, axes=1).details[0]) == ["d"]  # a single int axis
    assert sorted(botcore.decompose(X, 1, axes=-2).details[0]) == ["d"]
    with pytest.raises(errors.ShapeError, match="out of range"):
        botcore.decompose(X, 1, axes=(-3,))


def test_backend_overrides_are_validated_everywhere():
    for call in (lambda: botcore.select(X, (2, 3), backend="mxnet"),
                 lambda: botcore.take(X, [0], axis=0, backend="mxnet"),
                 lambda: botcore.reconstruct(botcore.decompose(X, 1), backend="mxnet")):
        with pytest.raises(errors.BackendError, match="not a backend"):
            call()


def test_a_backend_that_fails_to_import_says_how_to_install_it():
    code = ("import sys; sys.modules['torch'] = None; import numpy as np, botcore\n"
            "try:\n    botcore.resize(np.ones((4, 6)), (2, 3), backend='torch')\n"
            "except botcore.BackendError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("backend 'torch' needs the 'torch' package, which failed to import (")
    assert out.strip().endswith("); install it with: pip install 'bot-scaling[torch]'")


def test_pyramid_band_keys_are_checked():
    import dataclasses

    p = botcore.decompose(X, 1)
    bad = dataclasses.replace(p, details=({"ad": p.details[0]["ad"], "xd": p.details[0]["dd"]},))
    assert _message(lambda: botcore.reconstruct(bad), errors.ShapeError) == (
        "pyramid has band keys ['xd'] that do not fit a 2-axis level; expected keys among "
        "['aa', 'ad', 'da', 'dd']")
    lone = dataclasses.replace(p, details=({"da": p.details[0]["da"]},))  # missing bands are zero
    assert botcore.reconstruct(lone).shape == X.shape


def test_pyramid_bands_from_two_frameworks_are_refused():
    import dataclasses

    torch = pytest.importorskip("torch")
    p = botcore.decompose(X, 1)
    mixed = dataclasses.replace(p, details=({k: torch.tensor(v) for k, v in p.details[0].items()},))
    with pytest.raises(errors.BackendError, match="different frameworks"):
        botcore.reconstruct(mixed)


def test_parameter_key_error_without_a_message_is_empty():
    assert str(errors.ParameterKeyError()) == ""
    assert repr(str(errors.ParameterKeyError("a b"))) == "'a b'"  # not KeyError's quoted form


def test_a_backend_override_converts_to_that_framework():
    torch = pytest.importorskip("torch")
    y = botcore.resize(X, (2, 3), backend="torch")  # docs/backends.md: the override converts
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float64  # X's dtype
    np.testing.assert_array_equal(y.numpy(), botcore.resize(X, (2, 3)))


def test_reconstruct_with_a_backend_override_converts_the_bands():
    torch = pytest.importorskip("torch")
    p = botcore.decompose(X, 1, wavelet="db2")
    y = botcore.reconstruct(p, backend="torch")
    assert isinstance(y, torch.Tensor)
    np.testing.assert_allclose(y.numpy(), botcore.reconstruct(p), rtol=1e-6, atol=1e-6)


def test_decompose_defaults_and_edges():
    import pywt

    p = botcore.decompose(X)
    assert p.level == 1 and p.wavelet == "haar" and p.mode == "periodization"
    np.testing.assert_allclose(p.approx, pywt.dwtn(X, "haar", mode="periodization")["aa"])
    q = botcore.decompose(X, 1, axes=())  # nothing to transform: level 0, a copy
    assert q.level == 0 and np.array_equal(q.approx, X) and not np.shares_memory(q.approx, X)
    assert _message(lambda: botcore.decompose(X, 1, axes=(2,))).endswith("expected an int in [-2, 1]")
    assert _message(lambda: botcore.decompose(np.ones((2, 2), int), 1)).startswith(
        "decompose needs floating-point weights, got dtype int64")
    with pytest.raises(errors.BackendError, match="not a backend"):
        botcore.decompose(X, 1, backend="mxnet")


def test_a_mode_the_backend_lacks_is_named_with_the_alternatives():
    torch = pytest.importorskip("torch")
    msg = _message(lambda: botcore.decompose(torch.ones(4, 6), 1, wavelet="db2", mode="symmetric"),
                   errors.ModeError)
    assert msg.startswith("mode 'symmetric' is not supported by the torch backend; expected one of [")
    from botcore.planning import MODES

    assert "'periodization'" in msg and msg.endswith(f"(the numpy backend supports every mode in {MODES})")


def test_resize_messages_are_whole_sentences():
    assert _message(lambda: botcore.resize(X, (2, 0))) == (
        "shape (2, 0) has size 0; every size must be >= 1 (a weight tensor cannot have an empty axis)")
    assert _message(lambda: botcore.resize(np.ones((4, 6), int), (2, 3))).startswith(
        "resize needs floating-point weights, got dtype int64; expected one of (")
    assert _message(lambda: botcore.resize(X, (2, 3, 4))) == (
        "resize: the array has shape (4, 6) (2 axes) but shape=(2, 3, 4) has 3; give one target size per axis")
    assert _message(lambda: botcore.resize(X, (2, 3), wavelet="db2", mode="zero")).endswith(
        "so target shapes could not be exact; use mode='periodization' (every mode is equivalent for 'haar')")
    assert _message(lambda: botcore.resize(X, (2, 3), roles=("fixed", "out"))) == (
        "axis 0 has role 'fixed' (vocabulary, positions, pixels, classes) but the target asks 4 -> 2; "
        "keep its size at 4 or give it a resizable role")
    assert _message(lambda: botcore.resize(np.ones(4), (2,), roles="out")) == (
        "roles must be a sequence with one role per axis, got the string 'out'; pass e.g. ('out',) for a 1-D array")
    assert _message(lambda: botcore.resize(np.ones(4), (2,), roles=("out", "in"))).endswith(
        "but the array has 1 axes; give exactly one role per axis")


def test_plan_messages_name_the_shape_argument():
    """``plan`` names which of its two shapes is wrong, and how to write one."""
    assert _message(lambda: botcore.plan("abc", (2,))) == (
        "src_shape must be a sequence of positive integers, got 'abc'; pass e.g. (6, 384, 1536)")
    assert _message(lambda: botcore.plan((2,), [1.5])) == (
        "dst_shape must be a sequence of positive integers, got [1.5]; pass e.g. (6, 384, 1536)")
    assert _message(lambda: botcore.plan((0, 2), (2, 2))) == (
        "src_shape (0, 2) has size 0; every size must be >= 1 (a weight tensor cannot have an empty axis)")
    assert _message(lambda: botcore.plan((2, 2), (2, -1))) == (
        "dst_shape (2, -1) has size -1; every size must be >= 1 (a weight tensor cannot have an empty axis)")


def test_std_gain_of_a_constant_keeps_paper_magnitudes():
    """A zero-spread result cannot be scaled to the source's spread: it is left as computed."""
    np.testing.assert_array_equal(botcore.resize(np.ones((4, 4)), (2, 2), gain="std"),
                                  botcore.resize(np.ones((4, 4)), (2, 2), gain="paper"))


def test_backend_detection_is_cached_per_array_type(monkeypatch):
    """An array type is looked up once; later arrays of that type skip the scan."""
    from botcore import backend

    monkeypatch.setattr(backend, "_by_type", {})
    module = backend._detect(np.zeros(2))
    assert backend._by_type == {np.ndarray: module}
    monkeypatch.setattr(backend, "BACKENDS", {})  # nothing left to scan: only the cache answers
    assert backend._detect(np.ones(3)) is module


def test_backend_detection_skips_a_backend_that_fails_to_import(monkeypatch):
    """A backend module that cannot be imported is skipped, and the later ones are still tried."""
    pytest.importorskip("torch")
    da = pytest.importorskip("dask.array")
    import importlib

    from botcore import backend

    real = importlib.import_module
    monkeypatch.setattr(backend, "_by_type", {})
    monkeypatch.setattr(importlib, "import_module",
                        lambda name, *a: (_ for _ in ()).throw(ImportError(name))
                        if name == "botcore.backends.torch" else real(name, *a))
    assert backend._detect(da.zeros(2)).NAME == "dask"


def test_backends_are_found_whichever_frameworks_are_imported():
    """In a process that imported jax and dask but neither torch nor TensorFlow, their arrays
    are still resized: frameworks that are not imported are skipped, not the end of the scan."""
    pytest.importorskip("jax")
    pytest.importorskip("dask.array")
    code = ("import sys, jax.numpy as jnp, dask.array as da, botcore\n"
            "assert 'torch' not in sys.modules and 'tensorflow' not in sys.modules\n"
            "print(type(botcore.resize(jnp.ones((4, 4)), (2, 2))).__name__, "
            "type(botcore.resize(da.ones((4, 4)), (2, 2))).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == "Array" and "Array" in out.stdout.split()[0]


def test_backend_choice_messages_are_whole_sentences():
    """What ``get_backend`` says when it cannot choose: no arrays, two frameworks, an unknown
    type (with a conversion hint for Python lists and numbers)."""
    torch = pytest.importorskip("torch")
    from botcore.backend import get_backend

    assert _message(lambda: get_backend()) == "no arrays were given, so no backend can be chosen"
    assert _message(lambda: get_backend(np.zeros(2), torch.zeros(2))) == (
        "the arrays of one call come from different frameworks ['numpy', 'torch']; "
        "convert them to one framework first (or pass backend=...)")
    expected = ("expected a numpy.ndarray, torch.Tensor, tf.Tensor/tf.Variable, jax.Array or "
                "dask.array.Array")
    assert _message(lambda: get_backend([1.0, 2.0])) == (
        f"no backend handles arrays of type builtins.list; {expected}; "
        "convert it first, e.g. numpy.asarray(x, dtype=numpy.float32)")
    assert _message(lambda: get_backend(object())) == (
        f"no backend handles arrays of type builtins.object; {expected}")
