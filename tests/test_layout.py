"""The layering rules of DESIGN.md, checked on the source: the algebra never imports adapters,
and the project's vocabulary is defined once (botcore/names.py) and imported everywhere else."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALGEBRA = sorted(p for p in (ROOT / "botcore").glob("*.py") if p.name != "__main__.py")  # __main__: the CLI entry


def _imports(path: Path) -> list[tuple[str, int]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            out += [(base + "." + a.name if not node.module else base, node.lineno) for a in node.names]
    return out


def test_the_algebra_never_imports_adapters_or_frameworks():
    bad = []
    for path in ALGEBRA:
        for name, line in _imports(path):
            if path.name == "__init__.py" and name == ".adapters":
                continue  # the documented lazy face botcore.resize_model, checked below
            if re.match(r"(botcore\.|\.)?(adapters|cli)\b", name) or \
                    name.split(".")[0] in ("torch", "tensorflow", "jax", "onnx", "transformers", "dask"):
                bad.append(f"{path.name}:{line} imports {name}")
    assert not bad, bad


def test_the_only_adapter_import_of_the_algebra_is_the_lazy_resize_model_face():
    tree = ast.parse((ROOT / "botcore" / "__init__.py").read_text())
    found = [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module == "adapters"]
    assert len(found) == 1
    func = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "resize_model")
    assert found[0] in list(ast.walk(func))


def test_importing_botcore_loads_no_adapter_and_no_framework():
    code = ("import sys, botcore; print(sorted(m for m in sys.modules if m.startswith('botcore.adapters') "
            "or m.split('.')[0] in ('torch', 'tensorflow', 'jax', 'onnx', 'transformers', 'dask', 'pywt')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _sources():
    for folder in ("botcore", "adapters", "backends", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.name != "names.py":
                yield path


def test_the_vocabulary_is_defined_once():
    """No module restates the size keys, the method names or the gain names as a literal tuple."""
    patterns = {
        "size keys": r"\(\s*\"layers\",\s*\"hidden\",\s*\"heads\",\s*\"kv_heads\"",
        "method names": r"\(\s*\"bot\",\s*\"weight_selection\",\s*\"layer_select\"",
        "gain names": r"\(\s*\"paper\",\s*\"function\",\s*\"std\"\s*\)",
        "dtype policy": r"\{\s*\"float16\":\s*\"float32\",\s*\"bfloat16\":\s*\"float32\"",
    }
    found = [f"{p.relative_to(ROOT)}: {what}" for p in _sources() for what, pat in patterns.items()
             if re.search(pat, p.read_text())]
    assert not found, found
