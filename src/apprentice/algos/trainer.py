"""The one trainer every algorithm shares: epochs, validation, rollouts, checkpoints, logs, resume.

A run folder holds:

    config.json       the TrainConfig (written at start; a resume must match it)
    metrics.jsonl     one record per epoch: epoch, train_loss, valid_loss, success_rate, ...
    tb/               TensorBoard events
    last.pt           after every epoch: policy + optimizer + RNG state (resume point)
    best.pt           best success rate (when evaluating) or best validation loss
    final.pt          after the last epoch

A run killed at any instant resumes from last.pt and loses at most the epoch in flight.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from apprentice.algos.bc import bc_step, bc_validation_loss
from apprentice.algos.config import (
    RESUME_FREE_FIELDS,
    TrainConfig,
    load_train_config,
    resolve_device,
)
from apprentice.algos.run_folder import RunLog, prepare_run_dir
from apprentice.errors import ApprenticeError
from apprentice.policies.base import Policy
from apprentice.policies.checkpoint import load_checkpoint, save_checkpoint

Evaluate = Callable[[Policy, int], dict[str, float]]
"""Rollout callback: (policy, number of episodes) -> metrics with at least "success_rate"."""


@dataclass
class TrainResult:
    """What a run produced."""

    run_dir: Path
    epochs_done: int
    final_checkpoint: Path
    best_checkpoint: Path | None
    best_metric: float | None
    """Best success rate (evaluating) or lowest validation loss."""
    best_epoch: int | None
    resumed_from_epoch: int
    """0 for a fresh run, else the epoch last.pt held."""
    metrics: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _TrainData:
    train: Any
    valid: Any | None
    normalizer_state: dict[str, Any]
    env_args: dict[str, Any]


def _rollout_copy(policy: Policy, device: torch.device) -> Policy:
    """The policy to roll out: itself on the CPU, else a CPU copy of its current weights
    (environments step on the CPU, and a batch-1 action is faster there than a GPU round trip)."""
    if device.type == "cpu":
        return policy
    copy = policy.config.build(policy.spec, policy.normalizer_state)
    copy.load_state_dict({k: v.detach().cpu() for k, v in policy.state_dict().items()})
    return copy


def _demo_split(config: TrainConfig) -> tuple[list[str] | None, list[str] | None, str | None]:
    """(train demos, valid demos, mask to load train with) per the dataset's filters or a split."""
    from apprentice.data.source import open_source

    path = Path(config.dataset)
    if not path.exists():
        raise ApprenticeError(f"dataset {path} does not exist")
    # The data layer's source validates the layout and names what is wrong with the dataset.
    with open_source(path) as source:
        masks = {name for name, demos in source.masks.items() if demos}  # an empty filter is none
        names = source.demo_names
    if config.train_mask in masks and config.valid_mask in masks:
        return None, None, config.train_mask
    if config.train_mask in masks:
        return None, [], config.train_mask
    if config.valid_fraction == 0 or len(names) < 2:
        return names, [], None
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(len(names))
    n_valid = max(1, round(config.valid_fraction * len(names)))
    valid = [names[i] for i in sorted(order[:n_valid])]
    train = [names[i] for i in sorted(order[n_valid:])]
    return train, valid, None


