"""`apprentice generate`: many synthetic demos from a few source demos, crash-safely.

Attempts are numbered; attempt i is a pure function of (seed, i), and successes are kept in
attempt order. So the output is the same for any backend and number of workers, and a run
killed at any moment resumes where it stopped and writes what it would have written.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from apprentice.data.reader import DemoFile
from apprentice.data.source import open_source
from apprentice.data.store import DemoWriter, split_train_valid
from apprentice.envs.base import Subtask, make_task
from apprentice.envs.perturb import merge_task_args
from apprentice.errors import ApprenticeError
from apprentice.generate.attempt import (
    SELECTIONS,
    AttemptJob,
    Failure,
    GenerationSettings,
)
from apprentice.generate.backends import BACKENDS, Handle, make_backend
from apprentice.generate.source import load_sources
from apprentice.overrides import parse_overrides
from apprentice.splits import check_valid_fraction

RECORD_ATTR = "generation"
"""The data attr (JSON) that records how a generated file was made and how it went."""


@dataclass(frozen=True)
class GenerateConfig:
    """Generate synthetic demos by moving source demos' object-centric segments to new scenes."""

    source: str = "demos.hdf5"
    """Source demos (with datagen_info; see `apprentice annotate`)."""
    n: int = 1000
    """Successful generated demos wanted in the output."""
    out: str = "generated.hdf5"
    """Output HDF5 file; an existing one made from the same source and seed is resumed."""
    task: str | None = None
    """Task to generate into; it must be the one the source demos were recorded on (the
    default)."""
    task_args: tuple[str, ...] = ()
    """Task arguments key=value over the source's (e.g. variant=D1 for a wider placement)."""
    workers: int = 1
    """Parallel workers (processes, or Ray tasks with --backend ray)."""
    backend: str = "process"
    """process (this machine) or ray (the cluster at RAY_ADDRESS, else a local one)."""
    seed: int = 0
    """Seed of the whole run; attempt i depends on (seed, i) only."""
    selection: str = "nearest"
    """Source segment per subtask: nearest (by reference-object pose) or random."""
    nearest_k: int = 3
    """With nearest selection, pick at random among this many nearest segments."""
    interp_steps: int = 5
    """Interpolated poses leading into each segment."""
    fixed_steps: int = 0
    """Steps holding each segment's first pose before playing it."""
    action_noise: float = 0.05
    """Std of Gaussian noise on the arm's normalized actions while playing segments."""
    failed_out: str | None = None
    """Also keep failed attempts, in this file."""
    give_up_after: int = 100
    """Stop with a diagnosis when this many attempts in a row fail."""
    max_attempts: int | None = None
    """Stop after this many attempts in all (default: no limit but give_up_after)."""
    chunk: int = 2
    """Attempts per job sent to a worker."""
    valid_fraction: float = 0.1
    """Fraction of generated demos put in mask/valid (the rest in mask/train)."""
    overwrite: bool = False
    """Start the output afresh instead of resuming it."""
    progress: bool = True
    """Show a progress bar with successes, attempts and the data generation rate."""

    def settings(self) -> GenerationSettings:
        return GenerationSettings(
            self.selection, self.nearest_k, self.interp_steps, self.fixed_steps, self.action_noise
        )


@dataclass
class GenerateResult:
    path: Path
    successes: int
    """Generated demos in the file (resumed ones included)."""
    attempts: int
    """Attempts made in all (resumed ones included)."""
    new_successes: int
    new_attempts: int
    seconds: float
    failures: Counter[tuple[int, str]] = field(default_factory=Counter)
    """(subtask, kind) -> failed attempts of this run."""
    skipped_sources: dict[str, str] = field(default_factory=dict)

    @property
    def dgr(self) -> float:
        """Data generation rate: successes per attempt."""
        return self.successes / self.attempts if self.attempts else 0.0


