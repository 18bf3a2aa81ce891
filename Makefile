# Two commands for a fresh clone: `make demo` (install + main job), `make test` (install + tests).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
DOCS_STAMP := $(VENV)/.installed-docs
ENVS_STAMP := $(VENV)/.installed-envs

.PHONY: demo test test-envs test-slow bench bench-full docs clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test,tune,export,safetensors,plots,wandb,tensorboard]"
	touch $@ $(STAMP)

$(ENVS_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test,mujoco,dmc]"
	touch $@ $(STAMP)

$(DOCS_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[docs]"
	touch $@ $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m pathwise.demo

# --max-worker-restart 0: a worker that dies (an XLA compile crash was seen twice in one day, in different tests)
# ends the run at once, naming its test; pytest-xdist 3.8 with --dist loadfile hangs after replacing such a worker
test: $(TEST_STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --max-worker-restart 0

# Gymnasium's MuJoCo tasks and the DeepMind Control Suite: installs the mujoco and dmc extras, then runs the tests
# that `make test` skips without them
test-envs: $(TEST_STAMP) $(ENVS_STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --max-worker-restart 0 tests/test_mujoco.py tests/test_dmc.py
	$(BIN)/python -m pytest -q -m "envs and not slow" tests/test_docs.py

test-slow: $(TEST_STAMP)
	$(BIN)/python -m pytest -q -m slow

# the documentation site (MkDocs Material + mkdocstrings API reference) into site/; any warning fails it
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict --site-dir site

bench: $(TEST_STAMP)
	$(BIN)/python benchmarks/run_all.py --quick

bench-full: $(TEST_STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info runs site
