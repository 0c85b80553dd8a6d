# Quick start: `make demo` then `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
export OMP_THREAD_LIMIT ?= 1

.PHONY: demo test check setup bench clean

demo: setup  ## set everything up and run the demo mailbox through the pipeline
	$(BIN)/postfordeler demo

test: setup  ## lint, type-check and run the whole test suite
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -q -ra

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/install-system-packages.sh
	bash scripts/install-system-packages.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

bench: setup  ## the pipeline benchmark on RabbitMQ and PostgreSQL
	$(BIN)/python bench/pipeline.py

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
