"""The adapter: one robosuite env behind apprentice's Task protocol.

What it adds to robosuite, and why:

- Observations are robomimic's low-dim keys (robot0_eef_pos, robot0_eef_quat,
  robot0_gripper_qpos, the same of robot1 where there are two arms, object), computed from
  the current state every time, so they are a pure function of the simulator state
  (robosuite's own lag a physics substep behind it, see `step` and `get_observation`).
  Camera images, when asked for, are rendered upright with MuJoCo's renderer, as robomimic
  stores them ("agentview_image", "robot0_eye_in_hand_image"); robosuite's offscreen renderer
  stays off.
- `get_state` starts with robosuite's flattened state [time, qpos, qvel], which is what
  robomimic's datasets store and what its `reset_to` reads (it slices that prefix, so the
  longer vector still works there); the rest is what exact replay also needs and robosuite
  keeps outside it: MuJoCo's warm start, controls and applied forces, per arm the Panda
  gripper's ramped command and the OSC controller's nullspace posture (drawn per episode),
  and the step.
- Seeds: `reset(seed=s)` reseeds the generator that robosuite's placement samplers and
  initial-joint noise share, in place, so a seed gives the same initial state in any process.
- The eef pose is the pose of the grip site, the frame the OSC_POSE controller moves; actions
  are robosuite's: position delta (x 0.05 m) and axis-angle delta (x 0.5 rad), both in the
  controller's frame (the robot base, or the world where the config says so), and the gripper
  (-1 open, +1 closed); with several arms, one such block (7,) per arm in robosuite's order.
  The single-arm methods (`eef_pose`, `target_pose_to_action`, `holds`) read and drive arm 0
  unless given `arm=i`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, ClassVar

import gymnasium as gym
import mujoco
import numpy as np
import robosuite

from apprentice.envs.base import Oracle, Subtask
from apprentice.envs.mujoco_base import matrix_from_rotvec, rotvec_from_matrix
from apprentice.envs.mujoco_perturb import SceneRandomizer
from apprentice.envs.perturb import AXES, Actuation, Perturbations
from apprentice.envs.robosuite import PERTURBATION_AXES, UNSUPPORTED_AXES_REASON
from apprentice.errors import ApprenticeError

MAX_DELTA_POS = 0.05
"""Metres per step at |action| = 1 (OSC_POSE output_max of robomimic's datasets)."""
MAX_DELTA_ROT = 0.5
"""Radians per step at |action| = 1."""
CONTROL_FREQ = 20
CAMERAS = {"agentview": "agentview", "robot0_eye_in_hand": "robot0_eye_in_hand"}
"""Camera names (the observation key is NAME_image, as in robomimic's datasets)."""
ARM_ACTION = 7
"""Action dims per arm: eef delta position (3), rotation (3), gripper (1)."""
LOW_DIM_KEYS = ("eef_pos", "eef_quat", "gripper_qpos")
"""Each arm's low-dim observations, as robot{i}_KEY."""

OSC_POSE = {
    "type": "OSC_POSE",
    "input_max": 1,
    "input_min": -1,
    "output_max": [MAX_DELTA_POS] * 3 + [MAX_DELTA_ROT] * 3,
    "output_min": [-MAX_DELTA_POS] * 3 + [-MAX_DELTA_ROT] * 3,
    "kp": 150,
    "damping_ratio": 1,
    "impedance_mode": "fixed",
    "kp_limits": [0, 300],
    "damping_ratio_limits": [0, 10],
    "position_limits": None,
    "orientation_limits": None,
    "uncouple_pos_ori": True,
    "input_type": "delta",
    "input_ref_frame": "base",
    "interpolation": None,
    "ramp_ratio": 0.2,
    "gripper": {"type": "GRIP"},
}
"""robomimic's OSC_POSE settings, in robosuite 1.5's composite-controller layout."""
CONTROLLER_CONFIGS = {"type": "BASIC", "body_parts": {"right": OSC_POSE}}
PART_CONTROLLERS = ("OSC_POSE", "OSC_POSITION", "IK_POSE", "JOINT_POSITION", "JOINT_VELOCITY")
_RENAMED_1_4 = {"damping": "damping_ratio", "damping_limits": "damping_ratio_limits"}


def composite_controller_config(config: dict[str, Any]) -> dict[str, Any]:
    """robosuite 1.5's layout of a controller config; robomimic's datasets from robosuite
    1.4 store a bare arm config ({"type": "OSC_POSE", "damping": ..., "control_delta": ...}),
    which robosuite 1.5's `make` no longer accepts."""
    if config.get("type") not in PART_CONTROLLERS:
        return config
    arm = {_RENAMED_1_4.get(k, k): v for k, v in config.items() if k != "control_delta"}
    if "control_delta" in config:
        arm["input_type"] = "delta" if config["control_delta"] else "absolute"
    arm.setdefault("gripper", {"type": "GRIP"})
    return {"type": "BASIC", "body_parts": {"right": arm}}


OWN_KWARGS = ("camera", "image_size")
"""Keyword arguments of apprentice's own; every other one goes to `robosuite.make`."""
RENDER_KWARGS = (
    "has_renderer",
    "has_offscreen_renderer",
    "use_camera_obs",
    "camera_names",
    "camera_heights",
    "camera_widths",
    "camera_depths",
    "render_gpu_device_id",
)
"""robosuite's rendering switches: recorded in env_args for robomimic, decided here by `camera`."""

# MuJoCo state beyond robosuite's [time, qpos, qvel] that the next step depends on.
_EXTRA_STATE = int(mujoco.mjtState.mjSTATE_INTEGRATION) & ~int(
    mujoco.mjtState.mjSTATE_TIME | mujoco.mjtState.mjSTATE_QPOS | mujoco.mjtState.mjSTATE_QVEL
)


class _ArmParts:
    """One robot of the env as the adapter reads and drives it."""

    def __init__(self, robot: Any) -> None:
        self.robot = robot
        self.eef_site = int(robot.eef_site_id["right"])
        self.osc = robot.part_controllers["right"]
        self.gripper = robot.gripper["right"]
        self.n_joints = len(self.osc.initial_joint)
        self.world_frame = self.osc.input_ref_frame == "world"
        """Whether the OSC reads its deltas in the world frame (else in the robot base's)."""


def _pose(pos: np.ndarray, mat: np.ndarray) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = np.asarray(mat, dtype=np.float64).reshape(3, 3)
    pose[:3, 3] = pos
    return pose


class RobosuiteTask(gym.Env[dict[str, np.ndarray], np.ndarray]):
    """A robosuite task with Pandas on OSC_POSE (one, unless `robots` names more): see the
    module docstring."""

    name: str = ""
    env_name: ClassVar[str] = ""
    """robosuite's name of the env (and of the task in apprentice's registry)."""
    robots: ClassVar[tuple[str, ...]] = ("Panda",)
    """The robots robosuite builds, in action order."""
    env_defaults: ClassVar[dict[str, Any]] = {}
    """The task's own defaults of robosuite's env_kwargs, over the single-arm ones."""
    cameras: ClassVar[dict[str, str]] = CAMERAS
    """The cameras of image observations and `render_frame`, the first `render`'s."""
    horizon: int = 400
    """Steps before an episode is truncated (robomimic's rollout horizon for these tasks)."""
    control_freq: float = float(CONTROL_FREQ)
    observation_space: gym.spaces.Dict  # type: ignore[assignment]
    action_space: gym.spaces.Box
    subtasks: tuple[Subtask, ...] = ()
    perturbation_axes: ClassVar[tuple[str, ...]] = PERTURBATION_AXES
    unsupported_axes_reason: ClassVar[str] = UNSUPPORTED_AXES_REASON

    def __init__(
        self,
        *,
        camera: Any = None,
        image_size: int | None = None,
        perturb: dict[str, Any] | None = None,
        **env_kwargs: Any,
    ) -> None:
        axis_kwargs = {k: env_kwargs.pop(k) for k in list(env_kwargs) if k in AXES}
        if camera is not None and not isinstance(camera, bool):  # a level: the camera axis
            axis_kwargs["camera"], camera = camera, None
        self.perturbations = Perturbations.build(
            self.env_name,
            self.perturbation_axes,
            perturb,
            axis_kwargs,
            self.unsupported_axes_reason,
        )
        # Unless told, follow the env_kwargs (of a robomimic file, or of our own env_args).
        if camera is None:
            camera = bool(env_kwargs.get("use_camera_obs", False))
        if image_size is None:
            image_size = env_kwargs.get("camera_heights", 84)
        if not isinstance(camera, bool):
            raise ApprenticeError(f"camera must be True or False, not {camera!r}")
        if (
            isinstance(image_size, bool)
            or not isinstance(image_size, int)
            or not (8 <= image_size <= 512)
        ):
            raise ApprenticeError(f"image_size must be an int in [8, 512], not {image_size!r}")
        self.camera = camera
        self.image_size = image_size
        self.metadata = {"render_modes": ["rgb_array"], "render_fps": self.control_freq}
        kwargs = self._robosuite_kwargs(env_kwargs)
        self._kwargs = kwargs
        made = {k: v for k, v in kwargs.items() if k not in RENDER_KWARGS}
        try:
            self.env = robosuite.make(
                self.env_name,
                has_renderer=False,
                has_offscreen_renderer=False,
                use_camera_obs=False,
                **made,
            )
        except (TypeError, ValueError, AssertionError, KeyError) as e:
            raise ApprenticeError(
                f"robosuite could not make {self.env_name!r} from env_kwargs {made}: {e}"
            ) from None
        n_arms = len(self.robots)
        if len(self.env.robots) != n_arms or self.env.action_dim != ARM_ACTION * n_arms:
            raise ApprenticeError(
                f"task {self.env_name!r} supports {n_arms} arm(s) with OSC_POSE "
                f"({ARM_ACTION * n_arms} actions); env_kwargs give {len(self.env.robots)} robots "
                f"and {self.env.action_dim} actions"
            )
        self._renderers: dict[int, mujoco.Renderer] = {}
        self._steps = 0
        self.env.reset()
        self._bind()
        objects = [o.root_body for o in self.env.model.mujoco_objects]
        self._scene = SceneRandomizer(
            self._model,
            self.perturbations,
            [self._model.body(name).id for name in objects],
            objects,
        )
        hold = np.tile(np.r_[np.zeros(6), -1.0], n_arms)
        self._actuation = Actuation(self.perturbations, hold=hold)
        self._perturb_stream = np.random.default_rng()
        box = gym.spaces.Box
        obs = self.get_observation()
        spaces: dict[str, gym.spaces.Space[Any]] = {
            k: box(-np.inf, np.inf, v.shape, np.float32) for k, v in obs.items() if v.ndim == 1
        }
        if camera:
            shape = (image_size, image_size, 3)
            for cam in self.cameras:
                spaces[f"{cam}_image"] = box(0, 255, shape, np.uint8)
        self.observation_space = gym.spaces.Dict(spaces)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ARM_ACTION * n_arms,), np.float32)

    def _robosuite_kwargs(self, env_kwargs: dict[str, Any]) -> dict[str, Any]:
        """robomimic-style env_kwargs: the defaults of robomimic's datasets, then the caller's."""
        kwargs: dict[str, Any] = {
            "robots": list(self.robots),
            "controller_configs": json.loads(json.dumps(CONTROLLER_CONFIGS)),
            "control_freq": CONTROL_FREQ,
            "reward_shaping": False,
            "ignore_done": True,
            "use_object_obs": True,
            # Reloading the MJCF on every reset (robosuite's default) costs ~0.2 s, and would
            # redraw the model (Lift's cube size) each episode: a state could not replay alone.
            "hard_reset": False,
            # Seeds what robosuite draws when it builds the model (Lift's cube size): every
            # instance, in any process, then builds the same model, so a state alone replays.
            # Episodes are seeded by `reset(seed=...)`.
            "seed": 0,
        }
        kwargs.update(json.loads(json.dumps(self.env_defaults)))
        kwargs.update(env_kwargs)
        kwargs["controller_configs"] = composite_controller_config(kwargs["controller_configs"])
        if kwargs.get("control_freq") != CONTROL_FREQ:
            raise ApprenticeError(
                f"task {self.env_name!r} runs at control_freq {CONTROL_FREQ}, "
                f"not {kwargs.get('control_freq')!r}"
            )
        kwargs["ignore_done"] = True  # the horizon is apprentice's to enforce
        kwargs["use_object_obs"] = True
        kwargs.update(
            has_renderer=False,
            has_offscreen_renderer=self.camera,
            use_camera_obs=self.camera,
            camera_names=list(self.cameras),
            camera_heights=self.image_size,
            camera_widths=self.image_size,
            camera_depths=False,
        )
        return kwargs

    def _bind(self) -> None:
        """Look up what the adapter reads from the sim (ids, controllers, the gripper)."""
        env = self.env
        self.sim = env.sim
        self._model = env.sim.model._model
        self._data = env.sim.data._data
        self._arms = [_ArmParts(robot) for robot in env.robots]
        self._flat_size = 1 + self._model.nq + self._model.nv
        self._extra_size = mujoco.mj_stateSize(self._model, _EXTRA_STATE)

    # --- hooks for the task subclasses -------------------------------------------------------

    def object_poses(self) -> dict[str, np.ndarray]:
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
        if self.perturbations:
            # Before robosuite's reset, which places the objects: mj_setConst (after new
            # masses) works on the data, and the reset then starts it afresh.
            if seed is not None:
                self._perturb_stream = np.random.default_rng([seed, 1])
            key = seed if seed is not None else int(self._perturb_stream.integers(2**62))
            rngs = self.perturbations.rngs(key)
            if self._scene.reset(rngs):
                mujoco.mj_setConst(self._model, self._data)
            self._actuation.reset(rngs)
        if seed is not None:
            # In place: the placement samplers and the robot hold this very generator.
            fresh = np.random.default_rng(seed).bit_generator.state
            self.env.rng.bit_generator.state = fresh
        self.env.reset()
        # The controllers are rebuilt on every reset; the ids stay (no hard reset).
        self._bind()
        self._refresh_controllers()
        self._steps = 0
        return self.get_observation(), {"success": self.is_success()}

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        n = self.action_space.shape[0]
        if a.shape != (n,) or not np.all(np.isfinite(a)):
            raise ApprenticeError(f"action must be {n} finite numbers, got {action!r}")
        a = np.clip(a, -1.0, 1.0)
        self.env.step(self._actuation(a) if self._actuation.active else a)
        # robosuite's "lite physics" leaves body poses and contacts at the state before the last
        # integration substep; recompute them (state unchanged: mj_forward does not touch the
        # warm start) so observations, success and signals describe the state now, the same
        # values `set_state` of this state gives.
        self.sim.forward()
        self._steps += 1
        success = self.is_success()
        truncated = self._steps >= self.horizon
        return self.get_observation(), float(success), False, truncated, {"success": success}

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()
        self.env.close()

    def is_success(self) -> bool:
        """robosuite's own success check, the one robomimic's evaluation reports."""
        return bool(self.env._check_success())

    # --- state -------------------------------------------------------------------------------

    @property
    def state_size(self) -> int:
        arms = sum(2 + arm.n_joints for arm in self._arms)
        return self._flat_size + self._extra_size + arms + self._delay_size + 1

    @property
    def _delay_size(self) -> int:
        return self._actuation.state_size

    def get_state(self) -> np.ndarray:
        flat = np.asarray(self.sim.get_state().flatten(), dtype=np.float64)
        extra = np.empty(self._extra_size)
        mujoco.mj_getState(self._model, self._data, extra, _EXTRA_STATE)
        arms = []
        for arm in self._arms:
            # The Panda gripper's command ramps by 0.2 a step (shape (1,) until the first step).
            current = np.asarray(arm.gripper.current_action, dtype=np.float64)
            arms += [np.broadcast_to(current, (2,)), np.asarray(arm.osc.initial_joint, float)]
        delay = self._actuation.state()
        return np.concatenate([flat, extra, *arms, delay, [float(self._steps)]])

    def set_state(self, state: np.ndarray) -> None:
        """Restore a state of `get_state`, or robosuite's bare [time, qpos, qvel] (as in a
        robomimic dataset, replayed then as robomimic replays it: not bit-exactly)."""
        s = np.asarray(state, dtype=np.float64).reshape(-1)
        if s.shape[0] not in (self.state_size, self._flat_size):
            raise ApprenticeError(
                f"state for task {self.env_name!r} must have {self.state_size} values "
                f"(or robosuite's {self._flat_size}), got {s.shape[0]}; "
                "was it recorded with another task or robosuite version?"
            )
        self.sim.set_state_from_flattened(s[: self._flat_size])
        if s.shape[0] == self.state_size:
            i = self._flat_size
            extra = np.ascontiguousarray(s[i : i + self._extra_size])
            mujoco.mj_setState(self._model, self._data, extra, _EXTRA_STATE)
            i += self._extra_size
            for arm in self._arms:
                arm.gripper.current_action = s[i : i + 2].copy()
                i += 2
                arm.osc.initial_joint = s[i : i + arm.n_joints].copy()
                i += arm.n_joints
            self._actuation.set_state(s[i : i + self._delay_size])
            self._steps = int(s[-1])
        self.sim.forward()
        self._refresh_controllers()

    def _refresh_controllers(self) -> None:
        """Make the controllers read the state now at their next update.

        They cache the arm's Jacobians and mass matrix between updates; after a reset the cache
        holds what robosuite computed before it set the fingers, after `set_state` another
        state. Either would make the next step depend on more than the state.
        """
        for arm in self._arms:
            for controller in arm.robot.part_controllers.values():
                controller.new_update = True

    @property
    def steps(self) -> int:
        """Env steps since the last reset."""
        return self._steps

    # --- poses and the controller ------------------------------------------------------------

    def eef_pose(self, arm: int = 0) -> np.ndarray:
        """(4, 4) eef pose of arm `arm` (the first unless given) in the world frame."""
        d, site = self._data, self._arms[arm].eef_site
        return _pose(d.site_xpos[site], d.site_xmat[site])

    def eef_poses(self) -> list[np.ndarray]:
        return [self.eef_pose(i) for i in range(len(self._arms))]

    def body_pose(self, body_id: int) -> np.ndarray:
        d = self._data
        return _pose(d.xpos[body_id], d.xmat[body_id])

    def _action_frame(self, arm: int) -> np.ndarray:
        """(3, 3) rotation of the frame arm `arm`'s OSC deltas act in (its base, or the world)."""
        if self._arms[arm].world_frame:
            return np.eye(3)
        base = self._arms[arm].robot.robot_model.root_body
        return np.asarray(self.sim.data.get_body_xmat(base), dtype=np.float64).reshape(3, 3)

    def action_to_target_pose(self, action: np.ndarray, arm: int = 0) -> np.ndarray:
        """The (4, 4) eef target pose of arm `arm` that `action` (A,) commands."""
        start = ARM_ACTION * arm
        a = np.asarray(action, dtype=np.float64).reshape(-1)[start : start + 6]
        a = np.clip(a, -1.0, 1.0)
        base = self._action_frame(arm)
        eef = self.eef_pose(arm)
        target = np.eye(4)
        target[:3, 3] = eef[:3, 3] + base @ (MAX_DELTA_POS * a[:3])
        turn = base @ matrix_from_rotvec(MAX_DELTA_ROT * a[3:6]) @ base.T
        target[:3, :3] = turn @ eef[:3, :3]
        return target

    def action_to_target_poses(self, action: np.ndarray) -> list[np.ndarray]:
        return [self.action_to_target_pose(action, i) for i in range(len(self._arms))]

    def arm_action(self, pose: np.ndarray, gripper: float, arm: int) -> np.ndarray:
        """Arm `arm`'s share (7,) of the action: towards `pose` (4, 4), the gripper at
        `gripper`."""
        target = np.asarray(pose, dtype=np.float64)
        base = self._action_frame(arm)
        eef = self.eef_pose(arm)
        action = np.empty(ARM_ACTION)
        action[:3] = base.T @ (target[:3, 3] - eef[:3, 3]) / MAX_DELTA_POS
        turn = base.T @ target[:3, :3] @ eef[:3, :3].T @ base
        action[3:6] = rotvec_from_matrix(turn) / MAX_DELTA_ROT
        action[6] = gripper
        return np.clip(action, -1.0, 1.0)

    def target_pose_to_action(self, pose: np.ndarray, gripper: float, arm: int = 0) -> np.ndarray:
        """The action (A,) that drives arm `arm` towards `pose` (4, 4), its gripper at
        `gripper`, any other arm holding its pose and its gripper command."""
        if len(self._arms) == 1:
            return self.arm_action(pose, gripper, arm)
        poses = self.eef_poses()
        grippers = [self.gripper_command(i) for i in range(len(self._arms))]
        poses[arm], grippers[arm] = np.asarray(pose, dtype=np.float64), gripper
        return self.target_poses_to_action(poses, grippers)

    def target_poses_to_action(
        self, poses: Sequence[np.ndarray], grippers: Sequence[float]
    ) -> np.ndarray:
        """The action (A,) driving each arm towards its pose (4, 4) with its gripper level."""
        if len(poses) != len(self._arms) or len(grippers) != len(self._arms):
            raise ApprenticeError(
                f"task {self.env_name!r} has {len(self._arms)} arms: give one pose and one "
                f"gripper level each, not {len(poses)} and {len(grippers)}"
            )
        pairs = enumerate(zip(poses, grippers, strict=True))
        return np.concatenate([self.arm_action(p, float(g), i) for i, (p, g) in pairs])

    def gripper_command(self, arm: int) -> float:
        """The gripper level (-1 open ... +1 closed) arm `arm`'s ramped command has reached."""
        return float(np.asarray(self._arms[arm].gripper.current_action).reshape(-1)[-1])

    def holds(self, object_geoms: Any, arm: int = 0) -> bool:
        """robosuite's grasp test: both finger pads of arm `arm` touch the object (contacts of
        the state)."""
        gripper = self._arms[arm].gripper
        return bool(self.env._check_grasp(gripper=gripper, object_geoms=object_geoms))

    # --- observations ------------------------------------------------------------------------

    def get_observation(self) -> dict[str, np.ndarray]:
        # Two passes: robosuite computes an object's eef-relative observables before that
        # object's pose in each pass, from the pose cached by the previous pass; the first
        # pass refreshes the cache so the values are a function of this state alone.
        self.env._get_observations(force_update=True)
        raw = self.env._get_observations(force_update=True)
        obs = {
            f"robot{i}_{k}": np.asarray(raw[f"robot{i}_{k}"], dtype=np.float32)
            for i in range(len(self._arms))
            for k in LOW_DIM_KEYS
        }
        obs["object"] = np.asarray(raw["object-state"], dtype=np.float32)
        if self.camera:
            for cam in self.cameras:
                obs[f"{cam}_image"] = self.render_frame(cam, self.image_size)
        return obs

    def render_frame(self, camera: str, size: int = 84) -> np.ndarray:
        if camera not in self.cameras:
            raise ApprenticeError(f"unknown camera {camera!r}; cameras: {', '.join(self.cameras)}")
        if not 8 <= size <= 512:
            raise ApprenticeError(f"frame size must be in [8, 512], not {size}")
        renderer = self._renderers.get(size)
        if renderer is None:
            # Made on first use so low-dim envs never open a GL context.
            renderer = mujoco.Renderer(self._model, size, size)
            self._renderers[size] = renderer
        renderer.update_scene(self._data, camera=self.cameras[camera])
        return np.asarray(renderer.render(), dtype=np.uint8)

    def render(self) -> np.ndarray:
        return self.render_frame(next(iter(self.cameras)), 256)

    @property
    def env_args(self) -> dict[str, Any]:
        """robomimic's env metadata: `EnvUtils.create_env_from_metadata` builds the same env."""
        return {
            "env_name": self.env_name,
            "env_version": robosuite.__version__,
            "type": 1,  # robomimic's EnvType.ROBOSUITE_TYPE: the key robomimic reads
            "env_type": 1,
            "env_kwargs": json.loads(json.dumps(self._kwargs))
            | ({"perturb": self.perturbations.to_json()} if self.perturbations else {}),
        }
