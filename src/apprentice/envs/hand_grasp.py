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
from apprentice.envs.hand_grasp_objects import (
    SHAPES,
    draw_half_extents,
    geom_size,
    object_inertia,
)
from apprentice.envs.mujoco_task import (
    ASSETS,
    CAMERAS,
    EEF_IN_BODY,
    MAX_DELTA_POS,
    MAX_DELTA_ROT,
    START_YAW_RANGE,
    CameraRenderer,
    check_variant_and_image_size,
    matrix_from_rotvec,
    rotvec_from_matrix,
)
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
class HandGrasp(gym.Env[dict[str, np.ndarray], np.ndarray]):
    """The task: see the module docstring for the hand, its actions and the objects."""

    name: str = "hand_grasp"
    horizon: int = 120
    """Steps before an episode is truncated."""
    control_freq: float = 20.0
    observation_space: gym.spaces.Dict  # type: ignore[assignment]
    action_space: gym.spaces.Box
    subtasks: tuple[Subtask, ...] = (Subtask("object", "grasp", (0, 5)), Subtask("object", None))
    object_names: ClassVar[tuple[str, ...]] = ("object",)
    fixture_names: ClassVar[tuple[str, ...]] = ()
    placement: ClassVar[dict[str, float]] = {"D0": 0.05, "D1": 0.12}
    """Variant -> half-width (m) of the square the object's start xy is drawn from."""
    n_substeps: ClassVar[int] = 10
    """Physics steps per env step: 10 x 5 ms = 50 ms = 1 / control_freq."""
    perturbation_axes: ClassVar[tuple[str, ...]] = ()
    """The axes of `envs.perturb` this task takes: none yet (its scene has no SceneRandomizer)."""

    def __init__(
        self, *, camera: bool = False, image_size: int = 84, variant: str = "D0", **kwargs: Any
    ) -> None:
        if kwargs:
            raise ApprenticeError(
                f"task {self.name!r} got unknown arguments {sorted(kwargs)}; it accepts camera "
                "(bool), image_size (int) and variant (str: D0 or D1)"
            )
        if not isinstance(camera, bool):
            raise ApprenticeError(
                f"task {self.name!r}: camera must be true or false, not {camera!r}"
            )
        check_variant_and_image_size(self.name, self.placement, variant, image_size)
        self.camera = camera
        self.image_size = image_size
        self.variant = variant
        self.xy_range = self.placement[variant]
        self.metadata = {"render_modes": ["rgb_array"], "render_fps": self.control_freq}
        self.model = mujoco.MjModel.from_xml_path(str(ASSETS / "hand_grasp.xml"))
        self.data = mujoco.MjData(self.model)
        m = self.model
        self._eef_site = m.site("eef").id
        self._hand_body = m.body("hand").id
        self._home = m.body_pos[self._hand_body].copy()
        self._wrist_qpos = np.array([m.jnt_qposadr[m.joint(j).id] for j in WRIST_JOINTS])
        joints = [m.joint(j).id for j in FINGER_JOINTS]
        self._finger_qpos = m.jnt_qposadr[joints]
        self._finger_dof = m.jnt_dofadr[joints]
        self._finger_range = m.jnt_range[joints].copy()  # (20, 2) lower, upper (rad)
        self._object_body = m.body("object").id
        self._object_qpos = int(m.jnt_qposadr[m.body_jntadr[self._object_body]])
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
        self._state_spec = mujoco.mjtState.mjSTATE_INTEGRATION
        self._state_size = mujoco.mj_stateSize(m, self._state_spec)
        self._steps = 0
        self._cameras = CameraRenderer(self.name, self.model, CAMERAS)

        box = gym.spaces.Box
        n = len(FINGER_JOINTS)
        spaces: dict[str, gym.spaces.Space[Any]] = {
            "eef_pos": box(-np.inf, np.inf, (3,), np.float32),
            "eef_quat": box(-1.0, 1.0, (4,), np.float32),
            "hand_qpos": box(-np.inf, np.inf, (n,), np.float32),
            "hand_qvel": box(-np.inf, np.inf, (n,), np.float32),
            "object": box(-np.inf, np.inf, (10,), np.float32),
            "object_shape": box(-np.inf, np.inf, (len(SHAPES) + 3,), np.float32),
        }
        if camera:
            shape = (image_size, image_size, 3)
            spaces["agentview_image"] = box(0, 255, shape, np.uint8)
            spaces["eye_in_hand_image"] = box(0, 255, shape, np.uint8)
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
        adr = self._object_qpos
        d.qpos[adr : adr + 3] = (xy[0], xy[1], half[2])
        d.qpos[adr + 3 : adr + 7] = (math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2))
        open_hand = self._finger_targets(grasp_synergy(-1.0))
        d.qpos[self._finger_qpos] = open_hand
        d.ctrl[6:] = open_hand
        self._steps = 0
        mujoco.mj_forward(self.model, d)

    # --- gymnasium ---------------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        rng = self.np_random
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        half = draw_half_extents(shape, rng)
        xy = rng.uniform(-self.xy_range, self.xy_range, size=2)
        yaw = float(rng.uniform(-START_YAW_RANGE, START_YAW_RANGE))
        self._new_episode(shape, half, xy, yaw)
        return self.get_observation(), {"success": self.is_success()}

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        n = self.action_space.shape[0]
        shape = np.shape(action)
        if a.shape != (n,) or not np.all(np.isfinite(a)):
            what = f"shape {shape}" if a.shape != (n,) else "NaN or inf"
            raise ApprenticeError(
                f"task {self.name!r}: action must be {n} finite numbers (6 wrist deltas, then "
                f"{n - 6} finger joint targets), got {what}"
            )
        self._apply_action(np.clip(a, -1.0, 1.0))
        mujoco.mj_step(self.model, self.data, self.n_substeps)
        # mj_step leaves body poses at the state before the last integration; recompute them
        # (kinematics only) so observations and signals describe the state now.
        mujoco.mj_kinematics(self.model, self.data)
        self._steps += 1
        success = self.is_success()
        truncated = self._steps >= self.horizon
        return self.get_observation(), float(success), False, truncated, {"success": success}

    def close(self) -> None:
        self._cameras.close()

    # --- state -------------------------------------------------------------------------------

    def get_state(self) -> np.ndarray:
        """MuJoCo's integration state (userdata, so the object's shape and size, included)
        and the step count."""
        state = np.empty(self._state_size + 1)
        mujoco.mj_getState(self.model, self.data, state[:-1], self._state_spec)
        state[-1] = self._steps
        return state

    def set_state(self, state: np.ndarray) -> None:
        s = np.asarray(state, dtype=np.float64).reshape(-1)
        if s.shape != (self._state_size + 1,):
            raise ApprenticeError(
                f"state for task {self.name!r} must have {self._state_size + 1} values, "
                f"got {s.shape[0]}; was it recorded with another task or mujoco version?"
            )
        physics = np.ascontiguousarray(s[:-1])
        mujoco.mj_setState(self.model, self.data, physics, self._state_spec)
        if not 0 <= round(float(self.data.userdata[0])) < len(SHAPES):
            raise ApprenticeError(f"state for task {self.name!r} names no object shape")
        self._configure_object()
        mujoco.mj_setState(self.model, self.data, physics, self._state_spec)
        self._steps = int(s[-1])
        mujoco.mj_kinematics(self.model, self.data)

    @property
    def steps(self) -> int:
        """Env steps since the last reset."""
        return self._steps

    # --- poses and the controller ------------------------------------------------------------

    def eef_pose(self) -> np.ndarray:
        pose = np.eye(4)
        pose[:3, :3] = self.data.site_xmat[self._eef_site].reshape(3, 3)
        pose[:3, 3] = self.data.site_xpos[self._eef_site]
        return pose

    def object_poses(self) -> dict[str, np.ndarray]:
        pose = np.eye(4)
        pose[:3, :3] = self.data.xmat[self._object_body].reshape(3, 3)
        pose[:3, 3] = self.data.xpos[self._object_body]
        return {"object": pose}

    def action_to_target_pose(self, action: np.ndarray) -> np.ndarray:
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(-1)[:6], -1.0, 1.0)
        pose = np.eye(4)
        pose[:3, 3] = self.data.site_xpos[self._eef_site] + MAX_DELTA_POS * a[:3]
        current = self.data.site_xmat[self._eef_site].reshape(3, 3)
        # The rotation delta acts in the world frame (left-multiplied), as in robosuite's OSC.
        pose[:3, :3] = matrix_from_rotvec(MAX_DELTA_ROT * a[3:6]) @ current
        return pose

    def target_pose_to_action(self, pose: np.ndarray, gripper: float) -> np.ndarray:
        """The wrist action towards `pose` (4, 4) and the fingers at grasp synergy level
        `gripper` (-1 open ... +1 closed)."""
        target = np.asarray(pose, dtype=np.float64)
        action = np.empty(self.action_space.shape[0])
        action[:3] = (target[:3, 3] - self.data.site_xpos[self._eef_site]) / MAX_DELTA_POS
        current = self.data.site_xmat[self._eef_site].reshape(3, 3)
        action[3:6] = rotvec_from_matrix(target[:3, :3] @ current.T) / MAX_DELTA_ROT
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
        eef_quat = np.empty(4)
        mujoco.mju_mat2Quat(eef_quat, d.site_xmat[self._eef_site])
        body = self._object_body
        # object (10,): world pos (3), quat wxyz (4), pos - eef_pos (3)
        objects = np.concatenate([d.xpos[body], d.xquat[body], d.xpos[body] - eef_pos])
        # object_shape (7,): one-hot of SHAPES (4), body-frame half extents (3)
        shape = np.zeros(len(SHAPES) + 3)
        shape[SHAPES.index(self.shape)] = 1.0
        shape[len(SHAPES) :] = self.half_extents
        obs = {
            "eef_pos": eef_pos.astype(np.float32),
            "eef_quat": eef_quat.astype(np.float32),
            "hand_qpos": d.qpos[self._finger_qpos].astype(np.float32),
            "hand_qvel": d.qvel[self._finger_dof].astype(np.float32),
            "object": objects.astype(np.float32),
            "object_shape": shape.astype(np.float32),
        }
        if self.camera:
            obs["agentview_image"] = self.render_frame("agentview", self.image_size)
            obs["eye_in_hand_image"] = self.render_frame("eye_in_hand", self.image_size)
        return obs

    def render_frame(self, camera: str, size: int = 84) -> np.ndarray:
        return self._cameras.render(self.data, camera, size)

    def render(self) -> np.ndarray:
        return self.render_frame("agentview", 256)

    @property
    def env_args(self) -> dict[str, Any]:
        kwargs = {"camera": self.camera, "image_size": self.image_size, "variant": self.variant}
        return {"env_name": self.name, "env_type": "apprentice", "env_kwargs": kwargs}
