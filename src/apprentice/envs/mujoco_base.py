"""What every built-in MuJoCo task shares: the episode loop, the state vector, the cameras and
the robosuite-OSC-style delta action.

A task family (`mujoco_task.MujocoTask`: one gripper; `two_arm.TwoArmTask`: two arms;
`hand_grasp.HandGrasp`: a five-fingered hand) subclasses `MujocoTaskBase` and supplies its model
(`_build_model`), its observation and action spaces, how an action drives its actuators
(`_apply_action`) and how an episode starts (`_start_episode`, by default `_reset_sim` then
`_place_objects`). The base owns reset and step, the step count, `get_state`/`set_state`, the
object poses, rendering and `env_args`.

The state vector is [MuJoCo's integration state (mjSTATE_INTEGRATION: qpos, qvel, act, the
servo commands, userdata, ...), the task's extra state (`_extra_state`), the step count].

An eef's delta action (6,) in [-1, 1] moves its site by up to MAX_DELTA_POS (m) and turns it by
an axis-angle rotation in the world frame of up to MAX_DELTA_ROT (rad), as robosuite's OSC
controller does; `_delta_target_pose` and `_pose_delta` convert between the two.
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
from apprentice.envs.gl import rendering_hint
from apprentice.errors import ApprenticeError

ASSETS = Path(__file__).parent / "assets"

MAX_DELTA_POS = 0.05
"""Metres per step at |action| = 1, as robosuite's OSC controller."""
MAX_DELTA_ROT = 0.5
"""Radians per step at |action| = 1."""


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


def refuse_unknown_args(task: str, kwargs: dict[str, Any], accepts: str) -> None:
    """Refuse, in one line, constructor arguments a task does not take; `accepts` lists those
    it does."""
    if kwargs:
        raise ApprenticeError(
            f"task {task!r} got unknown arguments {sorted(kwargs)}; it accepts {accepts}"
        )


def action_fault(action: Any, n: int) -> str:
    """What is wrong with an action that is not `n` finite numbers: its shape, or NaN/inf."""
    return f"shape {np.shape(action)}" if np.size(action) != n else "NaN or inf"


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


