"""Source demos for generation: their datagen_info, cut into the task's subtask segments."""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np

from apprentice.data.episode import DatagenInfo
from apprentice.data.source import DemoSource, open_source
from apprentice.envs.arms import MultiArmTask
from apprentice.envs.base import Subtask, Task
from apprentice.errors import ApprenticeError
from apprentice.generate.arm_stages import arm_datagen_infos, arm_plan


@dataclass(frozen=True)
class SourceDemo:
    """One source demo as generation uses it.

    `ends` holds, for each subtask but the last, the first step at which its terminating
    signal is on: the subtask's segment stops just before it (plus a drawn offset).

    A demo of a multi-arm task has one such view per arm in `arms`, each with the arm's own
    eef pose, target pose and gripper action in its `info` and the `ends` of the arm's list
    of stages; its own `info` is the stored one (arm 0's) and its `ends` are empty.
    """

    name: str
    info: DatagenInfo
    ends: tuple[int, ...]
    arms: tuple[SourceDemo, ...] = ()

    @property
    def length(self) -> int:
        return int(self.info.target_pose.shape[0])

    def segments(self, offsets: Sequence[int]) -> list[tuple[int, int]]:
        """[start, stop) per subtask, each end moved by its offset.

        Ends are clamped so that every segment keeps at least one step and they stay in
        order: an offset never swallows the next subtask.
        """
        bounds = [0]
        k = len(self.ends) + 1
        for i, (end, off) in enumerate(zip(self.ends, offsets, strict=True)):
            lo = bounds[-1] + 1
            hi = self.length - (k - 1 - i)
            bounds.append(int(np.clip(end + off, lo, hi)))
        bounds.append(self.length)
        return list(itertools.pairwise(bounds))

    def object_pose(self, name: str | None, step: int) -> np.ndarray:
        """The reference object's pose at `step` (identity for the world frame)."""
        return np.eye(4) if name is None else self.info.object_poses[name][step]


@dataclass(frozen=True)
class Sources:
    """The usable source demos of a file, and those left out with the reason."""

    path: Path
    demos: list[SourceDemo]
    skipped: dict[str, str] = field(default_factory=dict)


def subtask_ends(signals: dict[str, np.ndarray], subtasks: Sequence[Subtask]) -> tuple[int, ...]:
    """The first step each subtask's terminating signal is on, each after the one before.

    Raises ValueError naming the signal that is missing or never turns on.
    """
    ends: list[int] = []
    prev = 0
    for sub in subtasks[:-1]:
        assert sub.term_signal is not None  # checked by check_subtasks
        if sub.term_signal not in signals:
            raise ValueError(f"no subtask signal {sub.term_signal!r} recorded")
        on = np.flatnonzero(np.asarray(signals[sub.term_signal]).astype(bool)[prev + 1 :])
        if on.size == 0:
            raise ValueError(f"signal {sub.term_signal!r} never turns on after step {prev}")
        prev = prev + 1 + int(on[0])
        ends.append(prev)
    return tuple(ends)


def check_subtasks(task: Task) -> tuple[Subtask, ...]:
    """The task's subtasks, or one clear error saying why it cannot be generated from.

    A multi-arm task's subtasks must also split into per-arm lists and sync groups
    (`arm_stages.arm_plan`), each arm's list checked like a single-arm task's.
    """
    subtasks = tuple(getattr(task, "subtasks", ()))
    if not subtasks:
        raise ApprenticeError(
            f"task {task.name!r} declares no subtasks, so there is nothing to generate from; "
            "list them in its `subtasks` attribute (see apprentice.envs.Subtask)"
        )
    if int(getattr(task, "n_arms", 1)) == 1:
        _check_stage_list(task.name, subtasks, list(range(len(subtasks))), "the")
        return subtasks
    for arm, stages in enumerate(arm_plan(task, subtasks).arms):
        own = [s.subtask for s in stages]
        _check_stage_list(task.name, own, [s.index for s in stages], f"arm {arm}'s")
    return subtasks