def diagnose(failures: list[Failure], subtasks: tuple[Subtask, ...]) -> str:
    """Which subtask fails most and how, from a list of failed attempts."""
    if not failures:
        return "no failures"
    groups: dict[tuple[int, str], list[Failure]] = {}
    for f in failures:
        groups.setdefault((f.subtask, f.kind), []).append(f)
    lines = []
    for (i, _), fs in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        sub = subtasks[i]
        frame = f"relative to {sub.object!r}" if sub.object else "in the world frame"
        ends = f"ends on {sub.term_signal!r}" if sub.term_signal else "ends the task"
        line = f"  subtask {i} ({frame}, {ends}): {len(fs)} failures: {fs[0].detail}"
        offsets = [f.offset_m for f in fs if not math.isnan(f.offset_m)]
        if offsets:
            line += (
                f"; the {sub.held or 'eef'} ended a median "
                f"{100 * float(np.median(offsets)):.1f} cm from where the source had it"
            )
        lines.append(line)
    return "\n".join(lines)


def run_generate(cfg: GenerateConfig) -> GenerateResult:
    _check_config(cfg)
    started = time.perf_counter()
    with open_source(cfg.source) as f:
        src_args = f.env_args
    kwargs = merge_task_args(
        src_args.get("env_kwargs", {}), parse_overrides(cfg.task_args, "task argument")
    )
    task_name = str(src_args.get("env_name"))
    if cfg.task is not None and cfg.task != task_name:
        raise ApprenticeError(
            f"{cfg.source}: holds demos of task {task_name!r}, not {cfg.task!r}; "
            "generate into the task the source demos were recorded on"
        )
    task = make_task(task_name, **kwargs)
    sources = load_sources(cfg.source, task)  # fails here, in this process, on bad input
    subtasks = task.subtasks
    env_args = task.env_args
    task.close()
    record = {
        "source": str(Path(cfg.source).resolve()),
        "seed": cfg.seed,
        "env_args": env_args,
        "settings": asdict(cfg.settings()),
    }
    out = Path(cfg.out)
    next_index, successes = _resume_point(out, record, cfg.overwrite)
    resumed_successes, resumed_attempts = successes, next_index
    failed_writer = None
    failed_done = -1  # failed attempts up to this index are in failed_out already
    if cfg.failed_out is not None:
        if Path(cfg.failed_out).exists() and not cfg.overwrite:
            with DemoFile(cfg.failed_out) as ff:
                done = [int(ff.attrs(n).get("attempt", -1)) for n in ff.demo_names]
            failed_done = max(done, default=-1)
        failed_writer = DemoWriter(cfg.failed_out, env_args=env_args, overwrite=cfg.overwrite)
    try:
        writer = DemoWriter(out, env_args=env_args, overwrite=cfg.overwrite)
    except BaseException:
        if failed_writer is not None:
            failed_writer.close()
        raise
    writer.set_data_attrs({RECORD_ATTR: json.dumps(record)})

    job_base = AttemptJob(
        task_name, tuple(sorted(kwargs.items())), str(cfg.source), cfg.settings(), cfg.seed, ()
    )
    backend = make_backend(cfg.backend, cfg.workers)
    failures: list[Failure] = []
    since_success: list[Failure] = []
    attempts = next_index
    bar = tqdm(
        total=cfg.n, initial=successes, desc=f"generate {task_name}", disable=not cfg.progress
    )
    inflight: deque[Handle] = deque()
    try:
        while successes < cfg.n:
            while len(inflight) < 2 * backend.workers and _may_submit(cfg, next_index):
                stop = next_index + cfg.chunk
                if cfg.max_attempts is not None:
                    stop = min(stop, cfg.max_attempts)
                indices = tuple(range(next_index, stop))
                inflight.append(backend.submit(replace(job_base, indices=indices)))
                next_index = stop
            if not inflight:
                break
            for attempt in inflight.popleft().result():
                if successes >= cfg.n:
                    break
                attempts = attempt.index + 1
                if attempt.success:
                    writer.append(attempt.episode, masks=("generated",))
                    successes += 1
                    since_success.clear()
                    bar.update(1)
                else:
                    assert attempt.failure is not None
                    failures.append(attempt.failure)
                    since_success.append(attempt.failure)
                    if failed_writer is not None and attempt.index > failed_done:
                        failed_writer.append(attempt.episode, masks=("failed",))
                bar.set_postfix(
                    attempts=attempts, DGR=f"{successes / max(attempts, 1):.1%}", refresh=False
                )
                if len(since_success) >= cfg.give_up_after:
                    raise ApprenticeError(
                        f"no success in the last {len(since_success)} attempts "
                        f"({successes - resumed_successes} in {attempts - resumed_attempts} "
                        f"this run); how they failed:\n{diagnose(since_success, subtasks)}"
                    )
        record.update(attempts=attempts, successes=successes, dgr=successes / max(attempts, 1))
        writer.set_data_attrs({RECORD_ATTR: json.dumps(record)})
    finally:
        for handle in inflight:
            handle.cancel()
        backend.close()
        bar.close()
        writer.close()
        if failed_writer is not None:
            failed_writer.close()

    result = GenerateResult(
        out,
        successes,
        attempts,
        successes - resumed_successes,
        attempts - resumed_attempts,
        time.perf_counter() - started,
        Counter((f.subtask, f.kind) for f in failures),
        sources.skipped,
    )
    if successes > 0:
        split_train_valid(out, cfg.valid_fraction, cfg.seed)
    if successes < cfg.n:
        raise ApprenticeError(
            f"reached --max-attempts {cfg.max_attempts} with {successes} of {cfg.n} demos in "
            f"{out}; how attempts failed:\n{diagnose(failures, subtasks)}"
        )
    return result


