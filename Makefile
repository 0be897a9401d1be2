# Set-up is automatic: every target creates .venv and installs the project when needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: sweep test lint ui serve system-deps

# The main sweep: sweeps/knn_grid.yaml on the bundled breast-cancer data, 1 parent + 42 children.
sweep: $(STAMP)
	$(BIN)/python -m src.train sweeps=knn_grid

# Lint, then every test (the same command CI runs through .ci/run) in one pytest session: the
# default run (plain `pytest`, under 5 minutes) and the end-to-end tests marked slow (`-m ""`
# lifts the default `-m 'not slow'`), so a module's fixtures are made once for both.
test: $(STAMP) lint system-deps
	$(BIN)/python -m pytest -m ""

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

# Debian packages the end-to-end tests use: chromium (the MLflow UI test; Playwright never
# downloads a browser here) and the PostgreSQL server (the Team setup test, on a loopback port).
system-deps:
	@missing=""; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "The end-to-end tests need:$$missing (sudo apt-get install$$missing)"; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# The latest sweep's view in the UI (its link), then the UI itself, without MLflow's job runner
# (for its GenAI features: seven more processes on start, none of them used here).
ui: $(STAMP)
	@$(BIN)/python -m src.summary --ui --tracking-uri sqlite:///outputs/mlflow.db 2>&1 | grep '^MLflow UI: ' || echo "No sweep in outputs/mlflow.db yet: make sweep"
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow ui --backend-store-uri sqlite:///outputs/mlflow.db --host 127.0.0.1 --port 5000

# Serve a registered model of the project's store on 127.0.0.1:5001 (POST /invocations).
MODEL ?= models:/heart-classifier@champion
serve: $(STAMP)
	MLFLOW_TRACKING_URI=sqlite:///outputs/mlflow.db $(BIN)/mlflow models serve -m $(MODEL) --env-manager local --host 127.0.0.1 --port 5001

# uv installs what pip would (the same versions), in about half pip's time; compiled to bytecode
# at install, as pip does (where PYTHONDONTWRITEBYTECODE is set, nothing would cache it later,
# and every process would compile mlflow and scikit-learn again on import).
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Python 3.11 is required: make PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet 'uv<1'
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e '.[dev]'
	touch $(STAMP)
