# Two commands for a fresh clone: `make demo` (install + main job), `make test` (install + tests).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test test-slow bench bench-full clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test,tune,export,safetensors,plots,wandb]"
	touch $@ $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m pathwise.demo

test: $(TEST_STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

test-slow: $(TEST_STAMP)
	$(BIN)/python -m pytest -q -m slow

bench: $(TEST_STAMP)
	$(BIN)/python benchmarks/run_all.py --quick

bench-full: $(TEST_STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info runs
