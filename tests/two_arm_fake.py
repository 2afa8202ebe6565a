"""A kinematic two-arm task with 14-D actions, for tests of what drives tasks arm by arm.

`FakeTwoArm` meets `envs.arms.MultiArmTask` with numpy alone: two eefs that move by their
arm's delta pose (x 0.05 m, x 0.5 rad, as the built-in tasks) and two grippers that take
their level at once. Success: each arm's eef within 1 cm of its goal with its gripper closed.
Its oracle servos each arm to its goal, then closes that arm's gripper.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from apprentice.envs.base import Subtask
from apprentice.envs.mujoco_base import matrix_from_rotvec, rotvec_from_matrix

NAME = "test_two_arm"
ARMS = ("robot0", "robot1")
START = np.array([[0.0, -0.2, 0.2], [0.0, 0.2, 0.2]])
GOALS = np.array([[0.05, -0.1, 0.1], [0.05, 0.1, 0.1]])


class FakeTwoArm(gym.Env[dict[str, np.ndarray], np.ndarray]):
    name = NAME
    horizon = 100
    control_freq = 20.0
    subtasks: tuple[Subtask, ...] = ()
    n_arms = 2
    arm_names = ARMS
    arm_actions = (slice(0, 7), slice(7, 14))
    observation_space: gym.spaces.Dict  # type: ignore[assignment]
    action_space: gym.spaces.Box

    def __init__(self, **kwargs: Any) -> None:
        box = gym.spaces.Box
        spaces: dict[str, gym.spaces.Space[Any]] = {}
        for arm in ARMS:
            spaces[f"{arm}_eef_pos"] = box(-np.inf, np.inf, (3,), np.float32)
            spaces[f"{arm}_gripper"] = box(-1.0, 1.0, (1,), np.float32)
        self.observation_space = gym.spaces.Dict(spaces)
        self.action_space = box(-1.0, 1.0, (14,), np.float32)
        self.pos = START.copy()
        self.rot = np.stack([np.eye(3), np.eye(3)])
        self.grippers = np.full(2, -1.0)
        self.steps = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        rng = np.random.default_rng(seed)
        self.pos = START + rng.uniform(-0.02, 0.02, START.shape)
        self.rot = np.stack([np.eye(3), np.eye(3)])
        self.grippers = np.full(2, -1.0)
        self.steps = 0
        return self.get_observation(), {"success": False}

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(14), -1.0, 1.0)
        targets = self.action_to_target_poses(a)
        for i, target in enumerate(targets):
            self.pos[i] = target[:3, 3]
            self.rot[i] = target[:3, :3]
            self.grippers[i] = a[self.arm_actions[i]][-1]
        self.steps += 1
        success = self.is_success()
        return (
            self.get_observation(),
            float(success),
            False,
            self.steps >= self.horizon,
            {"success": success},
        )

    def close(self) -> None:
        pass

    def is_success(self) -> bool:
        near = np.linalg.norm(self.pos - GOALS, axis=1) < 0.01
        return bool(np.all(near) and np.all(self.grippers > 0))

    def get_state(self) -> np.ndarray:
        return np.concatenate(
            [self.pos.ravel(), self.rot.ravel(), self.grippers, [float(self.steps)]]
        )

    def set_state(self, state: np.ndarray) -> None:
        self.pos = state[:6].reshape(2, 3).copy()
        self.rot = state[6:24].reshape(2, 3, 3).copy()
        self.grippers = state[24:26].copy()
        self.steps = int(state[26])

    def get_observation(self) -> dict[str, np.ndarray]:
        obs = {}
        for i, arm in enumerate(ARMS):
            obs[f"{arm}_eef_pos"] = self.pos[i].astype(np.float32)
            obs[f"{arm}_gripper"] = self.grippers[i : i + 1].astype(np.float32)
        return obs

    def eef_pose(self, arm: int = 0) -> np.ndarray:
        pose = np.eye(4)
        pose[:3, :3] = self.rot[arm]
        pose[:3, 3] = self.pos[arm]
        return pose

    def eef_poses(self) -> list[np.ndarray]:
        return [self.eef_pose(i) for i in range(2)]

    def object_poses(self) -> dict[str, np.ndarray]:
        return {}

    def subtask_signals(self) -> dict[str, bool]:
        return {}

    def action_to_target_pose(self, action: np.ndarray, arm: int = 0) -> np.ndarray:
        a = np.asarray(action, dtype=np.float64).reshape(-1)[self.arm_actions[arm]]
        pose = np.eye(4)
        pose[:3, 3] = self.pos[arm] + 0.05 * a[:3]
        pose[:3, :3] = matrix_from_rotvec(0.5 * a[3:6]) @ self.rot[arm]
        return pose

    def action_to_target_poses(self, action: np.ndarray) -> list[np.ndarray]:
        return [self.action_to_target_pose(action, i) for i in range(2)]

    def target_pose_to_action(self, pose: np.ndarray, gripper: float, arm: int = 0) -> np.ndarray:
        poses, grippers = self.eef_poses(), list(self.grippers)
        poses[arm], grippers[arm] = pose, gripper
        return self.target_poses_to_action(poses, grippers)

    def target_poses_to_action(
        self, poses: Sequence[np.ndarray], grippers: Sequence[float]
    ) -> np.ndarray:
        action = np.empty(14)
        for i, (pose, gripper) in enumerate(zip(poses, grippers, strict=True)):
            part = action[self.arm_actions[i]]
            part[:3] = (pose[:3, 3] - self.pos[i]) / 0.05
            part[3:6] = rotvec_from_matrix(pose[:3, :3] @ self.rot[i].T) / 0.5
            part[6] = gripper
        return np.clip(action, -1.0, 1.0)

    def oracle(self, rng: np.random.Generator) -> FakeTwoArmOracle:
        return FakeTwoArmOracle(self)

    def render_frame(self, camera: str, size: int = 84) -> np.ndarray:
        return np.full((size, size, 3), 128, dtype=np.uint8)

    @property
    def env_args(self) -> dict[str, Any]:
        return {"env_name": NAME, "env_type": "apprentice", "env_kwargs": {}}


class FakeTwoArmOracle:
    """Each arm to its goal at 0.12 of full speed (6 mm a step), then its gripper closed."""

    def __init__(self, task: FakeTwoArm) -> None:
        self.task = task

    def reset(self) -> None:
        pass

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        poses, grippers = [], []
        for i in range(2):
            pose = self.task.eef_pose(i)
            step = GOALS[i] - pose[:3, 3]
            step *= min(1.0, 0.006 / max(float(np.linalg.norm(step)), 1e-9))
            pose[:3, 3] += step
            poses.append(pose)
            grippers.append(1.0 if np.linalg.norm(GOALS[i] - self.task.pos[i]) < 0.005 else -1.0)
        return self.task.target_poses_to_action(poses, grippers).astype(np.float32)
