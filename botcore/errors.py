"""The error hierarchy of botcore.

Contract: every error botcore raises on purpose is a :class:`BotError` and also
the builtin a caller would expect (``ValueError``, ``TypeError`` or
``KeyError``), so ``except ValueError`` keeps working. Messages say what was
wrong, the value received, what was expected and how to fix it.

Examples
--------
>>> from botcore.errors import ShapeError, BotError
>>> issubclass(ShapeError, ValueError) and issubclass(ShapeError, BotError)
True
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BotError",
    "DTypeError",
    "ModeError",
    "NonFiniteError",
    "OptionError",
    "OutputError",
    "OutputExistsError",
    "ParameterKeyError",
    "ResourceError",
    "RoleError",
    "ShapeError",
    "TargetError",
    "UnsupportedModelError",
    "WaveletError",
]


class BotError(Exception):
    """Base class of every error botcore raises on purpose."""


class ShapeError(BotError, ValueError):
    """A shape, size, axis or level is impossible (zero size, rank mismatch, ...)."""


class WaveletError(BotError, ValueError):
    """The wavelet is unknown, continuous, or cannot reconstruct perfectly."""


class ModeError(BotError, ValueError):
    """The boundary mode is unknown or not supported for this operation or backend."""


class RoleError(BotError, ValueError):
    """An axis role is unknown, or a ``fixed`` axis was asked to change size."""


class OptionError(BotError, ValueError):
    """A keyword option (``gain``, ``method``, ...) has a value that is not offered."""


class DTypeError(BotError, TypeError):
    """The array's dtype cannot be resized (integers, booleans, complex)."""


class BackendError(BotError, TypeError):
    """The array type has no backend, the backend name is unknown, or frameworks are mixed."""


class NonFiniteError(BotError, ValueError):
    """Weights hold NaN or infinite values, which a resize would spread into the output."""


class OutputError(BotError, OSError, ValueError):
    """The output location cannot take the result: not writable, no space, or in use.

    Also a ``ValueError``: the ``out=`` value given cannot be used.
    """


class OutputExistsError(OutputError, FileExistsError, OptionError):
    """The output path exists and replacing it was not asked for (``overwrite``)."""


class ResourceError(BotError, MemoryError, ValueError):
    """The planned resize needs more memory than the limit allows (refused before any work).

    Also a ``ValueError``: the target asked for is too large for this machine.
    """


class ParameterKeyError(BotError, KeyError):
    """A checkpoint lacks a parameter it needs, or has one nobody knows how to treat."""

    def __str__(self) -> str:  # KeyError quotes its message; ours is a sentence.
        return str(self.args[0]) if self.args else ""


class TargetError(BotError, ValueError):
    """A model-level target size cannot work (heads do not divide hidden, ...)."""


class UnsupportedModelError(BotError, ValueError):
    """A checkpoint or graph does not match any pattern an adapter understands."""
