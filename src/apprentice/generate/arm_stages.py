"""The per-arm view of a multi-arm task's subtasks and source demos, for generation.

A multi-arm task (`envs.arms.MultiArmTask`) lists `ArmSubtask`s: each arm's stages in order,
some of them joined across arms into sync groups (DexMimicGen's coordination subtasks). This
module checks such a declaration, splits it into per-arm stage lists and sync groups, and
gives each arm of a source demo its own datagen_info (its eef pose, the target pose its share
of the action commands, its gripper action), recomputed from the stored simulator states:
the stored datagen_info follows the single-arm view (arm 0) of `Task`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from apprentice.data.episode import DatagenInfo
from apprentice.envs.arms import ArmSubtask, MultiArmTask
from apprentice.envs.base import Subtask, Task
from apprentice.errors import ApprenticeError


@dataclass(frozen=True)
class ArmStage:
    """One stage of one arm: where it sits in the task's list and in its arm's."""

    index: int
    """Position in `task.subtasks` (the subtask number failures and provenance use)."""
    arm: int
    position: int
    """Position in its arm's list of stages."""
    subtask: ArmSubtask


@dataclass(frozen=True)
class SyncGroup:
    """The stages of one coordination group, one per arm, and the object that moves them."""

    name: str
    stages: tuple[ArmStage, ...]
    object: str | None
    """The reference object of the group's one transform: the object its stages name (those
    naming none follow it)."""


@dataclass(frozen=True)
class ArmPlan:
    """A multi-arm task's subtasks as generation runs them: per arm, per sync group."""

    arms: tuple[tuple[ArmStage, ...], ...]
    groups: dict[str, SyncGroup]


def arm_plan(task: Task, subtasks: Sequence[Subtask]) -> ArmPlan:
    """Split a multi-arm task's subtasks per arm and per sync group, or raise ApprenticeError
    saying what in the declaration is wrong.

    Each arm needs at least one stage (that each arm's list reads like a single-arm task's,
    `source.check_subtasks` checks). A sync group holds at most one stage per arm,
    of at least two arms, all ending on the same signal with the same offsets and naming one
    reference object; and groups come in the same order on every arm, otherwise the arms
    would wait for each other for ever.
    """
    n_arms = int(getattr(task, "n_arms", 1))
    stages: list[list[ArmStage]] = [[] for _ in range(n_arms)]
    for i, sub in enumerate(subtasks):
        if not isinstance(sub, ArmSubtask) or not 0 <= sub.arm < n_arms:
            raise ApprenticeError(
                f"task {task.name!r} has {n_arms} arms: subtask {i} must be an "
                f"apprentice.envs.arms.ArmSubtask with arm in 0..{n_arms - 1}, got {sub!r}"
            )
        stages[sub.arm].append(ArmStage(i, sub.arm, len(stages[sub.arm]), sub))
    for arm, own in enumerate(stages):
        if not own:
            raise ApprenticeError(f"task {task.name!r}: arm {arm} has no subtask")
    members: dict[str, list[ArmStage]] = {}
    for own in stages:
        for stage in own:
            if stage.subtask.sync is not None:
                members.setdefault(stage.subtask.sync, []).append(stage)
    groups = {name: _sync_group(task.name, name, group) for name, group in members.items()}
    orders = [[s.subtask.sync for s in own if s.subtask.sync is not None] for own in stages]
    for a, order_a in enumerate(orders):
        for b, order_b in enumerate(orders[a + 1 :], start=a + 1):
            shared = [g for g in order_a if g in order_b]
            if shared != [g for g in order_b if g in order_a]:
                raise ApprenticeError(
                    f"task {task.name!r}: arms {a} and {b} meet in sync groups in different "
                    f"orders ({order_a} and {order_b}), so each would wait for the other"
                )
    return ArmPlan(tuple(tuple(own) for own in stages), groups)


def _sync_group(task_name: str, name: str, stages: list[ArmStage]) -> SyncGroup:
    where = f"task {task_name!r}: sync group {name!r}"
    arms = [s.arm for s in stages]
    if len(set(arms)) != len(arms) or len(arms) < 2:
        raise ApprenticeError(
            f"{where} needs one stage on each of at least two arms, got arms {arms}"
        )
    first = stages[0].subtask
    for s in stages[1:]:
        if (s.subtask.term_signal, s.subtask.term_offset) != (first.term_signal, first.term_offset):
            raise ApprenticeError(
                f"{where}: its stages end together, so they need one term_signal and "
                f"term_offset; subtasks {stages[0].index} and {s.index} differ"
            )
    objects = sorted({s.subtask.object for s in stages if s.subtask.object is not None})
    if len(objects) > 1:
        raise ApprenticeError(
            f"{where}: its stages move by one object's transform, but name {objects}"
        )
    return SyncGroup(name, tuple(stages), objects[0] if objects else None)


def arm_datagen_infos(
    task: MultiArmTask, info: DatagenInfo, states: np.ndarray, actions: np.ndarray
) -> tuple[DatagenInfo, ...]:
    """Each arm's datagen_info of a demo: its eef pose and commanded target pose (T, 4, 4),
    replayed from the stored states (T, S) and actions (T, A), and its gripper action (T, 1);
    the object poses and subtask signals (the scene's) are those of `info`."""
    t = actions.shape[0]
    eef = np.empty((task.n_arms, t, 4, 4))
    target = np.empty((task.n_arms, t, 4, 4))
    for step, (state, action) in enumerate(zip(states, actions, strict=True)):
        task.set_state(state)
        for arm in range(task.n_arms):
            eef[arm, step] = task.eef_pose(arm)
            target[arm, step] = task.action_to_target_pose(action, arm)
    return tuple(
        DatagenInfo(
            eef[arm],
            target[arm],
            np.asarray(actions[:, dims][:, -1:], dtype=np.float32),
            info.object_poses,
            info.subtask_term_signals,
        )
        for arm, dims in enumerate(task.arm_actions)
    )
