VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: install test lint demo clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet torch==2.13.0
	rm -rf paradiff.egg-info  # stale metadata would hide the entry points (registries)
	$(PIP) install --quiet -e ".[dev,app,browser,quant]"
	touch $@

install: $(VENV)/.installed

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: install lint
	$(VENV)/bin/pytest -q

demo: install
	$(VENV)/bin/paradiff demo --out demo_out

clean:
	rm -rf $(VENV) demo_out .pytest_cache
