"""The backend contract and the per-call dispatcher.

Contract: a backend is a module ``botcore.backends.<name>`` with the names
below, identical in every backend. It supplies the single-level kernel and array
conversion; levels, plans, gains, fractional steps and validation live in
botcore and are written once.

==================== ==========================================================
name                 meaning
==================== ==========================================================
``NAME``             ``"numpy"``, ``"torch"``, ``"tensorflow"``, ``"jax"`` or ``"dask"``
``MODES``            boundary modes its ``dwt``/``idwt`` accept
``is_array(x)``      True for this framework's arrays
``dtype_name(x)``    ``"float32"``, ``"bfloat16"``, ``"int64"``, ...
``shape(x)``         tuple of ints
``to_compute(x)``    ``x`` as float32 (16/32-bit floats) or float64; may
                     share memory with ``x`` (botcore never writes in place)
``from_compute(y, like)``  ``y`` cast back to ``like``'s dtype (and device)
``dwt(x, bank, *, axis, mode, detail)``  one analysis level along ``axis``
                     (even length): ``(a, d)``, ``d`` is None if not ``detail``
``idwt(a, d, bank, *, axis, mode)``  one synthesis level; ``a`` or ``d`` may be None (zeros)
``resample(x, index, weight, *, axis)``  ``y[i] = sum_t weight[t,i] * x[index[t,i]]``
``scale(x, factor, *, owned=False)``  ``x * factor`` for a Python float; with
                     ``owned=True`` (an intermediate botcore made) it may write into ``x``
``std(x)``           population standard deviation: a Python float (dask: a lazy
                     0-d array)
``match_std(y, x)``  ``y * (std(x) / std(y))``, ``y`` itself when ``std(y)`` is 0
                     (``gain="std"``; lazy on dask)
``count_nonfinite(x)``  number of NaN/inf elements: an int, or None where it is not
                     known without computing (lazy dask, traced jax, ``tf.function``, torch meta)
``to_numpy(x)`` / ``from_numpy(a, like)``  conversion, for tests and adapters
==================== ==========================================================

The dispatcher picks the backend per call from the array's type. It never
imports a framework: a backend is only considered when its framework is
already in ``sys.modules`` (an object cannot be a torch tensor if torch was
never imported). Results are cached per exact type. ``backend="name"``
overrides detection.

Examples
--------
>>> import numpy as np
>>> get_backend(np.zeros(3)).NAME
'numpy'
>>> get_backend(np.zeros(3), backend="numpy").NAME
'numpy'
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

from .errors import BackendError

__all__ = ["BACKENDS", "get_backend", "load_backend"]

#: backend name -> framework module whose presence makes it a candidate.
BACKENDS = {
    "numpy": "numpy",
    "torch": "torch",
    "tensorflow": "tensorflow",
    "jax": "jax",
    "dask": "dask.array",
}

_by_type: dict[type, ModuleType] = {}


def load_backend(name: str) -> ModuleType:
    """Import and return the backend module ``botcore.backends.<name>``.

    Raises
    ------
    BackendError
        If ``name`` is not a backend, or its framework is not installed.
    """
    if name not in BACKENDS:
        raise BackendError(
            f"backend={name!r} is not a backend; expected one of {tuple(BACKENDS)}"
        )
    try:
        return importlib.import_module(f"botcore.backends.{name}")
    except ImportError as err:
        raise BackendError(
            f"backend {name!r} needs the {BACKENDS[name]!r} package, which failed to import "
            f"({err}); install it with: pip install 'bot-scaling[{name}]'"
        ) from None


def _detect(x: object) -> ModuleType:
    kind = type(x)
    found = _by_type.get(kind)
    if found is not None:
        return found
    for name, framework in BACKENDS.items():
        if framework not in sys.modules:
            continue
        try:
            module = importlib.import_module(f"botcore.backends.{name}")
        except ImportError:
            continue
        if module.is_array(x):
            _by_type[kind] = module
            return module
    hint = ""
    if isinstance(x, (list, tuple, int, float)):
        hint = "; convert it first, e.g. numpy.asarray(x, dtype=numpy.float32)"
    raise BackendError(
        f"no backend handles arrays of type {kind.__module__}.{kind.__qualname__}; "
        f"expected a numpy.ndarray, torch.Tensor, tf.Tensor/tf.Variable, jax.Array or "
        f"dask.array.Array{hint}"
    )


def get_backend(*arrays: object, backend: str | None = None) -> ModuleType:
    """Return the backend module for ``arrays`` (all from one framework).

    Parameters
    ----------
    *arrays
        The arrays of one call.
    backend : str, optional
        A backend name that overrides detection.

    Raises
    ------
    BackendError
        Unknown array type, unknown backend name, or arrays from different frameworks.
    """
    if backend is not None:
        return load_backend(backend)
    modules = {}
    for x in arrays:
        module = _detect(x)
        modules.setdefault(module.NAME, module)
    if len(modules) > 1:
        raise BackendError(
            f"the arrays of one call come from different frameworks {sorted(modules)}; "
            "convert them to one framework first (or pass backend=...)"
        )
    if not modules:
        raise BackendError("no arrays were given, so no backend can be chosen")
    return next(iter(modules.values()))
