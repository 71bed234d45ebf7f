"""Smoke test of benchmarks/speed.py: it runs, prints a well-formed table, rejects bad flags."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "speed.py"


@pytest.fixture(scope="module")
def speed():
    spec = importlib.util.spec_from_file_location("bench_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_run_prints_one_row_per_cell(speed, capsys):
    assert speed.main(["--quick", "--repeat", "1", "--backends", "numpy", "--wavelets", "haar,db2"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| numpy")]
    assert len(rows) == 2 + 2 * 2  # copy, the finite check, then shrink and grow per wavelet
    assert rows[1].split("|")[2].strip() == "finite check" and float(rows[1].split("|")[4]) > 0
    cells = [row.strip("|").split("|") for row in rows]
    assert all(len(c) == 9 for c in cells)
    shrink_haar = next(c for c in cells if c[1].strip() == "shrink" and c[2].strip() == "haar")
    assert shrink_haar[6].strip() == "pywt" and float(shrink_haar[3]) > 0 and float(shrink_haar[8]) > 0


def test_rejects_unknown_backend_and_bad_repeat(speed):
    with pytest.raises(SystemExit):
        speed.main(["--quick", "--backends", "cupy"])
    with pytest.raises(SystemExit):
        speed.main(["--quick", "--repeat", "0"])
    with pytest.raises(SystemExit):
        speed.main(["--memory", "0"])


def test_dask_rows_are_computed_and_paired_with_a_dask_copy(speed, capsys):
    pytest.importorskip("dask.array")
    assert speed.main(["--quick", "--repeat", "1", "--backends", "dask", "--wavelets", "db2"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| dask")]
    assert [r.split("|")[2].strip() for r in rows] == ["copy", "shrink", "grow"]
    assert all(float(r.split("|")[6]) > 0 for r in rows)
