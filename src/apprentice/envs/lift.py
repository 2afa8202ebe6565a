"""lift: grasp a cube and raise it 10 cm above where it started (robomimic's Lift)."""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from apprentice.envs.base import Oracle, Subtask, register_task
from apprentice.envs.mujoco_task import START_YAW_RANGE, MujocoTask, eef_yaw, yaw_of
from apprentice.envs.scripted_oracle import ScriptedOracle

CUBE_HALF = 0.0225
LIFT_HEIGHT = 0.10
"""Success: the cube's centre this far above its start height."""


@register_task("lift", "Grasp a 4.5 cm cube and lift it 10 cm.")
class Lift(MujocoTask):
    name = "lift"
    horizon = 100
    xml_file = "lift.xml"
    object_names = ("cube",)
    placement: ClassVar[dict[str, float]] = {"D0": 0.05, "D1": 0.12}
    """The cube's start xy: uniform in [-r, r]^2 around the table centre."""
    subtasks = (Subtask("cube", "grasp", (0, 5)), Subtask("cube", None))

    @property
    def cube_half(self) -> float:
        """The cube's half-size this episode (CUBE_HALF unless object_scale is on)."""
        return CUBE_HALF * self.object_scale("cube")

    def _place_objects(self, rng: np.random.Generator) -> None:
        xy = rng.uniform(-self.xy_range, self.xy_range, size=2)
        yaw = rng.uniform(-START_YAW_RANGE, START_YAW_RANGE)
        self.set_object_pose("cube", np.array([xy[0], xy[1], self.cube_half]), yaw)

    def cube_pos(self) -> np.ndarray:
        return np.asarray(self.data.xpos[self._object_bodies[0]], dtype=np.float64)

    def is_success(self) -> bool:
        return bool(self.cube_pos()[2] > self.cube_half + LIFT_HEIGHT)

    def subtask_signals(self) -> dict[str, bool]:
        return {"grasp": self.holds(self.cube_pos(), self.cube_half), "lift": self.is_success()}

    def oracle(self, rng: np.random.Generator) -> Oracle:
        return LiftOracle(self, rng)


class LiftOracle(ScriptedOracle):
    """Pick the cube, then raise it; start over if it slips out."""

    env: Lift

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        env = self.env
        cube = env.object_poses()["cube"]
        p = cube[:3, 3]
        if self.phase == "carry" and not env.holds(p, env.cube_half):
            self.goto("reach")
        action = self.pick(p, yaw_of(cube[:3, :3]), math.pi / 2)
        if action is not None:
            return action
        goal = np.array([p[0], p[1], env.cube_half + LIFT_HEIGHT + self.hover / 2])
        return self.servo(self.eef_target_for(p, goal), eef_yaw(env.eef_pose()[:3, :3]), 1.0)
