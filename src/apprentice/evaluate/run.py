"""Evaluating a policy on held-out initial states: `apprentice eval` (vectorized per
process, pooled across them, resumable) and the trainer's periodic rollouts, both through
the one rollout loop (`apprentice.evaluate.rollout.rollout_batch`)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, as_completed
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from apprentice.data.spec import ObsActSpec
from apprentice.envs.base import make_task, task_spec
from apprentice.envs.perturb import merge_task_args
from apprentice.envs.pool import BACKENDS, make_pool, worker_task
from apprentice.envs.ray_pool import import_ray
from apprentice.envs.seeds import TRAINER_SEED_OFFSET, held_out_seeds
from apprentice.errors import ApprenticeError
from apprentice.evaluate.metrics import success_rate
from apprentice.evaluate.rollout import EpisodeResult, rollout_batch
from apprentice.files import write_text_atomic
from apprentice.overrides import parse_overrides
from apprentice.policies.base import Policy, policy_config_from_dict, with_run_time_settings
from apprentice.policies.checkpoint import (
    check_task,
    load_checkpoint,
    load_policy,
    resolve_checkpoint,
)


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
            "mean_return": float(np.mean([e.episode_return for e in self.episodes])),
            "per_episode_return": [e.episode_return for e in self.episodes],
            "wall_seconds": self.wall_seconds,
            "env_steps_per_second": steps / max(self.wall_seconds, 1e-9),
        }


POOL_START_SECONDS = 8.0
"""What starting a pool for one evaluation costs before its workers roll out: the fork
server's preload (torch, mujoco, the tasks), then each worker's policy and envs. Measured
with benchmarks/bench_eval.py (2 workers, lift: 6.7 s median on a loaded 2-core machine),
rounded up: an estimate on the high side keeps work in-process, never slower than one worker."""


def pool_pays(chunk_seconds: float, chunks_left: int, workers: int) -> bool:
    """Whether `workers` processes, started now, finish `chunks_left` chunks of
    `chunk_seconds` each sooner than this process alone."""
    pooled = POOL_START_SECONDS + math.ceil(chunks_left / workers) * chunk_seconds
    return pooled < chunks_left * chunk_seconds


@lru_cache(maxsize=2)
def _worker_policy(checkpoint: str, mtime_ns: int, policy_args: str) -> Policy:
    """The checkpoint's policy with its run-time settings `policy_args` (a JSON object)."""
    del mtime_ns  # part of the cache key only: a rewritten checkpoint is reloaded
    return load_policy(checkpoint, json.loads(policy_args))


def _rollout_chunk(
    checkpoint: str,
    policy_args: str,
    task: str,
    task_kwargs: tuple[tuple[str, Any], ...],
    seeds: list[int],
    video: int,
) -> list[EpisodeResult]:
    policy = _worker_policy(checkpoint, Path(checkpoint).stat().st_mtime_ns, policy_args)
    tasks = [worker_task(task, task_kwargs, i) for i in range(len(seeds))]
    with _one_torch_thread():
        return rollout_batch(policy, tasks, seeds, record_video=video)


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    """One torch thread while a chunk runs, as in a pool worker: a chunk then gives the same
    actions, bit for bit, wherever it runs, and a batch of a few observations is fastest on
    one thread (on a busy 2-core machine an LSTM 2x400 step took 5.7 ms on one, 128 ms on
    two)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


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
    """Task arguments key=value over the training data's (e.g. variant=D1: a wider placement;
    light=0.5 or perturb={"light":0.5} for the perturbation axes, see envs/perturb.py)."""
    policy_args: tuple[str, ...] = ()
    """Run-time settings of the policy, key=value over its checkpoint's config, no retraining
    (e.g. temporal_ensemble=false execute_horizon=8 for ACT, inference_steps=4 for diffusion);
    a setting fixed by training is refused."""
    episodes: int = 50
    """Number of rollouts, each from its own held-out seed."""
    workers: int = 2
    """Processes running rollouts (with --backend ray: the CPUs of a local Ray instance; a
    cluster spreads the episodes' chunks over the CPUs it has)."""
    backend: str = "process"
    """Where rollouts run: process (this machine's processes), or ray (Ray tasks on the
    cluster at RAY_ADDRESS, else on a local instance started for the call). The same seeds
    give the same episodes on either."""
    seed_offset: int = 0
    """Offset into the held-out seed range (to draw a different set of initial states)."""
    videos: int = 0
    """Number of rollouts to record as MP4."""
    envs_per_worker: int = 10
    """Envs stepped in lockstep inside a worker (policy calls batched across them)."""
    out: str | None = None
    """Results JSON (default: eval_<task>.json next to the checkpoint, eval_<task>_<k>=<v>.json
    with --task-args or --policy-args); with --sweep the sweep's JSON (default:
    sweep_<task>.json), each level's results beside it."""
    sweep: tuple[str, ...] = field(default=(), metadata={"repeat": True})
    """Success along perturbation axes, AXIS=LEVELS each (--sweep light=0,0.5,1 --sweep
    camera=0,1): one evaluation per level with every other axis nominal, the curves in
    report.html beside the sweep's JSON."""

    def __post_init__(self) -> None:
        checks = [
            ("episodes", self.episodes, 1),
            ("workers", self.workers, 1),
            ("envs_per_worker", self.envs_per_worker, 1),
            ("videos", self.videos, 0),
            ("seed_offset", self.seed_offset, 0),
        ]
        for name, value, low in checks:
            if value < low:
                raise ApprenticeError(f"{name} must be >= {low}, got {value}")
        if self.backend not in BACKENDS:
            raise ApprenticeError(
                f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}"
            )


