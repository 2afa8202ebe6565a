# Two commands set everything up: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch is pinned here: the CPU build of 2.13.0 is what these machines install from disk;
# an unpinned torch can pull a multi-GB CUDA build.
TORCH  := torch==2.13.0
export MUJOCO_GL ?= egl

.PHONY: demo test venv dev bench clean robosuite test-robosuite lerobot test-lerobot

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

# LeRobot 0.6.1 needs Python >= 3.12 (pyenv has it here) and brings its own torch (2.11): its
# own venv too. `make test-lerobot` checks there that LeRobot's LeRobotDataset loads what
# `apprentice convert` writes, and that apprentice reads what LeRobot's own API writes.
LR_VENV := .venv-lerobot
LR_BIN  := $(LR_VENV)/bin
PY312   ?= $(shell v=$$(pyenv versions --bare 2>/dev/null | grep -E '^3\.1[2-9](\.[0-9]+)?$$' | head -n 1); \
             if [ -n "$$v" ]; then echo "$$(pyenv root)/versions/$$v/bin/python"; \
             else command -v python3.12; fi)

$(LR_BIN)/python:
	@test -n "$(PY312)" || { echo "make lerobot: needs Python >= 3.12 (pyenv install 3.12)"; exit 2; }
	$(PY312) -m venv $(LR_VENV)
	$(LR_BIN)/pip install -q --upgrade pip

lerobot: $(LR_BIN)/python
	$(LR_BIN)/pip install -q 'lerobot[dataset]==0.6.1'
	$(LR_BIN)/pip install -q -e '.[lerobot]' pytest

test-lerobot: lerobot
	OMP_NUM_THREADS=1 $(LR_BIN)/pytest -q -p no:cacheprovider tests/lerobot tests/data/test_lerobot.py

clean:
	rm -rf $(VENV) $(RS_VENV) $(LR_VENV) runs build *.egg-info
