"""Tasks with several arms: the per-arm view of the Task protocol, and per-arm subtasks.

A task with several arms (`two_arm.TwoArmTask`: handover, bimanual_lift) is a `Task` like any
other, so recording, replay, training and evaluation drive it unchanged; its action is the
arms' actions one after the other, each [eef delta pose (6), gripper (1)]. The single-arm
methods of `Task` read and drive the first arm: `eef_pose()` is arm 0's,
`action_to_target_pose(action)` arm 0's target, and `target_pose_to_action(pose, gripper)`
moves arm 0 while the other arms hold still, their grippers as they are. Each of them also
takes `arm=i`, and `MultiArmTask` adds the all-arms forms.

`ArmSubtask` is a `Subtask` that names the arm that acts in it and the coordination group it
belongs to, the annotation of DexMimicGen (Jiang et al. 2024: parallel, coordination and
sequential subtasks): a multi-arm task lists each arm's stages in order, arm after arm, each
arm's last stage ending with the demo (term_signal None).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from apprentice.envs.base import Subtask, Task


@dataclass(frozen=True)
class ArmSubtask(Subtask):
    """One stage of one arm of a multi-arm task.

    Stages of different arms run in parallel, each arm through its own list (DexMimicGen's
    parallel subtasks), except for those of one `sync` group, its coordination subtasks:
    they start together (an arm that ends its previous stage first waits, holding its last
    target, for the others), are cut from one source demo at the same steps (from the latest
    of the arms' previous ends to their shared `term_signal`) and are moved by one object
    transform (of the `object` they share), so the arms keep their motion relative to each
    other. A group's start is also where the order between the arms is kept (its sequential
    constraints): no arm enters the group before every arm has finished what precedes it.
    """

    arm: int = 0
    """The arm (index into `MultiArmTask.eef_poses()`) whose motion the stage is."""
    sync: str | None = None
    """The coordination group: stages of different arms with the same name run together.
    None for a stage the arm does on its own."""


@runtime_checkable
class MultiArmTask(Task, Protocol):
    """A task with `n_arms` arms, each an eef pose and a gripper; see the module docstring."""

    n_arms: int
    arm_actions: tuple[slice, ...]
    """Each arm's action dims: eef delta position (3), rotation (3), then the gripper (1)."""
    arm_names: tuple[str, ...]
    """Each arm's prefix of its observation keys (`robot0_eef_pos`, ...) and wrist camera."""

    def eef_pose(self, arm: int = 0) -> np.ndarray:
        """(4, 4) eef pose of arm `arm` in the world frame."""
        ...

    def eef_poses(self) -> list[np.ndarray]:
        """Each arm's (4, 4) eef pose in the world frame."""
        ...

    def action_to_target_pose(self, action: np.ndarray, arm: int = 0) -> np.ndarray:
        """The (4, 4) eef target pose of arm `arm` that `action` (A,) commands."""
        ...

    def target_pose_to_action(self, pose: np.ndarray, gripper: float, arm: int = 0) -> np.ndarray:
        """The action (A,) driving arm `arm` towards `pose` (4, 4) with its gripper at
        `gripper`, the other arms holding their poses and grippers."""
        ...

    def action_to_target_poses(self, action: np.ndarray) -> list[np.ndarray]:
        """Each arm's (4, 4) eef target pose that `action` (A,) commands from the state now."""
        ...

    def target_poses_to_action(
        self, poses: Sequence[np.ndarray], grippers: Sequence[float]
    ) -> np.ndarray:
        """The action (A,) driving each arm towards its pose (4, 4) with its gripper level."""
        ...
