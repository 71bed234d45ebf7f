#!/usr/bin/env bash
# Mutation testing with mutmut 3 (config: [tool.mutmut] in pyproject.toml; docs/testing.md).
#
#   scripts/mutation.sh [TREE] [MUTANTS...] [--fresh] [--jobs=N] [--results] [--rev=REF]
#   scripts/mutation.sh [TREE] --sample=N [--seed=S] [--changed-since=REF] [--rev=REF]
#
# TREE is botcore (the algebra, default), backends, adapters or onnx. MUTANTS are optional
# mutant-name globs to run only part of it, e.g. 'botcore.resize.*' (one module).
# Each tree is staged in build/mutation/TREE/ with backends/ and adapters/ inside
# botcore/, so mutants carry the import names the tests use (botcore.backends.numpy);
# mutmut keeps its results there, so a second call resumes where the first stopped
# (only changed source files are mutated again). --fresh starts the tree over,
# --results prints the counts of the last run. --jobs bounds the worker processes
# (default 1: the machine is shared); everything runs under nice, single-threaded.
# --sample=N runs N mutants drawn with --seed (default 0) from the modules changed since
# --changed-since (a git ref; default: every module of the tree) and prints a summary.
# MUTATION_DIR overrides the staging folder (default build/mutation/TREE). --tests-only
# refreshes only the staged tests (re-running survivors against new tests while the
# sources in the working tree are being edited by someone else). --rev=REF stages the
# sources and tests as committed at REF (a stable snapshot while the working tree is being
# edited), with the working tree's tests/test_mutants_*.py laid over them. --deselect=NODEID
# (repeatable) leaves out a test that fails at that REV (mutmut needs a passing clean run).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
TREE=botcore JOBS=1 FRESH=0 RESULTS=0 NAMES=() SAMPLE=0 SEED=0 SINCE="" TESTS_ONLY=0 REV="" DESELECT=""
for arg in "$@"; do
  case "$arg" in
    botcore|backends|adapters|onnx) TREE=$arg ;;
    --fresh) FRESH=1 ;;
    --tests-only) TESTS_ONLY=1 ;;
    --results) RESULTS=1 ;;
    --jobs=*) JOBS=${arg#--jobs=} ;;
    --sample=*) SAMPLE=${arg#--sample=} ;;
    --seed=*) SEED=${arg#--seed=} ;;
    --changed-since=*) SINCE=${arg#--changed-since=} ;;
    --rev=*) REV=${arg#--rev=} ;;
    --deselect=*) DESELECT+=", \"$arg\"" ;;
    --jobs) echo "use --jobs=N" >&2; exit 2 ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    -*) echo "mutation.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
    *) NAMES+=("$arg") ;;
  esac
done
WORK=${MUTATION_DIR:-$ROOT/build/mutation/$TREE}

case "$TREE" in  # what is mutated, and the fast tests that cover it
  botcore)
    ONLY='["botcore/*"]'
    SKIP='["botcore/cli/*", "botcore/__main__.py", "botcore/_files.py", "botcore/backends/*", "botcore/adapters/*"]'
    TESTS='["tests/test_properties.py", "tests/test_core_acceptance.py", "tests/test_core_errors.py", "tests/test_values_algebra.py", "botcore/", "--ignore=botcore/cli", "--ignore=botcore/backends", "--ignore=botcore/adapters"]' ;;
  backends)
    ONLY='["botcore/backends/*"]'
    SKIP='[]'
    TESTS='["tests/test_backend_matrix.py", "tests/test_gradients.py", "tests/test_backend_conformance.py", "tests/test_backend_frameworks.py", "tests/test_backend_dask.py", "tests/test_mutants_backends.py", "botcore/backends/"]' ;;
  adapters)  # the ONNX modules are the onnx tree: their tests export torch models (minutes)
    ONLY='["botcore/adapters/*", "botcore/_files.py"]'
    SKIP='["botcore/adapters/onnx/*", "botcore/adapters/io/onnx.py"]'
    TESTS='["tests/test_values_families.py", "tests/test_values_algebra.py", "tests/test_resize_model.py", "tests/test_adapter_families.py", "tests/test_rotation.py", "tests/test_rotation_values.py", "tests/test_overwrite_safety.py", "tests/test_gguf.py", "tests/test_keras.py", "tests/test_streaming.py", "tests/test_mutants_adapters.py", "tests/test_rotation_post_ln.py", "tests/test_rotation_layernorm.py", "tests/test_tied_heads.py", "tests/test_families_decoders.py", "tests/test_target_properties.py", "tests/test_growth_options.py", "tests/test_calibration.py", "tests/test_cli.py", "tests/test_cli_exit_codes.py", "tests/test_bad_input.py", "tests/test_resize_model_real.py", "botcore/adapters/", "--ignore=botcore/adapters/onnx", "--ignore=botcore/adapters/io/onnx.py"]' ;;
  onnx)  # configured, not measured: about a minute of torch exports per mutant on 2 cores
    ONLY='["botcore/adapters/onnx/*", "botcore/adapters/io/onnx.py"]'
    SKIP='[]'
    TESTS='["tests/test_onnx_graphs.py", "tests/test_onnx_propagation.py", "tests/test_onnx_refusals.py", "tests/test_onnx_resize.py", "tests/test_fuzz_onnx.py", "botcore/adapters/onnx/", "botcore/adapters/io/onnx.py"]' ;;
esac
TESTS=${TESTS%]}$DESELECT]

