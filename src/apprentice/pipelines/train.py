"""`apprentice train`: BC on a dataset, with rollout evaluation on the dataset's task, in one
process or across torchrun's (`algos/launch.py`, `algos/distributed.py`)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from apprentice.algos.config import TrainConfig
from apprentice.algos.distributed import Processes
from apprentice.algos.launch import join_processes
from apprentice.algos.trainer import train
from apprentice.algos.training_data import keys_to_load
from apprentice.data.source import open_source
from apprentice.data.spec import ObsActSpec
from apprentice.envs.base import make_task, task_available, task_spec
from apprentice.errors import ApprenticeError
from apprentice.evaluate.run import rollout_callback


def run_train(
    config: TrainConfig, *, stages: Callable[[TrainConfig], TrainConfig] | None = None
) -> dict[str, Any]:
    """Train `config` with rollouts on the dataset's task every `config.eval_every` epochs
    (where the task is available here), after `stages` (a recipe's: they return the config
    with their outputs in place); returns the summary rows the command prints.

    Under torchrun, across its processes: rank 0 alone runs the stages and the rollouts (and
    its rows are the ones to print)."""
    with join_processes(config) as processes:
        if stages is not None:
            with processes.collectives():
                config = processes.on_main(functools.partial(stages, config))
        return _train_on_task(config, processes)


def _train_on_task(config: TrainConfig, processes: Processes) -> dict[str, Any]:
    policy = config.policy
    # The dataset's checks (actions, the policy's keys and cameras) before anything is built;
    # train() runs the same ones again before its run folder exists.
    keys_to_load(config)
    with open_source(config.dataset) as source:
        task = source.env_args.get("env_name")
        data_spec = source.spec
        masks = {name for name, demos in source.masks.items() if demos}
        recorded_kwargs = dict(source.env_args.get("env_kwargs", {}))
    # An image policy is evaluated with the cameras its demos were recorded with; a low-dim
    # one without rendering, even on a camera dataset.
    task_kwargs = (
        {k: recorded_kwargs[k] for k in ("camera", "image_size") if k in recorded_kwargs}
        if policy.image_keys
        else {}
    )
    # The defaults fall back to a seeded split; a mask asked for by name must exist.
    defaults = TrainConfig()
    for flag, name, default in (
        ("--train-mask", config.train_mask, defaults.train_mask),
        ("--valid-mask", config.valid_mask, defaults.valid_mask),
    ):
        if name != default and name not in masks:
            raise ApprenticeError(
                f"{flag} {name!r}: {config.dataset} has no such non-empty mask "
                f"(it has: {', '.join(sorted(masks)) or 'none'})"
            )
    keys = policy.obs_keys or data_spec.low_dim_keys
    policy_spec = ObsActSpec({k: data_spec.obs_shapes[k] for k in keys}, data_spec.action_dim)
    evaluate = None
    # A robomimic file names a robosuite task: evaluate on it where the extra is installed.
    if config.eval_every > 0 and task_available(str(task)):
        # A dataset whose observations differ from its task's would train for an hour and
        # then fail at the first rollout: check before training.
        probe = make_task(str(task), **task_kwargs)
        policy_spec.check_compatible(
            task_spec(probe), what=f"dataset {config.dataset}", against=f"task {task!r}"
        )
        probe.close()
        evaluate = rollout_callback(str(task), config.eval_episodes, task_kwargs=task_kwargs)
    r = train(
        config if evaluate else replace(config, eval_every=0),
        evaluate=evaluate,
        processes=processes,
    )
    rows: dict[str, Any] = {
        "run folder": str(r.run_dir),
        "epochs": r.epochs_done,
        "resumed from epoch": r.resumed_from_epoch,
        "final checkpoint": str(r.final_checkpoint),
    }
    if r.best_checkpoint is not None:
        rows["best checkpoint"] = f"{r.best_checkpoint} (epoch {r.best_epoch}, {r.best_metric})"
    return rows
