# Two commands set everything up: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch is pinned here: the CPU build of 2.13.0 is what these machines install from disk;
# an unpinned torch can pull a multi-GB CUDA build.
TORCH  := torch==2.13.0
export MUJOCO_GL ?= egl

.PHONY: demo test venv dev bench clean robosuite test-robosuite

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

# robosuite 1.5.x needs mujoco<3.10 while the main venv has the newest mujoco: the extra gets
# its own venv. `make robosuite` builds it; `make test-robosuite` runs the env tests there.
RS_VENV := .venv-robosuite
RS_BIN  := $(RS_VENV)/bin

$(RS_BIN)/python:
	$(PYTHON) -m venv $(RS_VENV)
	$(RS_BIN)/pip install -q --upgrade pip

# robomimic 0.3.0 is there only for tests/envs/test_robosuite.py's check that it builds the
# envs from our env_args; --no-deps: its setup.py pulls torchvision and egl_probe, which that
# path never uses.
robosuite: $(RS_BIN)/python
	$(RS_BIN)/pip install -q $(TORCH)
	$(RS_BIN)/pip install -q -e '.[dev,robosuite]'
	$(RS_BIN)/pip install -q --no-deps robomimic==0.3.0

test-robosuite: robosuite
	OMP_NUM_THREADS=1 $(RS_BIN)/pytest -q tests/envs

clean:
	rm -rf $(VENV) $(RS_VENV) runs build *.egg-info