def results_name(
    task: str, task_args: dict[str, Any], policy_args: dict[str, Any], prefix: str = "eval"
) -> str:
    """The default results file of an evaluation: eval_<task>.json, with the task arguments,
    then the policy's run-time settings, in the name (eval_lift_variant=D1.json,
    eval_pusht_inference_steps=4.json, eval_lift_perturb=light=0.5.json) so that evaluations
    of one checkpoint under different arguments keep their own file (and resume journal)."""
    parts = [task.replace("/", "-")]
    parts += [
        f"{k}={_name_value(v)}"
        for args in (task_args, policy_args)
        for k, v in sorted(args.items())
    ]
    name = "_".join(parts)
    return f"{prefix}_" + "".join(c if c.isalnum() or c in "=-_.," else "-" for c in name) + ".json"


def _name_value(value: Any) -> str:
    """An argument's value as a file name has it: a list as a-b, a dict as k=v,k=v (sorted),
    an empty one as none."""
    if isinstance(value, dict):
        items = [f"{k}={_name_value(v)}" for k, v in sorted(value.items())]
        return ",".join(items) or "none"
    if isinstance(value, list):
        return "-".join(_name_value(v) for v in value) or "none"
    return str(value)


def task_kwargs(env_args: dict[str, Any], task_args: dict[str, Any]) -> dict[str, Any]:
    """The task's keyword arguments for an evaluation: a checkpoint's env_kwargs under parsed
    --task-args, the perturbation axes merged as `envs.perturb.merge_task_args` does."""
    kwargs = dict(env_args.get("env_kwargs", {}))
    if "camera" in kwargs:
        # A robosuite task's env_kwargs have no "camera": it follows their use_camera_obs.
        kwargs["camera"] = bool(kwargs["camera"])
    return merge_task_args(kwargs, task_args)


