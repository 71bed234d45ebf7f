"""The documentation site builds offline with ``mkdocs build --strict`` (API reference included)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _mkdocs():
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    pytest.importorskip("mkdocstrings")
    exe = Path(sys.executable).with_name("mkdocs")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "mkdocs"]


def test_mkdocs_build_strict(tmp_path):
    cmd = _mkdocs() + ["build", "--strict", "--site-dir", str(tmp_path / "site"), "--config-file",
                       str(ROOT / "mkdocs.yml")]
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", HF_HUB_OFFLINE="1")
    proc = subprocess.run(cmd, cwd=ROOT, check=False, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    site = tmp_path / "site"
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    for name in ("botcore.resize", "botcore.decompose", "botcore.adapters", "botcore.backends"):
        assert name in api, name
    for page in ("quickstart", "cli", "errors"):
        assert (site / page / "index.html").exists(), page
    assert (site / "img" / "inspect-minilm.png").exists()
    # built offline: no page pulls fonts from Google
    assert "fonts.googleapis.com" not in (site / "index.html").read_text(encoding="utf-8")


def test_every_error_class_has_an_entry_in_errors_md():
    from botcore import errors

    text = (ROOT / "docs" / "errors.md").read_text(encoding="utf-8")
    for name in errors.__all__:
        if name != "BotError":
            assert f"## {name}" in text, name


def test_nav_pages_exist():
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for page in ("index.md", "quickstart.md", "cli.md", "errors.md", "api.md", "concepts.md", "adapters.md",
                 "onnx.md", "backends.md", "speed.md", "transfer.md"):
        assert page in text and (ROOT / "docs" / page).exists(), page
