"""hand_grasp: a five-fingered hand grasps an object of a drawn shape and size and lifts it 10 cm.

The hand floats on a wrist of six position servos (slide x, y, z and hinge x, y, z, gravity
compensated), like the other built-in tasks' gripper, and has 20 actuated finger joints: four
fingers of abduction + three flexion joints and a thumb of abduction + three flexion joints,
each a position servo with limits, damping and armature.

An action (26,) in [-1, 1] is the wrist's robosuite-OSC-style delta (position x 0.05 m,
axis-angle in the world frame x 0.5 rad, as `MujocoTask`) followed by one target per finger
joint, mapped linearly from [-1, 1] onto the joint's range (-1 open, +1 closed).
`target_pose_to_action(pose, grasp)` sets the fingers by the hand's grasp synergy at level
`grasp` (-1 open ... +1 closed); the synergy moves the thumb's last joint, the last action
dimension, through its whole range, so that dimension is the synergy level that recording
keeps as the gripper action and generation replays.

Each episode draws one object from {box, cylinder, sphere, capsule (lying)} with its size in
a range, and its xy and yaw. The model holds one free body with a geom of every shape; the
drawn one is made solid and visible at the drawn size. The shape and size live in MuJoCo's
`userdata`, part of the state `get_state` returns, so `set_state` restores them exactly.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import gymnasium as gym
import mujoco
import numpy as np

from apprentice.envs.base import Oracle, Subtask, register_task
from apprentice.envs.bodies import EEF_IN_BODY
from apprentice.envs.hand_grasp_objects import (
    SHAPES,
    draw_half_extents,
    geom_size,
    object_inertia,
)
from apprentice.envs.mujoco_base import MujocoTaskBase, action_fault, refuse_unknown_args
from apprentice.envs.mujoco_task import CAMERAS, START_YAW_RANGE
from apprentice.errors import ApprenticeError

WRIST_JOINTS = ("hand_x", "hand_y", "hand_z", "hand_rx", "hand_ry", "hand_rz")
DIGITS = ("index", "middle", "ring", "little")
FINGER_JOINTS = (
    *(f"{d}_{j}" for d in DIGITS for j in ("abd", "mcp", "pip", "dip")),
    *("thumb_abd", "thumb_cmc", "thumb_mcp", "thumb_ip"),
)
"""The actuated finger joints, in the order of action dims 6.. and of `hand_qpos`."""
LIFT_HEIGHT = 0.10
"""Success: the object's centre this far above its start height, the hand holding it."""
TOUCH_DISTANCE = 0.002
"""A digit touches the object when one of its links is closer than this (m)."""

# The grasp synergy, in normalized joint targets: open (level -1) and closed (level +1) per
# finger joint. The fingers spread wide when open and come to the middle of their abduction
# range when closed; the thumb keeps its abduction centred; every flexion joint runs over its
# whole range, so closed targets lie past any contact and the digits keep squeezing.
_FINGER_SYNERGY_OPEN = (-1.0, -1.0, -1.0, -1.0)
_FINGER_SYNERGY_CLOSED = (0.0, 1.0, 1.0, 1.0)
SYNERGY_OPEN = np.array(_FINGER_SYNERGY_OPEN * 4 + (0.0, -1.0, -1.0, -1.0))
SYNERGY_CLOSED = np.array(_FINGER_SYNERGY_CLOSED * 4 + (0.0, 1.0, 1.0, 1.0))


def grasp_synergy(level: float) -> np.ndarray:
    """Normalized finger targets (20,) of the grasp synergy at `level` (-1 open, +1 closed)."""
    t = (float(np.clip(level, -1.0, 1.0)) + 1.0) / 2.0
    return np.asarray(SYNERGY_OPEN + t * (SYNERGY_CLOSED - SYNERGY_OPEN), dtype=np.float64)


