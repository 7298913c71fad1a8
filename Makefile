# Every target creates the virtual environment (.venv) and installs graphc into it when needed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint fmt bench golden clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,examples]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python tools/demo.py

test: $(STAMP)
	GRAPHC_VERIFY=1 $(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check graphc tests tools graphs

fmt: $(STAMP)
	$(BIN)/ruff format graphc tests tools graphs

bench: $(STAMP)
	$(BIN)/python tools/bench.py
	$(BIN)/python tools/bench_data.py

golden: $(STAMP)
	GRAPHC_REGEN_GOLDEN=1 $(BIN)/python -m pytest tests/test_golden.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
