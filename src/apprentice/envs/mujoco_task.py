"""The shared base of apprentice's built-in MuJoCo tasks.

A parallel-jaw gripper moves through physics; it is never teleported. What carries it is the
task's body (`envs.bodies`): by default the gripper floats on six servoed joints; with
`body="arm"` it sits at the flange of a 7-DoF arm. An action (7,) in [-1, 1] is a
robosuite-OSC-style delta: position (x 0.05 m), axis-angle rotation in the world frame
(x 0.5 rad) and the gripper (-1 open, +1 close), whatever the body. The controller is
stateless: the target pose is the current eef pose composed with the scaled delta, and the
body turns it into servo targets.

A task subclass names its MJCF file and objects, draws the objects' start poses, and defines
success, subtask signals, its subtasks for generation and its oracle. Each task comes in
placement variants: "D0" (the default) and "D1", whose objects start over a wider area
(MimicGen's D0/D1), to test whether data and policies carry over to a broader distribution.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import mujoco
import numpy as np

from apprentice.envs.base import Oracle, Subtask
from apprentice.envs.bodies import BODIES, EEF_IN_BODY, FINGER_CLOSED, FINGER_OPEN, body_class
from apprentice.envs.gl import rendering_hint
from apprentice.envs.mujoco_perturb import SceneRandomizer, build_model
from apprentice.envs.perturb import AXES, Actuation, Perturbations
from apprentice.errors import ApprenticeError

ASSETS = Path(__file__).parent / "assets"

START_YAW_RANGE = math.pi / 4
"""Objects start with yaw in [-START_YAW_RANGE, START_YAW_RANGE]. Within a quarter turn the
grasp yaw is a continuous function of the object's yaw; over the full circle the nearest face
flips at +-45 degrees, a discontinuity a few hundred demos cannot teach a cloned policy."""
MAX_DELTA_POS = 0.05
"""Metres per step at |action| = 1, as robosuite's OSC controller."""
MAX_DELTA_ROT = 0.5
"""Radians per step at |action| = 1."""

CAMERAS = ("agentview", "eye_in_hand")
GRASP_MIN_Z = 0.015
"""Lowest grasp point (m): the pad tips reach 13 mm below it and must clear the table."""


def topdown_rotation(yaw: float) -> np.ndarray:
    """(3, 3) eef rotation of a gripper pointing straight down, turned `yaw` about world z."""
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ EEF_IN_BODY


def yaw_of(rot: np.ndarray) -> float:
    """Yaw of a (3, 3) object rotation (the heading of its x axis in the table plane)."""
    return math.atan2(float(rot[1, 0]), float(rot[0, 0]))


def eef_yaw(rot: np.ndarray) -> float:
    """Yaw of a (3, 3) eef rotation, the inverse of `topdown_rotation` for top-down poses."""
    return yaw_of(rot @ EEF_IN_BODY)


def wrap_angle(angle: float) -> float:
    return (angle + math.pi) % (2.0 * math.pi) - math.pi


def nearest_symmetric_yaw(yaw: float, reference: float, period: float) -> float:
    """The yaw equivalent to `yaw` modulo `period` that lies closest to `reference`."""
    return reference + (wrap_angle(yaw - reference + period / 2) % period) - period / 2


def matrix_from_rotvec(rotvec: np.ndarray) -> np.ndarray:
    quat = np.zeros(4)
    angle = float(np.linalg.norm(rotvec))
    if angle < 1e-12:
        return np.eye(3)
    mujoco.mju_axisAngle2Quat(quat, rotvec / angle, angle)
    mat = np.zeros(9)
    mujoco.mju_quat2Mat(mat, quat)
    return mat.reshape(3, 3)


def rotvec_from_matrix(mat: np.ndarray) -> np.ndarray:
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.ascontiguousarray(mat, dtype=np.float64).reshape(9))
    rotvec = np.zeros(3)
    mujoco.mju_quat2Vel(rotvec, quat, 1.0)
    return rotvec