class MujocoTaskBase(gym.Env[dict[str, np.ndarray], np.ndarray]):
    """A built-in MuJoCo task: see the module docstring for what a subclass supplies."""

    # Plain (not ClassVar) annotations: the Task protocol declares these as attributes.
    name: str = ""
    horizon: int = 100
    """Steps before an episode is truncated."""
    control_freq: float = 20.0
    observation_space: gym.spaces.Dict  # type: ignore[assignment]
    action_space: gym.spaces.Box
    subtasks: tuple[Subtask, ...] = ()
    xml_file: ClassVar[str] = ""
    """The task's MJCF file in `ASSETS`."""
    object_names: ClassVar[tuple[str, ...]] = ()
    """Bodies with a free joint whose poses the observation and `object_poses` report."""
    fixture_names: ClassVar[tuple[str, ...]] = ()
    """Fixed bodies (a bin, a peg) whose poses `object_poses` reports too, for generation."""
    placement: ClassVar[dict[str, float]] = {"D0": 0.0}
    """Variant name -> half-width (m) of the square the objects' start xy is drawn from."""
    n_substeps: ClassVar[int] = 10
    """Physics steps per env step: 10 x 5 ms = 50 ms = 1 / control_freq."""
    perturbation_axes: ClassVar[tuple[str, ...]] = ()
    """The axes of `envs.perturb` this task takes: none unless its scene has a
    SceneRandomizer."""

    def __init__(
        self, *, camera: Any, image_size: int, variant: str, cameras: tuple[str, ...]
    ) -> None:
        if not isinstance(camera, bool):
            raise ApprenticeError(
                f"task {self.name!r}: camera must be true or false, not {camera!r}"
            )
        check_variant_and_image_size(self.name, self.placement, variant, image_size)
        self.camera = camera
        self.image_size = image_size
        self.variant = variant
        self.xy_range = self.placement[variant]
        """Half-width (m) of the square the objects' start xy is drawn from."""
        self.metadata = {"render_modes": ["rgb_array"], "render_fps": self.control_freq}
        self.model = self._build_model()
        self.data = mujoco.MjData(self.model)
        m = self.model
        self._object_bodies = np.array([m.body(n).id for n in self.object_names], dtype=int)
        self._fixture_bodies = np.array([m.body(n).id for n in self.fixture_names], dtype=int)
        self._object_qpos = {
            n: int(m.jnt_qposadr[m.body_jntadr[m.body(n).id]]) for n in self.object_names
        }
        self._state_spec = mujoco.mjtState.mjSTATE_INTEGRATION
        self._physics_size = mujoco.mj_stateSize(m, self._state_spec)
        self._state_size = self._physics_size
        """Length of the state vector without the step count; a subclass with extra state
        adds its length."""
        self._steps = 0
        self._cameras = CameraRenderer(self.name, m, cameras)

    # --- hooks for the task subclasses -------------------------------------------------------

    def _build_model(self) -> mujoco.MjModel:
        """The task's model: `xml_file` as it is."""
        return mujoco.MjModel.from_xml_path(str(ASSETS / self.xml_file))

    def _reset_sim(self) -> None:
        """Reset the physics to the task's home state, before the objects are placed."""
        raise NotImplementedError

    def _place_objects(self, rng: np.random.Generator) -> None:
        """Draw the objects' start poses (with `set_object_pose`)."""
        raise NotImplementedError

    def _start_episode(self, seed: int | None) -> None:
        """Put the scene in an episode's start state, drawing from `self.np_random` (seeded
        with `seed` when given)."""
        self._reset_sim()
        self._place_objects(self.np_random)
        mujoco.mj_forward(self.model, self.data)

    def _action_error(self, action: Any) -> str:
        """The message refusing `action`, which is not `action_space`'s size of finite
        numbers: it says what the task's action dims are."""
        raise NotImplementedError

    def _apply_action(self, action: np.ndarray) -> None:
        """Turn a clipped action into targets for the task's actuators."""
        raise NotImplementedError

    def _extra_state(self) -> np.ndarray:
        """The task's state beyond MuJoCo's, in the state vector before the step count."""
        return np.empty(0)

    def _set_extra_state(self, extra: np.ndarray) -> None:
        """Restore what `_extra_state` returned."""

    def _set_physics_state(self, physics: np.ndarray) -> None:
        """Restore MuJoCo's integration state (the state vector's head)."""
        mujoco.mj_setState(self.model, self.data, physics, self._state_spec)

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
        self._start_episode(seed)
        return self.get_observation(), {"success": self.is_success()}

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != self.action_space.shape or not np.all(np.isfinite(a)):
            raise ApprenticeError(self._action_error(action))
        self._apply_action(np.clip(a, -1.0, 1.0))
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
        """[MuJoCo's integration state, the task's extra state, the step count]."""
        state = np.empty(self._state_size + 1)
        n = self._physics_size
        mujoco.mj_getState(self.model, self.data, state[:n], self._state_spec)
        state[n:-1] = self._extra_state()
        state[-1] = self._steps
        return state

    def set_state(self, state: np.ndarray) -> None:
        s = np.asarray(state, dtype=np.float64).reshape(-1)
        if s.shape != (self._state_size + 1,):
            raise ApprenticeError(
                f"state for task {self.name!r} must have {self._state_size + 1} values, "
                f"got {s.shape[0]}; was it recorded with another task or mujoco version?"
            )
        n = self._physics_size
        self._set_physics_state(np.ascontiguousarray(s[:n]))
        self._set_extra_state(s[n:-1])
        self._steps = int(s[-1])
        mujoco.mj_kinematics(self.model, self.data)

    @property
    def steps(self) -> int:
        """Env steps since the last reset."""
        return self._steps

    # --- poses and the delta action ----------------------------------------------------------

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

    def _site_pose(self, site: int) -> np.ndarray:
        """(4, 4) world pose of site `site` (an eef)."""
        pose = np.eye(4)
        pose[:3, :3] = self.data.site_xmat[site].reshape(3, 3)
        pose[:3, 3] = self.data.site_xpos[site]
        return pose

    def _site_quat(self, site: int) -> np.ndarray:
        """(4,) world orientation of site `site` as a quaternion, wxyz."""
        quat = np.empty(4)
        mujoco.mju_mat2Quat(quat, self.data.site_xmat[site])
        return quat

    def _delta_target_pose(self, site: int, delta: np.ndarray) -> np.ndarray:
        """The (4, 4) target pose that the delta action `delta` (6,) commands of eef site
        `site`; `delta` is clipped to [-1, 1]."""
        a = np.clip(delta, -1.0, 1.0)
        pose = np.eye(4)
        pose[:3, 3] = self.data.site_xpos[site] + MAX_DELTA_POS * a[:3]
        current = self.data.site_xmat[site].reshape(3, 3)
        # The rotation delta acts in the world frame (left-multiplied), as in robosuite's OSC.
        pose[:3, :3] = matrix_from_rotvec(MAX_DELTA_ROT * a[3:6]) @ current
        return pose

    def _pose_delta(self, site: int, pose: np.ndarray) -> np.ndarray:
        """The delta action (6,), not clipped, that moves eef site `site` to `pose` (4, 4)."""
        target = np.asarray(pose, dtype=np.float64)
        delta = np.empty(6)
        delta[:3] = (target[:3, 3] - self.data.site_xpos[site]) / MAX_DELTA_POS
        current = self.data.site_xmat[site].reshape(3, 3)
        delta[3:6] = rotvec_from_matrix(target[:3, :3] @ current.T) / MAX_DELTA_ROT
        return delta

    def set_object_pose(self, name: str, pos: np.ndarray, yaw: float) -> None:
        """Put a free object at `pos` (3,) turned `yaw` about world z, at rest."""
        adr = self._object_qpos[name]
        self.data.qpos[adr : adr + 3] = pos
        self.data.qpos[adr + 3 : adr + 7] = (math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2))

    # --- observations ------------------------------------------------------------------------

    def get_observation(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _image_spaces(self) -> dict[str, gym.spaces.Space[Any]]:
        """The observation spaces of the camera images: `{camera}_image` per camera, if any."""
        if not self.camera:
            return {}
        shape = (self.image_size, self.image_size, 3)
        return {
            f"{cam}_image": gym.spaces.Box(0, 255, shape, np.uint8) for cam in self._cameras.cameras
        }

    def _images(self) -> dict[str, np.ndarray]:
        """`{camera}_image` (image_size, image_size, 3) per camera, if the task has images."""
        if not self.camera:
            return {}
        return {
            f"{cam}_image": self.render_frame(cam, self.image_size) for cam in self._cameras.cameras
        }

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
        return {"env_name": self.name, "env_type": "apprentice", "env_kwargs": kwargs}
