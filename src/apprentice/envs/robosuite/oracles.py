"""Scripted oracles for the robosuite tasks: privileged poses, a proportional OSC_POSE servo.

Each oracle replans every step from the simulator's object poses (closed loop) through a small
phase machine: reach above the grasp point, turn the fingers to it, descend, close, then
carry, place, release and back away as the task needs; a grasp lost on the way sends it back
to "reach". The servo commands the eef a fraction (`gain`) of the way to its target each
step, capped at `speed` x 5 cm, pointing straight down; the OSC controller lags its goal, so
a proportional command converges without overshoot. `rng` draws the gains, speeds and heights
per episode, so that demos of one task differ as a teleoperator's would.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from apprentice.envs.mujoco_task import (
    eef_yaw,
    nearest_symmetric_yaw,
    wrap_angle,
    yaw_of,
)
from apprentice.envs.robosuite.task import MAX_DELTA_POS, RobosuiteTask
from apprentice.envs.scripted_oracle import servo_target

if TYPE_CHECKING:
    from apprentice.envs.robosuite.tasks import Lift, NutAssemblySquare, PickPlaceCan, Stack

OPEN, CLOSE = -1.0, 1.0
CLOSE_STEPS = 8
"""Steps with the gripper closing before lifting: the Panda's command ramps 0.2 a step."""
RELEASE_STEPS = 8
"""Steps with the gripper opening before backing away."""
DESCEND_STEPS = 30
"""Steps of descent after which the fingers close wherever they are."""
HOME_YAW = math.pi / 2
"""The eef's yaw in the Panda's start pose."""
WRIST_GRASP = (-1.7, 1.7)
"""Eef yaws (rad from HOME_YAW) the Panda reaches the table with, pointing down."""
PEG_SLACK = 0.2
"""Rad the square nut may turn from square and still slide down its peg (its hole's half-width
is 22.75 mm, the peg's 16 mm: the corners clear up to ~20 degrees)."""
LOWER_STEPS = 40
"""Steps lowering the nut down the peg after which the gripper lets go of it anyway."""


class RobosuiteOracle:
    """Shared machinery: a phase, a timer, the pick sequence and the top-down servo, of one
    arm (`arm`, the first unless given); a two-arm oracle runs one per arm."""

    def __init__(self, task: RobosuiteTask, rng: np.random.Generator, arm: int = 0) -> None:
        self.task = task
        self.rng = rng
        self.arm = arm
        self.phase = "reach"
        self.timer = 0
        self.gain = 1.0
        self.speed = 1.0
        self.hover = 0.06
        self.reset()

    def reset(self) -> None:
        self.phase = "reach"
        self.timer = 0
        self.gain = float(self.rng.uniform(0.8, 1.2))
        self.speed = float(self.rng.uniform(0.6, 0.9))
        self.hover = float(self.rng.uniform(0.05, 0.08))
        self._draw()

    def _draw(self) -> None:
        """Draw task-specific per-episode variations."""

    def goto(self, phase: str) -> None:
        self.phase = phase
        self.timer = 0

    def eef_pos(self) -> np.ndarray:
        return self.task.eef_pose(self.arm)[:3, 3]

    def eef_yaw(self) -> float:
        return eef_yaw(self.task.eef_pose(self.arm)[:3, :3])

    def servo(self, pos: np.ndarray, yaw: float, gripper: float, speed: float = 1.0) -> np.ndarray:
        """The arm's action (7,) that moves its eef towards `pos` (3,), pointing down turned
        `yaw`."""
        limit = MAX_DELTA_POS * self.speed * speed
        # The whole rotation error in one step (turn gain 1), as these oracles were tuned.
        target = servo_target(self.task.eef_pose(self.arm), pos, yaw, self.gain, limit, 1.0)
        return self.task.arm_action(target, gripper, self.arm).astype(np.float32)

    def pick(
        self, grasp: np.ndarray, finger_yaw: float, period: float, held: bool = True
    ) -> np.ndarray | None:
        """Reach above `grasp` (3,), turn, descend, close; None once the fingers are closed.

        Closing lasts CLOSE_STEPS, or up to twice that until `held` (the grasp test) holds:
        the Panda's command ramps, and a thin part is reached late.

        `finger_yaw` is the yaw the fingers' closing axis should take, known modulo `period`
        (a cube's faces repeat every quarter turn); the turn nearest the current one is taken.
        """
        if self.phase not in ("reach", "descend", "close"):
            return None
        eef = self.eef_pos()
        yaw = nearest_symmetric_yaw(finger_yaw, self.eef_yaw(), period)
        if self.phase == "close":
            self.timer += 1
            if self.timer > CLOSE_STEPS and (held or self.timer > 2 * CLOSE_STEPS):
                self.goto("carry")
                return None
            return self.servo(grasp, yaw, CLOSE)
        xy_err = float(np.linalg.norm(grasp[:2] - eef[:2]))
        yaw_err = abs(wrap_angle(self.eef_yaw() - yaw))
        if self.phase == "descend":
            self.timer += 1
            if xy_err > 0.02 or yaw_err > 0.2:
                self.goto("reach")
            elif eef[2] - grasp[2] < 0.008 or self.timer > DESCEND_STEPS:
                # The OSC settles a few mm short of a goal under contact (the fingertips on the
                # table, say): close there.
                self.goto("close")
            return self.servo(grasp, yaw, OPEN, speed=0.6)
        if xy_err < 0.006 and yaw_err < 0.06 and eef[2] < grasp[2] + self.hover + 0.02:
            self.goto("descend")
        return self.servo(grasp + np.array([0.0, 0.0, self.hover]), yaw, OPEN)

    def carry_target(self, part: np.ndarray, goal: np.ndarray, band: float = 0.03) -> np.ndarray:
        """Where the eef should go so a held part moves from `part` towards `goal` (both (3,)):
        up to the goal's height first, and across only as it gets there (a ramp over the last
        `band` m, not a switch, so the action stays a continuous function of the state)."""
        share = float(np.clip((part[2] - (goal[2] - band)) / (band - 0.01), 0.0, 1.0))
        waypoint = np.array([*(part[:2] + share * (goal[:2] - part[:2])), goal[2]])
        return self.eef_pos() + (waypoint - part)

    def release(self, yaw: float) -> np.ndarray:
        """Open in place for RELEASE_STEPS, then back away upwards (phase "retreat")."""
        self.timer += 1
        if self.timer > RELEASE_STEPS:
            self.goto("retreat")
        return self.servo(self.eef_pos(), yaw, OPEN)

    def retreat(self, yaw: float) -> np.ndarray:
        return self.servo(self.eef_pos() + np.array([0.0, 0.0, 0.05]), yaw, OPEN)