def evaluate(
    cfg: EvalConfig,
    *,
    progress: Callable[[int], None] | None = None,
    pool: Executor | None = None,
) -> dict[str, Any]:
    """Run the rollouts, write the results JSON (and videos), and return its content.

    With `workers` > 1 and no `pool`, the first chunk of episodes runs here, timed, and a
    pool is started for the rest only where `pool_pays` (few episodes per worker finish
    sooner in this process than a pool starts). `pool` (from `make_pool`) lets several
    evaluations share worker processes that are already started: all chunks go to it.
    With backend "ray" every chunk goes to Ray. Every chunk gives the same episodes wherever
    it runs.
    """
    if cfg.sweep:
        raise ApprenticeError(
            "EvalConfig.sweep is run by apprentice.evaluate.robustness.sweep_policy, not evaluate"
        )
    if cfg.backend == "ray":
        import_ray()  # missing: one error before any work
    ckpt_path = resolve_checkpoint(cfg.checkpoint)
    ckpt = load_checkpoint(ckpt_path)
    task_name = cfg.task or ckpt["env_args"]["env_name"]
    check_task(ckpt["env_args"], task_name, checkpoint=str(ckpt_path))
    task_args = parse_overrides(cfg.task_args, "task argument")
    kwargs = task_kwargs(ckpt["env_args"], task_args)
    policy_args = parse_overrides(cfg.policy_args, "policy argument")
    # Refused here, before any rollout: a setting unknown or fixed by training.
    with_run_time_settings(policy_config_from_dict(ckpt["policy_config"]), policy_args)
    settings = json.dumps(policy_args, sort_keys=True)  # what workers load the policy with
    # Fail here, not in a worker: an unknown task, or one whose observations differ.
    probe = make_task(task_name, **kwargs)
    policy_spec(ckpt).check_compatible(
        task_spec(probe), what=f"checkpoint {ckpt_path}", against=f"task {task_name!r}"
    )
    perturb = probe.env_args.get("env_kwargs", {}).get("perturb", {})
    probe.close()
    seeds = held_out_seeds(cfg.episodes, cfg.seed_offset)
    chunk = max(1, min(cfg.envs_per_worker, -(-cfg.episodes // cfg.workers)))
    chunks = [seeds[i : i + chunk] for i in range(0, len(seeds), chunk)]
    kw_items = tuple(sorted(kwargs.items()))
    videos = [min(max(cfg.videos - i * chunk, 0), len(c)) for i, c in enumerate(chunks)]
    name = results_name(task_name, task_args, policy_args)
    out = Path(cfg.out) if cfg.out else ckpt_path.parent / name
    journal = _Journal(
        out.with_name(out.stem + ".partial.jsonl"),
        {
            "checkpoint": str(ckpt_path.resolve()),
            "checkpoint_mtime_ns": ckpt_path.stat().st_mtime_ns,
            "policy_args": settings,
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

    def in_process(i: int) -> None:
        part = _rollout_chunk(str(ckpt_path), settings, task_name, kw_items, chunks[i], videos[i])
        finished(i, part)

    remote = cfg.backend == "ray" and bool(todo)
    pooled = remote or (cfg.workers > 1 and len(todo) > 1)
    if pooled and pool is None and not remote:
        # Time one chunk here (policy loaded and envs built first) and start a pool for the
        # rest only where it pays for its start-up.
        _worker_policy(str(ckpt_path), ckpt_path.stat().st_mtime_ns, settings)
        for copy in range(len(chunks[todo[0]])):
            worker_task(task_name, kw_items, copy)
        t0 = time.perf_counter()
        in_process(todo.pop(0))
        pooled = pool_pays(time.perf_counter() - t0, len(todo), cfg.workers)
    if not pooled:
        # Here, chunks cut for several workers are stepped together again, up to
        # envs_per_worker envs at once, so the policy is called once per step for all of them.
        for group in _batches(todo, chunks, videos, cfg.envs_per_worker):
            seeds_of = [s for i in group for s in chunks[i]]
            video = sum(videos[i] for i in group)
            part = _rollout_chunk(str(ckpt_path), settings, task_name, kw_items, seeds_of, video)
            for i in group:
                finished(i, part[: len(chunks[i])])
                part = part[len(chunks[i]) :]
    else:
        with contextlib.ExitStack() as stack:
            executor = pool or stack.enter_context(make_pool(cfg.workers, cfg.backend))
            futures = {
                executor.submit(
                    _rollout_chunk,
                    str(ckpt_path.resolve()),  # a Ray worker may run in another folder
                    settings,
                    task_name,
                    kw_items,
                    chunks[i],
                    videos[i],
                ): i
                for i in todo
            }
            for fut in as_completed(futures):
                finished(futures[fut], fut.result())
    results = [ep for i in range(len(chunks)) for ep in parts[i]]
    result = EvalResult(task_name, results, time.perf_counter() - start)
    summary = result.summary()
    summary["checkpoint"] = str(ckpt_path)
    summary["task_args"] = task_args
    summary["perturb"] = perturb  # the levels the task was built with, by axis
    summary["policy_args"] = policy_args
    summary["resumed_episodes"] = sum(len(chunks[i]) for i in done)
    summary["workers_used"] = cfg.workers if pooled else 1
    video_paths = write_videos(result, out.parent / "videos")
    summary["videos"] = [str(p) for p in video_paths]
    write_text_atomic(out, json.dumps(summary, indent=2))  # the journal goes only after it
    journal.remove()
    summary["results_path"] = str(out)
    return summary


def _batches(
    todo: list[int], chunks: list[list[int]], videos: list[int], size: int
) -> list[list[int]]:
    """`todo` chunks grouped in order, each group at most `size` episodes; a chunk with
    videos starts a group (its videos are of its first episodes, which then lead)."""
    groups: list[list[int]] = []
    count = size
    for i in todo:
        if count + len(chunks[i]) > size or videos[i]:
            groups.append([])
            count = 0
        groups[-1].append(i)
        count += len(chunks[i])
    return groups


class _Journal:
    """Finished chunks of one evaluation, a JSON line each, so a killed run resumes.

    The first line says which evaluation it belongs to (checkpoint file and its mtime, the
    policy's run-time settings, task, the seeds of every chunk); a journal of another
    evaluation is started afresh, and a torn last line (the process killed mid-write) is
    dropped.
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
        # Every field but the video frames, which a resumed run does not reuse.
        eps = [
            {f.name: getattr(e, f.name) for f in fields(e) if f.name != "frames"} for e in episodes
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
    seed_offset: int = TRAINER_SEED_OFFSET,
    task_kwargs: dict[str, Any] | None = None,
) -> Callable[[Policy, int], dict[str, float]]:
    """A trainer callback: success rate (and mean best reward) of the in-memory policy on
    held-out seeds.

    The callback rolls out as many episodes as it is asked for (the trainer passes its
    `eval_episodes`), on the first held-out seeds at `seed_offset`, apart from the final
    evaluation's so that model selection does not peek at the test initial states. It runs
    in the training process, vectorized over one env per episode, so no checkpoint has to be
    written and no pool started; `episodes` envs are built up front (more on a call that asks
    for more). `task_kwargs` build the task as the demos were recorded (e.g. camera=True for
    an image policy).
    """
    tasks = [make_task(task, **(task_kwargs or {})) for _ in range(episodes)]

    def run(policy: Policy, episodes: int) -> dict[str, float]:
        if episodes < 1:
            raise ApprenticeError(f"eval_episodes must be >= 1, got {episodes}")
        tasks.extend(make_task(task, **(task_kwargs or {})) for _ in range(episodes - len(tasks)))
        results = rollout_batch(policy, tasks[:episodes], held_out_seeds(episodes, seed_offset))
        return {
            "success_rate": float(np.mean([r.success for r in results])),
            "mean_max_reward": float(np.mean([r.max_reward for r in results])),
        }

    return run
