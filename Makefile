# One command per habit. `make demo` runs the main job; `make test` builds the wheel and passes the tests.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test develop wheel system-deps lint fmt bench clean

$(BIN)/.installed: requirements-dev.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

# Editable install for the dev loop (release build: the benches measure it).
develop: $(BIN)/.installed
	$(BIN)/maturin develop --release -q

demo: develop
	$(BIN)/python -m victor_observability demo

wheel: $(BIN)/.installed
	rm -rf dist
	$(BIN)/maturin build --release -q -o dist

system-deps:
	./scripts/install-system-deps.sh

# The tests run against the installed wheel, from outside the source tree.
test: wheel system-deps
	$(BIN)/pip install -q --force-reinstall --no-deps dist/*.whl
	mkdir -p build/test-run
	cd build/test-run && VICTOR_REQUIRE_INSTALLED=1 ../../$(BIN)/python -m pytest -c ../../pyproject.toml --rootdir ../.. ../../tests -p no:cacheprovider -q

lint: $(BIN)/.installed
	$(BIN)/ruff check python tests benches
	$(BIN)/ruff format --check python tests benches
	$(BIN)/mypy
	$(BIN)/python -m mypy.stubtest victor_observability._core
	cargo clippy --all-targets --features python -- -D warnings
	cargo clippy --all-targets --features bench -- -D warnings
	cargo fmt --check

fmt: $(BIN)/.installed
	$(BIN)/ruff format python tests benches
	$(BIN)/ruff check --fix python tests benches
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
