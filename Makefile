# Two commands do everything on a fresh machine: `make test` and `make demo`.
# Both create .venv, install torch 2.13.0 (pip takes the CPU build from local disk here)
# and then this package with its dev extra.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: install test test-all demo bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -m "not slow and not gpu" tests

test-all: $(STAMP)
	$(PY) -m pytest tests

demo: $(STAMP)
	$(VENV)/bin/lvsal demo

bench: $(STAMP)
	$(PY) benchmarks/saliency_speed.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
