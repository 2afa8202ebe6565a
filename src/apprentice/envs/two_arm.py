"""The shared base of the built-in two-arm tasks (handover, bimanual_lift).

Two 7-DoF arms with parallel-jaw grippers, each the arm of `body="arm"` (assets/arm_scene.xml,
driven by `bodies.Arm`'s differential IK), face each other across the table: robot0, the
left arm, stands at y = -BASE_DISTANCE and robot1, the right arm, at y = +BASE_DISTANCE. A
task's MJCF holds the world and the objects; the arms are attached to it with MuJoCo's model
editing (`mujoco.MjSpec`), every name of an arm prefixed with its name and "_"
(robot0_joint1, robot0_eef, robot0_eye_in_hand).

An action (14,) in [-1, 1] is [robot0 (7), robot1 (7)], each arm's part a single-arm task's
action: eef delta position (x 0.05 m), axis-angle rotation in the world frame (x 0.5 rad),
gripper (-1 open, +1 close). The per-arm protocol is `arms.MultiArmTask`'s; the single-arm
methods of `Task` (`eef_pose`, `action_to_target_pose`, `target_pose_to_action`) read and
drive robot0 unless given `arm=1`.

Observations are named as robosuite names two-arm ones, per arm `robot{i}_eef_pos` (3),
`robot{i}_eef_quat` (4, wxyz), `robot{i}_gripper_qpos` (2), `robot{i}_joint_pos` (7) and
`robot{i}_joint_vel` (7); `object` holds per object [world pos (3), quat wxyz (4),
pos - robot0_eef_pos (3), pos - robot1_eef_pos (3)]. With `camera=True`, `agentview_image`
and each arm's wrist camera, `robot{i}_eye_in_hand_image`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from apprentice.envs.base import Subtask
from apprentice.envs.bodies import ARM_JOINTS, FINGER_CLOSED, FINGER_OPEN, Arm
from apprentice.envs.mujoco_base import (
    ASSETS,
    MujocoTaskBase,
    action_fault,
    refuse_unknown_args,
)
from apprentice.envs.mujoco_task import finger_target, gripper_holds
from apprentice.errors import ApprenticeError

ARM_NAMES = ("robot0", "robot1")
"""The arms, left (y < 0) then right: the prefixes of their names and observation keys."""
BASE_DISTANCE = 0.65
"""Distance (m) of each arm's base from the table centre, along y."""
HOME = np.array([0.0, -0.195982, 0.0, -2.489223, 0.0, 2.29324, 0.0])
"""Joint angles (rad) of each arm at the start: the eef 45 cm in front of its base (20 cm
from the table centre), 25 cm above the table, pointing down with the fingers across x."""
ARM_ACTION = 7
"""Action dims per arm: eef delta position (3), rotation (3), gripper (1)."""
CAMERAS = ("agentview", *(f"{arm}_eye_in_hand" for arm in ARM_NAMES))
AGENTVIEW_POS = (0.7, 0.0, 0.5)
AGENTVIEW_XYAXES = (0.0, 1.0, 0.0, -0.477, 0.0, 0.879)
"""The agentview camera of two-arm scenes: further back and higher than world.xml's, looking
down 28 degrees at a point 12 cm above the table centre, so that both grippers, the objects
and the air between them are in view; robot1 (+y) on the right of the image."""


def build_two_arm_model(xml_path: Path) -> mujoco.MjModel:
    """The task's model (world and objects) with the two arms attached, facing the centre."""
    spec = mujoco.MjSpec.from_file(str(xml_path))
    camera = spec.camera("agentview")
    camera.pos = AGENTVIEW_POS
    camera.alt.type = mujoco.mjtOrientation.mjORIENTATION_XYAXES
    camera.alt.xyaxes = AGENTVIEW_XYAXES
    for name, side in zip(ARM_NAMES, (-1.0, 1.0), strict=True):
        # arm_scene.xml's arm reaches along +x from its base; turn it to face the centre.
        yaw = -side * math.pi / 2
        frame = spec.worldbody.add_frame(quat=[math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)])
        arm = mujoco.MjSpec.from_file(str(ASSETS / Arm.scene))
        base = frame.attach_body(arm.body("arm_base"), f"{name}_", "")
        base.pos = [-BASE_DISTANCE, 0.0, 0.0]
    return spec.compile()


