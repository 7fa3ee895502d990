# One virtual environment (.venv) with everything: gateway, training, tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The Triton server side (tritonserver + python backend, numpy<2): its own venv, see pyproject's
# `triton-server` extra. The tests and bench/serving.py start tritonserver from it.
TRITON_VENV ?= .venv-triton
TRITON_STAMP := $(TRITON_VENV)/.installed-stamp

.PHONY: install demo test bench clean deploy-lint browser $(TRITON_VENV)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[all]'
	touch $(STAMP)

install: $(STAMP)

# The demo needs only the gateway and training extras: a newcomer's first command installs less.
DEMO_STAMP := $(VENV)/.demo-stamp
$(DEMO_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[serve,train]'
	touch $(DEMO_STAMP)

$(TRITON_STAMP): pyproject.toml
	$(PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e '.[triton-server]'
	touch $(TRITON_STAMP)

$(TRITON_VENV): $(TRITON_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/memotion demo

test: $(STAMP) $(TRITON_STAMP)
	MEMOTION_TRITON_PYTHON=$(abspath $(TRITON_VENV))/bin/python $(BIN)/python -m pytest

# Deployment files: Dockerfiles (hadolint), entry points (shellcheck), compose files (compose-spec
# schema), every kustomization rendered and validated (k8s/validate.py). tests/test_deploy.py too.
deploy-lint: $(STAMP)
	$(BIN)/hadolint docker/*.Dockerfile
	$(BIN)/shellcheck docker/*.sh
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec docker/compose.yaml docker/compose.gpu.yaml
	$(BIN)/python k8s/validate.py

# Headless Chromium for tests/test_ui.py (Debian's package; Playwright drives it, downloads nothing).
# Idempotent; where apt cannot run the UI test skips with a message saying so.
browser:
	@if command -v chromium >/dev/null 2>&1; then echo "chromium: $$(chromium --version 2>/dev/null)"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null \
		  && echo "chromium: $$(chromium --version 2>/dev/null)"; } \
		|| echo "make browser: apt-get could not install chromium: tests/test_ui.py is skipped (and fails in CI)"; \
	else echo "make browser: cannot install chromium (no apt-get, or not root): tests/test_ui.py is skipped (and fails in CI)"; fi

clean:
	rm -rf demo-run .pytest_cache test-artifacts
