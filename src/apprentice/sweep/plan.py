"""A sweep's cells from its settings: each cell's demos, training config and scoring, built
(and so checked) before anything runs."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from apprentice.algos.config import TrainConfig
from apprentice.collect.oracle import CollectConfig
from apprentice.envs.base import make_task, task_spec
from apprentice.errors import ApprenticeError
from apprentice.overrides import parse_overrides
from apprentice.policies.base import PolicyConfig, policy_config_from_dict
from apprentice.recipes import Recipe, get_recipe
from apprentice.sweep.config import SweepConfig
from apprentice.sweep.grid import Cell, CellJob, DemoSpec

OBJECT_STATE_KEYS = frozenset({"object", "keypoints"})
"""Low-dim observations that say where the objects are (the built-in tasks' object poses,
Push-T's T corners): a camera cell leaves them out, so its policy has to see the objects."""

POLICY_TRAINING: dict[str, Any] = {"eval_every": 0}
"""A policy cell's training, over TrainConfig's defaults: no periodic rollouts, as the
final checkpoint is scored (--eval-every turns them on)."""

SWEEP_SET = ("dataset", "out", "seed", "policy", "threads", "progress", "resume", "overwrite")
"""Training settings the sweep sets itself: --train-args refuses them."""

OVERRIDE_FLAGS = ("epochs", "steps_per_epoch", "batch_size", "lr", "eval_every", "wandb")
"""Training settings with a flag of their own (None there: not given)."""

Method = str | Recipe
"""What a cell trains: a policy kind, or a recipe."""


def plan(config: SweepConfig, out: Path) -> list[CellJob]:
    """Every cell of `config` with the sweep folder `out`: task by task, then by demo count,
    seed and method, so that a sweep stopped early has every method's first seeds."""
    return _Planner(config, out).jobs()


class _Planner:
    def __init__(self, config: SweepConfig, out: Path) -> None:
        self.config, self.out = config, out
        self.training = training_overrides(config)
        self.policy_args = parse_overrides(config.policy_args, "--policy-args entry")
        if "name" in self.policy_args:
            raise ApprenticeError("--policy-args: give the policy kinds with --policies, not name=")
        self.recipes = [get_recipe(name) for name in dict.fromkeys(config.recipes)]
        self.camera_reads = (
            {t: camera_reads(t) for t in config.tasks} if config.camera and config.policies else {}
        )

    def jobs(self) -> list[CellJob]:
        config = self.config
        tasks = dict.fromkeys([*config.tasks, *(r.task for r in self.recipes)])
        jobs: list[CellJob] = []
        for task in tasks:
            methods: list[Method] = [r for r in self.recipes if r.task == task]
            if task in config.tasks:
                methods = [*dict.fromkeys(config.policies), *methods]
            counts = sorted({n for m in methods for n in self.counts(m)})
            for n in counts:
                for seed in dict.fromkeys(config.seeds):
                    jobs += [self.job(task, m, n, seed) for m in methods if n in self.counts(m)]
        return jobs

    def counts(self, method: Method) -> tuple[int, ...]:
        """The demo counts of `method`'s cells: --demos, else a recipe's own count and
        `apprentice collect`'s default for a policy."""
        if self.config.demos:
            return self.config.demos
        return (method.min_demos if isinstance(method, Recipe) else CollectConfig().n,)

    def job(self, task: str, method: Method, n: int, seed: int) -> CellJob:
        config = self.config
        base: dict[str, Any]
        if isinstance(method, Recipe):
            obs = "images" if method.policy.image_keys else "low_dim"
            cell = Cell(task, obs, method.policy.name, n, seed, recipe=method.name)
            c = method.collect
            demos = DemoSpec(task, camera=c.camera, action_noise=c.action_noise)
            policy = self.policy(method.policy.to_dict(), cell)
            base = {**method.train, "policy": policy}
        else:
            cell = Cell(task, "images" if config.camera else "low_dim", method, n, seed)
            demos = DemoSpec(task, camera=config.camera)
            reads = self.camera_reads.get(task, {})
            policy = self.policy({"name": method, **reads}, cell)
            base = {**POLICY_TRAINING, "policy": policy}
        settings = {**base, **self.training, "seed": seed, "out": str(cell.run_dir(self.out))}
        try:
            train = TrainConfig(**settings)
        except TypeError as exc:  # a value of the wrong type in --train-args
            raise ApprenticeError(f"training settings of cell {cell.key}: {exc}") from None
        return CellJob(cell, demos, train, config.episodes, config.eval_envs, config.checkpoint)

    def policy(self, base: dict[str, Any], cell: Cell) -> PolicyConfig:
        try:
            return policy_config_from_dict({**base, **self.policy_args})
        except ApprenticeError as exc:
            raise ApprenticeError(f"--policy-args on cell {cell.key}: {exc}") from None


def training_overrides(config: SweepConfig) -> dict[str, Any]:
    """The training settings the flags and --train-args give, over each cell's own."""
    extra = parse_overrides(config.train_args, "--train-args entry")
    known = {f.name for f in fields(TrainConfig)}
    for key in extra:
        if key not in known:
            raise ApprenticeError(
                f"--train-args: unknown training setting {key!r}; known: {', '.join(sorted(known))}"
            )
        if key in SWEEP_SET:
            raise ApprenticeError(f"--train-args: the sweep sets {key} itself")
        if key in OVERRIDE_FLAGS:
            raise ApprenticeError(f"--train-args: give {key} as --{key.replace('_', '-')}")
    flags = {k: getattr(config, k) for k in OVERRIDE_FLAGS if getattr(config, k) is not None}
    return {**extra, **flags, "threads": config.threads, "progress": False}


def camera_reads(task: str) -> dict[str, tuple[str, ...]]:
    """What a camera cell's policy reads on `task`: every camera, and the low-dim states but
    the objects' (`OBJECT_STATE_KEYS`)."""
    probe = make_task(task, camera=True)
    try:
        shapes = task_spec(probe).obs_shapes
    finally:
        probe.close()
    images = tuple(k for k, s in shapes.items() if len(s) == 3)
    if not images:
        raise ApprenticeError(f"--camera: task {task!r} records no camera")
    state = tuple(k for k, s in shapes.items() if len(s) != 3 and k not in OBJECT_STATE_KEYS)
    return {"obs_keys": state, "image_keys": images}
