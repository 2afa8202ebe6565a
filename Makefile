# Two commands set everything up: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch is pinned here: the CPU build of 2.13.0 is what these machines install from disk;
# an unpinned torch can pull a multi-GB CUDA build.
TORCH  := torch==2.13.0
export MUJOCO_GL ?= egl

.PHONY: demo test venv dev bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

venv: $(BIN)/python
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e .

dev: $(BIN)/python
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[dev]'

demo: venv
	$(BIN)/apprentice quickstart

test: dev
	$(BIN)/ruff check --no-cache src tests benchmarks
	$(BIN)/ruff format --check --no-cache src tests benchmarks
	$(BIN)/mypy
	$(BIN)/pytest -q

bench: dev
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs build *.egg-info