def _keys_to_load(config: TrainConfig) -> tuple[list[str] | None, bool]:
    """(obs keys, with_images) to load: no images for a low-dim policy, and only the cameras
    it reads (uint8, ~850 MB for 200 lift demos x 2 cameras) otherwise.

    Raises ApprenticeError, before any run folder exists, for a dataset without actions or
    without the observation keys the policy names.
    """
    from apprentice.data.source import open_source, require_actions

    policy = config.policy
    path = Path(config.dataset)
    if not path.exists():
        raise ApprenticeError(f"dataset {path} does not exist")
    with open_source(path) as source:
        require_actions(source)
        source.check_obs_keys(policy.obs_keys)
        images, keys = source.image_keys, source.obs_keys
    if not policy.image_keys:
        return list(policy.obs_keys) or None, False
    for key in policy.image_keys:
        if key in images:
            continue
        if key in keys:
            raise ApprenticeError(
                f"policy image_keys lists {key!r}, a low-dim observation in {config.dataset}, "
                f"not a camera image (its image keys: {', '.join(images) or 'none'})"
            )
        raise ApprenticeError(
            f"policy reads camera images {key!r}, but dataset {config.dataset} has "
            f"{'image keys ' + ', '.join(images) if images else 'no images'} (its observation "
            f"keys: {', '.join(keys)}); record cameras with `apprentice collect --camera`"
        )
    low_dim = list(policy.obs_keys) or [k for k in keys if k not in images]
    return [*low_dim, *policy.image_keys], True


def _check_image_sizes(init: dict[str, Any], policy: Policy, path: str) -> None:
    """A warm start's encoders must have seen images of this dataset's size."""
    spec = init.get("spec", {}).get("obs_shapes", {})
    for key, shape in policy.image_shapes.items():
        if key in spec and tuple(spec[key]) != shape:
            raise ApprenticeError(
                f"init_checkpoint {path} was trained on {key!r} images of shape "
                f"{tuple(spec[key])}; this dataset's are {shape}"
            )


def _load_data(config: TrainConfig) -> _TrainData:
    from apprentice.data.dataset import DemoDataset
    from apprentice.data.normalize import Normalizer
    from apprentice.data.source import open_source

    train_demos, valid_demos, train_mask = _demo_split(config)
    keys, images = _keys_to_load(config)
    with open_source(config.dataset) as source:
        train = DemoDataset.from_source(
            source, obs_keys=keys, mask=train_mask, demos=train_demos, with_images=images
        )
        valid = None
        if valid_demos is None:
            valid = DemoDataset.from_source(
                source, obs_keys=keys, mask=config.valid_mask, with_images=images
            )
        elif valid_demos:
            valid = DemoDataset.from_source(
                source, obs_keys=keys, demos=valid_demos, with_images=images
            )
    # Stats come from the training demos only, so validation measures generalisation honestly.
    normalizer = Normalizer.fit(train)
    return _TrainData(train, valid, normalizer.state_dict(), dict(train.env_args))


def _epoch_batches(
    sampler: Any, steps: int | None
) -> tuple[Iterator[dict[str, np.ndarray]], int | None]:
    """Batches of one epoch and their count if known."""
    if steps is None:
        return iter(sampler.epoch()), None
    return (sampler.sample() for _ in range(steps)), steps


