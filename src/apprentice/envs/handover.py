"""handover: the left arm picks a bar, carries it to the middle and hands it to the right arm,
which sets it down on a target area on its side (a two-arm task, `envs.two_arm`).

The bar lies along y on the left half of the table. Each arm holds it a little way from its
centre towards its own side, so both grippers fit on it at once in the middle.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from apprentice.envs.arms import ArmSubtask
from apprentice.envs.base import Oracle, register_task
from apprentice.envs.mujoco_task import START_YAW_RANGE, eef_yaw, nearest_symmetric_yaw, yaw_of
from apprentice.envs.two_arm import TwoArmTask
from apprentice.envs.two_arm_oracle import ArmScript

BAR_HALF = np.array([0.02, 0.09, 0.02])
GRIP_OFFSET = 0.045
"""Where each arm holds the bar: this far (m) from its centre along it, on the arm's side."""
START_CENTRE = np.array([0.0, -0.15])
TARGET_XY = np.array([0.0, 0.17])
TARGET_TOL = 0.04
"""Success: the bar's centre within this distance (m) of TARGET_XY along x and along y."""
LIFT_CLEAR = 0.04
"""left_lift: the left arm holds the bar with its underside at least this high (m) off the
table."""
HANDOVER_ZONE = 0.03
"""at_handover: the bar's centre within this distance (m) of the table's centre line (x and
y)..."""
HANDOVER_MIN_Z = 0.12
"""... and at least this high (m)."""


@register_task(
    "handover",
    "Two arms: the left picks a bar and hands it over in the middle to the right, which sets "
    "it down on a target area (14-D actions).",
)
class Handover(TwoArmTask):
    name = "handover"
    horizon = 250
    xml_file = "handover.xml"
    object_names = ("bar",)
    fixture_names = ("target",)
    placement: ClassVar[dict[str, float]] = {"D0": 0.04, "D1": 0.08}
    """The bar's start xy: START_CENTRE + [-r, r]^2."""
    subtasks = (
        # The grasp stage runs on until the bar is off the table: the carry is played in the
        # world frame, so the interpolation into it moves the held bar (up to ~8 cm and a
        # third of a turn) towards where the source's carry started, which dragged along the
        # table slides the bar across the fingers until they no longer hold it.
        ArmSubtask("bar", "left_lift", (0, 2), arm=0),
        # at_handover first turns on with the bar at the zone's edge: ending a step or more
        # later leaves a margin for a generated carry lagging a centimetre behind.
        ArmSubtask(None, "at_handover", (1, 3), arm=0, held="bar"),
        # The bar slips a few mm in the giving hand on the way; held makes the bar, not the
        # eef, follow the source, so the right arm closes on it where the source's did.
        ArmSubtask("bar", "handover", arm=0, sync="handover", held="bar"),
        ArmSubtask(None, None, arm=0),
        ArmSubtask(None, "at_handover", arm=1),
        ArmSubtask("bar", "handover", arm=1, sync="handover"),
        ArmSubtask("target", None, arm=1, held="bar"),
    )

    def _place_objects(self, rng: np.random.Generator) -> None:
        xy = START_CENTRE + rng.uniform(-self.xy_range, self.xy_range, size=2)
        yaw = rng.uniform(-START_YAW_RANGE, START_YAW_RANGE)
        self.set_object_pose("bar", np.array([xy[0], xy[1], BAR_HALF[2]]), yaw)

    def bar_pose(self) -> np.ndarray:
        return self.object_poses()["bar"]

    def grip_point(self, arm: int) -> np.ndarray:
        """Where arm `arm` holds the bar: GRIP_OFFSET from its centre towards the arm's side
        (-y for robot0, +y for robot1)."""
        bar = self.bar_pose()
        axis = bar[:3, 1]  # the bar's long axis
        side = (1.0 if arm == 1 else -1.0) * (1.0 if axis[1] >= 0.0 else -1.0)
        return np.asarray(bar[:3, 3] + side * GRIP_OFFSET * axis, dtype=np.float64)

    def holds_bar(self, arm: int) -> bool:
        """Whether arm `arm` squeezes the bar, anywhere along it."""
        bar = self.bar_pose()
        axis = bar[:3, 1]
        eef = self.eef_pose(arm)[:3, 3]
        along = float(np.clip(axis @ (eef - bar[:3, 3]), -BAR_HALF[1], BAR_HALF[1]))
        return self.holds(arm, bar[:3, 3] + along * axis, BAR_HALF[0])

    def lifted_by_left(self) -> bool:
        return bool(self.bar_pose()[2, 3] > BAR_HALF[2] + LIFT_CLEAR) and self.holds_bar(0)

    def at_handover(self) -> bool:
        centre = self.bar_pose()[:3, 3]
        in_zone = bool(np.all(np.abs(centre[:2]) < HANDOVER_ZONE) and centre[2] > HANDOVER_MIN_Z)
        return in_zone and self.holds_bar(0)

    def on_target(self) -> bool:
        """The bar lies on the table (not hovering) with its centre in the target area."""
        centre = self.bar_pose()[:3, 3]
        inside = np.all(np.abs(centre[:2] - TARGET_XY) < TARGET_TOL)
        return bool(inside and centre[2] < BAR_HALF[2] + 0.005)

    def is_success(self) -> bool:
        return self.on_target() and not self.holds_bar(0) and not self.holds_bar(1)

    def subtask_signals(self) -> dict[str, bool]:
        left, right = self.holds_bar(0), self.holds_bar(1)
        return {
            "left_grasp": left,
            "left_lift": self.lifted_by_left(),
            "at_handover": self.at_handover(),
            "right_grasp": right,
            "handover": right and not left,
            "on_target": self.on_target(),
        }

    def oracle(self, rng: np.random.Generator) -> Oracle:
        return HandoverOracle(self, rng)


