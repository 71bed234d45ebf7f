"""The project's vocabulary, defined once: size keys, method names, gains, dtype policy.

Contract: every other module (the algebra, the adapters, the command line, the
benchmarks) imports these names from here instead of restating them, so one word
has one meaning everywhere. Standard library only.

Examples
--------
>>> SIZES
('layers', 'hidden', 'heads', 'kv_heads', 'head_dim', 'ffn')
>>> compute_dtype("bfloat16"), compute_dtype("float64")
('float32', 'float64')
>>> output_dtype("bfloat16", "keep"), output_dtype("bfloat16", "float16")
('bfloat16', 'float16')
"""

from __future__ import annotations

__all__ = [
    "COMPUTE_DTYPES",
    "DTYPE_CHOICES",
    "FLOAT_DTYPES",
    "FRACTIONAL_STEPS",
    "GAINS",
    "METHODS",
    "SIZES",
    "compute_dtype",
    "output_dtype",
]

#: The model-level sizes of every family: the ``target=`` vocabulary and the CLI's flags.
SIZES = ("layers", "hidden", "heads", "kv_heads", "head_dim", "ffn")

#: The resize methods of :func:`botcore.adapters.resize_model`.
METHODS = ("bot", "weight_selection", "layer_select", "net2net")

#: The magnitude conventions of :func:`botcore.resize`.
GAINS = ("paper", "function", "std")

#: How ``method="bot"`` of :func:`botcore.adapters.resize_model` does a non-dyadic step
#: (``fractional=``): area resampling (the algebra's step) or uniform selection.
FRACTIONAL_STEPS = ("area", "select")

#: Floating-point dtypes the algebra accepts, mapped to the dtype it computes in.
#: The bfloat16/float16 policy: read narrow, compute in float32 (never narrower),
#: one signal at a time, and write back in the input's dtype.
COMPUTE_DTYPES = {"float16": "float32", "bfloat16": "float32", "float32": "float32",
                  "float64": "float64"}
FLOAT_DTYPES = tuple(COMPUTE_DTYPES)

#: ``dtype=`` / ``--dtype`` choices of a written checkpoint; ``keep`` is the source's dtype.
DTYPE_CHOICES = ("keep", "float32", "float16", "bfloat16")


def compute_dtype(name: str) -> str:
    """The dtype name arithmetic on a ``name`` array runs in (float32 or float64)."""
    return COMPUTE_DTYPES[name]


def output_dtype(source: str, choice: str = "keep") -> str:
    """The dtype a floating-point tensor of dtype ``source`` is written in for ``choice``."""
    return source if choice == "keep" else choice