if [[ $RESULTS == 1 ]]; then
  cd "$WORK" && exec "$PY" "$ROOT/scripts/mutation_table.py" "$WORK"
fi
[[ $FRESH == 1 ]] && rm -rf "$WORK"
mkdir -p "$WORK"

# stage: botcore/ with backends/ and adapters/ inside, the tests, the configuration.
# A file is copied only when its content differs, and then gets a fresh mtime, so mutmut
# (which compares mtimes) mutates exactly the changed sources again.
SRC=$ROOT
if [[ -n $REV ]]; then
  SRC=$(mktemp -d); trap 'rm -rf "$SRC"' EXIT
  git -C "$ROOT" archive "$REV" botcore backends adapters tests conftest.py pyproject.toml | tar -x -C "$SRC"
  for f in "$ROOT"/tests/test_mutants_*.py; do if [[ -e $f ]]; then cp "$f" "$SRC/tests/"; fi; done
fi
sync() {
  "$PY" - "$1" "$2" <<'PYEOF'
import filecmp, shutil, sys
from pathlib import Path
src, dst = map(Path, sys.argv[1:])
for f in src.rglob("*"):
    if "__pycache__" in f.parts or not f.is_file():
        continue
    g = dst / f.relative_to(src)
    if not g.is_file() or not filecmp.cmp(f, g, shallow=False):
        g.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, g)
PYEOF
}
if [[ $TESTS_ONLY == 0 || ! -d $WORK/botcore ]]; then
  sync "$SRC/botcore" "$WORK/botcore"
  sync "$SRC/backends" "$WORK/botcore/backends"
  sync "$SRC/adapters" "$WORK/botcore/adapters"
fi
sync "$SRC/tests" "$WORK/tests"
find "$WORK" -name __pycache__ -prune -exec rm -rf {} +
sed -e 's#"backends/#"botcore/backends/#g' "$SRC/conftest.py" > "$WORK/conftest.py"
# child processes of the tests import the mutants and report their hits (scripts/mutmut_children.py)
cp "$ROOT/scripts/mutmut_children.py" "$WORK/mutmut_children.py"
printf 'import mutmut_children\nmutmut_children.record_in_child()\n' > "$WORK/sitecustomize.py"
"$PY" - "$SRC/pyproject.toml" "$WORK/pyproject.toml" "$ONLY" "$SKIP" "$TESTS" <<'PYEOF'
import re, sys
src, dst, only, skip, tests = sys.argv[1:]
text = open(src).read()
section = re.search(r"^\[tool\.mutmut\]\n(?:(?!^\[).*\n?)*", text, re.M).group(0)
new = re.sub(r"^do_not_mutate = .*$", "do_not_mutate = " + skip, section, flags=re.M)
new = re.sub(r"^pytest_add_cli_args_test_selection = .*$",
             "pytest_add_cli_args_test_selection = " + tests, new, flags=re.M)
new = re.sub(r"^pytest_add_cli_args = \[", 'pytest_add_cli_args = ["-p", "mutmut_children", ', new, flags=re.M)
new = new.rstrip("\n") + "\nonly_mutate = " + only + "\n"
new += 'also_copy = ["mutmut_children.py", "sitecustomize.py"]\n'
# the staged tree has no separate backends/ and adapters/: pytest collects only the selection
text = text.replace(section, new)
text = re.sub(r'^testpaths = .*$', 'testpaths = ["tests"]', text, flags=re.M)
old = open(dst).read() if __import__("os").path.exists(dst) else None
if old != text:
    open(dst, "w").write(text)
PYEOF

cd "$WORK"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 TF_NUM_INTRAOP_THREADS=1 \
       TF_NUM_INTEROP_THREADS=1 TF_CPP_MIN_LOG_LEVEL=3 HF_HUB_OFFLINE=1 PYTHONHASHSEED=0
MUTMUT="$(dirname "$PY")/mutmut"
if [[ $SAMPLE != 0 ]]; then
  MODULES=()
  if [[ -n $SINCE ]]; then  # changed source files -> dotted module prefixes of this tree
    while read -r f; do
      case "$f" in
        backends/*) m=botcore.${f%.py} ;; adapters/*) m=botcore.${f%.py} ;; botcore/*) m=${f%.py} ;; *) continue ;;
      esac
      MODULES+=("${m//\//.}")
    done < <(git -C "$ROOT" diff --name-only "$SINCE" -- botcore backends adapters | grep '\.py$' || true)
  fi
  nice -n 10 "$MUTMUT" run --max-children "$JOBS" "no-such-mutant" > /dev/null || true  # generate, collect stats
  mapfile -t NAMES < <("$MUTMUT" results --all true | "$PY" "$ROOT/scripts/mutation_sample.py" pick "$SAMPLE" "$SEED" "${MODULES[@]}")
  [[ ${#NAMES[@]} == 0 ]] && { echo "mutation.sh: no mutants to sample" >&2; exit 1; }
  nice -n 10 "$MUTMUT" run --max-children "$JOBS" "${NAMES[@]}"
  "$MUTMUT" results --all true | "$PY" "$ROOT/scripts/mutation_sample.py" report "${NAMES[@]}" | tee "$WORK/sample.txt"
  exit 0
fi
nice -n 10 "$MUTMUT" run --max-children "$JOBS" "${NAMES[@]}"
nice -n 10 "$MUTMUT" results --all true > "$WORK/results.txt" || true
"$PY" "$ROOT/scripts/mutation_table.py" "$WORK" | tee "$WORK/table.md"
