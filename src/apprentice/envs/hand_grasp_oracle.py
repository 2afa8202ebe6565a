"""The scripted expert of hand_grasp: reach above the object, descend, close the hand, lift.

Closed loop like the other built-in oracles (it replans from the privileged poses every step,
with a proportional top-down servo), but on the hand's synergy instead of a parallel gripper.
The shape sets the heading: the thumb and fingers close across a box's faces and across a
lying capsule's axis; a cylinder or sphere is taken at any heading, so the hand keeps its own.
"""

from __future__ import annotations

import math

import numpy as np

from apprentice.envs.hand_grasp import LIFT_HEIGHT, HandGrasp
from apprentice.envs.mujoco_base import MAX_DELTA_POS
from apprentice.envs.mujoco_task import (
    eef_yaw,
    nearest_symmetric_yaw,
    wrap_angle,
    yaw_of,
)
from apprentice.envs.scripted_oracle import servo_target

GRASP_HEIGHT = 0.05
"""Height (m) of the grasp point when the hand closes: the open fingertips clear the table by
about a centimetre, and the curling fingers meet the object's lower half."""


class HandGraspOracle:
    """Reach, descend, close the synergy over a few steps, lift; start over if the object
    slips out. `rng` varies speed, gains, hover height and closing time per episode."""

    def __init__(self, env: HandGrasp, rng: np.random.Generator) -> None:
        self.env = env
        self.rng = rng
        self.phase = "reach"
        self.timer = 0
        self.speed = 1.0
        self.gain = 0.5
        self.hover = 0.06
        self.close_steps = 8
        self.grasp_height = GRASP_HEIGHT
        self.reset()

    def reset(self) -> None:
        self.phase = "reach"
        self.timer = 0
        self.speed = float(self.rng.uniform(0.45, 0.7))
        self.gain = float(self.rng.uniform(0.4, 0.6))
        self.hover = float(self.rng.uniform(0.04, 0.07))
        self.close_steps = int(self.rng.integers(6, 10))
        self.grasp_height = GRASP_HEIGHT + float(self.rng.uniform(-0.003, 0.003))

    def goto(self, phase: str) -> None:
        self.phase = phase
        self.timer = 0

    def grasp_yaw(self) -> float:
        """The heading the hand closes at: nearest the current one among the shape's."""
        env = self.env
        obj = env.object_poses()["object"][:3, :3]
        current = eef_yaw(env.eef_pose()[:3, :3])
        if env.shape == "box":
            return nearest_symmetric_yaw(yaw_of(obj), current, math.pi / 2)
        if env.shape == "capsule":
            return nearest_symmetric_yaw(yaw_of(obj) + math.pi / 2, current, math.pi)
        return current

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        env = self.env
        p = env.object_poses()["object"][:3, 3]
        eef = env.eef_pose()
        yaw = self.grasp_yaw()
        grasp = np.array([p[0], p[1], self.grasp_height])
        xy_err = float(np.linalg.norm(grasp[:2] - eef[:2, 3]))
        yaw_err = abs(wrap_angle(eef_yaw(eef[:3, :3]) - yaw))
        if self.phase == "reach":
            if xy_err < 0.006 and yaw_err < 0.05 and eef[2, 3] < grasp[2] + self.hover + 0.02:
                self.goto("descend")
            return self.servo(grasp + np.array([0.0, 0.0, self.hover]), yaw, -1.0)
        if self.phase == "descend":
            if xy_err > 0.015 or yaw_err > 0.15:
                self.goto("reach")
            elif eef[2, 3] - grasp[2] < 0.004:
                self.goto("close")
            return self.servo(grasp, yaw, -1.0, speed=0.7)
        if self.phase == "close":
            # Ramp the synergy closed rather than snapping it: the digits reach the object at
            # about the same time and centre it instead of knocking it away.
            self.timer += 1
            level = -1.0 + 2.0 * min(1.0, self.timer / self.close_steps)
            if self.timer > self.close_steps + 3:
                self.goto("lift")
            return self.servo(grasp, yaw, level)
        if not env.holds() and p[2] < env.start_height + 0.02:
            self.goto("reach")
            return self.servo(eef[:3, 3] + np.array([0.0, 0.0, 0.03]), yaw, -1.0)
        goal = np.array([eef[0, 3], eef[1, 3], grasp[2] + LIFT_HEIGHT + 0.04])
        return self.servo(goal, eef_yaw(eef[:3, :3]), 1.0)

    def servo(self, pos: np.ndarray, yaw: float, grasp: float, speed: float = 1.0) -> np.ndarray:
        """The action that moves the eef towards `pos` (3,), pointing down turned `yaw`, with
        the fingers at synergy level `grasp`."""
        limit = MAX_DELTA_POS * self.speed * speed
        target = servo_target(self.env.eef_pose(), pos, yaw, self.gain, limit, self.gain)
        return self.env.target_pose_to_action(target, grasp).astype(np.float32)