class MujocoTask(gym.Env[dict[str, np.ndarray], np.ndarray]):
    """A built-in manipulation task: see the module docstring for the gripper and actions."""

    # Plain (not ClassVar) annotations: the Task protocol declares these as attributes.
    name: str = ""
    horizon: int = 100
    """Steps before an episode is truncated."""
    control_freq: float = 20.0
    observation_space: gym.spaces.Dict  # type: ignore[assignment]
    action_space: gym.spaces.Box
    xml_file: ClassVar[str] = ""
    object_names: ClassVar[tuple[str, ...]] = ()
    """Bodies with a free joint whose poses the observation and `object_poses` report."""
    fixture_names: ClassVar[tuple[str, ...]] = ()
    """Fixed bodies (a bin, a peg) whose poses `object_poses` reports too, for generation."""
    subtasks: tuple[Subtask, ...] = ()
    placement: ClassVar[dict[str, float]] = {"D0": 0.0}
    """Variant name -> half-width (m) of the square the objects' start xy is drawn from."""
    n_substeps: ClassVar[int] = 10
    """Physics steps per env step: 10 x 5 ms = 50 ms = 1 / control_freq."""
    perturbation_axes: ClassVar[tuple[str, ...]] = AXES
    """The axes of `envs.perturb` this task takes."""
    unsupported_axes_reason: ClassVar[str] = ""
    """Why the axes missing from `perturbation_axes` are missing."""

    def __init__(
        self,
        *,
        camera: Any = False,
        image_size: int = 84,
        variant: str = "D0",
        body: str = "gripper",
        perturb: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        axis_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in AXES}
        if not isinstance(camera, bool):  # a level or a range: the camera axis
            axis_kwargs["camera"], camera = camera, False
        if kwargs:
            raise ApprenticeError(
                f"task {self.name!r} got unknown arguments {sorted(kwargs)}; it accepts camera "
                "(bool), image_size (int), variant (str) and the perturbation axes "
                f"{', '.join(self.perturbation_axes)} (a level in [0, 1] or a range LO:HI), "
                f"and body ({' or '.join(BODIES)})"
            )
        self.perturbations = Perturbations.build(
            self.name,
            self.perturbation_axes,
            perturb,
            axis_kwargs,
            self.unsupported_axes_reason,
        )
        check_variant_and_image_size(self.name, self.placement, variant, image_size)
        self.variant = variant
        self.xy_range = self.placement[variant]
        """Half-width (m) of the square the objects' start xy is drawn from."""
        self.metadata = {"render_modes": ["rgb_array"], "render_fps": self.control_freq}
        self.camera = camera
        self.image_size = image_size
        body_type = body_class(body, self.name)
        self.model = build_model(ASSETS / self.xml_file, self.perturbations, body_type.scene)
        self.data = mujoco.MjData(self.model)
        m = self.model
        self.body = body_type(m)
        """What carries the gripper (`envs.bodies`)."""
        self._eef_site = m.site("eef").id
        self._gripper_body = m.body("gripper").id
        self._finger_qpos = np.array(
            [m.jnt_qposadr[m.joint(f).id] for f in ("finger_l", "finger_r")]
        )
        self._finger_ctrl = np.array([m.actuator(f).id for f in ("finger_l", "finger_r")])
        self._object_bodies = np.array([m.body(n).id for n in self.object_names], dtype=int)
        self._fixture_bodies = np.array([m.body(n).id for n in self.fixture_names], dtype=int)
        self._object_qpos = {
            n: int(m.jnt_qposadr[m.body_jntadr[m.body(n).id]]) for n in self.object_names
        }
        self._state_spec = mujoco.mjtState.mjSTATE_INTEGRATION
        self._state_size = mujoco.mj_stateSize(m, self._state_spec)
        self._steps = 0
        self._cameras = CameraRenderer(self.name, m, CAMERAS)
        self._scene = SceneRandomizer(m, self.perturbations, self._object_bodies, self.object_names)
        self._actuation = Actuation(self.perturbations, hold=np.r_[np.zeros(6), -1.0])
        self._state_size += self._actuation.state_size
        self._perturb_stream = np.random.default_rng()
        """Episode keys of the perturbation draws for resets without a seed."""

        box = gym.spaces.Box
        spaces: dict[str, gym.spaces.Space[Any]] = {
            "eef_pos": box(-np.inf, np.inf, (3,), np.float32),
            "eef_quat": box(-1.0, 1.0, (4,), np.float32),
            "gripper_qpos": box(-np.inf, np.inf, (2,), np.float32),
            "object": box(-np.inf, np.inf, (10 * len(self.object_names),), np.float32),
            **self.body.observation_spaces(),
        }
        if camera:
            shape = (image_size, image_size, 3)
            spaces["agentview_image"] = box(0, 255, shape, np.uint8)
            spaces["eye_in_hand_image"] = box(0, 255, shape, np.uint8)
        self.observation_space = gym.spaces.Dict(spaces)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (7,), np.float32)
        self._reset_sim()

    # --- hooks for the task subclasses -------------------------------------------------------

    def _place_objects(self, rng: np.random.Generator) -> None:
        """Draw the objects' start poses (with `set_object_pose`)."""
        raise NotImplementedError

    def is_success(self) -> bool:
        raise NotImplementedError

    def subtask_signals(self) -> dict[str, bool]:
        raise NotImplementedError

    def oracle(self, rng: np.random.Generator) -> Oracle:
        raise NotImplementedError

    # --- gymnasium ---------------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        self._reset_sim()
        if self.perturbations:
            if seed is not None:
                self._perturb_stream = np.random.default_rng([seed, 1])
            key = seed if seed is not None else int(self._perturb_stream.integers(2**62))
            rngs = self.perturbations.rngs(key)
            if self._scene.reset(rngs):
                # Masses and sizes changed: refresh what the constraint solver derives from them
                # (the inverse weights that scale contact softness).
                mujoco.mj_setConst(self.model, self.data)
                self._reset_sim()
            self._actuation.reset(rngs)
        self._place_objects(self.np_random)
        mujoco.mj_forward(self.model, self.data)
        if self.perturbations:
            poses = self.object_poses()
            self._scene.place_distractors(
                rngs.get("distractors"), [p[:3, 3] for p in poses.values()]
            )
            mujoco.mj_forward(self.model, self.data)
        return self.get_observation(), {"success": self.is_success()}

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (7,) or not np.all(np.isfinite(a)):
            raise ApprenticeError(f"action must be 7 finite numbers, got {action!r}")
        a = np.clip(a, -1.0, 1.0)
        self._apply_action(self._actuation(a) if self._actuation.active else a)
        mujoco.mj_step(self.model, self.data, self.n_substeps)
        # mj_step leaves body poses at the state before the last integration; recompute them
        # (kinematics only, cheap) so observations and signals describe the state now.
        mujoco.mj_kinematics(self.model, self.data)
        self._steps += 1
        success = self.is_success()
        truncated = self._steps >= self.horizon
        return self.get_observation(), float(success), False, truncated, {"success": success}

    def close(self) -> None:
        self._cameras.close()

    # --- state -------------------------------------------------------------------------------

    def get_state(self) -> np.ndarray:
        state = np.empty(self._state_size + 1)
        n = self._state_size - self._actuation.state_size
        mujoco.mj_getState(self.model, self.data, state[:n], self._state_spec)
        state[n:-1] = self._actuation.state()
        state[-1] = self._steps
        return state

    def set_state(self, state: np.ndarray) -> None:
        s = np.asarray(state, dtype=np.float64).reshape(-1)
        if s.shape != (self._state_size + 1,):
            raise ApprenticeError(
                f"state for task {self.name!r} must have {self._state_size + 1} values, "
                f"got {s.shape[0]}; was it recorded with another task or mujoco version?"
            )
        n = self._state_size - self._actuation.state_size
        mujoco.mj_setState(self.model, self.data, np.ascontiguousarray(s[:n]), self._state_spec)
        self._actuation.set_state(s[n:-1])
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
        poses = {}
        names = self.object_names + self.fixture_names
        bodies = np.concatenate([self._object_bodies, self._fixture_bodies])
        for name, body in zip(names, bodies, strict=True):
            pose = np.eye(4)
            pose[:3, :3] = self.data.xmat[body].reshape(3, 3)
            pose[:3, 3] = self.data.xpos[body]
            poses[name] = pose
        return poses

    def action_to_target_pose(self, action: np.ndarray) -> np.ndarray:
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(-1)[:6], -1.0, 1.0)
        pose = np.eye(4)
        pose[:3, 3] = self.data.site_xpos[self._eef_site] + MAX_DELTA_POS * a[:3]
        current = self.data.site_xmat[self._eef_site].reshape(3, 3)
        # The rotation delta acts in the world frame (left-multiplied), as in robosuite's OSC.
        pose[:3, :3] = matrix_from_rotvec(MAX_DELTA_ROT * a[3:6]) @ current
        return pose

    def target_pose_to_action(self, pose: np.ndarray, gripper: float) -> np.ndarray:
        target = np.asarray(pose, dtype=np.float64)
        action = np.empty(7)
        action[:3] = (target[:3, 3] - self.data.site_xpos[self._eef_site]) / MAX_DELTA_POS
        current = self.data.site_xmat[self._eef_site].reshape(3, 3)
        action[3:6] = rotvec_from_matrix(target[:3, :3] @ current.T) / MAX_DELTA_ROT
        action[6] = gripper
        return np.clip(action, -1.0, 1.0)

    def _apply_action(self, action: np.ndarray) -> None:
        """Turn a clipped action (7,) into servo targets for the body's and fingers' joints."""
        self.body.actuate(self.data, self.action_to_target_pose(action))
        self.data.ctrl[self._finger_ctrl] = finger_target(float(action[6]))

    # --- observations ------------------------------------------------------------------------

    def get_observation(self) -> dict[str, np.ndarray]:
        d = self.data
        eef_pos = d.site_xpos[self._eef_site]
        eef_quat = np.empty(4)
        mujoco.mju_mat2Quat(eef_quat, d.site_xmat[self._eef_site])
        bodies = self._object_bodies
        # object (10 * n_objects,): per object [world pos (3), quat wxyz (4), pos - eef_pos (3)]
        objects = np.concatenate(
            [d.xpos[bodies], d.xquat[bodies], d.xpos[bodies] - eef_pos], axis=1
        ).reshape(-1)
        obs = {
            "eef_pos": eef_pos.astype(np.float32),
            "eef_quat": eef_quat.astype(np.float32),
            "gripper_qpos": d.qpos[self._finger_qpos].astype(np.float32),
            "object": objects.astype(np.float32),
            **self.body.observe(d),
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
        kwargs: dict[str, Any] = {
            "camera": self.camera,
            "image_size": self.image_size,
            "variant": self.variant,
        }
        if self.body.name != "gripper":  # the default body leaves env_args as they were
            kwargs["body"] = self.body.name
        if self.perturbations:
            kwargs["perturb"] = self.perturbations.to_json()
        return {"env_name": self.name, "env_type": "apprentice", "env_kwargs": kwargs}

    def object_scale(self, name: str) -> float:
        """The size factor of object `name` this episode (1 unless object_scale is on)."""
        return self._scene.scales[name]

    # --- helpers for subclasses --------------------------------------------------------------

    def _reset_sim(self) -> None:
        mujoco.mj_resetData(self.model, self.data)
        self.body.reset(self.data)
        self.data.qpos[self._finger_qpos] = FINGER_OPEN
        self.data.ctrl[self._finger_ctrl] = FINGER_OPEN
        self._steps = 0

    def set_object_pose(self, name: str, pos: np.ndarray, yaw: float) -> None:
        """Put a free object at `pos` (3,) turned `yaw` about world z, at rest."""
        adr = self._object_qpos[name]
        self.data.qpos[adr : adr + 3] = pos
        self.data.qpos[adr + 3 : adr + 7] = (math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2))

    def finger_gap(self) -> float:
        """Distance (m) between the finger pads."""
        return float(self.data.qpos[self._finger_qpos].sum())

    def holds(self, point: np.ndarray, half_width: float) -> bool:
        """Whether the closed fingers squeeze a part `half_width` thick whose centre is `point`.

        A geometric test, so it is a pure function of the simulator state (exact on replay).
        """
        return gripper_holds(
            self.data, self._gripper_body, self._finger_qpos, self._finger_ctrl, point, half_width
        )


