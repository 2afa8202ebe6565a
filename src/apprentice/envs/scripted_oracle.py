"""The shared machinery of the built-in tasks' scripted oracles."""

from __future__ import annotations

import math

import numpy as np

from apprentice.envs.mujoco_base import MAX_DELTA_POS, matrix_from_rotvec, rotvec_from_matrix
from apprentice.envs.mujoco_task import (
    GRASP_MIN_Z,
    MujocoTask,
    eef_yaw,
    nearest_symmetric_yaw,
    topdown_rotation,
    wrap_angle,
)


def servo_target(
    eef: np.ndarray, pos: np.ndarray, yaw: float, gain: float, limit: float, turn_gain: float
) -> np.ndarray:
    """The (4, 4) target one proportional step takes the eef towards `pos`, pointing down
    turned `yaw`: `gain` times the position error, at most `limit` metres, and `turn_gain`
    times the rotation error (the scripted oracles' servo)."""
    delta = gain * (pos - eef[:3, 3])
    norm = float(np.linalg.norm(delta))
    if norm > limit:
        delta *= limit / norm
    target = np.eye(4)
    target[:3, 3] = eef[:3, 3] + delta
    turn = rotvec_from_matrix(topdown_rotation(yaw) @ eef[:3, :3].T)
    target[:3, :3] = matrix_from_rotvec(turn_gain * turn) @ eef[:3, :3]
    return target


class ScriptedOracle:
    """Shared machinery of the built-in oracles: a phase, a timer and a top-down servo.

    Each oracle replans from the current privileged poses every step (closed loop); `rng`
    varies its speed and heights per episode so that demos differ.
    """

    def __init__(self, env: MujocoTask, rng: np.random.Generator) -> None:
        self.env = env
        self.rng = rng
        self.phase = "reach"
        self.timer = 0
        self.speed = 1.0
        self.gain = 0.5
        self.hover = 0.08
        self.close_steps = 5
        self.reset()

    def reset(self) -> None:
        self.phase = "reach"
        self.timer = 0
        # Slow, proportional servoing (like a careful teleoperator) rather than full-speed
        # bang-bang moves: the action is then a smooth function of the pose error, which
        # is what a cloned policy can learn and use to correct its own drift.
        self.speed = float(self.rng.uniform(0.35, 0.55))
        self.gain = float(self.rng.uniform(0.4, 0.6))
        self.hover = float(self.rng.uniform(0.05, 0.09))
        self.close_steps = int(self.rng.integers(5, 8))
        self._draw()

    def _draw(self) -> None:
        """Draw task-specific per-episode variations."""

    def goto(self, phase: str) -> None:
        self.phase = phase
        self.timer = 0

    def pick(self, part_pos: np.ndarray, part_yaw: float, period: float) -> np.ndarray | None:
        """Reach above a part, turn to it, descend, close; None once the grasp is done.

        `part_yaw` is the yaw the fingers should take, known modulo `period` (a cube's faces
        repeat every quarter turn); the turn nearest the current one is taken.
        """
        if self.phase not in ("reach", "descend", "close"):
            return None
        eef = self.env.eef_pose()
        yaw = nearest_symmetric_yaw(part_yaw, eef_yaw(eef[:3, :3]), period)
        # Keep the pad tips clear of the table when the part is thin.
        grasp = np.array([part_pos[0], part_pos[1], max(float(part_pos[2]), GRASP_MIN_Z)])
        if self.phase == "close":
            self.timer += 1
            if self.timer > self.close_steps:
                self.goto("carry")
                return None
            return self.servo(grasp, yaw, 1.0)
        xy_err = float(np.linalg.norm(grasp[:2] - eef[:2, 3]))
        yaw_err = abs(wrap_angle(eef_yaw(eef[:3, :3]) - yaw))
        if self.phase == "descend":
            if xy_err > 0.015 or yaw_err > 0.15:
                self.goto("reach")
            elif eef[2, 3] - grasp[2] < 0.004:
                self.goto("close")
            return self.servo(grasp, yaw, -1.0, speed=0.7)
        if xy_err < 0.005 and yaw_err < 0.05 and eef[2, 3] < grasp[2] + self.hover + 0.02:
            self.goto("descend")
        return self.servo(grasp + np.array([0.0, 0.0, self.hover]), yaw, -1.0)

    def servo(self, pos: np.ndarray, yaw: float, gripper: float, speed: float = 1.0) -> np.ndarray:
        """The action that moves the eef towards `pos` (3,), pointing down turned `yaw`."""
        limit = MAX_DELTA_POS * self.speed * speed
        target = servo_target(self.env.eef_pose(), pos, yaw, self.gain, limit, self.gain)
        return self.env.target_pose_to_action(target, gripper).astype(np.float32)

    def rise_then_travel(
        self, part: np.ndarray, goal: np.ndarray, band: float = 0.025
    ) -> np.ndarray:
        """Where to take a held part next: up to goal's height, and across only as it gets there.

        The horizontal share of the motion fades in linearly while the part climbs the last
        `band` metres below the goal height, reaching all of it 1 cm below. A hard switch
        from "rise" to "travel" would make the expert's action jump across a height that
        the learner cannot see; a ramp keeps it a continuous function of the state.
        """
        share = float(np.clip((part[2] - (goal[2] - band)) / (band - 0.01), 0.0, 1.0))
        return np.array([*(part[:2] + share * (goal[:2] - part[:2])), goal[2]])

    def eef_target_for(
        self, part_pos: np.ndarray, goal_pos: np.ndarray, turn: float = 0.0
    ) -> np.ndarray:
        """Eef position that brings a held part from `part_pos` to `goal_pos` after the eef
        turns by `turn` about world z (the part swings about the grasp point)."""
        eef = self.env.eef_pose()[:3, 3]
        c, s = math.cos(turn), math.sin(turn)
        offset = part_pos - eef
        swung = np.array([c * offset[0] - s * offset[1], s * offset[0] + c * offset[1], offset[2]])
        return np.asarray(goal_pos - swung, dtype=np.float64)
