# Set-up and the two jobs the README names: `make demo` and `make test`.
# TORCH pins the one torch used everywhere (here and in CI); on a GPU machine keep
# your own CUDA build instead: `pip install -e .` accepts any torch 2.5-2.x.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN = $(VENV)/bin

.PHONY: install demo test bench-cpu clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

demo: install
	$(BIN)/flux2-int8 demo --out demo-out

test: install
	$(BIN)/python -m pytest -q

bench-cpu: install
	$(BIN)/python benchmarks/cpu_int8_linear.py

clean:
	rm -rf $(VENV) demo-out .pytest_cache
