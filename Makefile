# Two entry points: `make reproduce` (the main job) and `make test` (the test suite).
# Each creates .venv on first use, installs the pinned CPU torch wheel first (an unpinned
# torch would pull a multi-GB CUDA build), then kvmem with its extras.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.kvmem-installed

.PHONY: install test reproduce clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

reproduce: $(STAMP)
	$(BIN)/kvmem reproduce --profile quick --out kvmem-results

clean:
	rm -rf $(VENV) kvmem-results .pytest_cache .hypothesis
