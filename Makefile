# The two commands of the README: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: run test lint typecheck unit bench-tts clean chromium redis haproxy js

# Each install step says what it does and how long it takes, so a first `make run` is not a
# silent minute. On a terminal the main install shows pip's own output and progress bars; in a
# CI log (not a terminal) it stays -q, so the log holds the step lines, not pages of pip.

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON)"; exit 1; }
	@echo "creating the virtualenv in $(VENV) and upgrading pip (a few seconds)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Reinstall only when the project's dependencies change.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	@echo "installing speechwire and its engines (first time: about a minute)"
	@if [ -t 1 ]; then q=; else q=-q; fi; echo "$(BIN)/pip install $$q -e ."; $(BIN)/pip install $$q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	@echo "installing the test and lint tools (first time: about 20 s)"
	$(BIN)/pip install -q -e '.[test]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/speechwire serve --dev --host $(HOST) --port $(PORT)

# Dead code by vulture at 60 %: that level sees unused functions, methods and attributes, not
# only imports; vulture_whitelist.py names what only a framework or library uses, and who.
# The image's Dockerfile by hadolint, and the Kubernetes manifests against the 1.33 schemas
# (kubernetes-validate ships them: both run offline).
lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests examples
	$(BIN)/ruff format --check src tests examples
	$(BIN)/mypy
	$(BIN)/vulture src tests vulture_whitelist.py --min-confidence 60
	$(BIN)/hadolint Dockerfile
	$(BIN)/kubernetes-validate --kubernetes-version 1.33.0 --strict --quiet deploy/k8s/*.yaml deploy/k8s/optional/*.yaml

# The browser tests drive Debian's Chromium (Playwright's own download cannot work here).
chromium:
	@test -x /usr/bin/chromium || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q \
	    --no-install-recommends chromium chromium-driver; }

# Replicas share tokens and limits through Redis; its tests start Debian's redis-server.
redis:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing Debian's redis-server for the shared-store tests"; \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q \
	    --no-install-recommends redis-server; \
	  $$SUDO systemctl disable --now redis-server >/dev/null 2>&1 || \
	    $$SUDO rm -f /etc/systemd/system/multi-user.target.wants/redis-server.service; }

# Replicas behind a real load balancer (tests/test_balancer.py, bench failover): Debian's HAProxy,
# in /usr/sbin (not on a user's PATH). The tests start their own; none runs at boot.
haproxy:
	@test -x /usr/sbin/haproxy || command -v haproxy >/dev/null 2>&1 || { \
	  echo "installing Debian's haproxy for the load-balancer tests"; \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q \
	    --no-install-recommends haproxy; \
	  $$SUDO systemctl disable --now haproxy >/dev/null 2>&1 || \
	    $$SUDO rm -f /etc/systemd/system/multi-user.target.wants/haproxy.service; }

# The official JS clients (pinned in tests/js/package-lock.json) run under the machine's Node.
JS := tests/js/node_modules/.installed
$(JS): tests/js/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "need node and npm for the JS client tests"; exit 1; }
	cd tests/js && npm ci --no-audit --no-fund --loglevel=error
	touch $@

js: $(JS)

test: $(VENV)/.installed-test chromium redis haproxy $(JS) lint
	$(BIN)/python -m pytest -q --durations=25 tests

bench-tts: $(VENV)/.installed-test
	$(BIN)/speechwire bench tts

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
