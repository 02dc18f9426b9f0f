# The two commands that matter: `make demo` (the main job end to end) and `make test`.
# Both set up what they need first (idempotent): see scripts/setup.sh.
VENV := .venv
BIN := $(VENV)/bin
DEMO_HOME ?= $(CURDIR)/var/demo

.PHONY: setup demo test lint unit docs clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(BIN)/vitrine --home $(DEMO_HOME) demo

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

unit: setup
	$(BIN)/python -m pytest -q -m "not integration"

lint: setup
	$(BIN)/ruff check .

docs: setup
	$(BIN)/vitrine schema --markdown > docs/data.md

clean:
	rm -rf var .pytest_cache
