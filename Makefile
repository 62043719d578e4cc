# dltrain: `make install`, `make demo`, `make test`, `make lint`. Everything installs into .venv from nothing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install install-bench demo test test-all test-python lint schema clean-runs bench bench-quick bench-smoke bench-gpu

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,all]"
	touch $(STAMP)

# Trains a CNN on scikit-learn's bundled 8x8 digits (offline), then scores it on the held-out test split.
demo: install
	@run=$$($(BIN)/dltrain fit configs/digits_cnn.yaml | tee /dev/stderr | sed -n 's/^run: //p'); \
	  test -n "$$run" && $(BIN)/dltrain evaluate "$$run"

# The everyday suite: every test but the slow ones (about 6 minutes on 2 cores).
test: install
	$(BIN)/python -m pytest -m "not slow"

# Everything, slow tests included (Fashion-MNIST training, real-fault resume, multi-worker): what CI runs.
test-all: install
	$(BIN)/python -m pytest

# The everyday suite under another supported Python, in its own .venv-$(PY): `make test-python PY=3.12`.
# The interpreter is python$(PY) on PATH, else the newest $(PY).x in pyenv's versions folder; if neither works,
# `uv python install` (or else `pyenv install`) fetches one; if that fails too, it stops with an error.
SUPPORTED_PYTHONS := 3.10 3.11 3.12 3.13
PY ?=
PYENV_VERSIONS ?= $(or $(PYENV_ROOT),$(HOME)/.pyenv)/versions

test-python:
	@case " $(SUPPORTED_PYTHONS) " in *" $(PY) "*) ;; \
	  *) echo "make test-python: PY='$(PY)' is not a supported Python; use one of: $(SUPPORTED_PYTHONS) (e.g. make test-python PY=3.12)" >&2; exit 2;; esac
	@$(MAKE) --no-print-directory .venv-$(PY)/.installed
	.venv-$(PY)/bin/python -m pytest -m "not slow"

# `python3.12` may be a pyenv shim that fails when 3.12 is not selected: every candidate is run to check it.
.venv-%/.installed: pyproject.toml
	@set -eu; want="$*"; py=""; \
	is_want() { "$$1" -c "import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$$want'.split('.'))))" >/dev/null 2>&1; }; \
	for c in "$$(command -v python$$want || true)" $$(ls -d "$(PYENV_VERSIONS)"/$$want.*/bin/python$$want 2>/dev/null | sort -rV); do \
	  if [ -n "$$c" ] && is_want "$$c"; then py="$$c"; break; fi; \
	done; \
	if [ -z "$$py" ] && command -v uv >/dev/null 2>&1; then \
	  echo "Python $$want not found; installing it with uv" >&2; \
	  uv python install "$$want" >&2 && py="$$(uv python find "$$want")" || py=""; \
	fi; \
	if [ -z "$$py" ] && command -v pyenv >/dev/null 2>&1; then \
	  echo "Python $$want not found; installing it with pyenv (builds from source, several minutes)" >&2; \
	  pyenv install --skip-existing "$$want" >&2 && py="$$(ls -d "$(PYENV_VERSIONS)"/$$want.*/bin/python$$want 2>/dev/null | sort -rV | head -n 1)" || py=""; \
	fi; \
	if [ -z "$$py" ] || ! is_want "$$py"; then \
	  echo "make: no Python $$want interpreter: not on PATH as python$$want, not in $(PYENV_VERSIONS), and neither uv nor pyenv could install it; install Python $$want (e.g. pyenv install $$want) and rerun" >&2; \
	  exit 1; \
	fi; \
	echo "Python $$want: $$py ($$("$$py" -c 'import sys; print(sys.version.split()[0])'))"; \
	test -x $(@D)/bin/python || "$$py" -m venv $(@D)
	$(@D)/bin/python -m pip install --quiet --upgrade pip
	$(@D)/bin/python -m pip install --quiet -e ".[dev,all]"
	touch $@

lint: install
	$(BIN)/ruff check dltrain tests bench
	$(BIN)/ruff format --check dltrain tests bench
	$(BIN)/mypy dltrain

schema: install
	$(BIN)/dltrain config schema --output dltrain.schema.json

# The benchmark (bench/README.md): dltrain vs plain Keras vs PyTorch on Fashion-MNIST, 65-110 minutes on
# 2 cores; writes bench/RESULTS.md. bench-quick: one round and fewer runs; bench-smoke: 2,048 images, minutes.
BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	touch $(BENCH_STAMP)

# The bench extra alone (PyTorch 2.13, CPU build): CI installs it for tests/test_bench_gpu.py's dry run.
install-bench: $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python bench/run.py --mode full

bench-quick: $(BENCH_STAMP)
	$(BIN)/python bench/run.py --mode quick

bench-smoke: $(BENCH_STAMP)
	$(BIN)/python bench/run.py --mode smoke

# On a machine with an NVIDIA GPU: dltrain vs plain Keras vs PyTorch, float32 / mixed precision / XLA, in under
# 10 minutes after the install (bench/gpu.sh installs TensorFlow with CUDA and PyTorch into .venv-gpu).
bench-gpu:
	bench/gpu.sh
