# gatewayd: `make run` and `make test` are all a newcomer needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
OPENCLAW_VERSIONS := 2026.9.6 2026.2.26
PYTEST := $(PY) -m pytest -p no:cacheprovider

.PHONY: run test test-faults lint unit integration e2e bench openclaw clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

openclaw:
	@for v in $(OPENCLAW_VERSIONS); do scripts/install-openclaw $$v --quiet >/dev/null || exit 1; done

## run: gatewayd supervising a sandboxed gateway with a fake model (Ctrl-C stops both)
run: $(VENV)/.installed
	$(PY) scripts/run_sandbox.py

## test: lint, then unit, fake-gateway, integration and real-gateway tests (fail fast)
# Workers (pytest-xdist): the integration and fault tests, and the real gateways' tests, mostly wait
# on timers and child processes, so even on two cores several at once finish in about half the time.
# The fault stage's two-minute sleep runs beside the integration tests (listed first, it starts
# first). The contract tests keep one gateway per version on one worker (loadgroup);
# the `alone` tests (a real kernel OOM kill) run by themselves.
test: $(VENV)/.installed openclaw lint
	$(PYTEST) tests/unit tests/fakes tests/contract -q -m "not e2e" -n 2
	$(PYTEST) tests/faults tests/integration -q -n 6 -m "not alone"
	$(PYTEST) tests/integration -q -m alone
	$(PYTEST) tests/contract tests/e2e -q -m e2e -n 4 --dist loadgroup

## test-faults: the slow fault cases (a two-minute machine sleep, end to end); `make test` runs them too
test-faults: $(VENV)/.installed
	$(PYTEST) tests/faults -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check supervisor tests scripts gatewayd_dev
	$(VENV)/bin/mypy supervisor

## bench: the short form of every benchmark
bench: $(VENV)/.installed openclaw
	$(PY) scripts/bench/check.py --together

clean:
	rm -rf $(VENV) run .cache/e2e-model-*
