"""One arm of a two-arm task driven by the single-arm oracles' machinery (`ScriptedOracle`)."""

from __future__ import annotations

from typing import cast

import numpy as np

from apprentice.envs.mujoco_task import MujocoTask
from apprentice.envs.scripted_oracle import ScriptedOracle
from apprentice.envs.two_arm import TwoArmTask


class ArmView:
    """One arm of a two-arm task as `ScriptedOracle` reads an env: the arm's eef pose, and
    its share (7,) of the action towards a target pose."""

    def __init__(self, env: TwoArmTask, arm: int) -> None:
        self.env = env
        self.arm = arm

    def eef_pose(self) -> np.ndarray:
        return self.env.eef_pose(self.arm)

    def target_pose_to_action(self, pose: np.ndarray, gripper: float) -> np.ndarray:
        return self.env.arm_action(pose, gripper, self.arm)


class ArmScript(ScriptedOracle):
    """A `ScriptedOracle` for one arm: its own phase, timer, drawn speeds and top-down servo
    (`pick`, `servo`, `rise_then_travel`, `eef_target_for`), each action the arm's share (7,).
    A two-arm oracle runs one per arm and joins their actions."""

    def __init__(self, env: TwoArmTask, arm: int, rng: np.random.Generator) -> None:
        # ScriptedOracle reads only `eef_pose` and `target_pose_to_action` of its env, which
        # the view offers for one arm.
        super().__init__(cast(MujocoTask, ArmView(env, arm)), rng)
        self.task = env
        self.arm = arm

    def hold(self, gripper: float) -> np.ndarray:
        """Stay where the eef is, the gripper at `gripper`."""
        eef = self.task.eef_pose(self.arm)
        return self.task.arm_action(eef, gripper, self.arm).astype(np.float32)
