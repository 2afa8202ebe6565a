"""Robustness sweeps: a policy's success rate along the perturbation axes of its task
(`apprentice eval CKPT --sweep light=0,0.5,1 --sweep camera=0,1`).

Each level of an axis is one `evaluate` of the checkpoint on the same held-out seeds, with
that axis at that level and every other axis nominal (the levels a checkpoint's training data
was randomized over are replaced, not joined). Level 0 of every axis is the one nominal
evaluation, run once. Each evaluation keeps its own results file beside the sweep's JSON
(`sweep_lift_light=0.5.json`, `sweep_lift_nominal.json`): a killed sweep, run again, reads
back the levels it finished and resumes the one it was in from that evaluation's journal.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

from apprentice.envs.base import make_task, task_axes, task_names
from apprentice.envs.perturb import Perturbations, merge_task_args, parse_level
from apprentice.envs.pool import make_pool
from apprentice.envs.ray_pool import import_ray
from apprentice.envs.seeds import held_out_seeds
from apprentice.errors import ApprenticeError
from apprentice.evaluate.report import write_sweep_report
from apprentice.evaluate.run import EvalConfig, evaluate, results_name, task_kwargs
from apprentice.files import write_text_atomic
from apprentice.overrides import parse_overrides
from apprentice.policies.checkpoint import check_task, load_checkpoint, resolve_checkpoint

NOMINAL = "nominal"
"""The name of the evaluation at level 0, shared by every axis."""


def parse_sweep(items: Sequence[str]) -> dict[str, tuple[float, ...]]:
    """Axis -> its levels, ascending, from --sweep items: "light=0,0.25,0.5" gives
    {"light": (0.0, 0.25, 0.5)}. Each level is a number in [0, 1]; an axis is given once."""
    sweeps: dict[str, tuple[float, ...]] = {}
    for item in items:
        axis, sep, text = (part.strip() for part in item.partition("="))
        if not sep or not axis or not text:
            raise ApprenticeError(
                f"--sweep {item!r} is not of the form AXIS=LEVEL,LEVEL,... (e.g. light=0,0.5,1)"
            )
        if axis in sweeps:
            raise ApprenticeError(
                f"--sweep: axis {axis!r} is given twice; give all its levels in one item "
                f"({axis}=0,0.5,1)"
            )
        levels: list[float] = []
        for word in text.split(","):
            try:
                value = float(word)
            except ValueError:
                raise ApprenticeError(
                    f"--sweep {item!r}: {word.strip()!r} is not a level (a number in [0, 1])"
                ) from None
            # A number in, a number out; refused outside [0, 1]. + 0.0 turns -0 into 0.
            level = cast(float, parse_level(axis, value)) + 0.0
            if level in levels:
                raise ApprenticeError(f"--sweep {item!r}: level {level:g} is given twice")
            levels.append(level)
        sweeps[axis] = tuple(sorted(levels))
    return sweeps


def sweep_policy(
    cfg: EvalConfig,
    sweeps: dict[str, tuple[float, ...]],
    *,
    out: Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Evaluate the checkpoint of `cfg` at every level of every axis of `sweeps` (see the
    module docstring), write the sweep's JSON to `out` (default: cfg.out, else
    sweep_<task>.json next to the checkpoint) and its plot into the report.html beside it,
    and return the JSON's content with results_path and report_path added.

    Every axis is checked against the task before any rollout; `cfg.videos` is refused (the
    levels' videos would share names). `progress` gets each evaluation's finished episodes.
    """
    if not sweeps:
        raise ApprenticeError("nothing to sweep: give --sweep AXIS=LEVELS, e.g. light=0,0.5,1")
    if cfg.videos:
        raise ApprenticeError(
            "--videos is not taken with --sweep (every level's videos would share names); "
            "record a level's with --task-args AXIS=LEVEL --videos N"
        )
    ckpt_path = resolve_checkpoint(cfg.checkpoint)
    ckpt = load_checkpoint(ckpt_path)
    task = cfg.task or ckpt["env_args"]["env_name"]
    check_task(ckpt["env_args"], task, checkpoint=str(ckpt_path))
    task_args = parse_overrides(cfg.task_args, "task argument")
    _check_axes(task, ckpt["env_args"], task_args, sweeps)
    policy_args = parse_overrides(cfg.policy_args, "policy argument")
    path = Path(
        out or cfg.out or ckpt_path.parent / results_name(task, task_args, policy_args, "sweep")
    )

    levels: dict[str, dict[str, float]] = {}  # evaluation name -> its perturb levels
    for axis, axis_levels in sweeps.items():
        for level in axis_levels:
            levels[_name(axis, level)] = {axis: level} if level else {}
    runs = {
        name: replace(
            cfg,
            sweep=(),
            task_args=(*cfg.task_args, f"perturb={json.dumps(perturb)}"),
            out=str(path.with_name(f"{path.stem}_{name}.json")),
        )
        for name, perturb in levels.items()
    }
    summaries = {name: _finished(run, str(ckpt_path), task) for name, run in runs.items()}
    todo = [name for name, s in summaries.items() if s is None]
    if progress and len(todo) < len(runs):
        progress((len(runs) - len(todo)) * cfg.episodes)
    with contextlib.ExitStack() as stack:
        pool = None
        if todo and _pools(cfg):
            if cfg.backend == "ray":
                import_ray()  # missing: one error before any work
            # One pool for every level: its start-up is paid once.
            pool = stack.enter_context(make_pool(cfg.workers, cfg.backend))
        for name in todo:
            summaries[name] = evaluate(runs[name], progress=progress, pool=pool)

    axes: dict[str, list[dict[str, Any]]] = {}
    for axis, axis_levels in sweeps.items():
        axes[axis] = []
        for level in axis_levels:
            s = summaries[_name(axis, level)]
            assert s is not None  # every evaluation was read back or run above
            axes[axis].append(
                {
                    "level": level,
                    "successes": s["successes"],
                    "episodes": s["episodes"],
                    "success_rate": s["success_rate"],
                    "ci_low": s["ci_low"],  # the 95% Wilson interval (evaluate.metrics)
                    "ci_high": s["ci_high"],
                    "results": runs[_name(axis, level)].out,
                }
            )
    sweep: dict[str, Any] = {
        "checkpoint": str(ckpt_path),
        "task": task,
        "episodes": cfg.episodes,
        "seed_offset": cfg.seed_offset,
        "task_args": task_args,
        "policy_args": policy_args,
        "axes": axes,
    }
    write_text_atomic(path, json.dumps(sweep, indent=2))
    report = write_sweep_report(path, sweep)
    return {**sweep, "results_path": str(path), "report_path": str(report)}


