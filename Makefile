# One command per habit. `make demo` runs the main job; `make test` builds the wheel and passes the tests.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-matrix test-dist develop wheel system-deps lint fmt bench clean

$(BIN)/.installed: requirements-dev.txt requirements-test.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

# Editable install for the dev loop (release build: the benches measure it).
develop: $(BIN)/.installed
	$(BIN)/maturin develop --release -q

demo: develop
	$(BIN)/python -m victor_observability demo

# The wheel users get: manylinux2014 (glibc 2.17), linked through zig so it installs on RHEL 8, Debian 11 and
# Amazon Linux 2, not only on this machine's glibc; maturin runs `python3 -m ziglang`, hence the venv on PATH.
wheel: $(BIN)/.installed
	rm -rf dist
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/maturin build --release -q --zig --compatibility manylinux2014 -o dist
	$(BIN)/maturin sdist -o dist

system-deps:
	./scripts/install-system-deps.sh

# The tests run against the installed wheel, from outside the source tree.
test: wheel system-deps
	$(BIN)/pip install -q --force-reinstall --no-deps dist/*.whl
	mkdir -p build/test-run
	cd build/test-run && VICTOR_REQUIRE_INSTALLED=1 ../../$(BIN)/python -m pytest -c ../../pyproject.toml --rootdir ../.. ../../tests -p no:cacheprovider -q

# The same wheel on every other CPython the machine has, and once on the declared dependency floors.
test-matrix: $(BIN)/.installed
	./scripts/test-matrix.sh

# The artifacts as the index and users see them: policy tag, metadata, licence, and the sdist building from scratch.
test-dist: $(BIN)/.installed
	PATH="$(CURDIR)/$(BIN):$$PATH" ./scripts/check-dist.sh

lint: $(BIN)/.installed
	$(BIN)/ruff check python tests benches scripts
	$(BIN)/ruff format --check python tests benches scripts
	$(BIN)/mypy
	$(BIN)/python -c "import victor_observability._core" 2>/dev/null || $(MAKE) develop
	$(BIN)/python -m mypy.stubtest victor_observability._core
	cargo clippy --all-targets -- -D warnings
	cargo clippy --all-targets --features python -- -D warnings
	cargo clippy --all-targets --features bench -- -D warnings
	cargo fmt --check
	$(BIN)/actionlint

fmt: $(BIN)/.installed
	$(BIN)/ruff format python tests benches scripts
	$(BIN)/ruff check --fix python tests benches scripts
	cargo fmt

# The benches' no-op floors (rust/py/bench.rs) exist only in this build. maturin's --features replaces
# pyproject's list (measured: without abi3 here it builds a cpython-3xx module that shadows the abi3 one), so
# it is repeated: the benches measure the same abi3 build that ships, plus the hooks.
bench: $(BIN)/.installed
	$(BIN)/maturin develop --release -q --features python,abi3,bench
	$(BIN)/python -m pytest benches -p no:cacheprovider --benchmark-columns=min,median,rounds -q
	cargo bench --bench hdr

clean:
	rm -rf build dist target $(VENV)
