"""`apprentice annotate`: recompute datagen_info of stored demos by replaying their states.

Demos recorded on a built-in task carry datagen_info already. A file recorded elsewhere (a
teleoperation tool, an older version, a converted dataset) holds states and actions only;
replaying each stored state through the task gives back the eef and object poses, the target
pose each action commanded, and the subtask signals. Where a task's signals cannot tell the
subtask boundaries, they can be given by hand: a JSON file {"demo_0": [52, 118], ...} with,
per demo, the step at which each subtask but the last ends.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from apprentice.collect.record import DatagenRecorder
from apprentice.data.episode import DatagenInfo
from apprentice.data.reader import DemoFile
from apprentice.data.store import write_datagen_info
from apprentice.envs.base import Task, make_task_from_env_args
from apprentice.errors import ApprenticeError
from apprentice.generate.source import check_subtasks


@dataclass(frozen=True)
class AnnotateConfig:
    """Recompute datagen_info (poses, target poses, subtask signals) by replaying stored states."""

    source: str = "demos.hdf5"
    """The demo file to annotate, in place (crash-safely, one demo at a time)."""
    marks: str | None = None
    """JSON file {demo: [step, ...]}: where each subtask but the last ends, per demo; these
    replace the task's own signals as the subtask boundaries."""
    overwrite: bool = False
    """Recompute demos that have datagen_info already (otherwise they are left as they are)."""
    progress: bool = True
    """Show a progress bar."""


@dataclass(frozen=True)
class AnnotateResult:
    path: Path
    annotated: int
    kept: int
    """Demos left alone because they had datagen_info already."""


def replay_datagen_info(task: Task, states: np.ndarray, actions: np.ndarray) -> DatagenInfo:
    """datagen_info of a demo, recomputed from its states (T, S) and actions (T, A)."""
    recorder = DatagenRecorder()
    for state, action in zip(states, actions, strict=True):
        task.set_state(state)
        recorder.add(task, action)
    return recorder.build(actions)


def read_marks(path: str | os.PathLike[str]) -> dict[str, list[int]]:
    p = Path(path)
    try:
        raw = json.loads(p.read_text())
    except FileNotFoundError:
        raise ApprenticeError(f"{p}: no such marks file") from None
    except json.JSONDecodeError as e:
        raise ApprenticeError(f"{p}: not JSON ({e})") from None
    if not isinstance(raw, dict):
        raise ApprenticeError(f"{p}: expected {{demo: [step, ...]}}, got {type(raw).__name__}")
    marks: dict[str, list[int]] = {}
    for demo, steps in raw.items():
        if not isinstance(steps, list) or not all(
            isinstance(s, int) and not isinstance(s, bool) for s in steps
        ):
            raise ApprenticeError(f"{p}: {demo}: expected a list of step indices, got {steps!r}")
        marks[demo] = steps
    return marks


def apply_marks(
    info: DatagenInfo, steps: list[int], signal_names: list[str], where: str
) -> DatagenInfo:
    """Replace the terminating signals with step functions that turn on at the marked steps."""
    t = info.target_pose.shape[0]
    if len(steps) != len(signal_names):
        raise ApprenticeError(
            f"{where}: {len(steps)} marks, but the task has {len(signal_names)} subtask "
            f"boundaries ({', '.join(signal_names)})"
        )
    if steps != sorted(set(steps)) or (steps and not (0 < steps[0] and steps[-1] < t)):
        raise ApprenticeError(f"{where}: marks {steps} must increase strictly within (0, {t})")
    signals = dict(info.subtask_term_signals)
    for name, step in zip(signal_names, steps, strict=True):
        signals[name] = (np.arange(t) >= step).astype(np.int8)
    return DatagenInfo(
        info.eef_pose, info.target_pose, info.gripper_action, info.object_poses, signals
    )


def annotate(cfg: AnnotateConfig) -> AnnotateResult:
    path = Path(cfg.source)
    marks = read_marks(cfg.marks) if cfg.marks is not None else None
    with DemoFile(path) as f:
        env_args = f.env_args
        names = f.demo_names
        has_info = {n for n in names if f.read_datagen_info(n) is not None}
    try:
        task = make_task_from_env_args(env_args)
    except ApprenticeError as e:
        raise ApprenticeError(
            f"{path}: cannot annotate: its demos' task cannot be rebuilt ({e})"
        ) from None
    subtasks = check_subtasks(task)
    boundaries = [s.term_signal for s in subtasks if s.term_signal is not None]
    if marks is not None:
        unknown = sorted(set(marks) - set(names))
        if unknown:
            raise ApprenticeError(f"{cfg.marks}: marks for demos not in {path}: {unknown[:5]}")
    todo = [n for n in names if cfg.overwrite or n not in has_info]
    for name in tqdm(todo, desc=f"annotate {path.name}", disable=not cfg.progress):
        with DemoFile(path) as f:
            has_states = "states" in f.fields(name)
            states = f.read_field(name, "states") if has_states else np.zeros((0, 0))
            actions = f.read_field(name, "actions")
        if states.ndim != 2 or states.shape[1] == 0:
            raise ApprenticeError(
                f"{path}: data/{name}/states is missing or empty; without simulator states "
                "the demo cannot be replayed to recompute datagen_info"
            )
        info = replay_datagen_info(task, states, actions)
        if marks is not None and name in marks:
            info = apply_marks(info, marks[name], boundaries, f"{cfg.marks}: {name}")
        write_datagen_info(path, name, info, replace=name in has_info)
    task.close()
    return AnnotateResult(path, len(todo), len(names) - len(todo))
