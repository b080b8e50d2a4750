# Two entry points: `make reproduce` (the main job) and `make test` (the test suite).
# Each creates .venv on first use, installs the pinned CPU torch wheel first (an unpinned
# torch would pull a multi-GB CUDA build), then kvmem with its extras.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.kvmem-installed

.PHONY: install browser test reproduce bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# The report's browser test needs Debian's chromium. Install it when missing and when we
# may (root with apt); otherwise that one test skips and says why.
browser:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium for the report's browser test"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; \
	else echo "chromium missing and not installable here: the browser test will skip"; fi

test: $(STAMP) browser
	$(BIN)/python -m pytest -q

reproduce: $(STAMP)
	$(BIN)/kvmem reproduce --profile quick --out kvmem-results

bench: $(STAMP)
	$(BIN)/kvmem bench --out bench-results

clean:
	rm -rf $(VENV) kvmem-results bench-results .pytest_cache .hypothesis
