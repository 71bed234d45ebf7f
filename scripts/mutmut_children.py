"""pytest plugin of ``scripts/mutation.sh``: mutmut sees and mutates what tests run in child processes.

mutmut 3 imports the mutated tree from its ``mutants/`` folder by putting that folder on
``sys.path`` of its own process only, and it learns which tests reach a function by
recording the function's calls in that process. A test that starts a fresh Python process
(the Keras backends, ``botcore`` on the command line, the fresh-process checkpoint loads)
then imports the unmutated sources and reports nothing, so its functions count as "no
tests" and their mutants as survivors. This plugin closes both gaps:

* ``pytest_configure`` puts the ``mutants/`` folder first on ``PYTHONPATH``, so every
  child imports the mutants (and mutmut's ``MUTANT_UNDER_TEST``, already in the
  environment, switches the same mutant on there);
* in the statistics run (``MUTANT_UNDER_TEST=stats``) a child records the functions it
  calls (``sitecustomize.py`` beside this file calls :func:`record_in_child`) and writes
  them to a file at exit; after each test the plugin adds them to that test's hits;
* mutmut times a test by its call phase only, and kills a mutant's run after five times
  its tests' time as a "timeout". A test whose work is in a fixture (the Keras children run
  in module-scoped fixtures) would then time out under every mutant, a false kill. In the
  statistics run the plugin adds to each test its own setup time and the setup time of
  every module- or session-scoped fixture it uses (each test may be the one that pays it).

Outside a mutmut run (no ``MUTANT_UNDER_TEST``) it does nothing. The staging script copies
this file and a two-line ``sitecustomize.py`` into the staged tree and loads the plugin
with ``-p mutmut_children``; the test suite itself never imports it.
"""

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

HITS = "BOT_MUTMUT_HITS"  # the folder children write their hits to
_BROAD: dict = {}  # fixture name -> seconds of its setup, for fixtures wider than a test
_FRESH = [0.0, 0]  # seconds of wide fixtures set up in the running setup phase, nesting depth


def _stats_run() -> bool:
    return os.environ.get("MUTANT_UNDER_TEST") == "stats"


def record_in_child() -> None:
    """In a child of the statistics run: record every trampoline hit, write them at exit."""
    folder = os.environ.get(HITS)
    if not folder or not _stats_run():
        return
    import atexit

    import mutmut.mutation.trampoline as trampoline

    hits: set = set()
    trampoline.record_trampoline_hit = lambda name, caller=None: hits.add(name)

    def write() -> None:
        if hits and os.path.isdir(folder):
            path = Path(folder) / f"hits-{os.getpid()}.txt"
            path.write_text("\n".join(sorted(hits)), encoding="utf-8")

    atexit.register(write)


def pytest_configure(config) -> None:
    if "MUTANT_UNDER_TEST" not in os.environ:
        return
    here = str(Path(__file__).resolve().parent)
    rest = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != here]
    os.environ["PYTHONPATH"] = os.pathsep.join([here, *rest])
    if HITS not in os.environ:
        os.environ[HITS] = tempfile.mkdtemp(prefix="mutmut-hits-")
        config.add_cleanup(lambda: shutil.rmtree(os.environ.pop(HITS), ignore_errors=True))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item, nextitem) -> None:
    """Before mutmut reads this test's hits: add the ones its children wrote."""
    folder = os.environ.get(HITS)
    if not folder or not _stats_run() or not os.path.isdir(folder):
        return
    from mutmut.state import state

    for path in Path(folder).glob("hits-*.txt"):
        state()._stats.update(path.read_text(encoding="utf-8").split())
        path.unlink()


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef, request):
    """Time the setup of fixtures wider than one test (outermost first: nested ones are inside)."""
    start, _FRESH[1] = time.perf_counter(), _FRESH[1] + 1
    try:
        yield
    finally:
        _FRESH[1] -= 1
        if fixturedef.scope != "function" and _stats_run():
            elapsed = time.perf_counter() - start
            _BROAD[fixturedef.argname] = elapsed
            if _FRESH[1] == 0:
                _FRESH[0] += elapsed


def pytest_runtest_makereport(item, call) -> None:
    """Add the setup phase (less wide fixtures made there) and every wide fixture the test uses."""
    if call.when != "setup" or not _stats_run():
        return
    from mutmut.state import state

    own = max(0.0, call.duration - _FRESH[0])
    _FRESH[0] = 0.0
    state().duration_by_test[item.nodeid] += own + sum(_BROAD.get(n, 0.0) for n in item.fixturenames)
