"""The scripted oracle of robosuite's TwoArmTransport: two single-arm scripts and a handover.

robot0 lifts the lid off the start bin and sets it down on the free half of its table, then
picks the hammer by its handle's half nearer to it (-y), lifts it over the bin's wall and
holds it out over the gap between the tables, handle along y. robot1 meanwhile moves the
trash cube from the target bin into the trash bin, then waits above the handover point; once
robot0 holds the hammer still there, robot1 grasps the handle's other half, robot0 lets go
and backs away, and robot1 lowers the hammer into the target bin.

Each arm is a `RobosuiteOracle` (its phase, timer, drawn speeds and top-down servo); this
oracle keeps each arm's stage and joins their actions (14,). Every step replans from the
simulator's poses, as the single-arm oracles do.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from apprentice.envs.mujoco_task import nearest_symmetric_yaw, wrap_angle, yaw_of
from apprentice.envs.robosuite.oracles import CLOSE, OPEN, RobosuiteOracle

if TYPE_CHECKING:
    from apprentice.envs.robosuite.tasks import TwoArmTransport

LID_SHIFT = 0.4
"""How far (m) robot0 carries the lid along -x: from the start bin to the table's other half."""
LID_CARRY_Z = 1.1
"""Height (m) of the lid's handle while it moves: the lid clears the bin and the hammer."""
LID_DROP_Z = 0.86
"""Height of the lid's handle when robot0 lets go (the lid 3-4 cm above the table)."""
GRIP0 = 0.06
"""Where robot0 grasps the handle: this far (m) from its centre towards -y (robot0's side)."""
GRIP1 = 0.06
"""Where robot1 grasps the handle: this far from its centre towards +y."""
HANDOVER = np.array([0.0, -0.08, 1.02])
"""Where robot0 holds its grasp point for the handover: the handle along +y over the gap
between the tables, each arm's grasp about 75 cm from its base."""
CARRY_Z = 1.06
"""Height (m) of the handle's centre (the trash cube's centre) while it crosses a bin wall."""
TRASH_DROP_Z = 0.9
"""Height of the trash cube's centre when robot1 lets go of it over the trash bin."""
PLACE_DY = 0.02
"""Offset (m) of the handle's centre from the target bin's, away from the head along y: the
head's end of the hammer is the longer."""
PLACE_Z = 0.85
"""Height of the handle's centre when robot1 lets go of the hammer (it rests at ~0.83)."""
SAFE_Z = 1.0
"""Height (m) of the eef while it reaches across a bin's wall (its top is at 0.956)."""
RETREAT_STEPS = 12
"""Steps an arm backs away upwards after letting go, before its next stage."""
LOWER_STEPS = 60
"""Steps of lowering after which the gripper lets go wherever it is."""
SETTLE_STEPS = 5
"""Steps robot0 holds the hammer at the handover point before robot1 reaches for it."""


