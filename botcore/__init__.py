"""botcore: bidirectional model resizing by wavelet transforms of weight signals (BoT).

Importing botcore loads NumPy and the standard library only; PyWavelets and the
frameworks (torch, tensorflow, jax, onnx) are imported when a call needs them.

Examples
--------
>>> import numpy as np, botcore
>>> x = np.random.default_rng(0).normal(size=(12, 64, 256))
>>> botcore.resize(x, (6, 32, 128)).shape
(6, 32, 128)
>>> botcore.plan((12, 768), (18, 512)).axes[1].fraction
(768, 512)
"""

from __future__ import annotations

from . import errors
from .backend import get_backend
from .errors import (
    BackendError,
    BotError,
    DTypeError,
    ModeError,
    NonFiniteError,
    OptionError,
    OutputError,
    OutputExistsError,
    ParameterKeyError,
    ResourceError,
    RoleError,
    ShapeError,
    TargetError,
    UnsupportedModelError,
    WaveletError,
)
from .planning import AxisPlan, Plan, plan
from .resize import GAINS, resize, select, take
from .roles import ROLES
from .signal import WeightSignal
from .transform import Pyramid, decompose, reconstruct

__version__ = "0.1.0"

__all__ = [
    "GAINS",
    "ROLES",
    "AxisPlan",
    "BackendError",
    "BotError",
    "DTypeError",
    "ModeError",
    "NonFiniteError",
    "OptionError",
    "OutputError",
    "OutputExistsError",
    "ParameterKeyError",
    "Plan",
    "ResourceError",
    "Pyramid",
    "RoleError",
    "ShapeError",
    "TargetError",
    "UnsupportedModelError",
    "WaveletError",
    "WeightSignal",
    "decompose",
    "errors",
    "get_backend",
    "plan",
    "reconstruct",
    "resize",
    "resize_model",
    "select",
    "take",
]


def resize_model(*args, **kwargs):
    """Resize a whole checkpoint; see :func:`botcore.adapters.resize_model`."""
    from .adapters import resize_model as _resize_model

    return _resize_model(*args, **kwargs)
