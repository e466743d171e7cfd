# The front door: `make run` and `make test` are the two commands of the README.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# `make run PORT=8001` when 8000 is taken; HOST=0.0.0.0 to listen beyond this machine.
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run test test-stress lint fmt bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/integrator db upgrade
	@echo "integrator: serving on http://$(HOST):$(PORT) (port taken? make run PORT=8001)"
	$(VENV)/bin/integrator serve --host $(HOST) --port $(PORT)

test: $(STAMP)
	$(PY) -m pytest -m "not stress" $(PYTEST_ARGS)

# pytest exits 5 when no test carries the marker: that is not a failure here.
test-stress: $(STAMP)
	$(PY) -m pytest -m stress $(PYTEST_ARGS) || [ $$? -eq 5 ]

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	@! grep -nE '^[[:space:]]*(from|import)[[:space:]]+integrator' hooks/pre-receive hooks/post-receive \
		|| { echo 'the hooks must not import the integrator package (stdlib only)'; exit 1; }

fmt: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

BENCH ?=
bench: $(STAMP)
	$(PY) -m bench $(BENCH)

clean:
	rm -rf $(VENV) build dist *.egg-info