def _name(axis: str, level: float) -> str:
    return f"{axis}={level:g}" if level else NOMINAL


def _check_axes(
    task: str,
    env_args: dict[str, Any],
    task_args: dict[str, Any],
    sweeps: dict[str, tuple[float, ...]],
) -> None:
    """Refuse, before any rollout, an axis the task does not take and task arguments that
    would hide the sweep's levels; `env_args` are the checkpoint's."""
    if "perturb" in task_args:
        raise ApprenticeError(
            "--task-args perturb=... is replaced by each level of --sweep; hold an axis at a "
            "level by its name instead (--task-args light=0.5)"
        )
    held = merge_task_args({}, task_args).get("perturb", {})
    for axis in sweeps:
        if axis in held:
            raise ApprenticeError(
                f"axis {axis!r} is both swept (--sweep) and held by --task-args {axis}="
                f"{task_args[axis]}; give it once"
            )
    # Built as the nominal evaluation builds it: only its type counts.
    probe = make_task(task, **task_kwargs(env_args, {**task_args, "perturb": {}}))
    kind = type(probe)
    probe.close()
    supported: tuple[str, ...] = getattr(kind, "perturbation_axes", ())
    if not supported:
        raise ApprenticeError(
            f"task {task!r} has no perturbation axes to sweep (--sweep {next(iter(sweeps))}); "
            f"the tasks that have them are {', '.join(n for n in task_names() if task_axes(n))}"
        )
    # The task's own check, at the level where every axis is on: one message for the fault.
    reason = getattr(kind, "unsupported_axes_reason", "")
    Perturbations.build(task, supported, dict.fromkeys(sweeps, 1.0), {}, reason)


def _pools(cfg: EvalConfig) -> bool:
    """Whether the sweep's evaluations run on a pool: each one's chunks would be pooled
    (more than one chunk for several workers, or Ray)."""
    chunk = max(1, min(cfg.envs_per_worker, -(-cfg.episodes // cfg.workers)))
    return cfg.backend == "ray" or (cfg.workers > 1 and cfg.episodes > chunk)


def _finished(run: EvalConfig, checkpoint: str, task: str) -> dict[str, Any] | None:
    """The results of evaluation `run` where a sweep run before finished it: its file is
    newer than the checkpoint and names the same checkpoint, task, arguments and seeds."""
    assert run.out is not None  # every evaluation of a sweep names its file
    path = Path(run.out)
    try:
        if path.stat().st_mtime_ns < Path(checkpoint).stat().st_mtime_ns:
            return None
        saved: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    expected = {
        "checkpoint": checkpoint,
        "task": task,
        "task_args": parse_overrides(run.task_args, "task argument"),
        "policy_args": parse_overrides(run.policy_args, "policy argument"),
        "seeds": held_out_seeds(run.episodes, run.seed_offset),
    }
    if any(saved.get(key) != value for key, value in expected.items()):
        return None
    return {**saved, "results_path": str(path)}
