"""stack: put cube A on cube B and let go (robomimic's Stack)."""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from apprentice.envs.base import Oracle, Subtask, register_task
from apprentice.envs.mujoco_task import START_YAW_RANGE, MujocoTask, eef_yaw, yaw_of
from apprentice.envs.scripted_oracle import ScriptedOracle

HALF_A = 0.02
HALF_B = 0.025
MIN_GAP = 0.1
"""Minimum distance between the cubes' start xy, so the open fingers never touch the other
cube."""
ALIGN_TOL = 0.02
"""Success: A's centre within this xy distance of B's, at the resting height."""


@register_task("stack", "Stack a 4 cm cube on a 5 cm cube and release it.")
class Stack(MujocoTask):
    name = "stack"
    horizon = 200
    xml_file = "stack.xml"
    object_names = ("cube_a", "cube_b")
    placement: ClassVar[dict[str, float]] = {"D0": 0.08, "D1": 0.14}
    """Both cubes start in [-r, r]^2 around the table centre, at least MIN_GAP apart."""
    subtasks = (Subtask("cube_a", "grasp_a", (10, 20)), Subtask("cube_b", None))

    @property
    def half_a(self) -> float:
        """Cube A's half-size this episode (HALF_A unless object_scale is on)."""
        return HALF_A * self.object_scale("cube_a")

    @property
    def half_b(self) -> float:
        return HALF_B * self.object_scale("cube_b")

    def _place_objects(self, rng: np.random.Generator) -> None:
        r = self.xy_range
        a = rng.uniform(-r, r, size=2)
        b = rng.uniform(-r, r, size=2)
        # Rejection sampling stays a pure function of the generator, so seeds still replay.
        while np.linalg.norm(a - b) < MIN_GAP:
            b = rng.uniform(-r, r, size=2)
        yaws = rng.uniform(-START_YAW_RANGE, START_YAW_RANGE, size=2)
        self.set_object_pose("cube_a", np.array([a[0], a[1], self.half_a]), yaws[0])
        self.set_object_pose("cube_b", np.array([b[0], b[1], self.half_b]), yaws[1])

    def _positions(self) -> tuple[np.ndarray, np.ndarray]:
        xpos = self.data.xpos
        return xpos[self._object_bodies[0]], xpos[self._object_bodies[1]]

    def a_on_b(self) -> bool:
        a, b = self._positions()
        resting = abs(a[2] - b[2] - self.half_a - self.half_b) < 0.008
        return bool(resting and np.linalg.norm(a[:2] - b[:2]) < ALIGN_TOL)

    def is_success(self) -> bool:
        return self.a_on_b() and not self.holds(self._positions()[0], self.half_a)

    def subtask_signals(self) -> dict[str, bool]:
        return {
            "grasp_a": self.holds(self._positions()[0], self.half_a),
            "a_on_b": self.a_on_b(),
        }

    def oracle(self, rng: np.random.Generator) -> Oracle:
        return StackOracle(self, rng)


class StackOracle(ScriptedOracle):
    """Pick A, carry it above B, lower it onto B, open, and back away upwards."""

    env: Stack

    def _draw(self) -> None:
        self.clearance = float(self.rng.uniform(0.03, 0.06))

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        env = self.env
        poses = env.object_poses()
        a, b = poses["cube_a"][:3, 3], poses["cube_b"][:3, 3]
        yaw = eef_yaw(env.eef_pose()[:3, :3])
        held = env.holds(a, env.half_a)
        if self.phase in ("carry", "place") and not held:
            self.goto("reach")
        if self.phase == "release":
            self.timer += 1
            if self.timer > 3:
                self.goto("retreat")
            return self.servo(env.eef_pose()[:3, 3], yaw, -1.0)
        if self.phase == "retreat":
            if not env.a_on_b():
                self.goto("reach")
            else:
                up = env.eef_pose()[:3, 3] + np.array([0.0, 0.0, 0.05])
                return self.servo(up, yaw, -1.0)
        action = self.pick(a, yaw_of(poses["cube_a"][:3, :3]), math.pi / 2)
        if action is not None:
            return action
        on_top = b + np.array([0.0, 0.0, env.half_a + env.half_b + 0.002])
        above = on_top + np.array([0.0, 0.0, self.clearance])
        if self.phase == "carry":
            # Rise before travelling: sweeping A low across the table could knock B over.
            goal = self.rise_then_travel(a, above)
            if np.linalg.norm(a - above) < 0.006:
                self.goto("place")
            return self.servo(self.eef_target_for(a, goal), yaw, 1.0)
        if np.linalg.norm(a[:2] - b[:2]) > 0.01:
            self.goto("carry")
        elif a[2] - on_top[2] < 0.003:
            self.goto("release")
        return self.servo(self.eef_target_for(a, on_top), yaw, 1.0, speed=0.5)
