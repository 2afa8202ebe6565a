"""peg_insert: lower a square nut over a fixed square peg (robomimic's NutAssemblySquare).

The precision task: 5 mm of clearance a side, and the nut's yaw must match the peg's within
a few degrees for the hole to pass over the peg.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from apprentice.envs.base import Oracle, Subtask, register_task
from apprentice.envs.mujoco_task import (
    START_YAW_RANGE,
    MujocoTask,
    eef_yaw,
    nearest_symmetric_yaw,
    wrap_angle,
    yaw_of,
)
from apprentice.envs.perturb import AXES
from apprentice.envs.scripted_oracle import ScriptedOracle

NUT_HALF_HEIGHT = 0.01
HANDLE_OFFSET = np.array([0.045, 0.0, 0.0])
"""The handle's centre in the nut frame; the gripper holds the nut there."""
HANDLE_HALF_WIDTH = 0.009
PEG_XY = np.array([0.08, 0.08])
PEG_TOP = 0.08
PEG_YAW = 0.0
START_CENTRE = np.array([-0.06, -0.06])
INSERTED_HEIGHT = 0.02
"""Success: the nut's centre below this height (resting on the base) around the peg."""


@register_task("peg_insert", "Lower a square nut over a square peg with 5 mm clearance a side.")
class PegInsert(MujocoTask):
    name = "peg_insert"
    horizon = 200
    xml_file = "peg_insert.xml"
    object_names = ("nut",)
    fixture_names = ("peg",)
    perturbation_axes = tuple(a for a in AXES if a != "object_scale")
    unsupported_axes_reason = "its clearances (peg and hole) are tuned to the part's size"
    placement: ClassVar[dict[str, float]] = {"D0": 0.04, "D1": 0.07}
    """The nut starts in START_CENTRE + [-r, r]^2."""
    subtasks = (Subtask("nut", "grasp", (10, 20)), Subtask("peg", None))

    def _place_objects(self, rng: np.random.Generator) -> None:
        xy = START_CENTRE + rng.uniform(-self.xy_range, self.xy_range, size=2)
        yaw = rng.uniform(-START_YAW_RANGE, START_YAW_RANGE)
        self.set_object_pose("nut", np.array([xy[0], xy[1], NUT_HALF_HEIGHT]), yaw)

    def handle_pos(self) -> np.ndarray:
        nut = self.object_poses()["nut"]
        return np.asarray(nut[:3, :3] @ HANDLE_OFFSET + nut[:3, 3], dtype=np.float64)

    def _nut_errors(self) -> tuple[float, float, float]:
        """(xy distance to the peg axis, yaw error modulo a quarter turn, nut centre height)."""
        body = self._object_bodies[0]
        p = self.data.xpos[body]
        yaw = yaw_of(self.data.xmat[body].reshape(3, 3))
        yaw_err = abs(wrap_angle(nearest_symmetric_yaw(PEG_YAW, yaw, math.pi / 2) - yaw))
        return float(np.linalg.norm(p[:2] - PEG_XY)), yaw_err, float(p[2])

    def is_success(self) -> bool:
        xy_err, _, z = self._nut_errors()
        return xy_err < 0.008 and z < INSERTED_HEIGHT

    def subtask_signals(self) -> dict[str, bool]:
        xy_err, yaw_err, z = self._nut_errors()
        return {
            "grasp": self.holds(self.handle_pos(), HANDLE_HALF_WIDTH),
            "aligned": xy_err < 0.005 and yaw_err < 0.08,
            "inserted": xy_err < 0.008 and z - NUT_HALF_HEIGHT < PEG_TOP,
        }

    def oracle(self, rng: np.random.Generator) -> Oracle:
        return PegInsertOracle(self, rng)


class PegInsertOracle(ScriptedOracle):
    """Pick the nut by its handle, turn and carry it over the peg, lower it, and let go."""

    env: PegInsert

    def _draw(self) -> None:
        self.clearance = float(self.rng.uniform(0.015, 0.03))

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        env = self.env
        nut = env.object_poses()["nut"]
        p = nut[:3, 3]
        handle = env.handle_pos()
        eef = env.eef_pose()
        yaw = eef_yaw(eef[:3, :3])
        held = env.holds(handle, HANDLE_HALF_WIDTH)
        if self.phase in ("carry", "insert") and not held:
            self.goto("reach")
        if self.phase == "release":
            self.timer += 1
            if self.timer > 3 and not env.is_success():
                self.goto("reach")
            up = eef[:3, 3] + np.array([0.0, 0.0, 0.05 if self.timer > 3 else 0.0])
            return self.servo(up, yaw, -1.0)
        # The fingers close across the handle, i.e. along the nut's y axis: the nut's yaw,
        # modulo a half turn.
        action = self.pick(handle, yaw_of(nut[:3, :3]), math.pi)
        if action is not None:
            return action
        nut_yaw = yaw_of(nut[:3, :3])
        turn = wrap_angle(nearest_symmetric_yaw(PEG_YAW, nut_yaw, math.pi / 2) - nut_yaw)
        above = np.array([*PEG_XY, PEG_TOP + NUT_HALF_HEIGHT + self.clearance])
        xy_err = float(np.linalg.norm(p[:2] - PEG_XY))
        if self.phase == "carry":
            # Rise over the peg's top before travelling towards it.
            goal = self.rise_then_travel(p, above)
            if np.linalg.norm(p - above) < 0.004 and abs(turn) < 0.03:
                self.goto("insert")
            return self.servo(self.eef_target_for(p, goal, turn), yaw + turn, 1.0)
        if xy_err > 0.004 and p[2] - NUT_HALF_HEIGHT > PEG_TOP - 0.005:
            self.goto("carry")
        elif p[2] < INSERTED_HEIGHT - 0.004:
            self.goto("release")
        goal = np.array([*PEG_XY, NUT_HALF_HEIGHT])
        return self.servo(self.eef_target_for(p, goal, turn), yaw + turn, 1.0, speed=0.5)