class TransportOracle:
    """robot0: lid, hammer, handover; robot1: trash, handover, place (module docstring)."""

    def __init__(self, task: TwoArmTransport, rng: np.random.Generator) -> None:
        self.task = task
        self.rng = rng
        self.arm0 = RobosuiteOracle(task, rng, arm=0)
        self.arm1 = RobosuiteOracle(task, rng, arm=1)
        self.stage0 = "lid"
        self.stage1 = "trash"
        self.reset()

    def reset(self) -> None:
        self.arm0.reset()
        self.arm1.reset()
        self.stage0 = "lid"
        self.stage1 = "trash"

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return np.concatenate([self._act0(), self._act1()]).astype(np.float32)

    def _pick(
        self, arm: RobosuiteOracle, grasp: np.ndarray, finger_yaw: float, period: float, held: bool
    ) -> np.ndarray | None:
        """`RobosuiteOracle.pick` of a part in a bin: the reach rises to SAFE_Z first and
        goes across at that height, so the fingers pass over the bin's walls."""
        eef = arm.eef_pos()
        if arm.phase == "reach" and np.linalg.norm(grasp[:2] - eef[:2]) > 0.03:
            yaw = nearest_symmetric_yaw(finger_yaw, arm.eef_yaw(), period)
            above = np.array([grasp[0], grasp[1], SAFE_Z])
            return arm.servo(arm.carry_target(eef, above), yaw, OPEN)
        return arm.pick(grasp, finger_yaw, period, held)

    def _hold(self, arm: RobosuiteOracle, gripper: float) -> np.ndarray:
        return arm.servo(arm.eef_pos(), arm.eef_yaw(), gripper)

    def _after_release(
        self, arm: RobosuiteOracle, stage: str, next_stage: str
    ) -> tuple[np.ndarray, str]:
        """Release, then back away for RETREAT_STEPS: the arm's action (7,) and its stage,
        `stage` until the retreat is over, then `next_stage` (the arm holding still, open)."""
        yaw = arm.eef_yaw()
        if arm.phase == "release":
            return arm.release(yaw), stage
        arm.timer += 1
        if arm.timer > RETREAT_STEPS:
            arm.goto("reach")
            return self._hold(arm, OPEN), next_stage
        return arm.retreat(yaw), stage

    def _carry_and_lower(
        self, arm: RobosuiteOracle, part: np.ndarray, goal: np.ndarray, drop_z: float, near: float
    ) -> np.ndarray:
        """The arm's action (7,) carrying the held part at `part` (3,) to `goal` (3,) (phase
        "carry") until within `near` m of it in x, y, then lowering it (phase "lower") until
        it is below `drop_z` or LOWER_STEPS have passed (then phase "release")."""
        yaw = arm.eef_yaw()
        if arm.phase == "carry":
            if np.linalg.norm(part[:2] - goal[:2]) < near:
                arm.goto("lower")
            return arm.servo(arm.carry_target(part, goal), yaw, CLOSE)
        arm.timer += 1
        if part[2] < drop_z or arm.timer > LOWER_STEPS:
            arm.goto("release")
        low = np.array([goal[0], goal[1], drop_z - 0.02])
        return arm.servo(arm.eef_pos() + (low - part), yaw, CLOSE, speed=0.6)

    # --- robot0 ------------------------------------------------------------------------------

    def _act0(self) -> np.ndarray:
        arm = self.arm0
        if self.stage0 == "lid":
            return self._lid()
        if self.stage0 == "hammer":
            return self._hammer()
        if self.stage0 == "handover":
            if self.stage1 != "take" or arm.phase not in ("release", "retreat"):
                # Hold the hammer out until robot1 has closed its fingers on it.
                if self.stage1 == "take" and self.arm1.phase == "carry":
                    arm.goto("release")
                return self._present()
            retreat, self.stage0 = self._after_release(arm, self.stage0, "done")
            return retreat
        return self._hold(arm, OPEN)

    def _lid(self) -> np.ndarray:
        task, arm = self.task, self.arm0
        handle = task.lid_handle_pos()
        held = task.holds(task.env.transport.lid, arm=0)
        if arm.phase in ("carry", "lower") and not held:
            arm.goto("reach")
        if arm.phase in ("release", "retreat"):
            retreat, self.stage0 = self._after_release(arm, self.stage0, "hammer")
            return retreat
        # The handle is a bar along y: the fingers close along x.
        action = arm.pick(handle + np.array([0.0, 0.0, 0.005]), 0.0, math.pi, held)
        if action is not None:
            return action
        bin_pos = task.object_poses()["start_bin"][:3, 3]
        goal = np.array([bin_pos[0] - LID_SHIFT, bin_pos[1], LID_CARRY_Z])
        return self._carry_and_lower(arm, handle, goal, LID_DROP_Z, near=0.02)

    def _hammer(self) -> np.ndarray:
        task, arm = self.task, self.arm0
        centre, axis, _ = self._handle()
        grasp = centre - GRIP0 * axis
        held = task.holds(task.env.transport.payload, arm=0)
        if arm.phase == "carry" and not held:
            arm.goto("reach")
        # The fingers close across the handle.
        finger_yaw = math.atan2(axis[1], axis[0]) + math.pi / 2
        action = self._pick(arm, grasp + np.array([0.0, 0.0, 0.003]), finger_yaw, math.pi, held)
        if action is not None:
            return action
        turn = self._turn_to_y(axis)
        if np.linalg.norm(grasp - HANDOVER) < 0.015 and abs(turn) < 0.08:
            self.stage0 = "handover"
            arm.goto("settle")
        return self._present()

    def _present(self) -> np.ndarray:
        """robot0's action carrying its grasp point to HANDOVER, the handle turned along +y."""
        arm = self.arm0
        centre, axis, _ = self._handle()
        grasp = centre - GRIP0 * axis
        arm.timer += 1
        turn = self._turn_to_y(axis)
        # The eef sits on the handle's axis: turning it swings the hammer about the grasp.
        target = arm.carry_target(grasp, HANDOVER, band=0.05)
        return arm.servo(target, arm.eef_yaw() + turn, CLOSE)

    def _handle(self) -> tuple[np.ndarray, np.ndarray, float]:
        """The handle's centre (3,), its unit axis (3,) signed to point towards +y, and the
        side of the head along y (+1 or -1): the head lies either way, the hammer is handed
        over as it lies, turned at most ~30 degrees."""
        centre, axis = self.task.payload_handle()
        head = 1.0 if axis[1] >= 0.0 else -1.0
        return centre, head * axis, head

    @staticmethod
    def _turn_to_y(axis: np.ndarray) -> float:
        """The turn about z (rad) that points the handle's axis (3,) along +y."""
        return wrap_angle(math.pi / 2 - math.atan2(axis[1], axis[0]))

    # --- robot1 ------------------------------------------------------------------------------

    def _act1(self) -> np.ndarray:
        task, arm = self.task, self.arm1
        if self.stage1 == "trash":
            return self._trash()
        centre, axis, head = self._handle()
        if self.stage1 == "wait":
            if self.stage0 == "handover" and self.arm0.timer > SETTLE_STEPS:
                self.stage1 = "take"
                arm.goto("reach")
            else:
                # Above where robot1's grasp point will be once robot0 holds it out.
                ready = HANDOVER + np.array([0.0, GRIP0 + GRIP1, 0.1])
                return arm.servo(ready, nearest_symmetric_yaw(0.0, arm.eef_yaw(), math.pi), OPEN)
        if self.stage1 == "take":
            held = task.holds(task.env.transport.payload, arm=1)
            finger_yaw = math.atan2(axis[1], axis[0]) + math.pi / 2
            grasp = centre + GRIP1 * axis
            action = arm.pick(grasp + np.array([0.0, 0.0, 0.003]), finger_yaw, math.pi, held)
            if action is not None:
                return action
            if self.stage0 == "done":
                self.stage1 = "place"
                arm.goto("carry")
            else:
                return self._hold(arm, CLOSE)
        if self.stage1 == "place":
            return self._place(centre, head)
        return self._hold(arm, OPEN)

    def _trash(self) -> np.ndarray:
        task, arm = self.task, self.arm1
        transport = task.env.transport
        poses = task.object_poses()
        cube, bin_pos = poses["trash"], poses["trash_bin"][:3, 3]
        p = cube[:3, 3]
        held = task.holds(transport.trash, arm=1)
        if arm.phase in ("carry", "lower") and not held:
            arm.goto("reach")
        if arm.phase in ("release", "retreat"):
            # Missed the bin: pick it up again from wherever it lies.
            next_stage = "wait" if transport.trash_in_trash_bin else "trash"
            retreat, self.stage1 = self._after_release(arm, self.stage1, next_stage)
            return retreat
        action = self._pick(arm, p, yaw_of(cube[:3, :3]), math.pi / 2, held)
        if action is not None:
            return action
        above = np.array([bin_pos[0], bin_pos[1], CARRY_Z])
        return self._carry_and_lower(arm, p, above, TRASH_DROP_Z, near=0.02)

    def _place(self, centre: np.ndarray, head: float) -> np.ndarray:
        task, arm = self.task, self.arm1
        if arm.phase in ("release", "retreat"):
            retreat, self.stage1 = self._after_release(arm, self.stage1, "done")
            return retreat
        target_bin = task.object_poses()["target_bin"][:3, 3]
        above = np.array([target_bin[0], target_bin[1] - head * PLACE_DY, CARRY_Z])
        return self._carry_and_lower(arm, centre, above, PLACE_Z, near=0.015)
