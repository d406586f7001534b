# One-command set-up: every target creates the venv and installs what it needs.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed-core
TORCH  := torch==2.13.0

.PHONY: install test test-slow reproduce reproduce-full bench clean wheelhouse

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# CPU build of torch first, so the open-ended requirement below installs nothing more.
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e ".[llm,test]"
	touch $@

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

test-slow: $(STAMP)
	$(PY) -m pytest -m slow

reproduce: $(STAMP)
	$(PY) experiments/reproduce.py --quick

reproduce-full: $(STAMP)
	$(PY) experiments/reproduce.py --full

$(VENV)/.installed-bench: $(STAMP)
	$(PIP) install -q -e ".[llm,test,bench]"
	touch $@

bench: $(VENV)/.installed-bench
	$(PY) -m experiments.bench.cpi_kernels

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info

# Wheels of tyro and its pure-Python dependencies for a GPU machine without a package index
# (experiments/gpu_check.py installs from here when tyro is missing; carry wheelhouse/ along).
wheelhouse:
	$(PY) -m pip download -q --only-binary=:all: -d wheelhouse tyro
