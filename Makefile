# Two commands: `make run` starts signoff on the embedded SQLite database; `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_DEV := $(VENV)/.installed-dev

.PHONY: run test lint typecheck unit bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(STAMP_DEV): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $@ $(STAMP_RUN)

run: $(STAMP_RUN)
	$(BIN)/signoff serve

lint: $(STAMP_DEV)
	$(BIN)/ruff check .

typecheck: $(STAMP_DEV)
	$(BIN)/mypy

# Four workers on two cores: most tests wait on sockets, subprocesses and PostgreSQL rather than compute.
unit: $(STAMP_DEV)
	$(BIN)/pytest -q -n 4

test: lint typecheck unit

bench: $(STAMP_DEV)  # every script runs and prints its figures; the target fails if any of them missed one
	@status=0; for script in run slack expiry commands policy_eval; do \
		$(BIN)/python bench/$$script.py || status=1; \
	done; exit $$status

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
