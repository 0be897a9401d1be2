# Set-up is automatic: every target creates .venv and installs the project when needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: sweep test lint ui

# The main sweep: sweeps/knn_grid.yaml on the bundled breast-cancer data, 1 parent + 42 children.
sweep: $(STAMP)
	$(BIN)/python -m src.train sweeps=knn_grid

# Lint, then every test (the same command CI runs through .ci/run).
test: $(STAMP) lint /usr/bin/chromium
	$(BIN)/python -m pytest

# The MLflow UI test drives Debian's chromium (Playwright never downloads a browser here).
/usr/bin/chromium:
	@[ "$$(id -u)" = 0 ] || { echo "The UI test needs Debian's chromium: sudo apt-get install chromium"; exit 1; }
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

ui: $(STAMP)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///outputs/mlflow.db --host 127.0.0.1 --port 5000

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Python 3.11 is required: make PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)
