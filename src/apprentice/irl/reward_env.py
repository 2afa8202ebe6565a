"""A VecEnv wrapper that pays a learned reward and keeps the transitions it paid for.

It sits below `VecNormalize` (so it sees raw observations, and the actions the generator
sends: in [-1, 1], or in the demos' units under `envs.ActionNormalized`) and above
the per-env `Monitor`s (which keep recording the task's true returns). Why a wrapper rather
than relabelling the learner's buffer: see `adversarial.py`.

Shapes: N envs, B stored steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

RewardFn = Callable[[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray], np.ndarray], Any]
"""(obs, actions, next_obs, terminated) of N envs -> (N,) reward."""


@dataclass(frozen=True)
class Rollout:
    """The transitions of one round: obs / next_obs key -> (B, ...), actions (B, A), dones (B,)
    (True only where the episode terminated; a time-limit cut is not absorbing)."""

    obs: dict[str, np.ndarray]
    actions: np.ndarray
    next_obs: dict[str, np.ndarray]
    dones: np.ndarray

    def __len__(self) -> int:
        return int(self.actions.shape[0])


class LearnedRewardVecEnv(VecEnvWrapper):
    """Replaces each step's reward by `reward_fn(s, a, s', terminated)`; the env's own reward
    is kept in `info["env_reward"]`."""

    def __init__(self, venv: VecEnv, obs_keys: list[str], reward_fn: RewardFn) -> None:
        super().__init__(venv)
        self.obs_keys = obs_keys
        self.reward_fn = reward_fn
        self._last_obs: dict[str, np.ndarray] | None = None
        self._actions: np.ndarray | None = None
        self._steps: list[tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray], Any]]
        self._steps = []

    def reset(self) -> Any:
        obs: Any = self.venv.reset()
        self._last_obs = {k: np.array(obs[k]) for k in self.obs_keys}
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        space = self.action_space  # [-1, 1], or the demo units of `ActionNormalized`
        low, high = space.low, space.high  # type: ignore[attr-defined]
        self._actions = np.clip(np.asarray(actions, dtype=np.float32), low, high)
        self.venv.step_async(actions)

    def step_wait(self) -> Any:
        obs: Any
        obs, env_reward, dones, infos = self.venv.step_wait()
        assert self._last_obs is not None and self._actions is not None
        # A finished env has already been reset: its s' is the terminal observation.
        next_obs = {k: np.array(obs[k]) for k in self.obs_keys}
        terminated = np.zeros(len(dones), dtype=bool)
        for i in map(int, np.flatnonzero(dones)):
            terminal = infos[i]["terminal_observation"]
            for k in self.obs_keys:
                next_obs[k][i] = terminal[k]
            terminated[i] = not infos[i].get("TimeLimit.truncated", False)
        reward = np.asarray(
            self.reward_fn(self._last_obs, self._actions, next_obs, terminated), dtype=np.float32
        )
        for i, info in enumerate(infos):
            info["env_reward"] = float(env_reward[i])
        self._steps.append((self._last_obs, self._actions, next_obs, terminated))
        self._last_obs = {k: np.array(obs[k]) for k in self.obs_keys}
        return obs, reward, dones, infos

    def start_rollout(self) -> None:
        """Forget the stored transitions (a new round begins)."""
        self._steps = []

    def rollout(self) -> Rollout:
        """The transitions stored since `start_rollout`, flattened over envs and steps."""
        if not self._steps:
            raise RuntimeError("no transitions were stored this round")
        return Rollout(
            obs={k: np.concatenate([s[0][k] for s in self._steps]) for k in self.obs_keys},
            actions=np.concatenate([s[1] for s in self._steps]),
            next_obs={k: np.concatenate([s[2][k] for s in self._steps]) for k in self.obs_keys},
            dones=np.concatenate([s[3] for s in self._steps]),
        )
