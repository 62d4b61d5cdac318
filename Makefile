# The two quickstart commands: `make serve` and `make test`. Each creates the virtualenv
# and installs the project on its first run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

# tests/node: the Vercel AI SDK, installed from its committed lock file for tests/test_ai_sdk.py.
NODE_DIR := tests/node
NODE_STAMP := $(NODE_DIR)/node_modules/.ci-stamp

# The console's browser tests drive Debian's chromium; Playwright never downloads a browser.
CHROMIUM := /usr/bin/chromium
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

.PHONY: serve test lint typecheck unit node chromium screenshots

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

chromium:
	@test -x $(CHROMIUM) || { echo "make test needs Debian's chromium at $(CHROMIUM) for the console's browser tests: apt-get install -y chromium" >&2; exit 1; }

unit: $(STAMP) $(NODE_STAMP) chromium
	$(BIN)/pytest

# Every console page, as the browser tests see it, into docs/console/ (linked from the README).
screenshots: $(STAMP) chromium
	CONSOLE_SCREENSHOTS=docs/console $(BIN)/pytest tests/test_console_browser.py tests/test_console_tasks_browser.py tests/test_console_batches_browser.py -q

test: lint typecheck unit
