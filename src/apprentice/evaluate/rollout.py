"""Policy rollouts on held-out initial states: vectorized per process, pooled across them."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, as_completed
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from apprentice.data.spec import ObsActSpec
from apprentice.envs.base import Task, make_task, task_spec
from apprentice.envs.pool import make_pool, worker_task
from apprentice.envs.seeds import held_out_seeds
from apprentice.errors import ApprenticeError
from apprentice.evaluate.metrics import success_rate
from apprentice.overrides import parse_overrides
from apprentice.policies.base import Policy, policy_config_from_dict
from apprentice.policies.checkpoint import (
    check_task,
    load_checkpoint,
    load_policy,
    resolve_checkpoint,
)

VIDEO_CAMERA = "agentview"
VIDEO_SIZE = 192


@dataclass(frozen=True)
class EpisodeResult:
    seed: int
    success: bool
    length: int
    max_reward: float = 0.0
    """The episode's highest step reward (Push-T's score: its best coverage, normalized)."""
    frames: np.ndarray | None = field(default=None, repr=False)
    """(T, H, W, 3) uint8 when recorded."""


@dataclass(frozen=True)
class EvalResult:
    task: str
    episodes: list[EpisodeResult]
    wall_seconds: float

    @property
    def successes(self) -> int:
        return sum(e.success for e in self.episodes)

    def summary(self) -> dict[str, Any]:
        """The results JSON: success_rate, ci_low, ci_high, episodes, seeds, ..."""
        sr = success_rate(self.successes, len(self.episodes))
        steps = sum(e.length for e in self.episodes)
        return {
            "task": self.task,
            "success_rate": sr.rate,
            "ci_low": sr.ci_low,
            "ci_high": sr.ci_high,
            "successes": sr.successes,
            "episodes": sr.trials,
            "mean_episode_length": float(np.mean([e.length for e in self.episodes])),
            "seeds": [e.seed for e in self.episodes],
            "per_episode_success": [bool(e.success) for e in self.episodes],
            "mean_max_reward": float(np.mean([e.max_reward for e in self.episodes])),
            "per_episode_max_reward": [e.max_reward for e in self.episodes],
            "wall_seconds": self.wall_seconds,
            "env_steps_per_second": steps / max(self.wall_seconds, 1e-9),
        }


def rollout_batch(
    policy: Policy,
    tasks: Sequence[Task],
    seeds: Sequence[int],
    *,
    record_video: int = 0,
) -> list[EpisodeResult]:
    """Roll `policy` out on len(tasks) envs in lockstep, one seed each.

    The policy sees a (B, D) batch per step, so its cost is paid once per step rather than
    once per env; finished envs keep their last observation and are no longer stepped.
    """
    if len(tasks) != len(seeds):
        raise ValueError("one seed per task")
    obs = [t.reset(seed=s)[0] for t, s in zip(tasks, seeds, strict=True)]
    policy.reset()
    n = len(tasks)
    active = np.ones(n, dtype=bool)
    success = np.zeros(n, dtype=bool)
    length = np.zeros(n, dtype=np.int64)
    max_reward = np.full(n, -np.inf)
    frames: list[list[np.ndarray]] = [[] for _ in range(min(record_video, n))]
    for i, f in enumerate(frames):
        f.append(tasks[i].render_frame(VIDEO_CAMERA, VIDEO_SIZE))
    horizon = max(t.horizon for t in tasks)
    for _ in range(horizon):
        batch = {k: np.stack([o[k] for o in obs]) for k in obs[0]}
        actions = policy.act_batch(batch)  # (B, A)
        for i in map(int, np.flatnonzero(active)):
            obs[i], reward, terminated, truncated, info = tasks[i].step(actions[i])
            length[i] += 1
            max_reward[i] = max(max_reward[i], float(reward))
            if i < len(frames):
                frames[i].append(tasks[i].render_frame(VIDEO_CAMERA, VIDEO_SIZE))
            if info.get("success", False):
                success[i] = True
            if success[i] or terminated or truncated or length[i] >= tasks[i].horizon:
                active[i] = False
        if not active.any():
            break
    return [
        EpisodeResult(
            seed=int(seeds[i]),
            success=bool(success[i]),
            length=int(length[i]),
            max_reward=float(max_reward[i]) if length[i] else 0.0,
            frames=np.stack(frames[i]) if i < len(frames) else None,
        )
        for i in range(n)
    ]


@lru_cache(maxsize=2)
def _worker_policy(checkpoint: str, mtime_ns: int) -> Policy:
    del mtime_ns  # part of the cache key only: a rewritten checkpoint is reloaded
    return load_policy(checkpoint)


def _rollout_chunk(
    checkpoint: str,
    task: str,
    task_kwargs: tuple[tuple[str, Any], ...],
    seeds: list[int],
    video: int,
) -> list[EpisodeResult]:
    policy = _worker_policy(checkpoint, Path(checkpoint).stat().st_mtime_ns)
    tasks = [worker_task(task, task_kwargs, i) for i in range(len(seeds))]
    return rollout_batch(policy, tasks, seeds, record_video=video)


def policy_spec(ckpt: dict[str, Any]) -> ObsActSpec:
    """The observations (only the keys the policy reads, cameras included) and actions of a
    checkpoint."""
    spec = ObsActSpec.from_dict(ckpt["spec"])
    config = policy_config_from_dict(ckpt["policy_config"])
    keys = [*(config.obs_keys or spec.low_dim_keys), *config.image_keys]
    return ObsActSpec({k: spec.obs_shapes[k] for k in keys}, spec.action_dim)


@dataclass(frozen=True)
class EvalConfig:
    """Evaluate a trained policy on held-out initial states."""

    checkpoint: str
    """A run folder or a checkpoint file."""
    task: str | None = None
    """Task to evaluate on (default: the task the policy was trained for)."""
    task_args: tuple[str, ...] = ()
    """Task arguments key=value over the training data's (e.g. variant=D1: a wider placement)."""
    episodes: int = 50
    """Number of rollouts, each from its own held-out seed."""
    workers: int = 2
    """Processes running rollouts."""
    seed_offset: int = 0
    """Offset into the held-out seed range (to draw a different set of initial states)."""
    videos: int = 0
    """Number of rollouts to record as MP4."""
    envs_per_worker: int = 10
    """Envs stepped in lockstep inside a worker (policy calls batched across them)."""
    out: str | None = None
    """Results JSON (default: eval_<task>.json next to the checkpoint)."""


