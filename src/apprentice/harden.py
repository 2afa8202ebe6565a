"""`apprentice harden`: find where a policy breaks, record demos there, retrain, measure again.

Measure generalization one factor of variation at a time (as Xie et al. 2023, "Decomposing
the Generalization Gap in Imitation Learning for Visual Robotic Manipulation", do; here the
factors are the perturbation axes of `envs.perturb`), and put new data where the policy
fails. As one command:

1. sweep the policy along perturbation axes (`evaluate.robustness.sweep_policy`; level 0 of
   every axis, the nominal evaluation, is always included);
2. an axis fails at a level where its success rate is below `keep` x the nominal one;
   nothing failing ends the run there;
3. record `demos` oracle demos with every failing axis randomized over [its lowest failing
   level, 1], jointly (`collect_demos` with task_args axis=lo:1);
4. write the dataset's demos and the new ones into one training file, whose env_args name
   each failing axis's range as [0, 1]: the nominal demos (level 0) and the new ones both lie
   in it;
5. retrain with the checkpoint's own training config, warm-started from it, on that file;
6. sweep the retrained policy on the same axes and levels and write harden.json and a report.

An out folder (default: <the checkpoint's run folder>/harden) holds

    state.json        the settings, the stages done, the sweeps' results, the failing axes
    before/           the sweep of the checkpoint (sweep.json, a file per level, report.html)
    demos_new.hdf5    the new oracle demos
    demos_train.hdf5  the dataset's demos and the new ones
    run/              the warm-started training run
    after/            the sweep of the retrained policy
    harden.json       before and after, per axis and level, with 95% Wilson intervals
    harden.md         the same as a table, before and after side by side
    report.html       the table and both sweeps' plots

Run again, the same command skips the stages state.json lists as done, and the stage in
flight resumes its own partial work (an evaluation's journal, collect's file, the merge's
file, the trainer's last.pt). Other settings in a folder holding a run are refused.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from apprentice.algos.config import TrainConfig, load_train_config
from apprentice.algos.run_folder import write_json
from apprentice.collect.oracle import CollectConfig, collect_demos
from apprentice.data.journal import journal_path
from apprentice.data.merge import merge_demos
from apprentice.data.reader import DemoFile
from apprentice.data.store import write_mask
from apprentice.envs.base import make_task
from apprentice.envs.perturb import AXES, level_json, merge_task_args, parse_level
from apprentice.envs.seeds import HELD_OUT_SEED_BASE
from apprentice.errors import ApprenticeError
from apprentice.evaluate.robustness import parse_sweep, sweep_policy
from apprentice.evaluate.run import EvalConfig
from apprentice.files import check_writable
from apprentice.harden_report import rate_row, write_report
from apprentice.pipelines.train import run_train
from apprentice.policies.checkpoint import load_checkpoint, resolve_checkpoint, task_name

STAGES = ("before", "collect", "merge", "train", "after", "report")
"""The stages in order; a run with nothing failing goes from "before" to "report"."""

DEFAULT_LEVELS = (0.0, 0.5, 1.0)
"""Levels of each axis swept when no --sweep is given."""

_RESUME_FREE = frozenset({"workers", "progress", "overwrite", "out", "max_attempts_factor"})
"""Settings a rerun may change: they do not change what is measured, recorded or learned."""


@dataclass(frozen=True)
class HardenConfig:
    """Sweep a policy along perturbation axes, record oracle demos where it fails, retrain
    warm-started on them with the dataset, and sweep again."""

    checkpoint: str
    """The policy: a run folder of `apprentice train` or a checkpoint in one (its
    config.json is the retraining's)."""
    dataset: str
    """The demos (HDF5) to retrain on with the new ones: the checkpoint's training data."""
    sweep: tuple[str, ...] = dataclasses.field(default=(), metadata={"repeat": True})
    """Axes and levels to sweep, AXIS=LEVELS each (--sweep light=0,0.5,1 --sweep camera=0,1);
    level 0 is always added. Default: every axis of the task at 0, 0.5 and 1."""
    episodes: int = 50
    """Held-out episodes per level, in both sweeps."""
    keep: float = 0.8
    """A level fails where its success rate is below keep x the nominal (level 0) one."""
    demos: int | None = None
    """Oracle demos to record on the failing axes (default: as many as the dataset has)."""
    epochs: int | None = None
    """Epochs of the retraining (default: the checkpoint's run's)."""
    max_attempts_factor: float = 20.0
    """Stop recording after demos x this many oracle attempts (on the failing axes the oracle
    fails more often too); a rerun goes on recording."""
    workers: int = 2
    """Processes for the rollouts and the oracle."""
    out: str | None = None
    """Folder of the run (default: <the checkpoint's run folder>/harden)."""
    progress: bool = True
    """Show progress bars."""
    overwrite: bool = False
    """Delete an earlier harden run in the out folder first."""

    def __post_init__(self) -> None:
        checks = [
            (self.episodes >= 1, f"--episodes must be >= 1, got {self.episodes}"),
            (0.0 < self.keep <= 1.0, f"--keep must be in (0, 1], got {self.keep}"),
            (self.demos is None or self.demos >= 1, f"--demos must be >= 1, got {self.demos}"),
            (self.epochs is None or self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}"),
            (self.workers >= 1, f"--workers must be >= 1, got {self.workers}"),
            (
                self.max_attempts_factor >= 1,
                f"--max-attempts-factor must be >= 1, got {self.max_attempts_factor}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ApprenticeError(message)


@dataclass
class HardenResult:
    out: Path
    summary: dict[str, Any]
    """harden.json's content."""
    stages_run: list[str]
    """The stages this call ran (a rerun of a finished run runs none)."""
    report: Path


@dataclass(frozen=True)
class _Plan:
    """What a harden run works on, checked before anything is written."""

    checkpoint: Path
    task: str
    sweeps: dict[str, tuple[float, ...]]
    dataset: Path
    dataset_kwargs: dict[str, Any]
    demos: int
    first_seed: int
    """The first collection seed: past the dataset's own."""
    train: TrainConfig
    out: Path


def harden(cfg: HardenConfig) -> HardenResult:
    """Run (or resume) the stages of the module docstring; see there for the out folder."""
    plan = _plan(cfg)
    out = plan.out
    state = _prepare(out, cfg, plan)
    ran: list[str] = []

    def finish(stage: str) -> None:
        state["done"].append(stage)
        ran.append(stage)
        write_json(out / "state.json", state)

    if "before" not in state["done"]:
        state["before"] = _sweep(cfg, plan, plan.checkpoint, out / "before")
        finish("before")
    state["failing"] = failing_levels(state["before"]["axes"], cfg.keep)
    new_demos, train_demos = out / "demos_new.hdf5", out / "demos_train.hdf5"
    if state["failing"]:
        if "collect" not in state["done"]:
            _collect(_collect_config(cfg, plan, state["failing"], new_demos))
            finish("collect")
        if "merge" not in state["done"]:
            env_args = _training_env_args(new_demos, state["failing"])
            renames = merge_demos([plan.dataset, new_demos], train_demos, env_args=env_args)
            _join_masks(train_demos, new_demos, renames[1], plan.train)
            finish("merge")
        if "train" not in state["done"]:
            run_train(replace(plan.train, dataset=str(train_demos)))
            finish("train")
        if "after" not in state["done"]:
            hardened = resolve_checkpoint(out / "run")
            state["after"] = _sweep(cfg, plan, hardened, out / "after")
            finish("after")
    if "report" not in state["done"]:
        sweeps: dict[str, Any] = {n: state[n] for n in ("before", "after") if n in state}
        write_report(out, _summary(state, plan, new_demos, train_demos), sweeps)
        finish("report")
    summary = json.loads((out / "harden.json").read_text())
    return HardenResult(out, summary, ran, out / "harden.md")


# ---- checks and the state file -----------------------------------------------------------


def _plan(cfg: HardenConfig) -> _Plan:
    """Everything the run needs, each input checked; raises before anything is written."""
    checkpoint = resolve_checkpoint(cfg.checkpoint).resolve()
    ckpt = load_checkpoint(checkpoint)
    task = task_name(ckpt["env_args"])
    run_config = checkpoint.parent / "config.json"
    if not run_config.is_file():
        raise ApprenticeError(
            f"checkpoint {checkpoint}: no config.json beside it; harden retrains with the "
            "run's own training config, so give a run folder of `apprentice train` (or a "
            "checkpoint in one)"
        )
    dataset = Path(cfg.dataset).resolve()
    with DemoFile(dataset) as f:
        env_args = f.env_args
        demo_names = f.demo_names
        seeds = [f.attrs(n).get("seed") for n in demo_names]
    if env_args.get("env_name") != task:
        raise ApprenticeError(
            f"--dataset {cfg.dataset} holds demos of task {env_args.get('env_name')!r}, but "
            f"checkpoint {checkpoint} was trained for {task!r}; give the demos of its task"
        )
    if not demo_names:
        raise ApprenticeError(f"--dataset {cfg.dataset} holds no demos")
    probe = make_task(task)
    supported: tuple[str, ...] = getattr(type(probe), "perturbation_axes", ())
    probe.close()
    if not supported:
        raise ApprenticeError(f"task {task!r} has no perturbation axes to harden along")
    sweeps = parse_sweep(cfg.sweep) or dict.fromkeys(supported, DEFAULT_LEVELS)
    for axis in sweeps:
        if axis not in supported:
            known = "" if axis in AXES else "no such axis; "
            raise ApprenticeError(
                f"--sweep {axis}: {known}task {task!r} takes the axes {', '.join(supported)}"
            )
    sweeps = {axis: tuple(sorted({0.0, *levels})) for axis, levels in sweeps.items()}
    base = load_train_config(run_config)
    out = Path(cfg.out) if cfg.out else checkpoint.parent / "harden"
    check_writable(out, folder=True)
    train = replace(
        base,
        out=str(out / "run"),
        init_checkpoint=str(checkpoint),
        epochs=cfg.epochs or base.epochs,
        progress=cfg.progress,
        resume=True,
        overwrite=False,
    )
    first_seed = 1 + max((int(s) for s in seeds if s is not None), default=-1)
    if first_seed >= HELD_OUT_SEED_BASE:
        raise ApprenticeError(
            f"--dataset {cfg.dataset}: its demos' seeds reach the held-out range "
            f"({HELD_OUT_SEED_BASE} on): no collection seed is left past them"
        )
    return _Plan(
        checkpoint=checkpoint,
        task=task,
        sweeps=sweeps,
        dataset=dataset,
        dataset_kwargs=dict(env_args.get("env_kwargs", {})),
        demos=cfg.demos or len(demo_names),
        first_seed=first_seed,
        train=train,
        out=out,
    )


def _settings(cfg: HardenConfig, plan: _Plan) -> dict[str, Any]:
    """What a run measures, records and learns: a rerun must give the same."""
    d = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    d = {k: v for k, v in d.items() if k not in _RESUME_FREE}
    d.update(
        checkpoint=str(plan.checkpoint),
        checkpoint_mtime_ns=plan.checkpoint.stat().st_mtime_ns,
        dataset=str(plan.dataset),
        sweep={axis: list(levels) for axis, levels in plan.sweeps.items()},
        demos=plan.demos,
        epochs=plan.train.epochs,
    )
    settings: dict[str, Any] = json.loads(json.dumps(d))
    return settings


_OWNED = (
    "state.json",
    "before",
    "demos_new.hdf5",
    "demos_train.hdf5",
    "run",
    "after",
    "harden.json",
    "harden.md",
    "report.html",
)
"""What a harden run writes in its folder (and --overwrite deletes)."""


def _prepare(out: Path, cfg: HardenConfig, plan: _Plan) -> dict[str, Any]:
    """The run's state: read back from out/state.json (same settings) or started afresh."""
    settings = _settings(cfg, plan)
    state_path = out / "state.json"
    if cfg.overwrite:
        for name in _OWNED:
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            for p in (path, journal_path(path)):
                if p.is_file():
                    p.unlink()
    if state_path.exists():
        try:
            state: dict[str, Any] = json.loads(state_path.read_text())
            previous = state["settings"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ApprenticeError(
                f"{state_path} is not a harden state file; choose another --out"
            ) from None
        differ = sorted(
            k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k)
        )
        if differ:
            raise ApprenticeError(
                f"{out} holds a harden run with other settings ({', '.join(differ)} differ); "
                "rerun it with its own, choose another --out, or pass --overwrite"
            )
        return state
    if out.exists() and any(p.name in _OWNED for p in out.iterdir()):
        raise ApprenticeError(
            f"{out} holds files of a harden run but no state.json; pass --overwrite"
        )
    out.mkdir(parents=True, exist_ok=True)
    state = {"settings": settings, "done": []}
    write_json(state_path, state)
    return state


# ---- the stages ------------------------------------------------------------------------------


def _sweep(cfg: HardenConfig, plan: _Plan, checkpoint: Path, folder: Path) -> dict[str, Any]:
    eval_cfg = EvalConfig(checkpoint=str(checkpoint), episodes=cfg.episodes, workers=cfg.workers)
    levels = 1 + sum(1 for ls in plan.sweeps.values() for level in ls if level)
    with tqdm(
        total=cfg.episodes * levels, desc=f"sweep {folder.name}", disable=not cfg.progress
    ) as bar:

        def advance(episodes: int) -> None:
            bar.update(episodes)

        return sweep_policy(eval_cfg, plan.sweeps, out=folder / "sweep.json", progress=advance)


def failing_levels(
    axes: Mapping[str, Sequence[Mapping[str, Any]]], keep: float
) -> dict[str, float]:
    """Axis -> its lowest failing level (`_failing`); axes with none are left out."""
    return {axis: min(levels) for axis, rows in axes.items() if (levels := _failing(rows, keep))}


def _failing(rows: Sequence[Mapping[str, Any]], keep: float) -> list[float]:
    """The levels of one axis's sweep rows where the success rate is below `keep` x the rate
    at level 0 (a nominal rate of 0 fails nothing)."""
    nominal = next(r["success_rate"] for r in rows if r["level"] == 0)
    return [r["level"] for r in rows if r["level"] > 0 and r["success_rate"] < keep * nominal]


def _level_arg(level: Any) -> str:
    """A level of env_kwargs' perturb (0.5 or [0, 1]) as --task-args writes it (0.5, 0:1)."""
    return f"{level[0]}:{level[1]}" if isinstance(level, list | tuple) else str(level)


def _collect_config(
    cfg: HardenConfig, plan: _Plan, failing: Mapping[str, float], path: Path
) -> CollectConfig:
    """The collection of the new demos: the dataset's task settings (camera, image size,
    variant, any randomized axis) with each failing axis drawn from [lowest failing level, 1]."""
    kw = plan.dataset_kwargs
    task_args = [f"image_size={kw['image_size']}"] if "image_size" in kw else []
    ranges = {**(kw.get("perturb") or {}), **{a: [lo, 1.0] for a, lo in failing.items()}}
    task_args += [f"{axis}={_level_arg(level)}" for axis, level in ranges.items()]
    return CollectConfig(
        task=plan.task,
        n=plan.demos,
        out=str(path),
        workers=cfg.workers,
        camera=bool(kw.get("camera", False)),
        variant=kw.get("variant"),
        seed=plan.first_seed,
        task_args=tuple(task_args),
        max_attempts_factor=cfg.max_attempts_factor,
        progress=cfg.progress,
    )


def _collect(cfg: CollectConfig) -> None:
    try:
        collect_demos(cfg)
    except ApprenticeError as e:
        if not Path(cfg.out).exists():
            raise
        # Short of demos: collect's message names its own --n; say what harden's rerun does.
        raise ApprenticeError(
            f"{e} (with {' '.join(cfg.task_args)}); rerun the same command to go on recording "
            "from there, or with a higher --max-attempts-factor"
        ) from None


def _training_env_args(new_demos: Path, failing: Mapping[str, float]) -> dict[str, Any]:
    """The new demos' env_args with each failing axis's range widened to [0, hi]: the file
    holds the nominal demos too."""
    with DemoFile(new_demos) as f:
        env_args = f.env_args
    kwargs = dict(env_args.get("env_kwargs", {}))
    perturb = dict(kwargs.get("perturb") or {})
    for axis in failing:
        level = parse_level(axis, perturb[axis])
        hi = level[1] if isinstance(level, tuple) else level
        perturb[axis] = level_json((0.0, hi))
    env_args["env_kwargs"] = merge_task_args(kwargs, {"perturb": perturb})
    return env_args


def _join_masks(
    train_demos: Path, new_demos: Path, new_names: Mapping[str, str], train: TrainConfig
) -> None:
    """The new demos (`new_names`: their names in the training file) also join the masks the
    retraining reads where those have other names than train and valid (e.g. curated_train
    from `apprentice filter`): the new train demos the one, the new valid demos the other."""
    with DemoFile(new_demos) as f:
        new_masks = f.masks
    with DemoFile(train_demos) as f:
        masks = f.masks
    for mask, own in ((train.train_mask, "train"), (train.valid_mask, "valid")):
        if mask == own or mask not in masks:
            continue
        joined = set(masks[mask]) | {new_names[n] for n in new_masks.get(own, [])}
        write_mask(train_demos, mask, sorted(joined))


# ---- the summary and the report --------------------------------------------------------------


def _summary(
    state: dict[str, Any], plan: _Plan, new_demos: Path, train_demos: Path
) -> dict[str, Any]:
    """harden.json: the settings, the failing axes, before and after per axis and level."""
    before, after, failing = state["before"], state.get("after"), state["failing"]
    keep = state["settings"]["keep"]
    axes: dict[str, list[dict[str, Any]]] = {}
    for axis, rows in before["axes"].items():
        later = after["axes"][axis] if after else [None] * len(rows)
        fails_before = set(_failing(rows, keep))
        fails_after = set(_failing(after["axes"][axis], keep)) if after else set()
        axes[axis] = [
            {
                "level": b["level"],
                "before": rate_row(b, fails_before),
                "after": rate_row(a, fails_after),
            }
            for b, a in zip(rows, later, strict=True)
        ]
    nominal_rate = next(iter(axes.values()))[0]["before"]["success_rate"]
    if failing:
        outcome = "retrained on demos recorded where the policy failed"
    elif nominal_rate == 0:
        outcome = (
            "the policy never succeeds at nominal level, so no level can fall below it; "
            "train it until it succeeds, then harden it"
        )
    else:
        outcome = f"no level falls below {keep:g} x the nominal success rate: nothing to harden"
    return {
        "checkpoint": str(plan.checkpoint),
        "task": plan.task,
        "episodes": before["episodes"],
        "keep": keep,
        "outcome": outcome,
        "failing": failing,
        "new_demos": str(new_demos) if failing else None,
        "training_set": str(train_demos) if failing else None,
        "hardened_checkpoint": after["checkpoint"] if after else None,
        "axes": axes,
        "sweeps": {"before": before["results_path"], "after": after and after["results_path"]},
    }
