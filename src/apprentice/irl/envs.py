"""Tasks as reinforcement-learning environments, demos as transitions, and scoring, for IRL.

Every algorithm behind `apprentice irl` that learns by interacting (GAIL, AIRL, GAIfO, BCO,
the BC+RL hybrid) needs the same things, kept here so they agree with each other:

- `make_irl_env`: an apprentice task (a `gym/<id>` MuJoCo task or a built-in manipulation task
  such as `lift`) as a plain `gymnasium.Env` for stable-baselines3. The observation stays a
  `Dict` of the task's low-dim keys (or the `obs_keys` asked for): SB3 reads it with
  `MultiInputPolicy` (one flatten per key, concatenated) and `VecNormalize` normalizes each
  key, so a manipulation task's named observations reach the learner unchanged, and the
  discriminators flatten the same keys in the same (sorted) order (`flatten_obs`). Images are
  refused: these learners are low-dim.
- `load_demo_transitions`: a demo file as (s, a, s', done) arrays, checked against the task.
- `record_expert_demos`: expert episodes written through the crash-safe store, with the
  expert's and a random policy's mean return in the file's attrs, so that any run on those
  demos can report a normalized return (score - random) / (expert - random).
- `evaluate_policy`: mean return, normalized return and success rate on held-out seeds, by
  the one rollout loop (`apprentice.evaluate.rollout.rollout_batch`).
- `ActionNormalized`: the env's actions in the demos' units, for a generator whose task's
  demo actions are small against their [-1, 1] range (`normalize_actions` of GAIL/AIRL).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from apprentice.data.normalize import floored_mean_std
from apprentice.data.reader import DemoFile, is_image
from apprentice.data.source import open_source
from apprentice.data.store import DemoWriter
from apprentice.envs.base import Task, make_task
from apprentice.envs.gym_tasks import GymTask, PendulumPD
from apprentice.envs.seeds import HELD_OUT_SEED_BASE, expert_demo_seeds, held_out_seeds
from apprentice.errors import ApprenticeError
from apprentice.evaluate.rollout import PerObservation, rollout_batch

Act = Callable[[dict[str, np.ndarray]], np.ndarray]
"""A policy at run time: one observation dict -> one action (A,) in [-1, 1]."""


# ---- the environment -------------------------------------------------------------------------


def low_dim_keys(task: Task) -> list[str]:
    """The task's observation keys that are not images, sorted (the flattening order)."""
    spaces = task.observation_space.spaces
    return sorted(
        k for k, s in spaces.items() if not is_image(tuple(s.shape or ()), np.dtype(s.dtype))
    )


