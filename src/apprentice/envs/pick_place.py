"""pick_place: carry a block into a bin (a one-object cousin of robomimic's PickPlaceCan)."""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from apprentice.envs.base import Oracle, Subtask, register_task
from apprentice.envs.mujoco_task import START_YAW_RANGE, MujocoTask, eef_yaw, yaw_of
from apprentice.envs.perturb import AXES
from apprentice.envs.scripted_oracle import ScriptedOracle

BLOCK_HALF = np.array([0.02, 0.02, 0.03])
START_CENTRE = np.array([0.0, -0.1])
BIN_CENTRE = np.array([0.0, 0.12])
BIN_INNER_HALF = 0.07
BIN_FLOOR = 0.004
WALL_TOP = 0.05
IN_BIN_HEIGHT = 0.045
"""Success: the block's centre below this height (resting, not hovering) inside the bin."""


@register_task("pick_place", "Carry a block over the walls into a bin.")
class PickPlace(MujocoTask):
    name = "pick_place"
    horizon = 200
    xml_file = "pick_place.xml"
    object_names = ("block",)
    fixture_names = ("bin",)
    perturbation_axes = tuple(a for a in AXES if a != "object_scale")
    unsupported_axes_reason = "its clearances (bin walls) are tuned to the part's size"
    placement: ClassVar[dict[str, float]] = {"D0": 0.05, "D1": 0.09}
    """The block starts in START_CENTRE + [-r, r]^2, clear of the bin."""
    subtasks = (Subtask("block", "grasp", (10, 20)), Subtask("bin", None))

    def _place_objects(self, rng: np.random.Generator) -> None:
        xy = START_CENTRE + rng.uniform(-self.xy_range, self.xy_range, size=2)
        yaw = rng.uniform(-START_YAW_RANGE, START_YAW_RANGE)
        self.set_object_pose("block", np.array([xy[0], xy[1], BLOCK_HALF[2]]), yaw)

    def block_pos(self) -> np.ndarray:
        return np.asarray(self.data.xpos[self._object_bodies[0]], dtype=np.float64)

    def in_bin(self) -> bool:
        p = self.block_pos()
        inside = np.all(np.abs(p[:2] - BIN_CENTRE) < BIN_INNER_HALF)
        return bool(inside and p[2] < IN_BIN_HEIGHT)

    def is_success(self) -> bool:
        return self.in_bin()

    def subtask_signals(self) -> dict[str, bool]:
        return {"grasp": self.holds(self.block_pos(), BLOCK_HALF[0]), "in_bin": self.in_bin()}

    def oracle(self, rng: np.random.Generator) -> Oracle:
        return PickPlaceOracle(self, rng)


class PickPlaceOracle(ScriptedOracle):
    """Pick the block, rise over the walls, travel over the bin, lower, and open."""

    env: PickPlace

    def _draw(self) -> None:
        self.drop_xy = BIN_CENTRE + self.rng.uniform(-0.025, 0.025, size=2)
        self.clearance = float(self.rng.uniform(0.03, 0.05))

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        env = self.env
        block = env.object_poses()["block"]
        p = block[:3, 3]
        yaw = eef_yaw(env.eef_pose()[:3, :3])
        if self.phase in ("carry", "lower") and not env.holds(p, BLOCK_HALF[0]):
            self.goto("reach")
        if self.phase == "release":
            self.timer += 1
            if self.timer > 3 and not env.in_bin():
                self.goto("reach")
            up = env.eef_pose()[:3, 3] + np.array([0.0, 0.0, 0.05 if self.timer > 3 else 0.0])
            return self.servo(up, yaw, -1.0)
        action = self.pick(p, yaw_of(block[:3, :3]), math.pi / 2)
        if action is not None:
            return action
        travel_z = WALL_TOP + BLOCK_HALF[2] + self.clearance
        lowered = np.array([*self.drop_xy, BIN_FLOOR + BLOCK_HALF[2] + 0.01])
        if self.phase == "carry":
            # Rise before travelling so the block clears the bin's walls.
            goal = self.rise_then_travel(p, np.array([*self.drop_xy, travel_z]))
            if np.linalg.norm(p - goal) < 0.01 and np.allclose(goal[:2], self.drop_xy):
                self.goto("lower")
            return self.servo(self.eef_target_for(p, goal), yaw, 1.0)
        if p[2] - lowered[2] < 0.004:
            self.goto("release")
        return self.servo(self.eef_target_for(p, lowered), yaw, 1.0, speed=0.7)
