"""Root pytest configuration: skip collecting a backend module whose framework is not installed,
and fail a run that leaves one of our temporary folders behind.

``pytest --doctest-modules`` imports every module under ``backends/``; without
this, a machine lacking (say) tensorflow would fail at collection instead of
running everything else.
"""

import importlib.util
import os
import tempfile

import pytest

collect_ignore = [
    f"backends/{name}.py"
    for name, module in (("torch", "torch"), ("tensorflow", "tensorflow"), ("jax", "jax"))
    if importlib.util.find_spec(module) is None
]


def _ours(folder):
    """The entries of the temporary folder that this project's code names (``bot*``, ``.botcore-*``)."""
    return {name for name in os.listdir(folder) if name.startswith(("bot", ".botcore-"))}


@pytest.fixture(scope="session", autouse=True)
def nothing_of_ours_is_left_in_the_temporary_folder():
    """A temporary folder or file of ours (the demo's, a ``--quick`` run's, a doctest's) that
    outlives the run fails it: the code removes what it does not hand to the user."""
    folder = tempfile.gettempdir()
    before = _ours(folder)
    yield
    new = sorted(_ours(folder) - before)
    assert not new, f"the run left {new} in {folder}"
