#!/usr/bin/env bash
# The artifacts in dist/ as the package index and users see them: the wheel's policy, the metadata, the licence,
# and the sdist building and importing in a fresh venv (what a user on a platform without a wheel gets).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bin=$root/.venv/bin

shopt -s nullglob
wheels=(dist/*.whl)
sdists=(dist/*.tar.gz)
if [ ${#wheels[@]} -ne 1 ] || [ ${#sdists[@]} -ne 1 ]; then
  echo "check-dist: need one wheel and one sdist in dist/ (run make wheel); found: ${wheels[*]:-} ${sdists[*]:-}" >&2
  exit 1
fi
wheel=${wheels[0]}
sdist=${sdists[0]}

fail() {
  echo "check-dist: $*" >&2
  exit 1
}

echo "=== auditwheel show $wheel"
show=$("$bin/auditwheel" show "$wheel")
echo "$show"
# auditwheel names the most compatible policy the binary satisfies: it must be glibc 2.17, not this machine's.
grep -q '"manylinux_2_17_x86_64"' <<<"$show" || fail "the wheel is not manylinux_2_17 (manylinux2014)"
case $(basename "$wheel") in
*-cp310-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl) ;;
*) fail "unexpected wheel tags: $(basename "$wheel")" ;;
esac

echo "=== twine check"
"$bin/twine" check --strict "$wheel" "$sdist"

echo "=== licence and typing files"
# Listed once into variables: `unzip | grep -q` would fail under pipefail when grep stops reading early.
in_wheel=$(unzip -Z1 "$wheel")
in_sdist=$(tar tzf "$sdist")
grep -q 'dist-info/licenses/LICENSE$' <<<"$in_wheel" || fail "LICENSE missing from the wheel"
grep -q '^victor_observability/py.typed$' <<<"$in_wheel" || fail "py.typed missing from the wheel"
grep -q '^victor_observability/_core.pyi$' <<<"$in_wheel" || fail "_core.pyi missing from the wheel"
grep -q '^[^/]*/LICENSE$' <<<"$in_sdist" || fail "LICENSE missing from the sdist"
grep -q '^[^/]*/Cargo.lock$' <<<"$in_sdist" || fail "Cargo.lock missing from the sdist (the build would float)"
meta=$(unzip -p "$wheel" '*.dist-info/METADATA')
grep -qx 'License-Expression: Apache-2.0' <<<"$meta" || fail "License-Expression missing from the wheel metadata"

echo "=== sdist into a fresh venv"
venv=$root/build/sdist-venv
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q -U pip
# pip builds the extension with maturin and the machine's Rust: exactly what a user without a wheel runs.
"$venv/bin/python" -m pip install -q "$root/$sdist"
mkdir -p "$root/build/sdist-run"
(cd "$root/build/sdist-run" && "$venv/bin/python" "$root/scripts/smoke_test.py")
echo "check-dist: ok"
