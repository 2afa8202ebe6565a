"""`apprentice train`: BC on a dataset, with rollout evaluation on the dataset's task."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from apprentice.algos.trainer import TrainConfig, train
from apprentice.data.source import open_source, require_actions
from apprentice.data.spec import ObsActSpec
from apprentice.envs.base import make_task, task_available, task_spec
from apprentice.errors import ApprenticeError
from apprentice.evaluate.rollout import rollout_callback
from apprentice.overrides import parse_overrides
from apprentice.policies.base import policy_config_from_dict


@dataclass(frozen=True)
class TrainCommand:
    """Train a behavioral-cloning policy on a demonstration file."""

    dataset: str
    """HDF5 demonstrations (robomimic layout)."""
    out: str
    """Run folder (config, logs, checkpoints, report)."""
    policy: str = "rnn"
    """Policy kind: mlp, gmm, rnn (BC-RNN: LSTM 2x400, sequence 10; head=gmm for BC-RNN-GMM),
    transformer, act or diffusion."""
    policy_args: tuple[str, ...] = ()
    """Overrides of the policy config as key=value, e.g. hidden_dim=128 head=gmm."""
    epochs: int = 100
    """Training epochs."""
    steps_per_epoch: int = 100
    """Gradient steps per epoch (robomimic: 100)."""
    batch_size: int = 100
    """Windows per gradient step."""
    lr: float = 1e-4
    """Adam learning rate."""
    seed: int = 0
    """Seed of weights, sampling and split."""
    train_mask: str = "train"
    """Train on the demos of mask/<name> (e.g. `curated_train` from `apprentice filter --split`)."""
    valid_mask: str = "valid"
    """Validate on the demos of mask/<name>; without it, a seeded 10% of the training demos."""
    eval_every: int = 10
    """Roll out on the dataset's task every this many epochs; 0 = never."""
    eval_episodes: int = 20
    """Rollouts per periodic evaluation (held-out seeds, kept apart from `eval`'s)."""
    precision: str = "fp32"
    """fp32, or bf16 (autocast: about 1.5x faster on CPUs with AVX-512 bf16 units)."""
    threads: int | None = None
    """torch CPU threads (default: torch's choice; 1 is steadier on a shared machine)."""
    device: str = "cpu"
    """Train on cpu, cuda, cuda:N or auto; rollouts and checkpoints stay on the CPU."""
    resume: bool = True
    """Continue an interrupted run found in the folder."""
    overwrite: bool = False
    """Start afresh, deleting a previous run in the folder."""
    progress: bool = True
    """Show progress bars."""


def run_train(cmd: TrainCommand) -> dict[str, Any]:
    policy = policy_config_from_dict(
        {"name": cmd.policy, **parse_overrides(cmd.policy_args, "policy argument")}
    )
    with open_source(cmd.dataset) as source:
        require_actions(source)
        source.check_obs_keys(policy.obs_keys)
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
    for flag, name, default in (
        ("--train-mask", cmd.train_mask, "train"),
        ("--valid-mask", cmd.valid_mask, "valid"),
    ):
        if name != default and name not in masks:
            raise ApprenticeError(
                f"{flag} {name!r}: {cmd.dataset} has no such non-empty mask "
                f"(it has: {', '.join(sorted(masks)) or 'none'})"
            )
    keys = policy.obs_keys or data_spec.low_dim_keys
    policy_spec = ObsActSpec({k: data_spec.obs_shapes[k] for k in keys}, data_spec.action_dim)
    evaluate = None
    # A robomimic file names a robosuite task: evaluate on it where the extra is installed.
    if cmd.eval_every > 0 and task_available(str(task)):
        # A dataset whose observations differ from its task's would train for an hour and
        # then fail at the first rollout: check before training.
        probe = make_task(str(task), **task_kwargs)
        policy_spec.check_compatible(
            task_spec(probe), what=f"dataset {cmd.dataset}", against=f"task {task!r}"
        )
        probe.close()
        evaluate = rollout_callback(str(task), cmd.eval_episodes, task_kwargs=task_kwargs)
    config = TrainConfig(
        dataset=cmd.dataset,
        out=cmd.out,
        policy=policy,
        epochs=cmd.epochs,
        steps_per_epoch=cmd.steps_per_epoch,
        batch_size=cmd.batch_size,
        lr=cmd.lr,
        seed=cmd.seed,
        train_mask=cmd.train_mask,
        valid_mask=cmd.valid_mask,
        eval_every=cmd.eval_every if evaluate else 0,
        eval_episodes=cmd.eval_episodes,
        threads=cmd.threads,
        precision=cmd.precision,
        device=cmd.device,
        resume=cmd.resume,
        overwrite=cmd.overwrite,
        progress=cmd.progress,
    )
    r = train(config, evaluate=evaluate)
    rows: dict[str, Any] = {
        "run folder": str(r.run_dir),
        "epochs": r.epochs_done,
        "resumed from epoch": r.resumed_from_epoch,
        "final checkpoint": str(r.final_checkpoint),
    }
    if r.best_checkpoint is not None:
        rows["best checkpoint"] = f"{r.best_checkpoint} (epoch {r.best_epoch}, {r.best_metric})"
    return rows
