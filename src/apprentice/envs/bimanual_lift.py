"""bimanual_lift: two arms grasp a long tray by the handles at its ends and lift it together,
keeping it level (a two-arm task, `envs.two_arm`).

The tray is too long for one gripper to keep level: held by one handle it tips, so success
needs both arms holding and rising together.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from apprentice.envs.arms import ArmSubtask
from apprentice.envs.base import Oracle, register_task
from apprentice.envs.mujoco_base import MAX_DELTA_POS
from apprentice.envs.mujoco_task import eef_yaw, yaw_of
from apprentice.envs.scripted_oracle import servo_target
from apprentice.envs.two_arm import TwoArmTask
from apprentice.envs.two_arm_oracle import ArmScript

PLATE_HALF_Z = 0.01
HANDLES = np.array([[0.0, -0.16, 0.04], [0.0, 0.16, 0.04]])
"""Each arm's handle centre in the tray frame (the plate's centre): robot0's at -y."""
HANDLE_HALF = 0.02
TRAY_YAW_RANGE = math.pi / 8
"""The tray starts with yaw in [-TRAY_YAW_RANGE, TRAY_YAW_RANGE]: turned further, the arms
reach sideways across the table for the handles."""
LIFT_HEIGHT = 0.10
"""Success: the tray this far (m) above where it started..."""
MAX_TILT = math.radians(10.0)
"""... tilted less than this from level, both arms holding it."""
RAMP = 0.03
"""The oracle's lift reaches its full speed once the tray has risen this far (m)."""


@register_task(
    "bimanual_lift",
    "Two arms grasp a 40 cm tray by its two handles and lift it 10 cm together, level "
    "(14-D actions).",
)
class BimanualLift(TwoArmTask):
    name = "bimanual_lift"
    horizon = 120
    xml_file = "bimanual_lift.xml"
    object_names = ("tray",)
    placement: ClassVar[dict[str, float]] = {"D0": 0.04, "D1": 0.08}
    """The tray's start xy: uniform in [-r, r]^2 around the table centre."""
    subtasks = (
        ArmSubtask("tray", "left_grasp", (0, 5), arm=0),
        ArmSubtask("tray", None, arm=0, sync="lift"),
        ArmSubtask("tray", "right_grasp", (0, 5), arm=1),
        ArmSubtask("tray", None, arm=1, sync="lift"),
    )

    def _place_objects(self, rng: np.random.Generator) -> None:
        xy = rng.uniform(-self.xy_range, self.xy_range, size=2)
        yaw = rng.uniform(-TRAY_YAW_RANGE, TRAY_YAW_RANGE)
        self.set_object_pose("tray", np.array([xy[0], xy[1], PLATE_HALF_Z]), yaw)

    def tray_pose(self) -> np.ndarray:
        return self.object_poses()["tray"]

    def handle_pos(self, arm: int) -> np.ndarray:
        """The world position (3,) of the centre of arm `arm`'s handle."""
        tray = self.tray_pose()
        return np.asarray(tray[:3, :3] @ HANDLES[arm] + tray[:3, 3], dtype=np.float64)

    def holds_handle(self, arm: int) -> bool:
        return self.holds(arm, self.handle_pos(arm), HANDLE_HALF)

    def tilt(self) -> float:
        """Angle (rad) between the tray's normal and the vertical."""
        return math.acos(float(np.clip(self.tray_pose()[2, 2], -1.0, 1.0)))

    def lifted(self) -> bool:
        tray = self.tray_pose()
        return bool(tray[2, 3] > PLATE_HALF_Z + LIFT_HEIGHT and self.tilt() < MAX_TILT)

    def is_success(self) -> bool:
        return self.lifted() and self.holds_handle(0) and self.holds_handle(1)

    def subtask_signals(self) -> dict[str, bool]:
        left, right = self.holds_handle(0), self.holds_handle(1)
        return {
            "left_grasp": left,
            "right_grasp": right,
            "lift": left and right and self.lifted(),
        }

    def oracle(self, rng: np.random.Generator) -> Oracle:
        return BimanualLiftOracle(self, rng)


class BimanualLiftOracle:
    """Each arm picks its handle at its own pace and holds on; once both hold, the two rise
    in lockstep (one speed, the same height target), so the tray stays level. An arm that
    loses its handle picks it again while the other waits."""

    def __init__(self, env: BimanualLift, rng: np.random.Generator) -> None:
        self.env = env
        self.rng = rng
        self.scripts = (ArmScript(env, 0, rng), ArmScript(env, 1, rng))
        self.lift_speed = 0.3
        """Share of MAX_DELTA_POS both eefs rise by per step (drawn per episode)."""
        self.lift_to = 0.03
        """How far (m) past the success height the handles are raised (drawn per episode)."""
        self.anchors: dict[int, np.ndarray] = {}
        """Each arm's eef xy when the lift began."""
        self.reset()

    def reset(self) -> None:
        for script in self.scripts:
            script.reset()
        self.anchors = {}
        self.lift_speed = float(self.rng.uniform(0.25, 0.4))
        self.lift_to = float(self.rng.uniform(0.02, 0.04))

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        env = self.env
        holding = [env.holds_handle(i) for i in range(2)]
        for script, held in zip(self.scripts, holding, strict=True):
            if script.phase == "carry" and not held:
                script.goto("reach")
        # Both grasps done (not still squeezing) and holding: rise together.
        together = all(holding) and all(s.phase == "carry" for s in self.scripts)
        actions = []
        tray_yaw = yaw_of(env.tray_pose()[:3, :3])
        for i, script in enumerate(self.scripts):
            # Fingers across the handle, whose square section repeats every quarter turn.
            action = script.pick(env.handle_pos(i), tray_yaw + math.pi / 2, math.pi / 2)
            if action is None:  # holding: wait for the other arm, then rise together
                action = self._lift(i) if together else script.hold(1.0)
            if not together:
                self.anchors.pop(i, None)
            actions.append(action)
        return np.concatenate(actions).astype(np.float32)

    def _lift(self, arm: int) -> np.ndarray:
        """Arm `arm`'s step of the shared rise: straight up towards one height, at one speed.

        The speed ramps up over the first RAMP metres: a jolt at full speed would shake the
        handles loose in the fingers. The ramp follows the tray's height, not the time, so
        the action stays a function of the state.
        """
        env = self.env
        eef = env.eef_pose(arm)
        start = HANDLES[arm][2] + PLATE_HALF_Z
        # Straight up from where the grasp ended: each arm drifting along its own tracking
        # errors would stretch the tray between the grippers until it slid in one of them.
        anchor = self.anchors.setdefault(arm, eef[:2, 3].copy())
        goal = np.array([*anchor, start + LIFT_HEIGHT + self.lift_to])
        risen = float(np.mean([env.handle_pos(i)[2] for i in range(2)])) - start
        ramp = float(np.clip(0.3 + risen / RAMP, 0.3, 1.0))
        limit = MAX_DELTA_POS * self.lift_speed * ramp
        target = servo_target(eef, goal, eef_yaw(eef[:3, :3]), 1.0, limit, 0.5)
        return env.arm_action(target, 1.0, arm).astype(np.float32)
