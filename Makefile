# The front door: `make run` and `make test` are the two commands of the README.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# `make run PORT=8001` when 8000 is taken; HOST=0.0.0.0 to listen beyond this machine.
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run test test-stress lint fmt bench clean system-packages mutation

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

# Test files run in parallel (one file stays on one worker: module fixtures are shared).
TEST_JOBS ?= 2
test: $(STAMP)
	$(PY) -m pytest -m "not stress" -n $(TEST_JOBS) --dist loadfile $(PYTEST_ARGS)

# pytest exits 5 when no test carries the marker: that is not a failure here.
test-stress: $(STAMP)
	$(PY) -m pytest -m stress $(PYTEST_ARGS) || [ $$? -eq 5 ]

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	@! grep -nE '^[[:space:]]*(from|import)[[:space:]]+integrator' hooks/pre-receive hooks/post-receive hooks/launcher \
		|| { echo 'the hooks must not import the integrator package (stdlib only)'; exit 1; }

fmt: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The real git hosts the host tests start themselves (sshd + Gitolite, lighttpd + git
# http-backend), promtool, and the browser the dashboard test drives (chromium). Idempotent;
# as root or through sudo. A temporary policy-rc.d (exit 101) keeps every package from
# starting a system service on its default port; it is removed afterwards (one that was
# already there is left alone).
SYSTEM_PACKAGES ?= openssh-server gitolite3 lighttpd prometheus chromium
system-packages:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then echo "system packages present: $(SYSTEM_PACKAGES)"; exit 0; fi; \
	sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	if [ ! -e /usr/sbin/policy-rc.d ]; then \
		trap "$$sudo rm -f /usr/sbin/policy-rc.d" EXIT; \
		printf '#!/bin/sh\nexit 101\n' | $$sudo tee /usr/sbin/policy-rc.d >/dev/null; \
		$$sudo chmod 0755 /usr/sbin/policy-rc.d; \
	fi; \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q \
	&& $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing

BENCH ?=
bench: $(STAMP)
	$(PY) -m bench $(BENCH)

# Mutation testing of the decision code (minutes; not part of `make test`): docs/testing.md.
# `make mutation MUTATION="policy lease"` for some modules; exits non-zero under --min.
MUTATION ?=
mutation: $(STAMP)
	nice -n 10 $(PY) tools/mutation.py --min 95 $(MUTATION)

clean:
	rm -rf $(VENV) build dist *.egg-info