class HandoverOracle:
    """The left arm picks the bar, brings it level along y to the middle and holds it there;
    the right arm waits above, then grasps the bar's other end; the left lets go and backs
    away; the right carries the bar over the target, lowers it, opens and rises. An arm
    that loses the bar before the handover picks it up again."""

    def __init__(self, env: Handover, rng: np.random.Generator) -> None:
        self.env = env
        self.rng = rng
        self.left = ArmScript(env, 0, rng)
        self.right = ArmScript(env, 1, rng)
        self.meet = np.array([0.0, 0.0, 0.17])
        """Where the left arm brings the bar's centre (its height drawn per episode)."""
        self.drop_xy = TARGET_XY.copy()
        """Where the right arm sets the bar's centre down (drawn per episode)."""
        self.reset()

    def reset(self) -> None:
        self.left.reset()
        self.right.reset()
        self.right.goto("stage")
        self.meet = np.array([0.0, 0.0, self.rng.uniform(0.15, 0.19)])
        self.drop_xy = TARGET_XY + self.rng.uniform(-0.015, 0.015, size=2)

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        left = self._left()
        right = self._right()
        return np.concatenate([left, right]).astype(np.float32)

    def _grasp_yaw(self) -> float:
        """The eef yaw whose fingers close across the bar (modulo a half turn)."""
        return yaw_of(self.env.bar_pose()[:3, :3]) + math.pi / 2

    def _left(self) -> np.ndarray:
        env, arm = self.env, self.left
        held, taken = env.holds_bar(0), env.holds_bar(1)
        if arm.phase in ("carry", "present") and not held and not taken:
            arm.goto("reach")
        if arm.phase == "present" and taken:
            arm.goto("release")
        action = arm.pick(env.grip_point(0), self._grasp_yaw(), math.pi)
        if action is not None:
            return action
        yaw = eef_yaw(env.eef_pose(0)[:3, :3])
        if arm.phase == "release":
            arm.timer += 1
            if arm.timer > 3:
                arm.goto("retreat")
            return arm.hold(-1.0)
        if arm.phase == "retreat":
            arm.timer += 1
            eef = env.eef_pose(0)[:3, 3]
            # Straight up off the bar first, then back towards the arm's side.
            away = np.array([eef[0], eef[1], self.meet[2] + 0.06])
            if arm.timer > 4:
                away[1] = -0.2
            return arm.servo(away, yaw, -1.0)
        # carry, then present: the bar's centre to the meeting point, turned along y.
        centre = env.bar_pose()[:3, 3]
        level = nearest_symmetric_yaw(math.pi / 2, yaw, math.pi)
        goal = arm.rise_then_travel(centre, self.meet)
        if arm.phase == "carry" and np.linalg.norm(centre - self.meet) < 0.01:
            arm.goto("present")
        target = arm.eef_target_for(centre, goal, level - yaw)
        return arm.servo(target, level, 1.0)

    def _right(self) -> np.ndarray:
        env, arm = self.env, self.right
        yaw = eef_yaw(env.eef_pose(1)[:3, :3])
        if arm.phase == "stage":
            if env.at_handover() and self.left.phase == "present":
                arm.goto("reach")
            else:
                stage = np.array([0.0, 0.12, self.meet[2] + 0.1])
                return arm.servo(stage, nearest_symmetric_yaw(math.pi / 2, yaw, math.pi), -1.0)
        held = env.holds_bar(1)
        if arm.phase in ("carry", "lower") and not held:
            arm.goto("reach")
        if arm.phase == "release":
            arm.timer += 1
            up = env.eef_pose(1)[:3, 3] + np.array([0.0, 0.0, 0.05 if arm.timer > 3 else 0.0])
            return arm.servo(up, yaw, -1.0)
        action = arm.pick(env.grip_point(1), self._grasp_yaw(), math.pi)
        if action is not None:
            return action
        centre = env.bar_pose()[:3, 3]
        if arm.phase == "carry":
            if env.holds_bar(0) or self.left.phase == "release":
                return arm.hold(1.0)  # the left has not let go yet
            goal = arm.rise_then_travel(centre, np.array([*self.drop_xy, self.meet[2]]))
            if np.linalg.norm(centre[:2] - self.drop_xy) < 0.01:
                arm.goto("lower")
            return arm.servo(arm.eef_target_for(centre, goal), yaw, 1.0)
        # lower
        rest = np.array([*self.drop_xy, BAR_HALF[2] + 0.003])
        if centre[2] - rest[2] < 0.004:
            arm.goto("release")
        return arm.servo(arm.eef_target_for(centre, rest), yaw, 1.0, speed=0.7)
