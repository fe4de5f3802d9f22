# Two commands do everything on a fresh machine: `make test` and `make demo`.
# Both create .venv, install torch 2.13.0 (pip takes the CPU build from local disk here)
# and then this package with its dev extra.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: install test test-slow test-gpu test-all demo bench organism notebook-data notebooks clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# What CI needs on every change, <= 8 minutes on 2 cores: the tests and the docstrings' examples.
test: $(STAMP)
	$(PY) -m pytest -m "not slow and not gpu" tests lvsal_data analysis

# The long ones (notebooks, end-to-end collect kill / resume, the demo): CI runs them second.
test-slow: $(STAMP)
	$(PY) -m pytest -m "slow and not gpu" tests

# The CUDA checks (tests/test_cuda.py); needs a GPU, skipped without one.
test-gpu: $(STAMP)
	$(PY) -m pytest -m gpu tests/test_cuda.py

test-all: $(STAMP)
	$(PY) -m pytest tests lvsal_data analysis

# A second demo needs another folder: make demo OUT=lvsal-demo-2
OUT ?= lvsal-demo
demo: $(STAMP)
	$(VENV)/bin/lvsal demo --out $(OUT)

bench: $(STAMP)
	$(PY) benchmarks/saliency_speed.py
	$(PY) benchmarks/decoding_speed.py
	$(PY) benchmarks/decoding_speed.py --model organism --answer 64
	$(PY) benchmarks/storage_size.py --columns

# Retrain the organism (only when its recipe changes), then measure it and rewrite its card.
organism: $(STAMP)
	$(PY) -m lvsal_data.organism.train
	$(PY) -m lvsal_data.organism.evaluate

# The small trace dataset the notebooks read, and its card in data_cards/.
NB_DATA := notebooks/data/organism-traces
notebook-data: $(STAMP)
	rm -rf $(NB_DATA)
	$(VENV)/bin/lvsal collect --model organism --data synthetic:split=test,n=40,seed=3 --out $(NB_DATA) \
	    --max-new-tokens 48 --store-rows --lookback-heads --hidden-states --hidden-dim 32
	$(PY) -c "from lvsal_data.hub import redact_manifest, write_card; redact_manifest('$(NB_DATA)'); write_card('$(NB_DATA)', repo_id='lvsal-data/organism-traces', license='apache-2.0')"
	rm -rf $(NB_DATA)/.lvsal
	cp $(NB_DATA)/README.md data_cards/organism-traces.md

# Execute the notebooks and save them with their outputs (figures visible on a web view); stderr
# (progress bars, library warnings with this machine's paths) is left out.
notebooks: $(STAMP)
	MPLBACKEND=module://matplotlib_inline.backend_inline $(PY) notebooks/execute.py notebooks/*.ipynb

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
