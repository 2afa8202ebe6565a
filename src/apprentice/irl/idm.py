"""The inverse-dynamics model behind BCO and `apprentice label-actions`: a = f(s, s').

An inverse-dynamics model (IDM) learned from the agent's *own* interaction, where the action
is known, labels demonstrations that hold (s, s') pairs but no actions (Torabi, Warnell &
Stone 2018, "Behavioral Cloning from Observation", Sec. 4).

Exploration. What the IDM sees decides where it is right. Uniform random actions on the
built-in manipulation tasks (7-D delta pose + gripper) flail near the start pose and never
grasp, so the IDM would never see a carried cube; `oracle` exploration therefore runs the
task's scripted oracle with Gaussian action noise on every dimension (std drawn per episode
from [0, `exploration_noise`]: noise of 0.3 on every step almost never grasps, clean
episodes do, noisy ones vary the actions) and records the noisy action actually executed,
so the IDM learns a -> s' around the states demos visit. That uses privileged knowledge
BCO does not assume; `random` (uniform) is the paper's pre-demonstration policy and the
default where a task has no oracle (the gymnasium tasks), and BCO(alpha) adds `policy`
exploration: the current cloned policy plus noise.

Shape legend: N transitions, D observation features (the task's low-dim keys in sorted order,
concatenated), A action.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from apprentice.data.normalize import MIN_STD
from apprentice.envs.base import Task, task_spec
from apprentice.envs.seeds import exploration_seed
from apprentice.errors import ApprenticeError
from apprentice.files import atomic_write
from apprentice.policies.checkpoint import atomic_torch_save

EXPLORATION = ("auto", "random", "oracle", "policy")

DELTA_MIN_STD = 1e-5
"""Floor on the std of a state change: below it a dimension is taken as not moving."""

ActFn = Callable[[dict[str, np.ndarray]], np.ndarray]


# ---- configs and data ---------------------------------------------------------------------


@dataclass(frozen=True)
class IDMConfig:
    """The inverse-dynamics network and its training."""

    hidden_dims: tuple[int, ...] = (256, 256)
    """Widths of the MLP's hidden layers."""
    steps: int = 3000
    """Gradient steps per fit."""
    batch_size: int = 256
    """Transitions per gradient step."""
    lr: float = 1e-3
    """Adam learning rate."""


@dataclass(frozen=True)
class Transitions:
    """(s, a, s') triples of the agent's own interaction: obs, next_obs (N, D), actions (N, A)."""

    obs: np.ndarray
    next_obs: np.ndarray
    actions: np.ndarray

    def __len__(self) -> int:
        return int(self.obs.shape[0])

    def __add__(self, other: Transitions) -> Transitions:
        return Transitions(
            np.concatenate([self.obs, other.obs]),
            np.concatenate([self.next_obs, other.next_obs]),
            np.concatenate([self.actions, other.actions]),
        )

    def save(self, path: Path) -> None:
        with atomic_write(path, durable=False) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, obs=self.obs, next_obs=self.next_obs, actions=self.actions)

    @classmethod
    def load(cls, path: Path) -> Transitions:
        with np.load(path) as z:
            return cls(z["obs"], z["next_obs"], z["actions"])


def obs_keys_of(task: Task) -> list[str]:
    """The task's low-dim observation keys, sorted: what the IDM reads."""
    return task_spec(task).low_dim_keys


def flat(obs: dict[str, np.ndarray], keys: list[str]) -> np.ndarray:
    """{key: (..., Dk)} -> (..., D) float32, keys in the given order."""
    return np.concatenate([np.asarray(obs[k], np.float32) for k in keys], axis=-1)


# ---- the model ----------------------------------------------------------------------------


