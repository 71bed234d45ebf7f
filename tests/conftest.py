"""Shared test configuration: hypothesis profiles.

``ci`` (the default) is derandomised so a run is reproducible; ``dev`` explores
more examples. Choose with ``HYPOTHESIS_PROFILE=dev``.
"""

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    deadline=None,
    derandomize=True,
    max_examples=40,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("dev", deadline=None, max_examples=300, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session", autouse=True)
def nothing_is_left_in_the_working_directory():
    """The suite writes under tmp_path only: a file that appears in the working directory
    (a library saving temporaries there, a test forgetting its folder) fails the run."""
    cwd = os.getcwd()
    before = set(os.listdir(cwd))
    yield
    new = sorted(set(os.listdir(cwd)) - before - {".hypothesis", ".pytest_cache", "__pycache__"})
    assert not new, f"the tests left {new} in {cwd}"
