"""Every command block of README.md runs, at a tiny size, in a temporary folder.

Each README section with ```bash or ```python blocks is one test. Its blocks run in order, in
one folder, as a reader would type them: `collect` writes the file that `train` reads. Every
line is either run or skipped with a reason from `SKIP_LINES` / `COMMANDS` below; every flag
of a run line is either shrunk (`SIZES`) or kept (`KEEP`); every file a line reads is written
by an earlier line of its section or made by `GIVENS`. A `collect` line whose file a `train
--recipe` line of its section reads keeps its `--n` (`RECIPE_DATA_KEEP`): the recipe refuses
fewer demos. A line, flag or file no rule covers fails the test, naming the line and the table
to extend, so the README cannot drift from the code. Skipped `apprentice` lines are still
parsed by the CLI's own parser.

Optional parts in brackets (`[--camera]`) run twice where `OPTIONAL` says so: without the
option in the section's folder, and with it in a copy of that folder as it was before the
line. `apprentice serve` runs in a subprocess until its section ends (the python client
block talks to it), then is stopped with SIGTERM and must exit 0.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from apprentice.cli.main import build_parser, main

README = Path(__file__).resolve().parents[1] / "README.md"

# ---------------------------------------------------------------------------------------------
# The rules. A README line that none of them covers fails the test.

SKIP_LINES: list[tuple[str, str]] = [
    (r"^pip install ", "installs packages (the test runs in the dev environment)"),
    (r"^wandb sync ", "uploads to W&B (needs network)"),
    (
        r"^torchrun ",
        "starts several processes; tests/algos/test_distributed.py runs torchrun -m apprentice "
        "train",
    ),
    (
        r"^make (demo|test)\b",
        "set-up targets: `make demo` is the full-size quickstart, `make test` runs this suite",
    ),
    (r"^make (robosuite|test-robosuite)\b", "needs the robosuite venv (`make robosuite`)"),
    (
        r"^\.venv-robosuite/bin/apprentice ",
        "needs the robosuite venv (`make robosuite`); its flags are still parsed",
    ),
    (
        r"^python benchmarks/train_experts\.py ",
        "trains an SB3 expert for minutes; GIVENS makes a tiny one at the path the next line reads",
    ),
    (
        r"^python examples/",
        "the example drives a server for many episodes; tests/deploy covers the control loop",
    ),
]
"""(regex on the joined line, reason): lines that are not run."""

RUN, SERVE = "run", "serve"
COMMANDS: dict[str, str] = {
    "quickstart": RUN,
    "collect": RUN,
    "inspect": RUN,
    "convert": RUN,
    "train": RUN,
    "pretrain-encoder": RUN,
    "recipes": RUN,
    "eval": RUN,
    "replay": RUN,
    "filter": RUN,
    "generate": RUN,
    "annotate": RUN,
    "dagger": RUN,
    "harden": RUN,
    "irl": RUN,
    "label-actions": RUN,
    "retarget": RUN,
    "export": RUN,
    "sweep": RUN,
    "serve": SERVE,
    "teleop": "skipped: needs a person at a device (the browser page, the terminal's "
    "keyboard, a gamepad); its flags are still parsed",
}
"""How each `apprentice <command>` line runs: in-process through `main(argv)`, as a server
started and stopped around the rest of its section, or skipped with the reason given."""

SIZES: dict[str, str] = {
    "n": "4",
    "demos": "2",
    "episodes": "1",
    "workers": "1",
    "videos": "1",
    "epochs": "1",
    "steps-per-epoch": "2",
    "batch-size": "4",
    "rounds": "1",
    "episodes-per-round": "1",
    "init-episodes": "2",
    "eval-episodes": "1",
    "validation-episodes": "1",
    "env-steps": "256",
    "eval-every": "128",
    "exploration-steps": "200",
    "idm-steps": "10",
    "labelled-steps": "100",
    "check-samples": "20",
    "max-demos": "1",
    "port": "0",
}
"""Flag (by its last dotted part, so `--train.epochs` is `epochs`) -> the tiny value used."""

KEEP: set[str] = {
    "task", "out", "policy", "dataset", "source", "algo", "expert", "method", "beta-schedule",
    "rl-algo", "format", "json", "video", "min-score", "train-mask", "valid-mask", "operator",
    "device", "noise", "shield", "host", "marks", "camera", "scores", "split", "strip",
    "stop-on-success", "backend", "demo", "recipe", "action-noise", "lr", "image-key",
    "target-key", "to", "lossless", "wandb", "spec", "make-tracks", "from-video", "latent",
}  # fmt: skip
"""Flags whose README value is used as it is (names, paths, switches, thresholds)."""

DEMOS_FLAG_IS_A_PATH = {"irl", "label-actions"}
"""Commands whose `--demos` names a file (quickstart's `--demos` is a count, in SIZES)."""

LAST_POSITIONAL_IS_AN_OUTPUT = {"convert"}
"""Commands whose second positional argument is what they write (`convert SRC DST`)."""

POSITIONAL_IS_A_NAME = {"recipes"}
"""Commands whose positional argument names a thing of the package (a recipe), not a file
the line reads."""

RECIPE_DATA_KEEP = frozenset({"n"})
"""Flags a `collect` line keeps as the README gives them when a `train --recipe` line of its
section reads the file it writes: the recipe refuses fewer demos than its data command makes
(lift's 200 take about 10 s on one core; the training itself is still shrunk by APPEND)."""

LISTS: dict[str, list[str] | None] = {
    "tasks": None,
    "policies": None,
    "recipes": None,
    "demos": ["2"],
    "seeds": ["0"],
}
"""Flags of several values that are not key=value items (a sweep's grid): flag -> the tiny
values used, or None to keep the README's."""

KEY_VALUES: dict[str, dict[str, str | None]] = {
    "policy-args": {
        "hidden_dim": None,
        "image_keys": None,
        "obs_keys": None,
        "rnn_horizon": None,
        "encoder_checkpoint": None,
        "freeze_encoder": None,
    },
    "task-args": {
        "variant": None,
        "light": None,
        "camera": None,
        "friction": None,
        "latency": None,
    },
    "sweep": {"light": None, "camera": None},
    "camera-args": {"random_shift": None},
    "algo-args": {
        "eps": None,
        "alpha": None,
        "grad_penalty": None,
        "rl_steps": "64",
        "rollouts": "1",
        "rounds": "1",
        "disc_updates": "1",
    },
}
"""key=value lists: key -> tiny value, or None to keep the README's value."""

APPEND: dict[str, dict[str, str]] = {
    "collect": {"workers": "1"},
    "pretrain-encoder": {"steps": "3", "batch-size": "4", "threads": "1"},
    "train": {
        "epochs": "1", "steps-per-epoch": "2", "batch-size": "4", "eval-every": "0",
        "threads": "1",
    },
    "dagger": {
        "rounds": "1", "episodes-per-round": "1", "epochs": "1", "steps-per-epoch": "2",
        "batch-size": "4", "init-episodes": "2", "eval-episodes": "1", "threads": "1",
    },
    "irl": {"env-steps": "256", "eval-episodes": "1"},
    "label-actions": {"idm-steps": "10", "exploration-steps": "200", "latent-steps": "5"},
    "export": {"check-samples": "20"},
    "eval": {"episodes": "1", "workers": "1"},
    "harden": {"episodes": "1", "demos": "2", "epochs": "1", "workers": "1"},
    "sweep": {
        "demos": "2", "seeds": "0", "episodes": "1", "epochs": "1", "steps-per-epoch": "2",
        "batch-size": "4", "eval-every": "0", "workers": "1", "eval-envs": "1",
    },
    "replay": {"size": "48"},
    "quickstart": {
        "demos": "2", "epochs": "1", "steps-per-epoch": "2", "eval-episodes": "1",
        "workers": "1", "threads": "1",
    },
}  # fmt: skip
"""Flags added to a command's line when the line does not give them (the defaults are sized
for real runs)."""

APPEND_ALGO_ARGS: dict[str, dict[str, str]] = {
    "maxent on gridworld": {"max_iters": "1", "num_demos": "2"},
    "apprenticeship on gridworld": {"max_iters": "2", "num_demos": "2"},
    "apprenticeship": {"max_iters": "2", "rl_steps": "64", "rollouts": "1"},
    "gail": {"rollout_steps": "64", "n_envs": "1", "ppo_epochs": "1", "disc_batch": "32"},
    "airl": {"rollout_steps": "64", "n_envs": "1", "sac_learning_starts": "32",
             "disc_batch": "32"},
    "gaifo": {"rollout_steps": "64", "n_envs": "1", "ppo_epochs": "1", "disc_batch": "32"},
    "bco": {"idm_steps": "10", "train.epochs": "1", "train.steps_per_epoch": "2",
            "train.batch_size": "4"},
    "bc-rl": {"bc_steps": "5", "n_steps": "64", "batch_size": "32", "n_epochs": "1"},
}  # fmt: skip
"""`--algo-args` added per `irl --algo` (`ALGO on gridworld` for a tabular task) when the
line does not set the key."""

OPTIONAL: dict[str, str | None] = {
    "--camera": None,
    "--task-args": None,
    "--shield": None,
    "--marks": None,
    "--backend": "starts a Ray cluster (tens of seconds, gigabytes); tests/generate runs "
    "the ray backend",
    "--host": "would expose the server on every interface of the test machine",
}
"""A bracketed option -> None to also run the line with it, or why it is not run."""

INPUT_FLAGS = {
    "dataset", "demos", "source", "expert", "marks", "idm", "spec", "make-tracks", "from-video",
}  # fmt: skip
OUTPUT_FLAGS = {"out", "json", "video", "failed-out"}
PATH_SUFFIXES = (".hdf5", ".pt", ".zip", ".json", ".onnx", ".mp4", ".toml")

TOKEN = "readme-test-token"
EXPORTS: dict[str, str] = {"APPRENTICE_TOKEN": TOKEN, "WANDB_MODE": "offline"}
"""`export NAME=...` lines: NAME gets this value for the rest of its section."""

XFAIL: dict[str, tuple[str, str]] = {}
"""Sections known to fail -> (text the failure must contain, the defect). Strict: another
failure fails, and a section that passes fails until its entry is removed."""


# ---------------------------------------------------------------------------------------------
# Files the README reads without making them first.


def _cli(*argv: str) -> None:
    assert main(list(argv)) == 0, f"making a given: apprentice {' '.join(argv)} failed"


def _lift_demos(out: Path) -> None:
    _cli("collect", "--task", "lift", "--n", "2", "--out", str(out), "--workers", "1")


def _lift_rnn(out: Path) -> None:
    demos = out.parent / "lift.hdf5"
    _lift_demos(demos)
    _cli("train", "--dataset", str(demos), "--policy", "rnn", "--out", str(out.parent / "run"),
         *_append_argv("train", set()))  # fmt: skip
    shutil.copy(out.parent / "run" / "best.pt", out)


def _lift_rnn_run(out: Path) -> None:
    demos = out.parent / "lift.hdf5"
    _lift_demos(demos)
    _cli("train", "--dataset", str(demos), "--policy", "rnn", "--out", str(out),
         *_append_argv("train", set()))  # fmt: skip


def _grid_demos(out: Path) -> None:
    from apprentice.irl.tabular import record_gridworld_demos

    record_gridworld_demos("gridworld/16x16", out, n=2)


def _pendulum_demos(out: Path) -> None:
    from apprentice.irl.envs import record_expert_demos

    record_expert_demos("gym/InvertedPendulum-v5", "pd", n=2, out=out)


def _pendulum_states(out: Path) -> None:
    demos = out.parent / "ip.hdf5"
    _pendulum_demos(demos)
    _cli("label-actions", "--demos", str(demos), "--strip", "--out", str(out))


def _lift_videos(out: Path) -> None:
    # One mp4 of agentview frames per camera demo, as a camera would leave them.
    from apprentice.collect.replay import write_video
    from apprentice.data import DemoFile

    demos = out.parent / "camera.hdf5"
    _cli("collect", "--task", "lift", "--camera", "--n", "2", "--out", str(demos),
         "--workers", "1")  # fmt: skip
    with DemoFile(demos) as f:
        for name in f.demo_names:
            ep = f.read(name, obs_keys=["agentview_image"])
            frames = [*ep.obs["agentview_image"], ep.next_obs["agentview_image"][-1]]
            write_video(out / f"{name}.mp4", frames)


def _pendulum_expert(out: Path) -> None:
    # An untrained PPO model with the record train_experts.py writes beside it: the expert
    # only has to load and label, not to be good.
    import gymnasium as gym
    from stable_baselines3 import PPO

    PPO("MlpPolicy", gym.make("InvertedPendulum-v5"), n_steps=64, seed=0).save(out)
    record = {"env_name": "gym/InvertedPendulum-v5", "algo": "ppo", "expert_return": 1000.0,
              "random_return": 5.0}  # fmt: skip
    out.with_suffix(".json").write_text(json.dumps(record))


def _marks(out: Path) -> None:
    # One mark per demo of the lift file `other.hdf5` (lift has two subtasks): its middle step.
    import h5py

    with h5py.File(out.parent / "other.hdf5", "r") as f:
        marks = {name: [int(f["data"][name].attrs["num_samples"]) // 2] for name in f["data"]}
    out.write_text(json.dumps(marks))


GIVENS: dict[str, Callable[[Path], None]] = {
    "demos.hdf5": _lift_demos,
    "lift.hdf5": _lift_demos,
    "other.hdf5": _lift_demos,
    "runs/lift-rnn/best.pt": _lift_rnn,
    "runs/lift-rnn": _lift_rnn_run,
    "grid.hdf5": _grid_demos,
    "ip.hdf5": _pendulum_demos,
    "states.hdf5": _pendulum_states,
    "videos/": _lift_videos,
    "benchmarks/out/experts/InvertedPendulum-v5.zip": _pendulum_expert,
    "marks.json": _marks,
}
"""A path the README reads that no earlier line of its section writes -> how to make it,
tiny, at that path in the section's folder (before the line that first reads it)."""


# ---------------------------------------------------------------------------------------------
# Reading the README.


@dataclass
class Line:
    lineno: int
    text: str


@dataclass
class Block:
    lang: str
    lineno: int
    body: str
    lines: list[Line] = field(default_factory=list)


def _read_sections() -> dict[str, list[Block]]:
    sections: dict[str, list[Block]] = {}
    heading, block = "(top)", None
    for i, raw in enumerate(README.read_text().splitlines(), start=1):
        if block is None:
            if raw.startswith("#") and not raw.startswith("#!"):
                heading = raw.lstrip("#").strip()
            elif raw.startswith("```"):
                block = Block(raw[3:].strip(), i, "")
            continue
        if raw.startswith("```"):
            if block.lang in ("bash", "python"):
                sections.setdefault(heading, []).append(block)
            block = None
            continue
        block.body += raw + "\n"
        if block.lang == "bash":
            if block.lines and block.lines[-1].text.endswith("\\"):
                block.lines[-1].text = block.lines[-1].text[:-1].rstrip() + " " + raw.strip()
            elif raw.strip():
                block.lines.append(Line(i, raw.strip()))
    return sections


SECTIONS = _read_sections()


# ---------------------------------------------------------------------------------------------
# Turning a README line into the argv that runs.


@functools.cache
def _parser() -> argparse.ArgumentParser:
    return build_parser()


def _subparser(command: str) -> argparse.ArgumentParser:
    for action in _parser()._subparsers._group_actions:  # type: ignore[union-attr]
        if isinstance(action, argparse._SubParsersAction):
            sub: argparse.ArgumentParser = action.choices[command]
            return sub
    raise AssertionError("apprentice has no subcommands")


def _leaf(option: str) -> str:
    return option.lstrip("-").split(".")[-1]


def _option(command: str, leaf: str) -> str:
    """The option string of `command` whose last dotted part is `leaf` (`--epochs` or a
    nested `--train.epochs`)."""
    options = [o for o in _subparser(command)._option_string_actions if o.startswith("--")]
    if f"--{leaf}" in options:
        return f"--{leaf}"
    found = [o for o in options if _leaf(o) == leaf and not o.startswith("--no-")]
    assert len(found) == 1, f"apprentice {command} has no single option named {leaf!r}: {found}"
    return found[0]


def _append_argv(command: str, given: set[str]) -> list[str]:
    argv: list[str] = []
    for leaf, value in APPEND.get(command, {}).items():
        if leaf not in given:
            argv += [_option(command, leaf), value]
    return argv


@dataclass
class Command:
    """One runnable `apprentice` line after substitution."""

    argv: list[str]
    inputs: list[str]
    outputs: list[str]


def _is_path(value: str) -> bool:
    return "/" in value or value.endswith(PATH_SUFFIXES)


def _shrink_key_values(flag: str, values: list[str], where: str) -> list[str]:
    rules = KEY_VALUES.get(_leaf(flag))
    assert rules is not None, f"{where}: {flag} takes key=value items; add it to KEY_VALUES"
    out = []
    for item in values:
        key, sep, value = item.partition("=")
        assert sep, f"{where}: {flag} item {item!r} is not key=value"
        assert key in rules, f"{where}: no rule for {flag} {key}=...; add it to KEY_VALUES"
        tiny = rules[key]
        out.append(f"{key}={value if tiny is None else tiny}")
    return out


def substitute(tokens: list[str], where: str, keep: frozenset[str] = frozenset()) -> Command:
    """README tokens after `apprentice` -> the tiny argv, with the paths it reads and writes;
    the flags in `keep` keep their README values."""
    command, rest = tokens[0], tokens[1:]
    parser = _subparser(command)
    actions = parser._option_string_actions
    argv, inputs, outputs, given = [command], [], [], set()
    i, positionals = 0, 0
    while i < len(rest):
        token = rest[i]
        i += 1
        if token == "...":
            continue
        assert not re.fullmatch(r"<[^>]*>", token), (
            f"{where}: placeholder {token}; give it a value in GIVENS or SIZES"
        )
        if not token.startswith("--"):
            argv.append(token)  # a positional: the file or checkpoint the command reads
            positionals += 1
            if command in LAST_POSITIONAL_IS_AN_OUTPUT and positionals == 2:
                outputs.append(token)
            elif command not in POSITIONAL_IS_A_NAME:
                inputs.append(token)
            continue
        flag, eq, inline = token.partition("=")
        assert flag in actions, f"{where}: apprentice {command} has no option {flag}"
        action, leaf = actions[flag], _leaf(flag)
        if action.nargs == 0:
            assert leaf.removeprefix("no-") in KEEP, f"{where}: no rule for {flag}; add to KEEP"
            argv.append(flag)
            continue
        if action.nargs in ("*", "+"):
            values = []
            while i < len(rest) and not rest[i].startswith("--"):
                values.append(rest[i])
                i += 1
            if leaf in LISTS:
                argv += [flag, *(LISTS[leaf] or values)]
            else:
                argv += [flag, *_shrink_key_values(flag, values, where)]
            given.add(leaf)
            continue
        if eq:
            value = inline
        else:
            assert i < len(rest), f"{where}: {flag} has no value"
            value, i = rest[i], i + 1
        given.add(leaf)
        demos_is_path = leaf == "demos" and command in DEMOS_FLAG_IS_A_PATH
        if leaf in SIZES and not demos_is_path and leaf not in keep:
            value = SIZES[leaf]
        else:
            assert leaf in KEEP or leaf in keep or demos_is_path, (
                f"{where}: no rule for {flag} {value}; add it to SIZES or KEEP"
            )
        if (leaf in INPUT_FLAGS and _is_path(value)) or demos_is_path:
            inputs.append(value)
        if leaf in OUTPUT_FLAGS:
            outputs.append(value)
        argv += [flag, value]
    argv[1:1] = _append_argv(command, given)
    if command == "irl":
        argv = _append_algo_args(argv)
    return Command(argv, inputs, outputs)


def _append_algo_args(argv: list[str]) -> list[str]:
    algo_flag, args_flag = _option("irl", "algo"), _option("irl", "algo-args")
    algo = argv[argv.index(algo_flag) + 1]
    if argv[argv.index(_option("irl", "task")) + 1].startswith("gridworld/"):
        algo += " on gridworld"
    extra = APPEND_ALGO_ARGS.get(algo)
    assert extra is not None, f"irl --algo {algo}: add its tiny settings to APPEND_ALGO_ARGS"
    if args_flag not in argv:
        return [*argv, args_flag, *(f"{k}={v}" for k, v in extra.items())]
    start = argv.index(args_flag) + 1
    end = start
    while end < len(argv) and not argv[end].startswith("--"):
        end += 1
    have = {item.partition("=")[0] for item in argv[start:end]}
    more = [f"{k}={v}" for k, v in extra.items() if k not in have]
    return argv[:end] + more + argv[end:]


def _variants(text: str, where: str) -> tuple[str, list[str]]:
    """The line without its bracketed options, and the lines with each one that runs."""
    bracket = r"\s\[(--[^\]]*)\]"
    runs = []
    for match in re.finditer(bracket, text):
        flag = match.group(1).split()[0]
        assert flag in OPTIONAL, f"{where}: [{match.group(1)}] has no rule; add it to OPTIONAL"
        if OPTIONAL[flag] is None:
            with_it = text[: match.start()] + " " + match.group(1) + text[match.end() :]
            runs.append(re.sub(bracket, "", with_it))
    return re.sub(bracket, "", text), runs


# ---------------------------------------------------------------------------------------------
# Running a section.


@dataclass
class Server:
    process: subprocess.Popen[str]
    port: int
    where: str

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            out, _ = self.process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"{self.where}: the server did not stop on SIGTERM") from None
        assert self.process.returncode == 0, (
            f"{self.where}: serve exited with {self.process.returncode} on SIGTERM:\n{out}"
        )


def _start_server(argv: list[str], cwd: Path, env: dict[str, str], where: str) -> Server:
    process = subprocess.Popen(
        [sys.executable, "-m", "apprentice.cli.main", *argv],
        cwd=cwd,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen = []
    assert process.stdout is not None
    for out in process.stdout:
        seen.append(out)
        match = re.search(r"on ws://[^:]+:(\d+)", out)
        if match:
            return Server(process, int(match.group(1)), where)
    process.wait(timeout=30)
    raise AssertionError(f"{where}: serve exited ({process.returncode}) before serving:\n"
                         + "".join(seen))  # fmt: skip


@dataclass
class Section:
    name: str
    cwd: Path
    env: dict[str, str]
    capsys: pytest.CaptureFixture[str]
    produced: set[str] = field(default_factory=set)
    servers: list[Server] = field(default_factory=list)
    namespace: dict[str, Any] = field(default_factory=dict)
    readme_ports: dict[str, int] = field(default_factory=dict)
    variants: int = 0
    recipe_data: set[str] = field(default_factory=set)
    """Files that `train --recipe` lines of the section read (see RECIPE_DATA_KEEP)."""

    def has(self, path: str) -> bool:
        return any(path == p or path.startswith(p.rstrip("/") + "/") for p in self.produced)

    def give(self, path: str, where: str) -> None:
        assert path in GIVENS, (
            f"{where}: reads {path}, which no earlier line of its section writes; "
            "add a recipe to GIVENS"
        )
        target = self.cwd / path
        target.parent.mkdir(parents=True, exist_ok=True)
        with _chdir(self.cwd):
            GIVENS[path](target)
        self.produced.add(path)

    def run_line(self, line: Line, block: int) -> None:
        where = f"README.md:{line.lineno} ({self.name!r}, block {block}): {line.text}"
        text = line.text
        if text.startswith("#"):
            return  # a comment line
        export = re.match(r"^export (\w+)=", text)
        if export:
            name = export.group(1)
            assert name in EXPORTS, f"{where}: add a value for ${name} to EXPORTS"
            self.env[name] = EXPORTS[name]
            return
        for pattern, _reason in SKIP_LINES:
            if re.search(pattern, text):
                tokens = shlex.split(re.sub(r"\s\[--[^\]]*\]", "", text), comments=True)
                if tokens[0].endswith("/apprentice"):
                    _subparser(tokens[1]).parse_args(tokens[2:])
                return
        base, optional = _variants(text, where)
        tokens = shlex.split(base, comments=True)
        assert tokens[0] == "apprentice", f"{where}: no rule for this line; add one to SKIP_LINES"
        rule = COMMANDS.get(tokens[1])
        assert rule is not None, f"{where}: no rule for `apprentice {tokens[1]}` in COMMANDS"
        if rule not in (RUN, SERVE):
            _subparser(tokens[1]).parse_args(tokens[2:])
            return
        command = substitute(tokens[1:], where)
        if tokens[1] == "collect" and self.recipe_data & set(command.outputs):
            command = substitute(tokens[1:], where, keep=RECIPE_DATA_KEEP)
        variants = [substitute(shlex.split(v, comments=True)[1:], where) for v in optional]
        for path in [p for c in (command, *variants) for p in c.inputs]:
            if not self.has(path) and not (self.cwd / path).exists():
                self.give(path, where)
        copies = []
        for variant in variants:
            self.variants += 1
            copy = self.cwd.parent / f"{self.cwd.name}-variant-{self.variants}"
            shutil.copytree(self.cwd, copy)
            copies.append((copy, variant))
        self.execute(command, self.cwd, where, keep_serving=True)
        for copy, variant_command in copies:
            self.execute(variant_command, copy, f"{where} (with its optional part)")
        for path in command.outputs:
            assert (self.cwd / path).exists(), f"{where}: exited 0 but wrote no {path}"
        self.produced.update(command.outputs)

    def execute(self, command: Command, cwd: Path, where: str, keep_serving: bool = False) -> None:
        if COMMANDS[command.argv[0]] == SERVE:
            server = _start_server(command.argv, cwd, self.env, where)
            if keep_serving:
                self.servers.append(server)
                port = re.search(r"--port[= ](\d+)", where)
                if port:
                    self.readme_ports[port.group(1)] = server.port
            else:
                server.stop()
            return
        with _chdir(cwd), _environ(self.env):
            self.capsys.readouterr()
            try:
                code = main(command.argv)
            except SystemExit as e:  # argparse
                code = e.code if isinstance(e.code, int) else 2
            except Exception as e:  # a traceback where the CLI owes one line
                out, err = self.capsys.readouterr()
                raise AssertionError(
                    f"{where}\n  ran: apprentice {' '.join(command.argv)}\n  raised "
                    f"{type(e).__name__}: {e}\n{out}{err}"
                ) from e
            out, err = self.capsys.readouterr()
        assert code == 0, (
            f"{where}\n  ran: apprentice {' '.join(command.argv)}\n  exit {code}\n{out}{err}"
        )

    def run_python(self, block: Block, index: int) -> None:
        where = f"README.md:{block.lineno} ({self.name!r}, python block {index})"
        source = block.body
        for readme_port, port in self.readme_ports.items():
            source = source.replace(f":{readme_port}", f":{port}")
        if not self.namespace:
            self.namespace.update(_python_prelude(self.env))
        with _chdir(self.cwd), _environ(self.env):
            try:
                exec(compile(source, where, "exec"), self.namespace)
            except Exception as e:
                raise AssertionError(f"{where} raised {type(e).__name__}: {e}") from e


def _python_prelude(env: dict[str, str]) -> dict[str, Any]:
    """The names README python blocks take as given: `obs` (a lift observation) and `token`."""
    from apprentice.envs import make_task

    task = make_task("lift")
    obs, _ = task.reset(seed=0)
    task.close()
    return {"obs": obs, "token": env.get("APPRENTICE_TOKEN")}


class _chdir:
    def __init__(self, path: Path) -> None:
        self.path, self.old = path, Path.cwd()

    def __enter__(self) -> None:
        os.chdir(self.path)

    def __exit__(self, *exc: object) -> None:
        os.chdir(self.old)


class _environ:
    def __init__(self, env: dict[str, str]) -> None:
        self.env, self.old = env, dict(os.environ)

    def __enter__(self) -> None:
        os.environ.update(self.env)

    def __exit__(self, *exc: object) -> None:
        os.environ.clear()
        os.environ.update(self.old)


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    # Commands run in this process; torch's default of one thread per core spins against
    # the other processes of a busy CI machine (an LSTM step: 5 ms on one thread, 100+ on two).
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _new_section(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Section:
    cwd = tmp_path / "readme"
    cwd.mkdir()
    env = {"MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    pythonpath = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pythonpath, os.environ.get("PYTHONPATH")) if p)
    return Section(name, cwd, env, capsys, recipe_data=_recipe_datasets(SECTIONS.get(name, [])))


def _recipe_datasets(blocks: list[Block]) -> set[str]:
    """The files that the `apprentice train --recipe` lines of `blocks` read."""
    found = set()
    for block in blocks:
        for line in block.lines:
            tokens = shlex.split(line.text, comments=True)
            if tokens[:2] == ["apprentice", "train"] and "--recipe" in tokens:
                found.add(tokens[tokens.index("--dataset") + 1])
    return found


def _run_section(section: Section) -> None:
    try:
        for index, block in enumerate(SECTIONS[section.name], start=1):
            if block.lang == "python":
                section.run_python(block, index)
                continue
            for line in block.lines:
                section.run_line(line, index)
    finally:
        for server in section.servers:
            server.stop()


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SECTIONS))
def test_readme_section_runs(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    section = _new_section(name, tmp_path, capsys)
    if name not in XFAIL:
        _run_section(section)
        return
    expected, defect = XFAIL[name]
    try:
        _run_section(section)
    except AssertionError as e:
        if expected not in str(e):
            raise
        pytest.xfail(defect)
    pytest.fail(f"section {name!r} runs now: remove its XFAIL entry ({defect})")


def test_every_rule_is_used() -> None:
    """A rule no README line needs any more is dead weight: the tables stay small."""
    text = README.read_text()
    for path in GIVENS:
        assert path in text, f"GIVENS has {path}, which README.md no longer mentions"
    for name in XFAIL:
        assert name in SECTIONS, f"XFAIL names section {name!r}, which README.md no longer has"
    for flag in OPTIONAL:
        assert f"[{flag}" in text, f"OPTIONAL has {flag}, which no README line brackets"
    for command in POSITIONAL_IS_A_NAME:
        assert f"apprentice {command} " in text, f"no README line runs apprentice {command}"
    assert any(_recipe_datasets(b) for b in SECTIONS.values()), "no README line trains a recipe"


def test_a_flag_without_a_rule_fails() -> None:
    with pytest.raises(AssertionError, match="add it to SIZES or KEEP"):
        substitute(["train", "--dataset", "d.hdf5", "--out", "r", "--seed", "3"], "README.md:1")


def test_a_flag_the_cli_lacks_fails() -> None:
    with pytest.raises(AssertionError, match="apprentice train has no option --out-dir"):
        substitute(["train", "--dataset", "d.hdf5", "--out-dir", "r"], "README.md:1")


def test_sizes_shrink_and_paths_are_tracked() -> None:
    line = "collect --task stack --n 200 --out demos.hdf5 --workers 2 --camera".split()
    command = substitute(line, "README.md:1")
    assert command.argv == [
        "collect", "--task", "stack", "--n", "4", "--out", "demos.hdf5", "--workers", "1",
        "--camera",
    ]  # fmt: skip
    assert command.outputs == ["demos.hdf5"] and command.inputs == []
    kept = substitute(line, "README.md:1", keep=RECIPE_DATA_KEEP)
    assert kept.argv[kept.argv.index("--n") + 1] == "200"
    shown = substitute("recipes lift-lowdim".split(), "README.md:1")
    assert shown.argv == ["recipes", "lift-lowdim"] and shown.inputs == []
    train = substitute("train --dataset demos.hdf5 --out runs/x".split(), "README.md:1")
    assert train.inputs == ["demos.hdf5"]
    assert train.argv[train.argv.index(_option("train", "epochs")) + 1] == "1"


def test_a_line_without_a_rule_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    section = _new_section("test", tmp_path, capsys)
    with pytest.raises(AssertionError, match="add one to SKIP_LINES"):
        section.run_line(Line(1, "curl -O https://example.org/demos.hdf5"), 1)
    with pytest.raises(AssertionError, match="add a recipe to GIVENS"):
        section.run_line(Line(2, "apprentice inspect unknown.hdf5"), 1)
    with pytest.raises(AssertionError, match="add it to OPTIONAL"):
        section.run_line(Line(3, "apprentice inspect x.hdf5 [--progress]"), 1)


def test_flags_named_in_the_prose_exist() -> None:
    """`apprentice train --policy-args ...` in a sentence: each flag is one of the command's."""
    faults = []
    commands = {c: set(_subparser(c)._option_string_actions) for c in COMMANDS}
    prose = re.sub(r"^```.*?^```", "", README.read_text(), flags=re.S | re.M)
    for span in re.findall(r"`([^`]+)`", prose):
        tokens = span.split()
        if tokens and tokens[0] == "apprentice":
            tokens = tokens[1:]
        if len(tokens) < 2 or tokens[0] not in commands:
            continue
        for token in tokens[1:]:
            flag = token.partition("=")[0]
            if flag.startswith("--") and flag not in commands[tokens[0]]:
                faults.append(f"`{span}`: apprentice {tokens[0]} has no option {flag}")
    assert not faults, "\n".join(faults)