class LiftOracle(RobosuiteOracle):
    """Pick the cube, then raise it 10 cm (success is 4 cm)."""

    task: Lift

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        cube = self.task.object_poses()["cube"]
        p = cube[:3, 3]
        if self.phase == "carry" and not self.task.holds(self.task.env.cube):
            self.goto("reach")
        action = self.pick(p, yaw_of(cube[:3, :3]), math.pi / 2)
        if action is not None:
            return action
        goal = p + np.array([0.0, 0.0, 0.1])
        return self.servo(self.carry_target(p, goal), self.eef_yaw(), CLOSE)


class StackOracle(RobosuiteOracle):
    """Pick cube A, carry it above cube B, lower it on B, open, and back away upwards."""

    task: Stack

    def _draw(self) -> None:
        self.clearance = float(self.rng.uniform(0.03, 0.05))

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        task = self.task
        poses = task.object_poses()
        a, b = poses["cubeA"][:3, 3], poses["cubeB"][:3, 3]
        yaw = self.eef_yaw()
        if self.phase in ("carry", "place") and not task.holds(task.env.cubeA):
            self.goto("reach")
        if self.phase == "release":
            return self.release(yaw)
        if self.phase == "retreat":
            if a[2] < b[2]:  # A fell off: start over
                self.goto("reach")
            else:
                return self.retreat(yaw)
        action = self.pick(a, yaw_of(poses["cubeA"][:3, :3]), math.pi / 2)
        if action is not None:
            return action
        # Cube sizes are robosuite's: A 2 cm, B 2.5 cm half-widths.
        on_top = b + np.array([0.0, 0.0, 0.045 + 0.002])
        above = on_top + np.array([0.0, 0.0, self.clearance])
        if self.phase == "carry":
            if np.linalg.norm(a - above) < 0.008:
                self.goto("place")
            return self.servo(self.carry_target(a, above), yaw, CLOSE)
        if np.linalg.norm(a[:2] - b[:2]) > 0.012:
            self.goto("carry")
        elif a[2] - on_top[2] < 0.004:
            self.goto("release")
        return self.servo(self.eef_pos() + (on_top - a), yaw, CLOSE, speed=0.5)


class CanOracle(RobosuiteOracle):
    """Pick the can, carry it high over the bins' walls, lower it into its bin, let go."""

    task: PickPlaceCan

    def _draw(self) -> None:
        self.carry_z = float(self.rng.uniform(0.98, 1.0))
        """Height (m) of the can's centre while it crosses from bin to bin: its bottom, 6 cm
        lower, clears the bins' 10 cm walls, and the arm, nearly stretched, still reaches."""
        self.drop_z = float(self.rng.uniform(0.9, 0.92))
        """Height of the can's centre when the gripper opens."""

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        task = self.task
        poses = task.object_poses()
        can, target = poses["can"][:3, 3], poses["bin"][:3, 3]
        yaw = self.eef_yaw()
        held = task.holds(task.env.objects[task.env.object_id])
        if self.phase in ("carry", "lower") and not held:
            self.goto("reach")
        if self.phase == "release":
            return self.release(yaw)
        if self.phase == "retreat":
            return self.retreat(yaw)
        # The can is round: any finger yaw does, so keep the current one. Grasp 1 cm above
        # its centre, where the fingers close on the side with the palm clear of its top.
        action = self.pick(can + np.array([0.0, 0.0, 0.01]), yaw, 2 * math.pi)
        if action is not None:
            return action
        # The target compartment's corner nearest the robot: its centre is at the edge of the
        # Panda's reach; 2-3 cm clear of the dividers for the can's 3.3 cm radius.
        place = np.array([target[0] - 0.032, target[1] - 0.045])
        above = np.array([*place, self.carry_z])
        if self.phase == "carry":
            if np.linalg.norm(can[:2] - above[:2]) < 0.01:
                self.goto("lower")
            return self.servo(self.carry_target(can, above), yaw, CLOSE)
        if can[2] < self.drop_z:
            self.goto("release")
        goal = np.array([*place, self.drop_z - 0.01])
        return self.servo(self.eef_pos() + (goal - can), yaw, CLOSE, speed=0.6)