def _check_stage_list(
    task_name: str, subtasks: Sequence[Subtask], numbers: Sequence[int], owner: str
) -> None:
    """One list of stages run in order: each ends on a signal but the last, which ends with
    the demo; `numbers` are their subtask numbers, `owner` whose list it is."""
    for i, (number, sub) in enumerate(zip(numbers, subtasks, strict=True)):
        last = i == len(subtasks) - 1
        if last and sub.term_signal is not None:
            raise ApprenticeError(
                f"task {task_name!r}: {owner} last subtask ends with the demo; its term_signal "
                f"must be None, not {sub.term_signal!r}"
            )
        if not last and sub.term_signal is None:
            raise ApprenticeError(
                f"task {task_name!r}: subtask {number} needs a term_signal (only {owner} last "
                "has none)"
            )
        if sub.term_offset[0] > sub.term_offset[1]:
            raise ApprenticeError(
                f"task {task_name!r}: subtask {number} term_offset {sub.term_offset} has lo > hi"
            )


def load_sources(path: str | os.PathLike[str], task: Task) -> Sources:
    """Read the successful demos of `path` that can seed generation on `task`."""
    p = Path(path)
    subtasks = check_subtasks(task)
    with open_source(p) as f:
        env_name = f.env_args.get("env_name")
        if env_name != task.name:
            raise ApprenticeError(
                f"{p}: holds demos of task {env_name!r}, not {task.name!r}; "
                "generate into the task the source demos were recorded on"
            )
        demos, skipped, unannotated = [], {}, []
        for name in f.demo_names:
            if not bool(f.attrs(name).get("success", True)):
                skipped[name] = "not a successful demo"
                continue
            info = f.read_datagen_info(name)
            if info is None:
                unannotated.append(name)
                continue
            where = f"{p}: data/{name}/datagen_info"
            _check_info(info, where)
            needed = {o for sub in subtasks for o in (sub.object, sub.held) if o is not None}
            for obj in sorted(needed - set(info.object_poses)):
                raise ApprenticeError(
                    f"{where}: no pose of object {obj!r}, which task {task.name!r} moves "
                    f"its subtasks with; re-run `apprentice annotate {p} --overwrite` to "
                    "recompute it"
                )
            try:
                if int(getattr(task, "n_arms", 1)) > 1:
                    multi = cast(MultiArmTask, task)
                    demos.append(_multi_arm_demo(multi, subtasks, name, info, f))
                else:
                    ends = subtask_ends(info.subtask_term_signals, subtasks)
                    demos.append(SourceDemo(name, info, ends))
            except ValueError as e:
                skipped[name] = str(e)
    if unannotated and not demos:
        raise ApprenticeError(
            f"{p}: no demo has datagen_info (e.g. {unannotated[0]}); run `apprentice annotate "
            f"{p}` to recompute it by replaying the stored states"
        )
    for name in unannotated:
        skipped[name] = "no datagen_info"
    if not demos:
        reasons = "; ".join(f"{n}: {r}" for n, r in list(skipped.items())[:3])
        raise ApprenticeError(f"{p}: no demo can seed generation ({reasons or 'file is empty'})")
    return Sources(p, demos, skipped)


def _multi_arm_demo(
    task: MultiArmTask,
    subtasks: tuple[Subtask, ...],
    name: str,
    info: DatagenInfo,
    f: DemoSource,
) -> SourceDemo:
    """A multi-arm task's source demo with its per-arm views (see `SourceDemo`); ValueError
    saying why the demo cannot seed generation."""
    states = f.read_states(name)
    if states is None:
        raise ValueError("no simulator states, from which each arm's poses are replayed")
    infos = arm_datagen_infos(task, info, states, f.read_actions(name))
    arms = []
    for arm_info, stages in zip(infos, arm_plan(task, subtasks).arms, strict=True):
        ends = subtask_ends(info.subtask_term_signals, [s.subtask for s in stages])
        arms.append(SourceDemo(name, arm_info, ends))
    return SourceDemo(name, info, (), tuple(arms))


def _check_info(info: DatagenInfo, where: str) -> None:
    t = info.target_pose.shape[0]
    arrays = {
        "eef_pose": info.eef_pose,
        "target_pose": info.target_pose,
        **{f"object_poses/{k}": v for k, v in info.object_poses.items()},
    }
    for key, arr in arrays.items():
        if arr.shape != (t, 4, 4):
            raise ApprenticeError(f"{where}/{key}: expected shape ({t}, 4, 4), got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ApprenticeError(f"{where}/{key}: holds NaN or inf")
    if info.gripper_action.shape != (t, 1):
        raise ApprenticeError(
            f"{where}/gripper_action: expected shape ({t}, 1), got {info.gripper_action.shape}"
        )
    for key, sig in info.subtask_term_signals.items():
        if sig.shape != (t,):
            raise ApprenticeError(
                f"{where}/subtask_term_signals/{key}: expected shape ({t},), got {sig.shape}"
            )