def train(config: TrainConfig, *, evaluate: Evaluate | None = None) -> TrainResult:
    """Train `config.policy` with BC on `config.dataset`; see the module docstring."""
    from apprentice.data.dataset import WindowSampler

    if not config.dataset:
        raise ApprenticeError("train config: dataset path is empty")
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    # Before the run folder exists: a policy asking for cameras the file lacks, or a GPU
    # this machine lacks, leaves none.
    _keys_to_load(config)
    resolve_device(config.device)
    run_dir, last_path = prepare_run_dir(
        Path(config.out),
        config.to_dict(),
        resume=config.resume,
        overwrite=config.overwrite,
        free_fields=RESUME_FREE_FIELDS,
    )
    data = _load_data(config)
    from apprentice.policies.chunking import check_horizon

    check_horizon(config.policy, data.train)  # a chunk longer than a demo: one clear error

    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    # On its device before the optimizer exists; the loads below copy CPU tensors into it
    # (and Adam's load_state_dict moves a resumed run's moments to the parameters' device).
    policy = config.policy.build(data.train.spec, data.normalizer_state).to(device)
    # Fused Adam: one kernel updates every parameter; 10-25% more steps/s than the
    # per-parameter loop for the 2x1024 MLP on CPU (benchmarks/bench_train.py).
    optimizer = torch.optim.Adam(
        policy.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True
    )
    rng = np.random.default_rng(config.seed)
    start_epoch, global_step = 0, 0
    best_metric: float | None = None
    best_epoch: int | None = None
    if last_path is None and not config.init_checkpoint:
        policy.load_pretrained_encoders()  # a fresh run: the encoders' pretrained_path, if any
    if last_path is None and config.init_checkpoint:
        init = load_checkpoint(config.init_checkpoint)
        _check_image_sizes(init, policy, config.init_checkpoint)
        weights = init["state_dict"]
        weights = {k: v for k, v in weights.items() if k not in ("obs_mean", "obs_std")}
        try:
            missing, unexpected = policy.load_state_dict(weights, strict=False)
        except RuntimeError as exc:
            missing, unexpected = [str(exc).splitlines()[0]], []
        missing = [k for k in missing if k not in ("obs_mean", "obs_std")]
        if missing or unexpected:
            raise ApprenticeError(
                f"init_checkpoint {config.init_checkpoint}: weights do not fit the "
                f"{config.policy.name!r} policy of this run ({(missing + unexpected)[0]})"
            )
    if last_path is not None:
        state = load_checkpoint(last_path)
        extra = state["extra"]
        policy.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(extra["optimizer"])
        rng.bit_generator.state = extra["numpy_rng"]
        torch.set_rng_state(extra["torch_rng"])
        start_epoch, global_step = int(extra["epoch"]), int(extra["global_step"])
        best_metric, best_epoch = extra["best_metric"], extra["best_epoch"]

    sampler = WindowSampler.for_policy(
        data.train, config.policy, batch_size=config.batch_size, rng=rng
    )
    log = RunLog(run_dir, resume_epoch=start_epoch, global_step=global_step)
    evaluating = evaluate is not None and config.eval_every > 0
    try:
        for epoch in range(start_epoch + 1, config.epochs + 1):
            t0 = time.perf_counter()
            policy.train()
            batches, total = _epoch_batches(sampler, config.steps_per_epoch)
            readback = _Readback(epoch, every=_readback_every(device))
            losses = readback.values  # filled as the losses are read back
            for batch in _progress(batches, total, epoch, config):
                try:
                    loss, _ = bc_step(
                        policy,
                        optimizer,
                        batch,
                        grad_clip=config.grad_clip,
                        bf16=config.precision == "bf16",
                        device=device,
                    )
                except Exception:
                    readback.flush()  # a NaN a few steps back is the cause to report
                    raise
                global_step += 1
                readback.add(loss)
                if config.log_every and global_step % config.log_every == 0:
                    readback.flush()
                    log.tb.add_scalar("train/step_loss", losses[-1], global_step)
            readback.flush()
            train_time = time.perf_counter() - t0
            record: dict[str, Any] = {
                "epoch": epoch,
                "train_loss": float(np.mean(losses)) if losses else None,
            }
            valid_loss = None
            if data.valid is not None:
                # A fixed seed: every epoch validates on the same windows, so curves compare.
                valid_sampler = WindowSampler.for_policy(
                    data.valid,
                    config.policy,
                    batch_size=config.batch_size,
                    rng=np.random.default_rng(config.seed + 1),
                )
                valid_loss = bc_validation_loss(policy, valid_sampler.epoch(), device=device)
            record["valid_loss"] = valid_loss
            candidate: float | None = None
            if (
                evaluating
                and evaluate is not None
                and (epoch % config.eval_every == 0 or epoch == config.epochs)
            ):
                results = evaluate(_rollout_copy(policy, device), config.eval_episodes)
                policy.reset()
                if "success_rate" not in results:
                    raise ApprenticeError(
                        f"the evaluate callback returned {sorted(results)} without "
                        "'success_rate' (needed to pick best.pt)"
                    )
                record.update({k: float(v) for k, v in results.items()})
                candidate = float(results["success_rate"])
            elif not evaluating:
                # Without rollouts, lower validation (else training) loss is better.
                loss_metric = valid_loss if valid_loss is not None else record["train_loss"]
                candidate = None if loss_metric is None else -float(loss_metric)
            improved = candidate is not None and (best_metric is None or candidate > best_metric)
            if improved:
                best_metric, best_epoch = candidate, epoch
                save_checkpoint(
                    run_dir / "best.pt", policy, env_args=data.env_args, extra={"epoch": epoch}
                )
            record["steps"] = len(losses)
            record["steps_per_s"] = len(losses) / train_time if train_time > 0 else None
            record["seconds"] = time.perf_counter() - t0
            # The record goes out before last.pt: a kill in between re-runs this epoch and the
            # resume drops the record, so the log never holds an epoch the weights lack.
            log.epoch(record, global_step)
            if config.save_every and epoch % config.save_every == 0:
                save_checkpoint(
                    run_dir / f"epoch_{epoch}.pt",
                    policy,
                    env_args=data.env_args,
                    extra={"epoch": epoch},
                )
            save_checkpoint(
                run_dir / "last.pt",
                policy,
                env_args=data.env_args,
                extra={
                    "epoch": epoch,
                    "global_step": global_step,
                    "optimizer": optimizer.state_dict(),
                    "numpy_rng": rng.bit_generator.state,
                    "torch_rng": torch.get_rng_state(),
                    "best_metric": best_metric,
                    "best_epoch": best_epoch,
                },
            )
        save_checkpoint(
            run_dir / "final.pt",
            policy,
            env_args=data.env_args,
            extra={"epoch": max(config.epochs, start_epoch)},
        )
    finally:
        log.close()
    best_path = run_dir / "best.pt"
    return TrainResult(
        run_dir=run_dir,
        epochs_done=max(config.epochs, start_epoch),
        final_checkpoint=run_dir / "final.pt",
        best_checkpoint=best_path if best_path.exists() else None,
        best_metric=None if best_metric is None else (best_metric if evaluating else -best_metric),
        best_epoch=best_epoch,
        resumed_from_epoch=start_epoch,
        metrics=list(log.records),
    )


