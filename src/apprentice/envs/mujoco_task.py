"""The single-gripper built-in MuJoCo tasks (lift, stack, pick_place, peg_insert).

A parallel-jaw gripper moves through physics; it is never teleported. What carries it is the
task's body (`envs.bodies`): by default the gripper floats on six servoed joints; with
`body="arm"` it sits at the flange of a 7-DoF arm. An action (7,) in [-1, 1] is a
robosuite-OSC-style delta: position (x 0.05 m), axis-angle rotation in the world frame
(x 0.5 rad) and the gripper (-1 open, +1 close), whatever the body. The controller is
stateless: the target pose is the current eef pose composed with the scaled delta, and the
body turns it into servo targets.

A task subclass names its MJCF file and objects, draws the objects' start poses, and defines
success, subtask signals, its subtasks for generation and its oracle; the episode loop, the
state vector and the cameras are `mujoco_base.MujocoTaskBase`'s. Each task comes in
placement variants: "D0" (the default) and "D1", whose objects start over a wider area
(MimicGen's D0/D1), to test whether data and policies carry over to a broader distribution.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import gymnasium as gym
import mujoco
import numpy as np

from apprentice.envs.bodies import BODIES, EEF_IN_BODY, FINGER_CLOSED, FINGER_OPEN, body_class
from apprentice.envs.mujoco_base import (
    ASSETS,
    MujocoTaskBase,
    refuse_unknown_args,
)

# Re-exported: the robosuite tasks and generation import the rotation helpers from here.
from apprentice.envs.mujoco_perturb import SceneRandomizer, build_model
from apprentice.envs.perturb import AXES, Actuation, Perturbations

START_YAW_RANGE = math.pi / 4
"""Objects start with yaw in [-START_YAW_RANGE, START_YAW_RANGE]. Within a quarter turn the
grasp yaw is a continuous function of the object's yaw; over the full circle the nearest face
flips at +-45 degrees, a discontinuity a few hundred demos cannot teach a cloned policy."""

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


class MujocoTask(MujocoTaskBase):
    """A built-in manipulation task: see the module docstring for the gripper and actions."""

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
        refuse_unknown_args(
            self.name,
            kwargs,
            "camera (bool), image_size (int), variant (str) and the perturbation axes "
            f"{', '.join(self.perturbation_axes)} (a level in [0, 1] or a range LO:HI), "
            f"and body ({' or '.join(BODIES)})",
        )
        self.perturbations = Perturbations.build(
            self.name,
            self.perturbation_axes,
            perturb,
            axis_kwargs,
            self.unsupported_axes_reason,
        )
        self._body_name = body
        super().__init__(camera=camera, image_size=image_size, variant=variant, cameras=CAMERAS)
        m = self.model
        self._eef_site = m.site("eef").id
        self._gripper_body = m.body("gripper").id
        self._finger_qpos = np.array(
            [m.jnt_qposadr[m.joint(f).id] for f in ("finger_l", "finger_r")]
        )
        self._finger_ctrl = np.array([m.actuator(f).id for f in ("finger_l", "finger_r")])
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
            **self._image_spaces(),
        }
        self.observation_space = gym.spaces.Dict(spaces)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (7,), np.float32)
        self._reset_sim()

    def _build_model(self) -> mujoco.MjModel:
        body_type = body_class(self._body_name, self.name)
        model = build_model(ASSETS / self.xml_file, self.perturbations, body_type.scene)
        self.body = body_type(model)
        """What carries the gripper (`envs.bodies`)."""
        return model

    # --- episodes and actions ----------------------------------------------------------------

    def _start_episode(self, seed: int | None) -> None:
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

    def _reset_sim(self) -> None:
        mujoco.mj_resetData(self.model, self.data)
        self.body.reset(self.data)
        self.data.qpos[self._finger_qpos] = FINGER_OPEN
        self.data.ctrl[self._finger_ctrl] = FINGER_OPEN
        self._steps = 0

    def _action_error(self, action: Any) -> str:
        return f"action must be 7 finite numbers, got {action!r}"

    def _apply_action(self, action: np.ndarray) -> None:
        """Turn a clipped action (7,), through the actuation perturbations if any, into servo
        targets for the body's and fingers' joints."""
        if self._actuation.active:
            action = self._actuation(action)
        self.body.actuate(self.data, self.action_to_target_pose(action))
        self.data.ctrl[self._finger_ctrl] = finger_target(float(action[6]))

    def _extra_state(self) -> np.ndarray:
        return self._actuation.state()

    def _set_extra_state(self, extra: np.ndarray) -> None:
        self._actuation.set_state(extra)

    # --- poses and the controller ------------------------------------------------------------

    def eef_pose(self) -> np.ndarray:
        return self._site_pose(self._eef_site)

    def action_to_target_pose(self, action: np.ndarray) -> np.ndarray:
        return self._delta_target_pose(
            self._eef_site, np.asarray(action, dtype=np.float64).reshape(-1)[:6]
        )

    def target_pose_to_action(self, pose: np.ndarray, gripper: float) -> np.ndarray:
        action = np.empty(7)
        action[:6] = self._pose_delta(self._eef_site, pose)
        action[6] = gripper
        return np.clip(action, -1.0, 1.0)

    # --- observations ------------------------------------------------------------------------

    def get_observation(self) -> dict[str, np.ndarray]:
        d = self.data
        eef_pos = d.site_xpos[self._eef_site]
        bodies = self._object_bodies
        # object (10 * n_objects,): per object [world pos (3), quat wxyz (4), pos - eef_pos (3)]
        objects = np.concatenate(
            [d.xpos[bodies], d.xquat[bodies], d.xpos[bodies] - eef_pos], axis=1
        ).reshape(-1)
        return {
            "eef_pos": eef_pos.astype(np.float32),
            "eef_quat": self._site_quat(self._eef_site).astype(np.float32),
            "gripper_qpos": d.qpos[self._finger_qpos].astype(np.float32),
            "object": objects.astype(np.float32),
            **self.body.observe(d),
            **self._images(),
        }

    @property
    def env_args(self) -> dict[str, Any]:
        args = super().env_args
        kwargs = args["env_kwargs"]
        if self.body.name != "gripper":  # the default body leaves env_args as they were
            kwargs["body"] = self.body.name
        if self.perturbations:
            kwargs["perturb"] = self.perturbations.to_json()
        return args

    def object_scale(self, name: str) -> float:
        """The size factor of object `name` this episode (1 unless object_scale is on)."""
        return self._scene.scales[name]

    # --- helpers for subclasses --------------------------------------------------------------

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
