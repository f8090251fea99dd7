#!/usr/bin/env bash
# The wheel in dist/ tested on every other supported CPython, each in a fresh venv, and once on the declared floors.
#
# `make test` runs the whole suite (real-stack integration tests included) on the default Python; this runs the
# suite minus those heavy tests on the other interpreters (pyenv's on these machines), from the very same wheel,
# then once on Python 3.10 with constraints-floors.txt: the lowest versions pyproject.toml declares.
# An interpreter that cannot be found fails the run: a version that was not tested must not look tested.
#
# Environment: MATRIX_PYTHONS (default "3.10 3.12 3.13"), FLOORS_PYTHON (default 3.10), MATRIX_FLOORS=0 to skip
# the floors run (which runs the whole suite), and PYTEST_ARGS for extra pytest arguments (e.g. a local --deselect).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

MATRIX_PYTHONS=${MATRIX_PYTHONS-"3.10 3.12 3.13"}
FLOORS_PYTHON=${FLOORS_PYTHON:-3.10}
MATRIX_FLOORS=${MATRIX_FLOORS:-1}
# The real-stack tests (Prometheus, Alertmanager, the demo under load, SMTP and OTLP peers) exercise Python code that
# does not differ between interpreters more than the rest of the suite does; `make test` runs them once.
# (--ignore takes a path, --deselect a node id relative to the rootdir.)
HEAVY=(--ignore="$root/tests/integration" --deselect=tests/test_demo.py::test_demo_runs_for_its_duration_and_its_summary_matches_metrics)

shopt -s nullglob
wheels=(dist/*-abi3-*manylinux_2_17_x86_64*.whl)
if [ ${#wheels[@]} -ne 1 ]; then
  echo "test-matrix: need exactly one manylinux_2_17 abi3 wheel in dist/ (run make wheel); found: ${wheels[*]:-none}" >&2
  exit 1
fi
wheel=$root/${wheels[0]}

# Newest patch release of a minor version, from pyenv or PATH; never a free-threaded build (abi3 cannot serve it).
find_python() {
  local want=$1 pyenv_root cand
  pyenv_root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
  local cands=()
  while IFS= read -r cand; do cands+=("$cand"); done < <(ls -d "$pyenv_root"/versions/"$want".*/bin/python 2>/dev/null | sort -V -r)
  cand=$(command -v "python$want" 2>/dev/null || true)
  [ -n "$cand" ] && cands+=("$cand")
  for cand in "${cands[@]}"; do
    if "$cand" -c "import sys, sysconfig; sys.exit(not (sys.version_info[:2] == tuple(map(int, '$want'.split('.'))) and not sysconfig.get_config_var('Py_GIL_DISABLED')))" 2>/dev/null; then
      echo "$cand"
      return 0
    fi
  done
  return 1
}

# run NAME PYTHON SKIP [pip args...]: fresh venv, the wheel with every extra, the test requirements, the suite
# (minus the heavy tests when SKIP is 1).
run() {
  local name=$1 py=$2 skip=$3
  shift 3
  local skipped=()
  [ "$skip" = 1 ] && skipped=("${HEAVY[@]}")
  local venv=$root/build/matrix/$name work=$root/build/matrix/$name-run
  echo "=== $name: $("$py" -c 'import sys; print(sys.version.split()[0])') ($py)"
  rm -rf "$venv" "$work"
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install -q -U pip
  "$venv/bin/python" -m pip install -q "$@" "$wheel[otel,prometheus,demo]"
  "$venv/bin/python" -m pip list --format=freeze >"$root/build/matrix/$name-freeze.txt"
  mkdir -p "$work"
  # From outside the source tree, so the tests import the installed wheel (conftest checks it).
  (cd "$work" && VICTOR_REQUIRE_INSTALLED=1 "$venv/bin/python" -m pytest -c "$root/pyproject.toml" --rootdir "$root" \
    "$root/tests" ${skipped[@]+"${skipped[@]}"} -p no:cacheprovider -q ${PYTEST_ARGS:-})
}

failed=()
for v in $MATRIX_PYTHONS; do
  if ! py=$(find_python "$v"); then
    echo "test-matrix: no CPython $v found (pyenv versions, or python$v on PATH)" >&2
    failed+=("$v: interpreter missing")
    continue
  fi
  run "py$v" "$py" 1 -r requirements-test.txt || failed+=("$v")
done

if [ "$MATRIX_FLOORS" = 1 ]; then
  if ! py=$(find_python "$FLOORS_PYTHON"); then
    failed+=("floors: no CPython $FLOORS_PYTHON")
  else
    # The declared dependencies come from the constraints alone: the test requirements' own pins must not lift them.
    names=$(sed -E 's/[#].*//; s/[<>=!~ ].*//' constraints-floors.txt | grep -v '^$' | tr 'A-Z_' 'a-z-' | paste -sd'|')
    grep -viE "^($names)([<>=!~ ]|$)" requirements-test.txt >"$root/build/matrix-floors-requirements.txt"
    # The whole suite here: the integration tests are where httpx, uvicorn and starlette versions show.
    run floors "$py" 0 -c constraints-floors.txt -r "$root/build/matrix-floors-requirements.txt" || failed+=("floors")
  fi
fi

if [ ${#failed[@]} -gt 0 ]; then
  printf 'test-matrix: FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "test-matrix: passed on $MATRIX_PYTHONS$([ "$MATRIX_FLOORS" = 1 ] && echo " and the floors on $FLOORS_PYTHON")"