class IRLEnv(gym.Env[dict[str, np.ndarray], np.ndarray]):
    """A task as a gymnasium env: Dict obs of `obs_keys`, actions in [-1, 1], truncation at
    the task's horizon, `info["success"]` passed on.

    A reset without a seed draws the next initial state from this env's own generator over
    the collection seed range, so training never starts from a held-out (evaluation) state.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 (gymnasium's attribute)
    observation_space: gym.spaces.Dict  # type: ignore[assignment]
    action_space: gym.spaces.Box

    def __init__(self, task: Task, obs_keys: Sequence[str], seed: int) -> None:
        self.task = task
        self.obs_keys = sorted(obs_keys)
        spaces = task.observation_space.spaces
        self.observation_space = gym.spaces.Dict({k: spaces[k] for k in self.obs_keys})
        box = task.action_space
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=box.shape, dtype=np.float32)
        self.horizon = int(task.horizon)
        self._rng = np.random.default_rng([seed, 11])
        self._steps = 0

    def _select(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: np.asarray(obs[k], dtype=np.float32) for k in self.obs_keys}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        if seed is None:
            seed = int(self._rng.integers(0, HELD_OUT_SEED_BASE))
        self._steps = 0
        obs, info = self.task.reset(seed=seed)
        return self._select(obs), dict(info)

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        a = np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
        obs, reward, terminated, truncated, info = self.task.step(a)
        self._steps += 1
        truncated = bool(truncated) or self._steps >= self.horizon
        return self._select(obs), float(reward), bool(terminated), truncated, dict(info)

    def close(self) -> None:
        self.task.close()


def resolve_obs_keys(task: Task, obs_keys: Sequence[str] | None) -> list[str]:
    """`obs_keys` checked against the task (default: all its low-dim keys), sorted."""
    low_dim = low_dim_keys(task)
    if not obs_keys:
        return low_dim
    spaces = task.observation_space.spaces
    for key in obs_keys:
        if key not in spaces:
            raise ApprenticeError(
                f"task {task.name} has no observation key {key!r} (it has: {', '.join(spaces)})"
            )
        if key not in low_dim:
            raise ApprenticeError(
                f"observation key {key!r} of task {task.name} is an image; the IRL learners "
                "read low-dim observations only"
            )
    return sorted(obs_keys)


def make_irl_env(task_name: str, seed: int, obs_keys: Sequence[str] | None = None) -> IRLEnv:
    """Task `task_name` as an `IRLEnv` (see the module docstring); unknown names are errors."""
    task = make_task(task_name)
    return IRLEnv(task, resolve_obs_keys(task, obs_keys), seed)


def flatten_obs(obs: dict[str, np.ndarray], keys: Sequence[str]) -> np.ndarray:
    """Dict of (B, ...) arrays -> (B, D), the keys concatenated in the given order."""
    return np.concatenate(
        [np.asarray(obs[k], dtype=np.float32).reshape(len(obs[k]), -1) for k in keys], axis=1
    )


@dataclass(frozen=True)
class ActionStats:
    """Mean and std (floored at the data layer's MIN_STD) of the demos' actions, (A,) each:
    the units a generator acts in under `ActionNormalized`."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, actions: np.ndarray) -> ActionStats:
        mean, std = floored_mean_std(actions)
        return cls(mean.astype(np.float32), std.astype(np.float32))

    def normalize(self, actions: np.ndarray) -> np.ndarray:
        return ((actions - self.mean) / self.std).astype(np.float32)

    def unnormalize(self, u: np.ndarray) -> np.ndarray:
        """Demo units -> the env's actions, clipped to [-1, 1]."""
        return np.clip(self.mean + self.std * u, -1.0, 1.0).astype(np.float32)

    def to_json(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_json(cls, d: dict[str, list[float]]) -> ActionStats:
        return cls(np.asarray(d["mean"], np.float32), np.asarray(d["std"], np.float32))


class ActionNormalized(gym.ActionWrapper[dict[str, np.ndarray], np.ndarray, np.ndarray]):
    """The env's [-1, 1] actions re-expressed in the demos' units, u = (a - mean) / std.

    A manipulation task's demo actions can be far smaller than their range (lift's x, y and
    yaw deltas have std 0.04-0.1, roll and pitch 5e-4, of [-1, 1]). A Gaussian policy with one
    exploration scale, and an optimizer with one step size, then overshoot the small
    dimensions by orders of magnitude. In demo units every dimension has scale 1. The action
    space is the image of [-1, 1], so nothing the env accepts is cut off."""

    def __init__(self, env: gym.Env[dict[str, np.ndarray], np.ndarray], stats: ActionStats):
        super().__init__(env)
        self.stats = stats
        low = stats.normalize(np.full_like(stats.mean, -1.0))
        high = stats.normalize(np.full_like(stats.mean, 1.0))
        self.action_space = gym.spaces.Box(low, high, dtype=np.float32)

    def action(self, action: np.ndarray) -> np.ndarray:
        return self.stats.unnormalize(np.asarray(action, dtype=np.float32))


# ---- demonstrations --------------------------------------------------------------------------


@dataclass(frozen=True)
class Transitions:
    """Demo steps as arrays. obs / next_obs: key -> (N, D_k); actions (N, A); dones (N,)
    True where the episode *terminated* (not where a demo merely ends)."""

    obs: dict[str, np.ndarray]
    actions: np.ndarray
    next_obs: dict[str, np.ndarray] | None
    """None when the file stores no next_obs (a learner that needs s' refuses it)."""
    dones: np.ndarray
    episode_returns: np.ndarray
    """(E,) the recorded return of each demo."""

    def __len__(self) -> int:
        return int(self.actions.shape[0])

    @property
    def obs_keys(self) -> list[str]:
        return sorted(self.obs)


def load_demo_transitions(
    path: str | Path,
    obs_keys: Sequence[str] | None = None,
    *,
    task_name: str | None = None,
    needs: str = "",
) -> Transitions:
    """The demos of `path` as transitions (low-dim keys, or `obs_keys`).

    `task_name` checks that the file holds demos of that task. `needs` names the algorithm:
    when set, next_obs is required (GAIfO's D(s, s') and AIRL's shaping h(s') read it), and
    its absence is an error that says so.
    """
    path = Path(path)
    if not path.is_file():
        raise ApprenticeError(f"demos {path} do not exist")
    with open_source(path) as f:
        env_name = f.env_args.get("env_name")
        if task_name is not None and env_name != task_name:
            raise ApprenticeError(f"demos {path} are of task {env_name!r}, not {task_name!r}")
        if obs_keys:
            f.check_obs_keys(obs_keys)
            keys = sorted(obs_keys)
        else:
            keys = sorted(k for k in f.obs_keys if k not in f.image_keys)
        if not keys:
            raise ApprenticeError(f"demos {path} have no low-dim observation keys")
        obs: dict[str, list[np.ndarray]] = {k: [] for k in keys}
        nxt: dict[str, list[np.ndarray]] = {k: [] for k in keys}
        actions, dones, returns = [], [], []
        has_next = True
        for name in f.demo_names:
            ep = f.read(name, obs_keys=keys, with_images=False)
            missing = [k for k in keys if k not in ep.next_obs]
            if missing:
                has_next = False
            for k in keys:
                obs[k].append(ep.obs[k].reshape(ep.num_samples, -1))
                if not missing:
                    nxt[k].append(ep.next_obs[k].reshape(ep.num_samples, -1))
            actions.append(ep.actions)
            # The store marks every demo's last step done, whether the episode was cut at
            # the horizon, stopped after success or segmented; none of these is an absorbing
            # state of the RL env (an expert does not fall), so no demo step terminates.
            dones.append(np.zeros(ep.num_samples, dtype=bool))
            returns.append(float(np.sum(ep.rewards)))
        if not actions:
            raise ApprenticeError(f"demos {path} hold no demos")
    if needs and not has_next:
        raise ApprenticeError(
            f"demos {path} have no next_obs/{keys[0]}: {needs} needs state transitions "
            "(s, s'); record demos with next_obs (apprentice collect and record_expert_demos "
            "store them)"
        )
    return Transitions(
        obs={k: np.concatenate(v).astype(np.float32) for k, v in obs.items()},
        actions=np.concatenate(actions).astype(np.float32),
        next_obs={k: np.concatenate(v).astype(np.float32) for k, v in nxt.items()}
        if has_next
        else None,
        dones=np.concatenate(dones),
        episode_returns=np.asarray(returns),
    )


def check_demos_fit_env(
    demos: Transitions, env: IRLEnv, path: str | Path, *, algo: str, needs_actions: bool = True
) -> None:
    """Refuse demos whose observation keys, shapes or action size differ from the env's.

    State-only demos store `actions` as a (T, 0) array; an algorithm that reads actions
    (`needs_actions`) refuses them by name, one that does not (GAIfO, BCO) takes them."""
    if demos.obs_keys != env.obs_keys:
        raise ApprenticeError(
            f"demos {path} have observation keys {demos.obs_keys}, task {env.task.name} "
            f"gives {env.obs_keys}; pass the task's keys (--algo-args obs_keys=...)"
        )
    for k in env.obs_keys:
        want = int(np.prod(env.observation_space.spaces[k].shape or ()))
        if demos.obs[k].shape[1] != want:
            raise ApprenticeError(
                f"demos {path}: obs/{k} has {demos.obs[k].shape[1]} features, task "
                f"{env.task.name} gives {want}"
            )
    act_dim = int(env.action_space.shape[0])
    if demos.actions.shape[1] == 0:
        if needs_actions:
            raise ApprenticeError(
                f"demos {path} are state-only (no actions): {algo} needs the expert's actions; "
                "use --algo gaifo or bco, or label them (apprentice label-actions)"
            )
        return
    if demos.actions.shape[1] != act_dim:
        raise ApprenticeError(
            f"demos {path} have {demos.actions.shape[1]}-D actions, task {env.task.name} "
            f"takes {act_dim}-D actions"
        )


def expert_reference(path: str | Path) -> tuple[float, float] | None:
    """(expert return, random return) stored in a demo file by `record_expert_demos`."""
    with DemoFile(path) as f:
        attrs = f.data_attrs
    if "expert_return" in attrs and "random_return" in attrs:
        return float(attrs["expert_return"]), float(attrs["random_return"])
    return None


# ---- experts and recording -------------------------------------------------------------------


class PendulumPDExpert:
    """gym/InvertedPendulum-v5's built-in PD law (`PendulumPD`) as an expert that labels: a
    teacher that needs no training, for tests and CI where no SB3 expert exists."""

    name = "pd"
    noise_free_dims: tuple[int, ...] = ()

    def __init__(self, task: Task) -> None:
        if not isinstance(task, GymTask) or task.env_id != PendulumPD.env_id:
            raise ApprenticeError(
                f"the pd expert balances gym/{PendulumPD.env_id}, not {task.name}"
            )
        self.task = task
        self.law = PendulumPD(task)

    def reset(self) -> None:
        """Stateless."""

    def label(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return self.law.act(obs)


def _expert(spec: str, task: Task, rng: np.random.Generator) -> Any:
    if spec == "pd":
        return PendulumPDExpert(task)
    from apprentice.interactive.experts import make_expert

    return make_expert(spec, task, rng)


def random_return(task: Task, seeds: Sequence[int], rng: np.random.Generator) -> float:
    """Mean return of uniformly random actions from the initial states of `seeds` (episodes
    end as `rollout_batch` ends them)."""
    env = IRLEnv(task, low_dim_keys(task), 0)
    shape = env.action_space.shape

    def act(obs: dict[str, np.ndarray]) -> np.ndarray:
        del obs
        return rng.uniform(-1, 1, shape)

    policy = PerObservation(act)
    returns = [rollout_batch(policy, [env], [int(s)])[0].episode_return for s in seeds]
    return float(np.mean(returns))


def record_expert_demos(
    task: str, expert_spec: str, n: int, out: str | Path, seed: int = 0
) -> Path:
    """Record `n` expert episodes of `task` into `out` (HDF5 through the store; appends to a
    file of the same task), with next_obs, and the data attrs `expert_return` and
    `random_return`: an SB3 expert's own record (its .json, as DAgger uses), else measured here
    (the recorded episodes' mean return up to their first success, as evaluation scores it;
    a random policy on the same initial states).

    `expert_spec`: "oracle", an SB3 .zip, or "pd" (the InvertedPendulum PD law).
    """
    from apprentice.interactive.episodes import run_episode

    if n < 1:
        raise ApprenticeError(f"record_expert_demos: n must be >= 1, got {n}")
    t = make_task(task)
    rng = np.random.default_rng(seed)
    expert = _expert(expert_spec, t, rng)
    seeds = expert_demo_seeds(seed, n)
    returns = []
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with DemoWriter(out, env_args=t.env_args) as writer:
        for s in seeds:
            record = run_episode(
                t, expert, seed=s, mode="expert", rng=rng, source=expert.name, attrs={}
            )
            for episode in record.segments:
                writer.append(episode)
            returns.append(record.result.episode_return)
        reference = getattr(expert, "record", None)
        attrs: dict[str, Any]
        if reference and "expert_return" in reference:
            attrs = {
                "expert_return": float(reference["expert_return"]),
                "random_return": float(reference["random_return"]),
            }
        else:
            attrs = {
                "expert_return": float(np.mean(returns)),
                "random_return": random_return(t, seeds, np.random.default_rng([seed, 3])),
            }
        attrs["expert"] = json.dumps({"spec": expert_spec, "episodes": n, "seed": seed})
        writer.set_data_attrs(attrs)
    t.close()
    return out


# ---- evaluation ------------------------------------------------------------------------------


def evaluate_policy(
    act: Act,
    env: IRLEnv,
    episodes: int,
    *,
    reference: tuple[float, float] | None = None,
    seed_offset: int = 0,
) -> dict[str, float]:
    """Run `act` for `episodes` episodes from held-out initial states (never used in training
    or collection), one after another on `env`, through `rollout_batch` (an episode ends at
    its first success, termination, or the horizon). Returns mean_return, std_return, and
    normalized_return when `reference` (expert, random) is known, success_rate for tasks
    that define success (not gym/...)."""
    policy = PerObservation(act)
    results = [
        r for s in held_out_seeds(episodes, seed_offset) for r in rollout_batch(policy, [env], [s])
    ]
    returns = [r.episode_return for r in results]
    out = {
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "eval_episodes": float(episodes),
    }
    if reference is not None:
        expert_r, random_r = reference
        out["normalized_return"] = (out["mean_return"] - random_r) / (expert_r - random_r)
    if not isinstance(env.task, GymTask):
        out["success_rate"] = sum(r.success for r in results) / episodes
    return out


__all__ = [
    "Act",
    "ActionNormalized",
    "ActionStats",
    "IRLEnv",
    "PendulumPDExpert",
    "Transitions",
    "check_demos_fit_env",
    "evaluate_policy",
    "expert_reference",
    "flatten_obs",
    "load_demo_transitions",
    "make_irl_env",
    "record_expert_demos",
]
