"""Collect demonstrations from a task's scripted oracle, in a process pool."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from apprentice.collect.noisy import add_motion_noise, motion_dims
from apprentice.collect.record import record_episode
from apprentice.data.episode import Episode
from apprentice.data.reader import canonical_env_args
from apprentice.data.store import DemoFile, DemoWriter, write_mask
from apprentice.envs.base import make_task
from apprentice.envs.gym_tasks import GymTask, PendulumPD, SB3Expert, builtin_expert
from apprentice.envs.perturb import merge_task_args
from apprentice.envs.pool import make_pool, worker_task
from apprentice.envs.seeds import HELD_OUT_SEED_BASE
from apprentice.errors import ApprenticeError
from apprentice.overrides import parse_overrides
from apprentice.splits import check_valid_fraction


@dataclass(frozen=True)
class CollectConfig:
    """Record successful oracle demonstrations of a task into a robomimic-layout HDF5 file."""

    task: str = "lift"
    """Name of a registered task."""
    n: int = 100
    """Number of successful demos wanted in the file."""
    out: str = "demos.hdf5"
    """Output HDF5 file; an existing file of the same task is resumed."""
    workers: int = 2
    """Processes running the oracle."""
    camera: bool = False
    """Also record 84x84 agentview and eye-in-hand images."""
    variant: str | None = None
    """Placement variant of a built-in task: D0 (its default) or D1 (objects spread wider)."""
    keep_failed: bool = False
    """Keep failed attempts too, under mask/failed."""
    seed: int = 0
    """First initial-state seed; attempt i uses seed + i."""
    action_noise: float = 0.0
    """Std of Gaussian noise added to the oracle's motion actions (every arm's delta pose,
    not the grippers or finger targets: `collect.noisy.motion_dims`) and recorded with them,
    as MimicGen does: demos then visit, and correct, slightly perturbed states around the
    expert's path."""
    steps_after_success: int = 10
    """Keep recording this many oracle steps after the task first succeeds (release, retreat)."""
    valid_fraction: float = 0.1
    """Fraction of successful demos put in mask/valid (the rest in mask/train)."""
    max_attempts_factor: float = 3.0
    """Give up after n * factor attempts."""
    progress: bool = True
    """Show a progress bar."""
    noise: str = "none"
    """Human-like defects injected into the oracle (apprentice.collect.noisy): none, or human
    (pauses, hesitations, tremor, dropped grasps, gripper chatter; labelled in demo attrs)."""
    overwrite: bool = False
    """Replace --out instead of resuming it (a file of another task is refused otherwise)."""
    task_args: tuple[str, ...] = ()
    """More task arguments, key=value: a perturbation axis at a level or a range each episode
    draws from (light=0:1 camera=0:0.5 friction=0.5; see apprentice.envs.perturb), recorded
    in the file's env_args."""
    expert: str = "oracle"
    """Who demonstrates: 'oracle' (the task's scripted oracle; for a gym/<id> task its
    built-in expert, gym/InvertedPendulum-v5's PD law) or a stable-baselines3 model .zip (a
    gym/<id> task's trained expert, its .json record beside it)."""

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ApprenticeError(f"--workers must be >= 1, got {self.workers}")
        if self.action_noise < 0:
            raise ApprenticeError(f"--action-noise must be >= 0, got {self.action_noise}")
        if self.steps_after_success < 0:
            raise ApprenticeError(
                f"--steps-after-success must be >= 0, got {self.steps_after_success}"
            )


@dataclass(frozen=True)
class CollectResult:
    path: Path
    successes: int
    attempts: int
    kept_failed: int
    resumed_from: int


@lru_cache(maxsize=2)
def _sb3_expert(path: str, task_name: str, kwargs: tuple[tuple[str, Any], ...]) -> SB3Expert:
    """This process's SB3 expert for the task: loaded once, not per episode."""
    return SB3Expert.load(path, worker_task(task_name, kwargs))


def _oracle_episode(
    task_name: str,
    kwargs: tuple[tuple[str, Any], ...],
    seed: int,
    after: int,
    noise: float,
    human: str = "none",
    expert: str = "oracle",
) -> Episode:
    from apprentice.collect.noisy import collect_human_like, noise_preset

    task = worker_task(task_name, kwargs)
    if isinstance(task, GymTask):
        # A control task: the expert's whole episode (to termination or the horizon) is the
        # demo; there is no success to stop at, no end effector to record for generation.
        actor: SB3Expert | PendulumPD
        if expert == "oracle":
            actor = builtin_expert(task)
        else:
            actor = _sb3_expert(expert, task_name, kwargs)
        return record_episode(
            task,
            actor.act,
            seed=seed,
            source=expert_source(expert),
            with_datagen=False,
            on_reset=actor.reset,
        )
    oracle = task.oracle(np.random.default_rng(seed))
    human_noise = noise_preset(human)
    if human_noise is not None:
        return collect_human_like(
            task, oracle, human_noise, seed=seed, after=after, action_noise=noise
        )
    noise_rng = np.random.default_rng([seed, 1])  # its own stream: the oracle's stays the same
    dims = motion_dims(task)

    def act(obs: dict[str, np.ndarray]) -> np.ndarray:
        action = oracle.act(obs)
        return add_motion_noise(action, dims, noise, noise_rng) if noise > 0 else action

    return record_episode(
        task, act, seed=seed, source="oracle", on_reset=oracle.reset, steps_after_success=after
    )


def expert_source(expert: str) -> str:
    """The `source` attr of a demo by `expert`: oracle, or sb3 for a trained model."""
    return "oracle" if expert == "oracle" else SB3Expert.name