def _readback_every(device: torch.device) -> int:
    """Steps between reading the losses back: every step on the CPU, where a read costs
    nothing; 32 on an accelerator, where each read makes the host wait for the device (and,
    with several processes on one GPU, for their turns on it)."""
    return 1 if device.type == "cpu" else 32


class _Readback:
    """The epoch's losses, read back from the device `every` steps in one transfer and
    checked there: a NaN or inf loss stops the run naming its epoch and step. Weights on
    disk are never touched by it, as checkpoints are written only after the epoch's last
    read."""

    def __init__(self, epoch: int, every: int) -> None:
        self.epoch, self.every = epoch, every
        self.values: list[float] = []  # read back and finite, steps 0, 1, ... of the epoch
        self.pending: list[Tensor] = []  # the steps after those, not read back yet

    def add(self, loss: Tensor) -> None:
        self.pending.append(loss)
        if len(self.pending) >= self.every:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        values = torch.stack(self.pending).float().cpu().tolist()
        self.pending = []
        for i, value in enumerate(values):
            if not math.isfinite(value):
                raise ApprenticeError(
                    f"training loss became {value} at epoch {self.epoch}, step "
                    f"{len(self.values) + i}; lower lr, set grad_clip, or check the dataset's scale"
                )
        self.values.extend(values)


def _progress(
    batches: Iterator[dict[str, np.ndarray]], total: int | None, epoch: int, config: TrainConfig
) -> Iterator[dict[str, np.ndarray]]:
    if not config.progress:
        return batches
    from tqdm import tqdm

    return iter(tqdm(batches, total=total, desc=f"epoch {epoch}/{config.epochs}", leave=False))


__all__ = [
    "Evaluate",
    "TrainConfig",
    "TrainResult",
    "load_train_config",
    "resolve_device",
    "train",
]