def check_variant_and_image_size(
    task: str, placement: dict[str, float], variant: str, image_size: Any
) -> None:
    """Refuse, in one line, a placement variant the task lacks or an image size outside
    [8, 512] (the checks every built-in MuJoCo task's constructor makes)."""
    if variant not in placement:
        raise ApprenticeError(
            f"task {task!r} has no variant {variant!r}; its variants are {', '.join(placement)}"
        )
    if (
        isinstance(image_size, bool)
        or not isinstance(image_size, int)
        or not 8 <= image_size <= 512
    ):
        raise ApprenticeError(f"image_size must be an int in [8, 512], not {image_size!r}")


class CameraRenderer:
    """Images of a model's named cameras: one `mujoco.Renderer` per image size, each made on
    first use so that low-dim envs never open a GL context."""

    def __init__(self, task: str, model: mujoco.MjModel, cameras: tuple[str, ...]) -> None:
        self.task = task
        self.model = model
        self.cameras = cameras
        self._renderers: dict[int, mujoco.Renderer] = {}

    def render(self, data: mujoco.MjData, camera: str, size: int) -> np.ndarray:
        """An (size, size, 3) uint8 image of `data`'s state from `camera`."""
        if camera not in self.cameras:
            raise ApprenticeError(f"unknown camera {camera!r}; cameras: {', '.join(self.cameras)}")
        if not 8 <= size <= 512:
            raise ApprenticeError(f"frame size must be in [8, 512], not {size}")
        renderer = self._renderers.get(size)
        if renderer is None:
            try:
                renderer = mujoco.Renderer(self.model, size, size)
            except (mujoco.FatalError, RuntimeError, AttributeError, ImportError, OSError) as e:
                raise ApprenticeError(
                    f"task {self.task}: cannot render camera {camera!r}: {e} "
                    f"{rendering_hint(os.environ)}"
                ) from None
            self._renderers[size] = renderer
        renderer.update_scene(data, camera=camera)
        return np.asarray(renderer.render(), dtype=np.uint8)

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()


