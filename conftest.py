"""Root pytest configuration: skip collecting a backend module whose framework is not installed.

``pytest --doctest-modules`` imports every module under ``backends/``; without
this, a machine lacking (say) tensorflow would fail at collection instead of
running everything else.
"""

import importlib.util

collect_ignore = [
    f"backends/{name}.py"
    for name, module in (("torch", "torch"), ("tensorflow", "tensorflow"), ("jax", "jax"))
    if importlib.util.find_spec(module) is None
]
