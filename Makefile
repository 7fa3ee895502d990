# One virtual environment (.venv) with everything: gateway, training, tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The Triton server side (tritonserver + python backend, numpy<2): its own venv, see pyproject's
# `triton-server` extra. The tests and bench/serving.py start tritonserver from it.
TRITON_VENV ?= .venv-triton
TRITON_STAMP := $(TRITON_VENV)/.installed-stamp

.PHONY: install demo test bench clean deploy-lint browser system-packages $(TRITON_VENV)

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

test: $(STAMP) $(TRITON_STAMP) system-packages
	@for tool in chromium redis-server; do command -v $$tool >/dev/null 2>&1 \
		|| echo "make test: $$tool is not installed, so the tests needing it will be skipped; run 'make system-packages' once (as root)"; done
	MEMOTION_TRITON_PYTHON=$(abspath $(TRITON_VENV))/bin/python $(BIN)/python -m pytest

# Deployment files: Dockerfiles (hadolint), entry points (shellcheck), compose files (compose-spec
# schema), every kustomization rendered and validated (k8s/validate.py). tests/test_deploy.py too.
deploy-lint: $(STAMP)
	$(BIN)/hadolint docker/*.Dockerfile
	$(BIN)/shellcheck docker/*.sh
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec docker/compose.yaml docker/compose.gpu.yaml
	$(BIN)/python k8s/validate.py

# The system packages some tests start for real (Debian's; nothing is downloaded at test time):
# chromium for the 3 dashboard tests (tests/test_ui.py, Playwright drives it), redis-server for the
# shared result cache (tests/test_result_cache.py, tests/test_scaling.py) and postgresql for the
# database tests (tests/database_fixtures.py runs its initdb/pg_ctl, from /usr/lib/postgresql/*/bin).
# Idempotent; where apt cannot run, the tests that need them skip with a message saying so (and fail
# under CI).
SYSTEM_PACKAGES := chromium redis-server postgresql
system-packages:
	@missing=""; for tool in chromium redis-server; do command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -z "$$missing" ]; then echo "system packages: $(SYSTEM_PACKAGES) present"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null \
		  && echo "system packages: installed$$missing"; } \
		|| echo "make system-packages: apt-get could not install$$missing: the tests needing them skip (and fail in CI)"; \
	else echo "make system-packages: cannot install$$missing (no apt-get, or not root): the tests needing them skip (and fail in CI)"; fi

browser: system-packages  # the older name

clean:
	rm -rf demo-run .pytest_cache test-artifacts
