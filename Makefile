# Set-up and the two jobs the README names: `make demo` and `make test`.
# TORCH pins the one torch used everywhere (here and in CI). 2.14.1 with torchvision
# 0.29.1 because LPIPS (the `eval` extra) needs torchvision, and PyPI's torchvision
# does not import beside other torch files on these machines. On a GPU machine keep
# your own CUDA build instead: `pip install -e ".[eval]"` accepts any torch 2.5-2.x.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.14.1 torchvision==0.29.1
# RAY pins the Ray the `ray` extra's tests run against (the extra itself accepts any 2.60+ 2.x,
# as every node of a user's cluster must run the same Ray as the driver).
RAY ?= ray[data,serve]==2.60.0
BIN = $(VENV)/bin

.PHONY: install demo test bench-cpu clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH) "$(RAY)"
	$(BIN)/python -m pip install --quiet -e ".[test,eval,ray,serve]"
	touch $@

demo: install
	$(BIN)/flux2-int8 demo --out demo-out

test: install
	$(BIN)/python -m pytest -q

bench-cpu: install
	$(BIN)/python benchmarks/cpu_int8_linear.py

clean:
	rm -rf $(VENV) demo-out .pytest_cache