class SquareOracle(RobosuiteOracle):
    """Grasp the nut by its handle, lift it over the peg, lower it down the peg, let go.

    The eef's yaw must stay within about 1.2 rad of the Panda's start pose: turned further,
    pointing down, the wrist meets a joint limit and the arm stalls short of the peg. The
    handle must not point away from the robot (+x) over the peg either: the eef would be out
    of reach. So the oracle picks which side of the handle to grasp from, and the heading to
    turn the nut to while it travels, to keep the eef's yaw nearest the start pose.
    """

    task: NutAssemblySquare

    def _draw(self) -> None:
        self.carry_z = float(self.rng.uniform(1.0, 1.03))
        """Height (m) of the nut's centre while it travels: the peg's top is at 0.95."""
        self.side = -1.0
        """The side of the handle the grasp comes from: eef yaw = nut yaw + side * pi/2."""

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        task = self.task
        poses = task.object_poses()
        nut, peg = poses["square_nut"], poses["square_peg"][:3, 3]
        centre = nut[:3, 3]
        nut_yaw = yaw_of(nut[:3, :3])
        yaw = self.eef_yaw()
        held = task.holds(task.env.nuts[task.env.nut_id])
        if self.phase in ("carry", "lower") and not held:
            self.goto("reach")
        if self.phase == "release":
            return self.release(yaw)
        if self.phase == "retreat":
            return self.retreat(yaw)
        if self.phase == "reach":
            # Decided while the nut lies still, kept once the fingers go down.
            self.side = grasp_side(nut_yaw)
        # The fingers close across the handle, along the nut's y axis.
        finger_yaw = nut_yaw + self.side * math.pi / 2
        action = self.pick(task.handle_pos(), finger_yaw, 2 * math.pi, held)
        if action is not None:
            return action
        turn = min((wrap_angle(h - nut_yaw) for h in nut_headings(self.side)), key=abs)
        above = np.array([peg[0], peg[1], self.carry_z])
        if self.phase == "carry":
            aligned = abs(turn) < 0.1 and np.linalg.norm(centre[:2] - above[:2]) < 0.01
            if aligned and centre[2] > 0.97:
                self.goto("lower")
            goal = self.carry_target(centre, above) - self.eef_pos() + centre
            return self.servo(self.eef_for(centre, goal, turn), yaw + turn, CLOSE)
        self.timer += 1
        if np.linalg.norm(centre[:2] - peg[:2]) > 0.015:
            self.goto("carry")
        elif centre[2] < 0.86 or (centre[2] < 0.9 and self.timer > LOWER_STEPS):
            # Down, or caught on the peg partway: let go, and it settles down the peg.
            self.goto("release")
        goal = np.array([peg[0], peg[1], 0.83])
        return self.servo(self.eef_for(centre, goal, turn), yaw + turn, CLOSE, speed=0.5)

    def eef_for(self, part: np.ndarray, goal: np.ndarray, turn: float) -> np.ndarray:
        """Eef position that puts a held part's point `part` at `goal` once the eef has turned
        `turn` more about world z (the part swings about the eef)."""
        eef = self.eef_pos()
        c, s = math.cos(turn), math.sin(turn)
        offset = part - eef
        swung = np.array([c * offset[0] - s * offset[1], s * offset[0] + c * offset[1], offset[2]])
        return goal - swung


def grasp_side(nut_yaw: float) -> float:
    """-1 (grasp with the eef's yaw at the nut's - pi/2) where the wrist turns there, else +1.

    Side -1 lets the nut reach the peg with its handle towards the robot and the eef in its
    start pose; side +1 ends with the wrist turned by WRIST_REACH either way.
    """
    rel = wrap_angle(nut_yaw - math.pi / 2 - HOME_YAW)
    return -1.0 if WRIST_GRASP[0] <= rel <= WRIST_GRASP[1] else 1.0


def nut_headings(side: float) -> tuple[float, ...]:
    """The nut's yaws over the peg for a grasp from `side` (see `grasp_side`); the nearest
    is taken.

    The hole fits the peg turned up to ~20 degrees from square, so for side +1 (handle to
    the left or right) the heading leans that much towards +x, to spare the wrist that much
    turn; further, the eef would leave the Panda's reach.
    """
    if side < 0:
        return (math.pi,)
    return (math.pi / 2 - PEG_SLACK, -math.pi / 2 + PEG_SLACK)