class InverseDynamicsModel(nn.Module):
    """(s, s') -> a in [-1, 1]: an MLP on the normalized state and normalized state change.

    The change s' - s is an input of its own (normalized by its own spread), because it is
    where the action shows: for a delta-pose controller it is nearly linear in a, and its
    scale (mm per step) would vanish next to s's (the workspace) in a shared normalization.
    """

    obs_mean: Tensor
    obs_std: Tensor
    delta_mean: Tensor
    delta_std: Tensor

    def __init__(self, obs_keys: list[str], obs_dim: int, action_dim: int, cfg: IDMConfig):
        super().__init__()
        self.obs_keys = list(obs_keys)
        self.obs_dim, self.action_dim, self.cfg = obs_dim, action_dim, cfg
        layers: list[nn.Module] = []
        width = 2 * obs_dim
        for h in cfg.hidden_dims:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, action_dim))
        self.net = nn.Sequential(*layers)
        for name in ("obs", "delta"):
            self.register_buffer(f"{name}_mean", torch.zeros(obs_dim))
            self.register_buffer(f"{name}_std", torch.ones(obs_dim))

    def fit_normalization(self, data: Transitions) -> None:
        """Mean and std of s (std floored at the data layer's MIN_STD) and of s' - s (floored
        at DELTA_MIN_STD: a step moves the eef by about 0.5 mm, far below MIN_STD)."""
        delta = data.next_obs - data.obs  # N,D
        for name, x, floor in (("obs", data.obs, MIN_STD), ("delta", delta, DELTA_MIN_STD)):
            x64 = x.astype(np.float64)
            getattr(self, f"{name}_mean").copy_(torch.as_tensor(x64.mean(0)))
            getattr(self, f"{name}_std").copy_(torch.as_tensor(np.maximum(x64.std(0), floor)))

    def forward(self, obs: Tensor, next_obs: Tensor) -> Tensor:
        """obs, next_obs (B, D) -> actions (B, A) in [-1, 1]."""
        x = (obs - self.obs_mean) / self.obs_std  # B,D
        d = (next_obs - obs - self.delta_mean) / self.delta_std  # B,D
        return self.net(torch.cat([x, d], dim=-1)).tanh()  # B,A

    def predict(self, obs: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        """obs, next_obs (N, D) -> actions (N, A) float32."""
        self.eval()
        with torch.no_grad():
            a = self(torch.as_tensor(obs, dtype=torch.float32), torch.as_tensor(next_obs))
        return a.numpy().astype(np.float32)

    def save(self, path: Path, env_args: dict[str, Any]) -> None:
        """Self-describing: keys, sizes, config and the task, with the weights."""
        atomic_torch_save(
            {
                "format": "apprentice-idm",
                "obs_keys": self.obs_keys,
                "obs_dim": self.obs_dim,
                "action_dim": self.action_dim,
                "hidden_dims": list(self.cfg.hidden_dims),
                "env_args": json.dumps(env_args),
                "state_dict": self.state_dict(),
            },
            path,
        )

    @classmethod
    def load(cls, path: str | Path) -> tuple[InverseDynamicsModel, dict[str, Any]]:
        """The model saved at `path` and the env_args of the task it was trained on."""
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for foreign or truncated files
            raise ApprenticeError(f"IDM {path} cannot be read ({type(exc).__name__})") from None
        if isinstance(d, dict) and d.get("format") == "apprentice-pixel-idm":
            raise ApprenticeError(f"{path} is an IDM on camera frames; use it with --from-video")
        if not isinstance(d, dict) or d.get("format") != "apprentice-idm":
            raise ApprenticeError(f"{path} is not an inverse-dynamics model of apprentice")
        cfg = IDMConfig(hidden_dims=tuple(d["hidden_dims"]))
        model = cls(d["obs_keys"], int(d["obs_dim"]), int(d["action_dim"]), cfg)
        model.load_state_dict(d["state_dict"])
        return model, json.loads(d["env_args"])


def fit_idm(
    data: Transitions,
    obs_keys: list[str],
    cfg: IDMConfig,
    *,
    seed: int,
    init: InverseDynamicsModel | None = None,
) -> tuple[InverseDynamicsModel, float]:
    """Train an IDM on `data` by L2 regression (warm-started from `init` if given); returns it
    and the mean loss of the last 10% of the steps."""
    if len(data) == 0:
        raise ApprenticeError("inverse dynamics: no exploration transitions to learn from")
    torch.manual_seed(seed)
    model = InverseDynamicsModel(obs_keys, data.obs.shape[1], data.actions.shape[1], cfg)
    if init is not None:
        model.load_state_dict(init.state_dict())
    model.fit_normalization(data)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    rng = np.random.default_rng(seed)
    obs, nxt, act = (
        torch.as_tensor(x, dtype=torch.float32) for x in (data.obs, data.next_obs, data.actions)
    )
    tail: list[float] = []
    model.train()
    for step in range(cfg.steps):
        idx = torch.as_tensor(rng.integers(0, len(data), size=cfg.batch_size))
        loss = (model(obs[idx], nxt[idx]) - act[idx]).pow(2).mean()  # scalar
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step >= cfg.steps * 0.9:
            tail.append(float(loss.detach()))
    return model.eval(), float(np.mean(tail)) if tail else float("nan")


# ---- exploration --------------------------------------------------------------------------


def resolve_exploration(mode: str, task: Task) -> str:
    """`auto` -> oracle where the task has a scripted oracle, else random."""
    if mode not in EXPLORATION:
        raise ApprenticeError(f"unknown exploration {mode!r}; known: {', '.join(EXPLORATION)}")
    if mode != "auto":
        return mode
    try:
        task.oracle(np.random.default_rng(0))
    except ApprenticeError:
        return "random"
    return "oracle"


@dataclass(frozen=True)
class ExplorationStep:
    """One env step of exploration: the observation before and after `action`, the action
    actually executed (noise included, clipped), and whether the step starts an episode."""

    obs: dict[str, np.ndarray]
    action: np.ndarray
    next_obs: dict[str, np.ndarray]
    first: bool


def exploration_steps(
    task: Task,
    steps: int,
    *,
    mode: str,
    noise: float,
    seed: int,
    policy: ActFn | None = None,
    on_reset: Callable[[], None] | None = None,
    observe: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None,
) -> Iterator[ExplorationStep]:
    """`steps` env steps of the agent's own interaction (see the module docstring), one at a
    time. Episode i starts from seed `exploration_seed(seed, i)` (away from the seeds
    collection uses from 0, so the IDM never trains on a demo's own initial state); `policy`
    (with `on_reset`) drives the `policy` mode. `observe` maps each observation right after
    the task made it (after a reset or a step), e.g. adding a frame rendered then."""
    mode = resolve_exploration(mode, task)
    if mode == "policy" and policy is None:
        raise ApprenticeError("policy exploration needs a policy (BCO rounds after the first)")
    rng = np.random.default_rng([seed, 11])
    dim = int(task.action_space.shape[0])
    done, episode = 0, 0
    while done < steps:
        obs, _ = task.reset(seed=exploration_seed(seed, episode))
        if observe is not None:
            obs = observe(obs)
        actor = policy
        if mode == "oracle":
            oracle = task.oracle(np.random.default_rng([seed, episode]))
            oracle.reset()
            actor = oracle.act
        elif on_reset is not None:
            on_reset()
        episode += 1
        # Per-episode scale: clean episodes reach the states demos visit (a carried cube,
        # which noise of 0.3 on every step almost never grasps), noisy ones vary the actions.
        scale = noise * rng.uniform()
        for t in range(task.horizon):
            if actor is None or mode == "random":
                action = rng.uniform(-1.0, 1.0, size=dim)
            else:
                action = np.asarray(actor(obs), np.float64) + scale * rng.standard_normal(dim)
            action = np.clip(action, -1.0, 1.0).astype(np.float32)
            next_obs, _, terminated, truncated, _ = task.step(action)
            if observe is not None:
                next_obs = observe(next_obs)
            done += 1
            yield ExplorationStep(obs, action, next_obs, t == 0)
            obs = next_obs
            if terminated or truncated or done >= steps:
                break


def explore(
    task: Task,
    steps: int,
    *,
    mode: str,
    noise: float,
    seed: int,
    policy: ActFn | None = None,
    on_reset: Callable[[], None] | None = None,
) -> Transitions:
    """`exploration_steps` as (s, a, s') triples of the task's low-dim observations."""
    keys = obs_keys_of(task)
    obs_l: list[np.ndarray] = []
    next_l: list[np.ndarray] = []
    act_l: list[np.ndarray] = []
    for step in exploration_steps(
        task, steps, mode=mode, noise=noise, seed=seed, policy=policy, on_reset=on_reset
    ):
        obs_l.append(flat(step.obs, keys))
        next_l.append(flat(step.next_obs, keys))
        act_l.append(step.action)
    return Transitions(np.stack(obs_l), np.stack(next_l), np.stack(act_l))
