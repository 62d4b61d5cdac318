# The two quickstart commands: `make serve` and `make test`. Each creates the virtualenv
# and installs the project on its first run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

# tests/node: the Vercel AI SDK, installed from its committed lock file for tests/test_ai_sdk.py.
NODE_DIR := tests/node
NODE_STAMP := $(NODE_DIR)/node_modules/.ci-stamp

.PHONY: serve test lint typecheck unit node

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/omnirelay serve

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: $(STAMP)
	$(BIN)/mypy

$(NODE_STAMP): $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	@command -v node >/dev/null && command -v npm >/dev/null || { echo "make test needs Node.js >= 20 and npm (for tests/node): install them" >&2; exit 1; }
	@node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' || { echo "make test needs Node.js >= 20, found $$(node --version): install a newer one" >&2; exit 1; }
	cd $(NODE_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

node: $(NODE_STAMP)

unit: $(STAMP) $(NODE_STAMP)
	$(BIN)/pytest

test: lint typecheck unit