def _check_config(cfg: GenerateConfig) -> None:
    if cfg.n <= 0:
        raise ApprenticeError(f"--n must be positive, got {cfg.n}")
    check_valid_fraction(cfg.valid_fraction, "--valid-fraction")
    if cfg.backend not in BACKENDS:
        raise ApprenticeError(f"unknown backend {cfg.backend!r}; choose {', '.join(BACKENDS)}")
    if cfg.selection not in SELECTIONS:
        raise ApprenticeError(
            f"unknown selection {cfg.selection!r}; choose {', '.join(SELECTIONS)}"
        )
    if cfg.workers < 1:
        raise ApprenticeError(f"--workers must be >= 1, got {cfg.workers}")
    for name in ("nearest_k", "chunk", "give_up_after"):
        if getattr(cfg, name) < 1:
            raise ApprenticeError(f"--{name.replace('_', '-')} must be at least 1")
    if cfg.interp_steps < 0 or cfg.fixed_steps < 0 or cfg.action_noise < 0:
        raise ApprenticeError("--interp-steps, --fixed-steps and --action-noise must be >= 0")
    if Path(cfg.out).resolve() == Path(cfg.source).resolve():
        raise ApprenticeError(f"--out {cfg.out} is the source file; write to a new file")


def _may_submit(cfg: GenerateConfig, next_index: int) -> bool:
    return cfg.max_attempts is None or next_index < cfg.max_attempts


def _resume_point(out: Path, record: dict[str, Any], overwrite: bool) -> tuple[int, int]:
    """(next attempt index, demos already there) for an existing output made the same way."""
    if overwrite or not out.exists():
        return 0, 0
    with DemoFile(out) as f:
        names = f.demo_names
        if not names:
            return 0, 0
        old = json.loads(f.data_attrs.get(RECORD_ATTR, "{}"))
        same = {k: old.get(k) for k in ("source", "seed", "env_args", "settings")}
        if same != {k: record[k] for k in same}:
            changed = [k for k in same if same[k] != record[k]]
            raise ApprenticeError(
                f"{out}: holds demos generated with another {', '.join(changed)}; "
                "pass --overwrite to start afresh, or write to a new file"
            )
        last = max(int(f.attrs(n).get("attempt", -1)) for n in names)
        return last + 1, len(names)