def evaluate(
    cfg: EvalConfig,
    *,
    progress: Callable[[int], None] | None = None,
    pool: Executor | None = None,
) -> dict[str, Any]:
    """Run the rollouts, write the results JSON (and videos), and return its content.

    `pool` (from `make_pool`) lets several evaluations share worker processes that are
    already started, so the spawn start-up (a few seconds: torch's import) is paid once.
    """
    ckpt_path = resolve_checkpoint(cfg.checkpoint)
    ckpt = load_checkpoint(ckpt_path)
    task_name = cfg.task or ckpt["env_args"]["env_name"]
    check_task(ckpt["env_args"], task_name, checkpoint=str(ckpt_path))
    if cfg.episodes <= 0:
        raise ApprenticeError(f"--episodes must be positive, got {cfg.episodes}")
    kwargs = dict(ckpt["env_args"].get("env_kwargs", {}))
    if "camera" in kwargs:
        # A robosuite task's env_kwargs have no "camera": it follows their use_camera_obs.
        kwargs["camera"] = bool(kwargs["camera"])
    kwargs.update(parse_overrides(cfg.task_args, "task argument"))
    # Fail here, not in a worker: an unknown task, or one whose observations differ.
    probe = make_task(task_name, **kwargs)
    policy_spec(ckpt).check_compatible(
        task_spec(probe), what=f"checkpoint {ckpt_path}", against=f"task {task_name!r}"
    )
    probe.close()
    seeds = held_out_seeds(cfg.episodes, cfg.seed_offset)
    chunk = max(1, min(cfg.envs_per_worker, -(-cfg.episodes // max(cfg.workers, 1))))
    chunks = [seeds[i : i + chunk] for i in range(0, len(seeds), chunk)]
    kw_items = tuple(sorted(kwargs.items()))
    videos = [min(max(cfg.videos - i * chunk, 0), len(c)) for i, c in enumerate(chunks)]
    out = Path(cfg.out) if cfg.out else ckpt_path.parent / f"eval_{task_name}.json"
    journal = _Journal(
        out.with_name(out.stem + ".partial.jsonl"),
        {
            "checkpoint": str(ckpt_path.resolve()),
            "checkpoint_mtime_ns": ckpt_path.stat().st_mtime_ns,
            "task": task_name,
            "task_kwargs": repr(kw_items),
            "chunks": chunks,
        },
    )
    # Chunks a killed run finished come back from the journal (not those with videos: their
    # frames are not kept); the rest run.
    done = {i: eps for i, eps in journal.done.items() if not videos[i]}
    todo = [i for i in range(len(chunks)) if i not in done]
    if progress and done:
        progress(sum(len(chunks[i]) for i in done))
    start = time.perf_counter()
    parts: dict[int, list[EpisodeResult]] = dict(done)

    def finished(i: int, part: list[EpisodeResult]) -> None:
        parts[i] = part
        journal.add(i, part)
        if progress:
            progress(len(part))

    if cfg.workers <= 1:
        for i in todo:
            finished(i, _rollout_chunk(str(ckpt_path), task_name, kw_items, chunks[i], videos[i]))
    else:
        with contextlib.ExitStack() as stack:
            executor = pool or stack.enter_context(make_pool(cfg.workers))
            futures = {
                executor.submit(
                    _rollout_chunk, str(ckpt_path), task_name, kw_items, chunks[i], videos[i]
                ): i
                for i in todo
            }
            for fut in as_completed(futures):
                finished(futures[fut], fut.result())
    results = [ep for i in range(len(chunks)) for ep in parts[i]]
    result = EvalResult(task_name, results, time.perf_counter() - start)
    summary = result.summary()
    summary["checkpoint"] = str(ckpt_path)
    summary["resumed_episodes"] = sum(len(chunks[i]) for i in done)
    video_paths = write_videos(result, out.parent / "videos")
    summary["videos"] = [str(p) for p in video_paths]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    journal.remove()
    summary["results_path"] = str(out)
    return summary


class _Journal:
    """Finished chunks of one evaluation, a JSON line each, so a killed run resumes.

    The first line says which evaluation it belongs to (checkpoint file and its mtime, task,
    the seeds of every chunk); a journal of another evaluation is started afresh, and a
    torn last line (the process killed mid-write) is dropped.
    """

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path = path
        self.done: dict[int, list[EpisodeResult]] = {}
        first = json.dumps(header)
        lines = path.read_text().splitlines() if path.exists() else []
        kept = [first]
        if lines and lines[0] == first:
            for line in lines[1:]:
                try:
                    rec = json.loads(line)
                    self.done[int(rec["chunk"])] = [EpisodeResult(**e) for e in rec["episodes"]]
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    break  # a torn tail: this line and any after it are dropped
                kept.append(line)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(kept) + "\n")

    def add(self, chunk: int, episodes: list[EpisodeResult]) -> None:
        eps = [
            {"seed": e.seed, "success": e.success, "length": e.length, "max_reward": e.max_reward}
            for e in episodes
        ]
        with self.path.open("a") as f:
            f.write(json.dumps({"chunk": chunk, "episodes": eps}) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def write_videos(result: EvalResult, folder: Path) -> list[Path]:
    paths = []
    for ep in result.episodes:
        if ep.frames is None:
            continue
        import imageio.v2 as imageio

        folder.mkdir(parents=True, exist_ok=True)
        tag = "success" if ep.success else "failure"
        path = folder / f"{result.task}_seed{ep.seed}_{tag}.mp4"
        imageio.mimwrite(path, list(ep.frames), fps=20, macro_block_size=1)
        paths.append(path)
    return paths


def rollout_callback(
    task: str,
    episodes: int,
    seed_offset: int = 100_000,
    task_kwargs: dict[str, Any] | None = None,
) -> Callable[[Policy, int], dict[str, float]]:
    """A trainer callback: success rate of the in-memory policy on held-out seeds.

    It runs in the training process, vectorized over `episodes` envs, so no checkpoint has
    to be written and no pool started; the seeds differ from the final evaluation's by
    `seed_offset` so model selection does not peek at the test initial states.
    `task_kwargs` build the task as the demos were recorded (e.g. camera=True for an image
    policy).
    """
    tasks = [make_task(task, **(task_kwargs or {})) for _ in range(episodes)]
    seeds = held_out_seeds(episodes, seed_offset)

    def run(policy: Policy, epoch: int) -> dict[str, float]:
        del epoch
        results = rollout_batch(policy, tasks, seeds)
        return {"success_rate": float(np.mean([r.success for r in results]))}

    return run