def _task_kwargs(cfg: CollectConfig) -> tuple[tuple[str, Any], ...]:
    kwargs: dict[str, Any] = {"camera": cfg.camera}
    if cfg.variant is not None:
        kwargs["variant"] = cfg.variant
    kwargs = merge_task_args(kwargs, parse_overrides(cfg.task_args, "--task-args"))
    return tuple(sorted(kwargs.items()))


def _episodes(cfg: CollectConfig, seeds: Iterator[int]) -> Iterator[Episode]:
    """Episodes in seed order (so a given seed gives the same file whatever the workers)."""
    if cfg.workers <= 1:
        for seed in seeds:
            yield _oracle_episode(
                cfg.task,
                _task_kwargs(cfg),
                seed,
                cfg.steps_after_success,
                cfg.action_noise,
                cfg.noise,
                cfg.expert,
            )
        return
    with make_pool(cfg.workers) as pool:
        batch = 4 * cfg.workers
        while True:
            chunk = [s for _, s in zip(range(batch), seeds, strict=False)]
            if not chunk:
                return
            args = [
                (
                    cfg.task,
                    _task_kwargs(cfg),
                    s,
                    cfg.steps_after_success,
                    cfg.action_noise,
                    cfg.noise,
                    cfg.expert,
                )
                for s in chunk
            ]
            yield from pool.map(_oracle_episode, *zip(*args, strict=True))


def collect_demos(cfg: CollectConfig) -> CollectResult:
    if cfg.n <= 0:
        raise ApprenticeError(f"--n must be positive, got {cfg.n}")
    check_valid_fraction(cfg.valid_fraction, "--valid-fraction")
    if cfg.seed < 0 or cfg.seed >= HELD_OUT_SEED_BASE:
        raise ApprenticeError(
            f"--seed must lie in [0, {HELD_OUT_SEED_BASE}): higher seeds are held out"
        )
    task = make_task(cfg.task, **dict(_task_kwargs(cfg)))
    env_args = task.env_args
    # A control task's demos are whole expert episodes, kept whatever their return.
    every_episode = isinstance(task, GymTask)
    if cfg.expert != "oracle":
        if not every_episode:
            raise ApprenticeError(
                f"--expert {cfg.expert}: task {cfg.task} records its scripted oracle; "
                "a stable-baselines3 expert demonstrates the gym/<id> tasks"
            )
        SB3Expert.load(cfg.expert, task)  # fail here, not in a worker
    elif isinstance(task, GymTask):
        builtin_expert(task)  # a gym task with no built-in expert says so here
    task.close()
    path = Path(cfg.out)
    done_seeds: set[int] = set()
    successes = 0
    if path.exists() and not cfg.overwrite:
        with DemoFile(path) as f:
            if f.env_args != canonical_env_args(env_args):
                raise ApprenticeError(
                    f"--out {path} holds demos of env_args {json.dumps(f.env_args)}, not "
                    f"{json.dumps(canonical_env_args(env_args))}; choose another --out, or pass "
                    "--overwrite to replace it"
                )
            for name in f.demo_names:
                attrs = f.attrs(name)
                if attrs.get("seed") is not None:
                    done_seeds.add(int(attrs["seed"]))
                successes += bool(attrs.get("success", True))
    resumed_from = successes
    max_attempts = int(cfg.n * cfg.max_attempts_factor) + 10
    attempts, kept_failed = 0, 0

    def seed_stream() -> Iterator[int]:
        s = cfg.seed
        while s < HELD_OUT_SEED_BASE:
            if s not in done_seeds:
                yield s
            s += 1

    bar = tqdm(total=cfg.n, initial=successes, desc=f"collect {cfg.task}", disable=not cfg.progress)
    with DemoWriter(path, env_args=env_args, overwrite=cfg.overwrite) as writer:
        stream = seed_stream()
        while successes < cfg.n and attempts < max_attempts:
            need = min(cfg.n - successes, max_attempts - attempts)
            for episode in _episodes(cfg, (next(stream) for _ in range(need))):
                attempts += 1
                if episode.success or every_episode:
                    writer.append(episode, masks=("success",) if episode.success else ())
                    successes += 1
                    bar.update(1)
                elif cfg.keep_failed:
                    writer.append(episode, masks=("failed",))
                    kept_failed += 1
                bar.set_postfix(attempts=attempts, rate=f"{successes - resumed_from}/{attempts}")
    bar.close()
    _write_split(path, cfg.valid_fraction, cfg.seed, every_demo=every_episode)
    if successes < cfg.n:
        raise ApprenticeError(
            f"the {cfg.task} oracle succeeded {successes - resumed_from} times in {attempts} "
            f"attempts; {path} holds {successes} successful demos, fewer than --n {cfg.n}"
        )
    return CollectResult(path, successes, attempts, kept_failed, resumed_from)


def _write_split(path: Path, valid_fraction: float, seed: int, every_demo: bool = False) -> None:
    """mask/train and mask/valid over the successful demos (robomimic's mask names), or over
    every demo (`every_demo`: a control task's, which have no success)."""
    with DemoFile(path) as f:
        good = [n for n in f.demo_names if every_demo or bool(f.attrs(n).get("success", True))]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(good))
    n_valid = max(1, round(len(good) * valid_fraction)) if len(good) > 1 and valid_fraction else 0
    valid = sorted((good[i] for i in order[:n_valid]), key=lambda s: int(s.split("_")[-1]))
    write_mask(path, "valid", valid)
    write_mask(path, "train", [n for n in good if n not in set(valid)])
