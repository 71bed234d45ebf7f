#!/usr/bin/env bash
# Mutation testing with mutmut 3 (config: [tool.mutmut] in pyproject.toml; docs/testing.md).
#
#   scripts/mutation.sh [TREE] [MUTANTS...] [--fresh] [--jobs=N] [--results]
#   scripts/mutation.sh [TREE] --sample=N [--seed=S] [--changed-since=REF]
#
# TREE is botcore (the algebra, default), backends or adapters. MUTANTS are optional
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
# sources in the working tree are being edited by someone else).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
TREE=botcore JOBS=1 FRESH=0 RESULTS=0 NAMES=() SAMPLE=0 SEED=0 SINCE="" TESTS_ONLY=0
for arg in "$@"; do
  case "$arg" in
    botcore|backends|adapters) TREE=$arg ;;
    --fresh) FRESH=1 ;;
    --tests-only) TESTS_ONLY=1 ;;
    --results) RESULTS=1 ;;
    --jobs=*) JOBS=${arg#--jobs=} ;;
    --sample=*) SAMPLE=${arg#--sample=} ;;
    --seed=*) SEED=${arg#--seed=} ;;
    --changed-since=*) SINCE=${arg#--changed-since=} ;;
    --jobs) echo "use --jobs=N" >&2; exit 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
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
    TESTS='["tests/test_backend_matrix.py", "tests/test_gradients.py", "tests/test_backend_conformance.py", "tests/test_backend_frameworks.py", "botcore/backends/"]' ;;
  adapters)
    ONLY='["botcore/adapters/*", "botcore/_files.py"]'
    SKIP='[]'
    TESTS='["tests/test_values_families.py", "tests/test_values_algebra.py", "tests/test_resize_model.py", "tests/test_adapter_families.py", "tests/test_rotation.py", "tests/test_rotation_values.py", "tests/test_overwrite_safety.py", "botcore/adapters/", "--ignore=botcore/adapters/onnx.py", "--ignore=botcore/adapters/onnx_analysis.py", "--ignore=botcore/adapters/onnx_graph.py", "--ignore=botcore/adapters/onnx_rewrite.py"]' ;;
esac

if [[ $RESULTS == 1 ]]; then
  cd "$WORK" && exec "$PY" "$ROOT/scripts/mutation_table.py" "$WORK"
fi
[[ $FRESH == 1 ]] && rm -rf "$WORK"
mkdir -p "$WORK"

# stage: botcore/ with backends/ and adapters/ inside, the tests, the configuration
sync() { mkdir -p "$2"; cp -a -u "$1"/. "$2"/; }
if [[ $TESTS_ONLY == 0 || ! -d $WORK/botcore ]]; then
  sync "$ROOT/botcore" "$WORK/botcore"
  sync "$ROOT/backends" "$WORK/botcore/backends"
  sync "$ROOT/adapters" "$WORK/botcore/adapters"
fi
sync "$ROOT/tests" "$WORK/tests"
cp -a -u "$ROOT/conftest.py" "$WORK/"
find "$WORK" -name __pycache__ -prune -exec rm -rf {} +
sed -e 's#"backends/#"botcore/backends/#g' "$ROOT/conftest.py" > "$WORK/conftest.py"
"$PY" - "$ROOT/pyproject.toml" "$WORK/pyproject.toml" "$ONLY" "$SKIP" "$TESTS" <<'PYEOF'
import re, sys
src, dst, only, skip, tests = sys.argv[1:]
text = open(src).read()
section = re.search(r"^\[tool\.mutmut\]\n(?:(?!^\[).*\n?)*", text, re.M).group(0)
new = re.sub(r"^do_not_mutate = .*$", "do_not_mutate = " + skip, section, flags=re.M)
new = re.sub(r"^pytest_add_cli_args_test_selection = .*$",
             "pytest_add_cli_args_test_selection = " + tests, new, flags=re.M)
new = new.rstrip("\n") + "\nonly_mutate = " + only + "\n"
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