def _hinge_angles(rot: np.ndarray) -> tuple[float, float, float]:
    """Angles (a, b, c) with rot = Rx(a) Ry(b) Rz(c), the order of the wrist's hinges."""
    b = math.asin(max(-1.0, min(1.0, float(rot[0, 2]))))
    a = math.atan2(-float(rot[1, 2]), float(rot[2, 2]))
    c = math.atan2(-float(rot[0, 1]), float(rot[0, 0]))
    return a, b, c


@register_task(
    "hand_grasp",
    "A 20-joint five-fingered hand grasps a box, cylinder, sphere or capsule of random size "
    "and lifts it 10 cm.",
)
class HandGrasp(MujocoTaskBase):
    """The task: see the module docstring for the hand, its actions and the objects."""

    name: str = "hand_grasp"
    horizon: int = 120
    """Steps before an episode is truncated."""
    subtasks: tuple[Subtask, ...] = (Subtask("object", "grasp", (0, 5)), Subtask("object", None))
    xml_file: ClassVar[str] = "hand_grasp.xml"
    object_names: ClassVar[tuple[str, ...]] = ("object",)
    placement: ClassVar[dict[str, float]] = {"D0": 0.05, "D1": 0.12}
    """Variant -> half-width (m) of the square the object's start xy is drawn from."""

    def __init__(
        self, *, camera: bool = False, image_size: int = 84, variant: str = "D0", **kwargs: Any
    ) -> None:
        refuse_unknown_args(
            self.name, kwargs, "camera (bool), image_size (int) and variant (str: D0 or D1)"
        )
        super().__init__(camera=camera, image_size=image_size, variant=variant, cameras=CAMERAS)
        m = self.model
        self._eef_site = m.site("eef").id
        self._hand_body = m.body("hand").id
        self._home = m.body_pos[self._hand_body].copy()
        self._wrist_qpos = np.array([m.jnt_qposadr[m.joint(j).id] for j in WRIST_JOINTS])
        joints = [m.joint(j).id for j in FINGER_JOINTS]
        self._finger_qpos = m.jnt_qposadr[joints]
        self._finger_dof = m.jnt_dofadr[joints]
        self._finger_range = m.jnt_range[joints].copy()  # (20, 2) lower, upper (rad)
        self._object_body = int(self._object_bodies[0])
        self._object_geoms = np.array([m.geom(f"object_{s}").id for s in SHAPES])
        self._object_rgba = m.geom_rgba[self._object_geoms].copy()
        self._object_size = m.geom_size[self._object_geoms].copy()
        self._flexion = np.array([not j.endswith("_abd") for j in FINGER_JOINTS])
        # Each digit's links, to tell which digits touch the object.
        self._digit_geoms = {
            d: np.flatnonzero(
                np.isin(m.geom_bodyid, [m.body(f"{d}{s}").id for s in ("", "_mid", "_tip")])
            )
            for d in (*DIGITS, "thumb")
        }
        self._configured: tuple[float, ...] = ()

        box = gym.spaces.Box
        n = len(FINGER_JOINTS)
        spaces: dict[str, gym.spaces.Space[Any]] = {
            "eef_pos": box(-np.inf, np.inf, (3,), np.float32),
            "eef_quat": box(-1.0, 1.0, (4,), np.float32),
            "hand_qpos": box(-np.inf, np.inf, (n,), np.float32),
            "hand_qvel": box(-np.inf, np.inf, (n,), np.float32),
            "object": box(-np.inf, np.inf, (10,), np.float32),
            "object_shape": box(-np.inf, np.inf, (len(SHAPES) + 3,), np.float32),
            **self._image_spaces(),
        }
        self.observation_space = gym.spaces.Dict(spaces)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (6 + n,), np.float32)
        self._new_episode("box", np.array([0.025, 0.025, 0.025]), np.zeros(2), 0.0)

    # --- the episode's object ----------------------------------------------------------------

    @property
    def shape(self) -> str:
        """The shape of this episode's object."""
        return SHAPES[round(float(self.data.userdata[0]))]

    @property
    def half_extents(self) -> np.ndarray:
        """Half extents (3,) of this episode's object in its body frame (m)."""
        return np.array(self.data.userdata[1:4], dtype=np.float64)

    @property
    def start_height(self) -> float:
        """Height (m) of the object's centre resting on the table."""
        return float(self.data.userdata[3])

    def _configure_object(self) -> None:
        """Make the model's object the one `userdata` names: the drawn geom solid and visible
        at its size, the others hollow and transparent, the body's mass and inertia its own.
        Resets `data` (mj_setConst works on it), so callers restore the state afterwards."""
        key = tuple(float(v) for v in self.data.userdata)
        if key == self._configured:
            return
        m, shape, half = self.model, self.shape, self.half_extents
        for i, geom in enumerate(self._object_geoms):
            on = SHAPES[i] == shape
            m.geom_contype[geom] = 1 if on else 0
            m.geom_conaffinity[geom] = 3 if on else 0
            m.geom_rgba[geom] = self._object_rgba[i] * (1.0, 1.0, 1.0, 1.0 if on else 0.0)
            m.geom_size[geom] = geom_size(shape, half) if on else self._object_size[i]
        mass, inertia = object_inertia(shape, half)
        m.body_mass[self._object_body] = mass
        m.body_inertia[self._object_body] = inertia
        # Refresh what the solver derives from masses (the inverse weights that scale contact
        # softness), so the physics depends on the object alone, not on the episodes before.
        mujoco.mj_setConst(m, self.data)
        self._configured = key

    def _new_episode(self, shape: str, half: np.ndarray, xy: np.ndarray, yaw: float) -> None:
        d = self.data
        d.userdata[:] = (SHAPES.index(shape), *half)
        self._configure_object()
        mujoco.mj_resetData(self.model, d)
        d.userdata[:] = (SHAPES.index(shape), *half)
        self.set_object_pose("object", np.array([xy[0], xy[1], half[2]]), yaw)
        open_hand = self._finger_targets(grasp_synergy(-1.0))
        d.qpos[self._finger_qpos] = open_hand
        d.ctrl[6:] = open_hand
        self._steps = 0
        mujoco.mj_forward(self.model, d)

    # --- episodes and actions ----------------------------------------------------------------

    def _start_episode(self, seed: int | None) -> None:
        rng = self.np_random
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        half = draw_half_extents(shape, rng)
        xy = rng.uniform(-self.xy_range, self.xy_range, size=2)
        yaw = float(rng.uniform(-START_YAW_RANGE, START_YAW_RANGE))
        self._new_episode(shape, half, xy, yaw)

    def _action_error(self, action: Any) -> str:
        n = self.action_space.shape[0]
        return (
            f"task {self.name!r}: action must be {n} finite numbers (6 wrist deltas, then "
            f"{n - 6} finger joint targets), got {action_fault(action, n)}"
        )

    def _set_physics_state(self, physics: np.ndarray) -> None:
        """Restore the state, the object's shape and size (in userdata) included: the model is
        configured for that object, which resets `data`, then the state is set again."""
        super()._set_physics_state(physics)
        if not 0 <= round(float(self.data.userdata[0])) < len(SHAPES):
            raise ApprenticeError(f"state for task {self.name!r} names no object shape")
        self._configure_object()
        super()._set_physics_state(physics)

    # --- poses and the controller ------------------------------------------------------------

    def eef_pose(self) -> np.ndarray:
        return self._site_pose(self._eef_site)

    def action_to_target_pose(self, action: np.ndarray) -> np.ndarray:
        return self._delta_target_pose(
            self._eef_site, np.asarray(action, dtype=np.float64).reshape(-1)[:6]
        )

    def target_pose_to_action(self, pose: np.ndarray, gripper: float) -> np.ndarray:
        """The wrist action towards `pose` (4, 4) and the fingers at grasp synergy level
        `gripper` (-1 open ... +1 closed)."""
        action = np.empty(self.action_space.shape[0])
        action[:6] = self._pose_delta(self._eef_site, pose)
        action[6:] = grasp_synergy(gripper)
        return np.clip(action, -1.0, 1.0)

    def _finger_targets(self, normalized: np.ndarray) -> np.ndarray:
        """Joint targets (20,) in rad for normalized finger actions in [-1, 1]."""
        lo, hi = self._finger_range[:, 0], self._finger_range[:, 1]
        return np.asarray(lo + (normalized + 1.0) / 2.0 * (hi - lo), dtype=np.float64)

    def _apply_action(self, action: np.ndarray) -> None:
        """Turn a clipped action (26,) into servo targets for the wrist and finger joints."""
        target = self.action_to_target_pose(action)
        ctrl = self.data.ctrl
        ctrl[0:3] = target[:3, 3] - self._home
        a, b, c = _hinge_angles(target[:3, :3] @ EEF_IN_BODY)
        # The yaw hinge is unlimited: pick the turn of the target angle nearest the current one
        # so the servo never spins the hand the long way round.
        qpos = self.data.qpos
        a += 2.0 * math.pi * round((qpos[self._wrist_qpos[3]] - a) / (2.0 * math.pi))
        c += 2.0 * math.pi * round((qpos[self._wrist_qpos[5]] - c) / (2.0 * math.pi))
        ctrl[3:6] = (a, b, c)
        ctrl[6:] = self._finger_targets(action[6:])

    # --- success and signals -----------------------------------------------------------------

    def touching_digits(self) -> set[str]:
        """The digits (index, middle, ring, little, thumb) with a link within TOUCH_DISTANCE
        of the object: a geometric test, a pure function of the state (exact on replay)."""
        m, d = self.model, self.data
        geom = int(self._object_geoms[SHAPES.index(self.shape)])
        touching = set()
        for digit, links in self._digit_geoms.items():
            for link in links:
                if (
                    mujoco.mj_geomDistance(m, d, int(link), geom, TOUCH_DISTANCE, None)
                    < TOUCH_DISTANCE
                ):
                    touching.add(digit)
                    break
        return touching

    def grasp_level(self) -> float:
        """The mean commanded flexion, normalized as the actions are: -1 open ... +1 closed."""
        lo, hi = self._finger_range[self._flexion].T
        target = self.data.ctrl[6:][self._flexion]
        return float(np.mean(2.0 * (target - lo) / (hi - lo) - 1.0))

    def holds(self) -> bool:
        """Whether the hand grips the object: closing, with the thumb and two fingers on it."""
        if self.grasp_level() <= 0.0:
            return False
        touching = self.touching_digits()
        return "thumb" in touching and len(touching) >= 3

    def lifted(self) -> bool:
        return bool(self.data.xpos[self._object_body, 2] > self.start_height + LIFT_HEIGHT)

    def is_success(self) -> bool:
        return self.lifted() and self.holds()

    def subtask_signals(self) -> dict[str, bool]:
        return {"grasp": self.holds(), "lift": self.is_success()}

    def oracle(self, rng: np.random.Generator) -> Oracle:
        # Imported here: the oracle's module imports this one.
        from apprentice.envs.hand_grasp_oracle import HandGraspOracle

        return HandGraspOracle(self, rng)

    # --- observations ------------------------------------------------------------------------

    def get_observation(self) -> dict[str, np.ndarray]:
        d = self.data
        eef_pos = d.site_xpos[self._eef_site]
        body = self._object_body
        # object (10,): world pos (3), quat wxyz (4), pos - eef_pos (3)
        objects = np.concatenate([d.xpos[body], d.xquat[body], d.xpos[body] - eef_pos])
        # object_shape (7,): one-hot of SHAPES (4), body-frame half extents (3)
        shape = np.zeros(len(SHAPES) + 3)
        shape[SHAPES.index(self.shape)] = 1.0
        shape[len(SHAPES) :] = self.half_extents
        return {
            "eef_pos": eef_pos.astype(np.float32),
            "eef_quat": self._site_quat(self._eef_site).astype(np.float32),
            "hand_qpos": d.qpos[self._finger_qpos].astype(np.float32),
            "hand_qvel": d.qvel[self._finger_dof].astype(np.float32),
            "object": objects.astype(np.float32),
            "object_shape": shape.astype(np.float32),
            **self._images(),
        }