class _ArmParts:
    """The ids of one arm's parts in the model: its IK body, eef site, gripper and fingers."""

    def __init__(self, model: mujoco.MjModel, name: str) -> None:
        prefix = f"{name}_"
        self.arm = Arm(model, prefix, HOME)
        self.site = model.site(f"{prefix}eef").id
        self.gripper = model.body(f"{prefix}gripper").id
        fingers = [f"{prefix}finger_l", f"{prefix}finger_r"]
        self.finger_qpos = np.array([model.jnt_qposadr[model.joint(f).id] for f in fingers])
        self.finger_ctrl = np.array([model.actuator(f).id for f in fingers])


class TwoArmTask(MujocoTaskBase):
    """A built-in two-arm task: see the module docstring for the arms, actions and
    observations. Subclasses name their MJCF and objects, draw the objects' start poses, and
    define success, subtask signals, their per-arm subtasks and their oracle."""

    horizon: int = 200
    """Steps before an episode is truncated."""
    subtasks: tuple[Subtask, ...] = ()
    """Each arm's `arms.ArmSubtask`s in order, arm after arm."""
    n_arms: int = len(ARM_NAMES)
    arm_names: tuple[str, ...] = ARM_NAMES
    arm_actions: tuple[slice, ...] = tuple(
        slice(i * ARM_ACTION, (i + 1) * ARM_ACTION) for i in range(len(ARM_NAMES))
    )

    def __init__(
        self, *, camera: bool = False, image_size: int = 84, variant: str = "D0", **kwargs: Any
    ) -> None:
        refuse_unknown_args(
            self.name,
            kwargs,
            f"camera (bool), image_size (int) and variant ({' or '.join(self.placement)})",
        )
        super().__init__(camera=camera, image_size=image_size, variant=variant, cameras=CAMERAS)
        self._arms = [_ArmParts(self.model, name) for name in ARM_NAMES]

        box = gym.spaces.Box
        n = len(ARM_JOINTS)
        spaces: dict[str, gym.spaces.Space[Any]] = {}
        for arm in ARM_NAMES:
            spaces[f"{arm}_eef_pos"] = box(-np.inf, np.inf, (3,), np.float32)
            spaces[f"{arm}_eef_quat"] = box(-1.0, 1.0, (4,), np.float32)
            spaces[f"{arm}_gripper_qpos"] = box(-np.inf, np.inf, (2,), np.float32)
            spaces[f"{arm}_joint_pos"] = box(-np.inf, np.inf, (n,), np.float32)
            spaces[f"{arm}_joint_vel"] = box(-np.inf, np.inf, (n,), np.float32)
        per_object = 7 + 3 * self.n_arms
        spaces["object"] = box(-np.inf, np.inf, (per_object * len(self.object_names),), np.float32)
        spaces.update(self._image_spaces())
        self.observation_space = gym.spaces.Dict(spaces)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ARM_ACTION * self.n_arms,), np.float32)
        self._reset_sim()

    def _build_model(self) -> mujoco.MjModel:
        return build_two_arm_model(ASSETS / self.xml_file)

    # --- episodes and actions ----------------------------------------------------------------

    def _reset_sim(self) -> None:
        mujoco.mj_resetData(self.model, self.data)
        for parts in self._arms:
            parts.arm.reset(self.data)
            self.data.qpos[parts.finger_qpos] = FINGER_OPEN
            self.data.ctrl[parts.finger_ctrl] = FINGER_OPEN
        self._steps = 0

    def _action_error(self, action: Any) -> str:
        n = self.action_space.shape[0]
        return (
            f"task {self.name!r}: action must be {n} finite numbers, per arm "
            f"({', '.join(ARM_NAMES)}) an eef delta (6) and the gripper (1); "
            f"got {action_fault(action, n)}"
        )

    def _apply_action(self, action: np.ndarray) -> None:
        """Turn a clipped action (14,) into servo targets for both arms' joints and fingers."""
        for i, parts in enumerate(self._arms):
            parts.arm.actuate(self.data, self.action_to_target_pose(action, arm=i))
            gripper = float(action[self.arm_actions[i]][-1])
            self.data.ctrl[parts.finger_ctrl] = finger_target(gripper)

    # --- poses and the controller, per arm ---------------------------------------------------

    def eef_pose(self, arm: int = 0) -> np.ndarray:
        """(4, 4) eef pose of arm `arm` (robot0 unless given) in the world frame."""
        return self._site_pose(self._arms[arm].site)

    def eef_poses(self) -> list[np.ndarray]:
        return [self.eef_pose(i) for i in range(self.n_arms)]

    def action_to_target_pose(self, action: np.ndarray, arm: int = 0) -> np.ndarray:
        """The (4, 4) eef target pose of arm `arm` that `action` (14,) commands."""
        a = np.asarray(action, dtype=np.float64).reshape(-1)[self.arm_actions[arm]]
        return self._delta_target_pose(self._arms[arm].site, a[:6])

    def action_to_target_poses(self, action: np.ndarray) -> list[np.ndarray]:
        return [self.action_to_target_pose(action, i) for i in range(self.n_arms)]

    def arm_action(self, pose: np.ndarray, gripper: float, arm: int) -> np.ndarray:
        """Arm `arm`'s share (7,) of the action: towards `pose` (4, 4), the gripper at
        `gripper`."""
        action = np.empty(ARM_ACTION)
        action[:6] = self._pose_delta(self._arms[arm].site, pose)
        action[6] = gripper
        return np.clip(action, -1.0, 1.0)

    def target_pose_to_action(self, pose: np.ndarray, gripper: float, arm: int = 0) -> np.ndarray:
        """The action (14,) that drives arm `arm` (robot0 unless given) towards `pose` (4, 4)
        with its gripper at `gripper`, the other arm holding its pose and its gripper."""
        poses = self.eef_poses()
        grippers = [self.gripper_command(i) for i in range(self.n_arms)]
        poses[arm], grippers[arm] = np.asarray(pose, dtype=np.float64), gripper
        return self.target_poses_to_action(poses, grippers)

    def target_poses_to_action(
        self, poses: Sequence[np.ndarray], grippers: Sequence[float]
    ) -> np.ndarray:
        if len(poses) != self.n_arms or len(grippers) != self.n_arms:
            raise ApprenticeError(
                f"task {self.name!r} has {self.n_arms} arms: give one pose and one gripper "
                f"level each, not {len(poses)} and {len(grippers)}"
            )
        pairs = enumerate(zip(poses, grippers, strict=True))
        return np.concatenate([self.arm_action(p, float(g), i) for i, (p, g) in pairs])

    def gripper_command(self, arm: int) -> float:
        """The gripper level (-1 open ... +1 closed) arm `arm` was last commanded."""
        ctrl = float(self.data.ctrl[self._arms[arm].finger_ctrl[0]])
        return 2.0 * (ctrl - FINGER_OPEN) / (FINGER_CLOSED - FINGER_OPEN) - 1.0

    def holds(self, arm: int, point: np.ndarray, half_width: float) -> bool:
        """Whether arm `arm`'s closing fingers squeeze a part `half_width` thick at `point`
        (3,): a geometric test, a pure function of the state (exact on replay)."""
        p = self._arms[arm]
        return gripper_holds(self.data, p.gripper, p.finger_qpos, p.finger_ctrl, point, half_width)

    # --- observations ------------------------------------------------------------------------

    def get_observation(self) -> dict[str, np.ndarray]:
        d = self.data
        obs: dict[str, np.ndarray] = {}
        bodies = self._object_bodies
        objects = [d.xpos[bodies], d.xquat[bodies]]
        for name, parts in zip(ARM_NAMES, self._arms, strict=True):
            eef_pos = d.site_xpos[parts.site]
            obs[f"{name}_eef_pos"] = eef_pos.astype(np.float32)
            obs[f"{name}_eef_quat"] = self._site_quat(parts.site).astype(np.float32)
            obs[f"{name}_gripper_qpos"] = d.qpos[parts.finger_qpos].astype(np.float32)
            for key, value in parts.arm.observe(d).items():
                obs[f"{name}_{key}"] = value
            objects.append(d.xpos[bodies] - eef_pos)
        # object (13 * n_objects,): per object [pos (3), quat (4), pos - each arm's eef (3 + 3)]
        obs["object"] = np.concatenate(objects, axis=1).reshape(-1).astype(np.float32)
        obs.update(self._images())
        return obs
