# The two commands a newcomer needs:
#   make workshop   set everything up, then open JupyterLab on the first notebook
#   make test       run the whole test suite (kit modules + every notebook)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
KIT    := $(VENV)/bin/kit

.PHONY: setup workshop test bench bench-all clean browser slides

setup: $(VENV)/.installed
	$(KIT) setup

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11 or newer is needed"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@echo "Installing the kit and its packages (the first time, llama-cpp-python compiles llama.cpp: about 10 minutes)..."
	$(PY) -m pip install -e ".[test]"
	touch $@

workshop: setup
	$(KIT) doctor || true
	$(VENV)/bin/jupyter lab notebooks/00_setup_check.ipynb

# pytest exits 5 when it collected nothing: that is a broken suite, say so.
test: $(VENV)/.installed
	@$(PY) -m pytest --nbval-lax -p no:cacheprovider tests notebooks; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: the suite is broken"; fi; \
	exit $$rc

bench: setup
	$(PY) benchmarks/foundation.py

# Every benchmark script, one after another (about 15 minutes on 2 cores).
bench-all: setup
	@for f in benchmarks/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

# The reveal.js decks in slides/build/ (reveal.js from npm, kept in slides/.cache/);
# the figures on them are measured on this machine while building.
slides: setup
	$(PY) slides/build.py

# Chromium for the dashboards' browser tests (Debian/Ubuntu; the tests skip
# without it). Playwright drives this browser: no `playwright install`.
browser:
	$(if $(filter 0,$(shell id -u)),,sudo )apt-get update
	$(if $(filter 0,$(shell id -u)),,sudo )env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium

clean:
	rm -rf $(VENV)