def finger_target(gripper: float) -> float:
    """The finger servos' target (m) for a gripper action in [-1 open, +1 closed]."""
    closed = (gripper + 1.0) / 2.0
    return FINGER_OPEN + (FINGER_CLOSED - FINGER_OPEN) * closed


def gripper_holds(
    data: mujoco.MjData,
    gripper_body: int,
    finger_qpos: np.ndarray,
    finger_ctrl: np.ndarray,
    point: np.ndarray,
    half_width: float,
) -> bool:
    """Whether the gripper on body `gripper_body` (its finger joints' qpos addresses and
    servos given) squeezes a part `half_width` thick whose centre is `point` (3,), closing."""
    d = data
    local = d.xmat[gripper_body].reshape(3, 3).T @ (point - d.xpos[gripper_body])
    fingers = d.qpos[finger_qpos]
    closing = bool(d.ctrl[finger_ctrl[0]] < 0.5 * FINGER_OPEN)
    return bool(
        closing
        and abs(local[0]) < 0.02
        and abs(local[1]) < 0.012
        and -0.01 < local[2] < 0.03
        # Soft contacts let the pads sink up to ~6 mm into a part while it is jerked about;
        # fingers closed on nothing read about -4 mm, which the lower bound rejects.
        and np.all(fingers < half_width + 0.006)
        and np.all(fingers > min(half_width - 0.01, 0.0))
    )
