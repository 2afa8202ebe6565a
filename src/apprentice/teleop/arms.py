"""A task's end-effector action, arm by arm: what a device command or a human defect becomes.

An end-effector task's action (A,) holds one block per arm, in the task's arm order. A
block starts with the eef's delta pose in [-1, 1] (translation, then axis-angle rotation:
robosuite's OSC_POSE layout, which `Task.action_to_target_pose` reads; zero holds the pose)
and ends with the arm's grasp dims; the block's last dim is its grasp level (-1 open ...
+1 closed), what recording keeps as the gripper action. The grasp dims are the task's to
set, from the level, through `Task.target_pose_to_action(pose, level)` (one arm) or
`MultiArmTask.target_poses_to_action(poses, levels)` (several):

    lift, stack, ... (7,)   [delta 6, gripper]
    hand_grasp (26,)        [delta 6, 20 finger targets of the grasp synergy at the level]
    a two-arm task (14,)    [arm 0: delta 6, gripper | arm 1: delta 6, gripper]

Teleop maps device commands through this layout (`session.CommandMapping`), and so do
`interactive.human` (DART's noise-free dims) and `collect.noisy` (a pause holds the pose,
chatter changes the grasp level).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np

from apprentice.envs.arms import MultiArmTask
from apprentice.envs.base import Task
from apprentice.errors import ApprenticeError

EEF_DIMS = 6
"""The delta pose at the start of every arm's block: translation (3), rotation (3)."""


@dataclass(frozen=True)
class ArmLayout:
    """Where each arm's dims lie in a task's action (module docstring)."""

    arms: tuple[str, ...]
    """The arms' names in action order; ("arm",) for a task with one."""
    blocks: tuple[slice, ...]
    """Each arm's action dims: its delta pose (6), then its grasp dims."""
    action_dim: int
    multi_arm: bool = False
    """Whether the task is a `MultiArmTask` (its pose mappings take every arm at once)."""

    def eef(self, arm: int) -> slice:
        """Arm `arm`'s delta pose dims."""
        start = int(self.blocks[arm].start or 0)
        return slice(start, start + EEF_DIMS)

    def level_index(self, arm: int) -> int:
        """The dim of arm `arm`'s grasp level (its block's last)."""
        return int(self.blocks[arm].stop) - 1

    @property
    def eef_dims(self) -> tuple[int, ...]:
        """Every arm's delta pose dims."""
        return tuple(i for arm in range(len(self.arms)) for i in _dims(self.eef(arm)))

    @property
    def grasp_dims(self) -> tuple[int, ...]:
        """Every dim that is no delta pose: the grippers, or a hand's finger targets."""
        eef = set(self.eef_dims)
        return tuple(i for i in range(self.action_dim) if i not in eef)

    def levels(self, action: np.ndarray) -> list[float]:
        """Each arm's grasp level in `action` (A,)."""
        return [float(action[self.level_index(arm)]) for arm in range(len(self.arms))]


def _dims(s: slice) -> range:
    return range(int(s.start or 0), int(s.stop))


def arm_layout(task: Task) -> ArmLayout:
    """The layout of `task`'s action; an ApprenticeError for a task whose action is not an
    end-effector delta pose and a grasp per arm (a joint-space or planar task)."""
    dim = int(task.action_space.shape[0])
    multi_arm = isinstance(task, MultiArmTask)
    if isinstance(task, MultiArmTask):
        arms, blocks = tuple(task.arm_names), tuple(task.arm_actions)
    else:
        arms, blocks = ("arm",), (slice(0, dim),)
    covered = sorted(i for s in blocks for i in _dims(s))
    if covered != list(range(dim)) or any(len(_dims(s)) <= EEF_DIMS for s in blocks):
        raise ApprenticeError(
            f"task {task.name!r} takes {dim}-D actions, not an end-effector delta pose (6) and "
            "a grasp per arm: teleop and --noise human drive end-effector tasks only"
        )
    return ArmLayout(arms, blocks, dim, multi_arm)


def hold_action(task: Task, layout: ArmLayout, levels: Sequence[float]) -> np.ndarray:
    """The action (A,) float64 that holds every eef where it is with arm i's grasp at
    `levels[i]`: the grasp dims as the task maps the levels, the delta poses zero."""
    if layout.multi_arm:
        multi = cast(MultiArmTask, task)
        raw = multi.target_poses_to_action(multi.eef_poses(), list(levels))
    else:
        raw = task.target_pose_to_action(task.eef_pose(), float(levels[0]))
    action = np.array(raw, dtype=np.float64)
    if action.shape != (layout.action_dim,):
        raise ApprenticeError(
            f"task {task.name!r}: its pose-to-action mapping gave shape {action.shape}, its "
            f"actions are ({layout.action_dim},)"
        )
    # Zero exactly: a pose's round trip through the mapping leaves ~1e-16 of rotation.
    action[list(layout.eef_dims)] = 0.0
    return action
