"""The one trainer every algorithm shares: epochs, validation, rollouts, checkpoints, logs, resume.

A run folder holds:

    config.json       the TrainConfig (written at start; a resume must match it)
    metrics.jsonl     one record per epoch: epoch, train_loss, valid_loss, success_rate, lr
                      (with a schedule), ...
    tb/               TensorBoard events
    wandb/            with `wandb` (--wandb): the W&B run's files, its id in wandb_id.txt
                      (`apprentice.tracking`)
    last.pt           after every epoch: policy + optimizer + RNG state (resume point)
    best.pt           best success rate (when evaluating) or best validation loss
    final.pt          after the last epoch

A run killed at any instant resumes from last.pt and loses at most the epoch in flight.

Two levers beside the step: a learning-rate schedule (`lr_schedule`, `warmup_steps`: a
`LambdaLR`, stepped after every optimizer step; `algos/optim.py`) and an EMA of the policy's
weights (`ema_decay`: `policies.averaging.PolicyAverage`). With the EMA on, the average is
the policy that validates, rolls out and is saved (best, final, epoch_N and last.pt's
weights alike, so eval, export and deploy load it unchanged); last.pt also keeps the trained
weights for the resume. A policy averaging its own weights (diffusion's `ema`) is refused
the trainer's EMA rather than averaged twice: its average lives in its own checkpointed
buffers, where eval mode already uses it. Both levers' states are in last.pt, so a resumed
run goes on bit for bit.

Under torchrun (`torchrun --nproc_per_node=N -m apprentice train ...`), `train` joins the
processes and the trainer calls the hooks of `algos/distributed.py` at a few points: the
step goes through DistributedDataParallel, each process samples its own windows, and rank 0
alone logs, validates, rolls out and writes the run folder while the others wait for it.
`batch_size` is each process's; the global batch is batch_size x processes.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from apprentice.algos.bc import batch_to_tensors, bc_validation_loss
from apprentice.algos.config import TrainConfig, load_train_config, resolve_device
from apprentice.algos.distributed import Processes
from apprentice.algos.launch import join_processes
from apprentice.algos.optim import make_lr_scheduler, make_optimizer
from apprentice.algos.run_folder import RunLog, SilentLog, prepare_run_dir
from apprentice.algos.training_data import (
    TrainData,
    cache_camera_features,
    check_image_sizes,
    keys_to_load,
    load_train_data,
)
from apprentice.errors import ApprenticeError
from apprentice.policies.averaging import PolicyAverage
from apprentice.policies.base import Policy
from apprentice.policies.checkpoint import load_checkpoint, save_checkpoint
from apprentice.tracking import check_tracking

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


def _rollout_copy(policy: Policy, device: torch.device) -> Policy:
    """The policy to roll out: itself on the CPU, else a CPU copy of its current weights
    (environments step on the CPU, and a batch-1 action is faster there than a GPU round trip)."""
    if device.type == "cpu":
        return policy
    copy = policy.config.build(policy.spec, policy.normalizer_state)
    copy.load_state_dict({k: v.detach().cpu() for k, v in policy.state_dict().items()})
    return copy


def _epoch_batches(
    sampler: Any, steps: int | None, pass_steps: int
) -> tuple[Iterator[dict[str, np.ndarray]], int]:
    """Batches of one epoch and their count: `steps` sampled batches, or (None) the first
    `pass_steps` batches of a shuffled pass over the windows (all of them in one process;
    under torchrun each process's share of one pass)."""
    if steps is None:
        return itertools.islice(sampler.epoch(), pass_steps), pass_steps
    return (sampler.sample() for _ in range(steps)), steps


class Trainer:
    """One BC run on `config`: `fit` sets it up (fresh, warm-started or resumed from
    last.pt), runs the epochs and writes the run folder described in the module docstring.

    `step` is the one gradient step every batch of every run takes; `for_policy` gives a
    trainer around a built policy, without data or run folder, whose `step` callers can
    time or drive with their own batches.
    """

    policy: Policy
    """The trained policy; `acting_policy` is the one that validates, acts and is saved."""
    optimizer: torch.optim.Optimizer
    lr_scheduler: torch.optim.lr_scheduler.LambdaLR | None
    """The warmup and schedule of the learning rate; None for a constant one."""
    ema: PolicyAverage | None
    """The EMA of the policy's weights; None without `ema_decay`."""
    data: TrainData
    run_dir: Path
    rng: np.random.Generator
    sampler: Any  # WindowSampler over the training demos
    pass_steps: int
    """Steps of an epoch without steps_per_epoch: one pass over the training windows."""
    train_module: nn.Module
    """What a step calls: the policy, or DistributedDataParallel around it."""
    log: RunLog | SilentLog

    def __init__(
        self,
        config: TrainConfig,
        *,
        evaluate: Evaluate | None = None,
        processes: Processes | None = None,
    ) -> None:
        self.config = config
        self.processes = processes or Processes()
        """The processes training the run: this one alone, or torchrun's (`train` joins them)."""
        self.process_generators: list[dict[str, Any]] | None = None
        """Under torchrun, on rank 0: every process's generators at the last epoch's end."""
        self.rollouts = evaluate
        self.evaluating = evaluate is not None and config.eval_every > 0
        self.device = torch.device("cpu")
        self.start_epoch = 0
        """0 for a fresh run, else the epoch last.pt held."""
        self.global_step = 0
        # (success rate, mean best reward) when evaluating, else (-loss, 0): compared as tuples,
        # so a tie in success goes to the higher reward (Push-T's coverage; the built-in tasks'
        # reward is their success, so it breaks no tie there).
        self.best_metric: tuple[float, float] | None = None
        """Higher is better: the success rate, or minus the loss without rollouts."""
        self.best_epoch: int | None = None

    @classmethod
    def for_policy(
        cls,
        policy: Policy,
        config: TrainConfig | None = None,
        *,
        optimizer: torch.optim.Optimizer | None = None,
        processes: Processes | None = None,
    ) -> Trainer:
        """A trainer whose `step` trains `policy` (moved to `config.device`) with
        `optimizer`, or with the optimizer a run makes from `config`, and `config`'s
        learning-rate schedule (over epochs of steps_per_epoch steps) and EMA; with
        `processes` (`join_processes`), as one of them (rank 0's weights, DDP)."""
        trainer = cls(config or TrainConfig(), processes=processes)
        config = trainer.config
        trainer.device = trainer.processes.training_device(resolve_device(config.device))
        trainer.policy = policy.to(trainer.device)
        trainer.processes.broadcast_weights(trainer.policy)
        trainer.optimizer = (
            make_optimizer(trainer.policy, config) if optimizer is None else optimizer
        )
        trainer._make_levers(config.steps_per_epoch)
        trainer.processes.as_replica(trainer.policy, config.seed)
        trainer.train_module = trainer.processes.wrap(trainer.policy)
        return trainer

    def fit(self) -> TrainResult:
        """Set up, train the remaining epochs, write final.pt; see the module docstring."""
        processes = self.processes
        with processes.collectives():  # a process lost: one line, not a native trace
            self.setup()
            config = self.config
            try:
                for epoch in range(self.start_epoch + 1, config.epochs + 1):
                    self.run_epoch(epoch)
                    processes.wait_for_main()  # rank 0 validates, rolls out, writes
                if processes.is_main:
                    self.save_checkpoint("final.pt", epoch=max(config.epochs, self.start_epoch))
                processes.wait_for_main()
            finally:
                self.log.close()
        best_path = self.run_dir / "best.pt"
        best = self.best_metric
        return TrainResult(
            run_dir=self.run_dir,
            epochs_done=max(config.epochs, self.start_epoch),
            final_checkpoint=self.run_dir / "final.pt",
            best_checkpoint=best_path if best_path.exists() else None,
            best_metric=None if best is None else (best[0] if self.evaluating else -best[0]),
            best_epoch=self.best_epoch,
            resumed_from_epoch=self.start_epoch,
            metrics=list(self.log.records),
        )

    # ---- set-up and resume ----------------------------------------------------------------

    def setup(self) -> None:
        """Check the config, prepare the run folder, load the data, build the policy and its
        optimizer, then start them fresh, from init_checkpoint, or from last.pt."""
        from apprentice.data.dataset import WindowSampler
        from apprentice.policies.chunking import check_horizon

        config = self.config
        if not config.dataset:
            raise ApprenticeError("train config: dataset path is empty")
        processes = self.processes
        if not processes.is_main:  # rank 0 alone shows progress and logs
            self.config = config = replace(config, progress=False, log_every=0)
        if config.threads is not None:
            torch.set_num_threads(config.threads)
        # Before the run folder exists: a policy asking for cameras the file lacks, or a GPU
        # this machine lacks, leaves none.
        keys_to_load(config)
        resolve_device(config.device)
        check_tracking(config.wandb)
        self.run_dir, last_path = processes.on_main(
            lambda: prepare_run_dir(
                Path(config.out),
                config.to_dict(),
                resume=config.resume,
                overwrite=config.overwrite,
                free_fields=config.resume_free_fields(),
                canonical=lambda found: TrainConfig.from_dict(found).to_dict(),
            )
        )
        self.data = load_train_data(config)
        processes.check_same(
            "the training data (demos, steps, normalizer statistics)",
            self.data.identity(),
            f"every process must read the same dataset ({config.dataset})",
        )
        check_horizon(config.policy, self.data.train)  # a chunk longer than a demo: one error
        self.device = processes.training_device(resolve_device(config.device))
        torch.manual_seed(config.seed)
        # On its device before the optimizer exists; the loads below copy CPU tensors into it
        # (and Adam's load_state_dict moves a resumed run's moments to the parameters' device).
        self.policy = config.policy.build(self.data.train.spec, self.data.normalizer_state)
        self.policy = self.policy.to(self.device)
        self.optimizer = make_optimizer(self.policy, config)
        self.rng = processes.sampler_rng(config.seed)
        if last_path is None and config.init_checkpoint:
            self._warm_start(config.init_checkpoint)
        elif last_path is None:
            self.policy.load_pretrained_encoders()  # pretrained_path, encoder_checkpoint
        elif self.policy.cached_cameras:  # the frozen encoders' weights, to cache with
            self.policy.load_state_dict(load_checkpoint(last_path)["state_dict"])
        processes.broadcast_weights(self.policy)  # every process starts from rank 0's
        # Frozen encoders are what they will stay: their features are computed once, here.
        self.data = cache_camera_features(self.data, self.policy, self.device)
        self.sampler = WindowSampler.for_policy(
            self.data.train, config.policy, batch_size=config.batch_size, rng=self.rng
        )
        self.pass_steps = processes.pass_steps(self.sampler.num_anchors, config.batch_size)
        # After the starting weights, which the EMA starts from (a resume loads its own).
        self._make_levers(config.steps_per_epoch or self.pass_steps)
        processes.as_replica(self.policy, config.seed)
        if last_path is not None:
            self._resume(last_path)
        self.train_module = processes.wrap(self.policy)
        if not processes.is_main:
            self.log = SilentLog()
            return
        self.log = RunLog(
            self.run_dir,
            resume_epoch=self.start_epoch,
            global_step=self.global_step,
            wandb=config.wandb,
            config=config.to_dict(),
        )

    def _make_levers(self, steps_per_epoch: int | None) -> None:
        """The learning-rate schedule on the optimizer and the EMA of the policy, as the
        config asks (None where it asks for none)."""
        config = self.config
        self.lr_scheduler = make_lr_scheduler(self.optimizer, config, steps_per_epoch)
        self.ema = None
        if config.ema_decay is not None:
            self.ema = PolicyAverage(
                self.policy, max_decay=config.ema_decay, power=config.ema_power
            )

    @property
    def acting_policy(self) -> Policy:
        """The policy that validates, rolls out and is saved: the EMA when on, else the
        trained one."""
        return self.policy if self.ema is None else self.ema.policy

    def _warm_start(self, path: str) -> None:
        """Start from another run's weights, keeping this dataset's normalization stats."""
        init = load_checkpoint(path)
        check_image_sizes(init, self.policy, path)
        weights = init["state_dict"]
        weights = {k: v for k, v in weights.items() if k not in ("obs_mean", "obs_std")}
        try:
            missing, unexpected = self.policy.load_state_dict(weights, strict=False)
        except RuntimeError as exc:
            missing, unexpected = [str(exc).splitlines()[0]], []
        missing = [k for k in missing if k not in ("obs_mean", "obs_std")]
        if missing or unexpected:
            raise ApprenticeError(
                f"init_checkpoint {path}: weights do not fit the "
                f"{self.config.policy.name!r} policy of this run ({(missing + unexpected)[0]})"
            )

    def _resume(self, last_path: Path) -> None:
        """Weights, optimizer, schedule, EMA, generators, counters and best-so-far as last.pt
        left them."""
        state = load_checkpoint(last_path)
        extra = state["extra"]
        if self.ema is None:
            self.policy.load_state_dict(state["state_dict"])
        else:  # the checkpoint's weights are the average; the trained ones are beside it
            self.policy.load_state_dict(extra["ema"]["trained_weights"])
            self.ema.policy.load_state_dict(state["state_dict"])
            self.ema.updates = int(extra["ema"]["updates"])
        self.optimizer.load_state_dict(extra["optimizer"])
        if self.lr_scheduler is not None:
            self.lr_scheduler.load_state_dict(extra["lr_scheduler"])
        numpy_state, torch_state = self.processes.own_generators(extra, self.config.seed)
        self.rng.bit_generator.state = numpy_state
        torch.set_rng_state(torch_state)
        self.start_epoch, self.global_step = int(extra["epoch"]), int(extra["global_step"])
        best = extra["best_metric"]
        if best is not None:  # a float in a last.pt from before the reward broke ties
            best = tuple(best) if isinstance(best, (list, tuple)) else (float(best), -math.inf)
        self.best_metric, self.best_epoch = best, extra["best_epoch"]

    # ---- one epoch, one step ----------------------------------------------------------------

    def run_epoch(self, epoch: int) -> dict[str, Any]:
        """Train one epoch, validate, evaluate, log its record, write its checkpoints (under
        torchrun, rank 0 alone does all but the training; the others return its loss)."""
        t0 = time.perf_counter()
        losses = self._train_steps(epoch)
        train_time = time.perf_counter() - t0
        # The mean over every process's steps, and their generators for last.pt, on rank 0.
        train_loss, self.process_generators = self.processes.gather_epoch(
            losses, self._generators()
        )
        record: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss}
        if not self.processes.is_main:
            return record
        record["valid_loss"] = self.validate()
        if self.lr_scheduler is not None:
            record["lr"] = self.lr_scheduler.get_last_lr()[0]  # the next step's
        self.evaluate_and_select(epoch, record)
        record["steps"] = len(losses)
        record["steps_per_s"] = len(losses) / train_time if train_time > 0 else None
        record["seconds"] = time.perf_counter() - t0
        # The record goes out before last.pt: a kill in between re-runs this epoch and the
        # resume drops the record, so the log never holds an epoch the weights lack.
        self.log.epoch(record, self.global_step)
        if self.config.save_every and epoch % self.config.save_every == 0:
            self.save_checkpoint(f"epoch_{epoch}.pt", epoch=epoch)
        self.save_last(epoch)
        return record

    def _train_steps(self, epoch: int) -> list[float]:
        """The epoch's gradient steps; their losses, read back and checked finite."""
        config = self.config
        self.policy.train()
        batches, total = _epoch_batches(self.sampler, config.steps_per_epoch, self.pass_steps)
        readback = _Readback(epoch, every=readback_every(self.device))
        losses = readback.values  # filled as the losses are read back
        for batch in _progress(batches, total, epoch, config):
            try:
                loss, info = self.step(batch)
            except Exception:
                readback.flush()  # a NaN a few steps back is the cause to report
                raise
            self.global_step += 1
            readback.add(loss)
            if config.log_every and self.global_step % config.log_every == 0:
                readback.flush()
                self.log.tb.add_scalar("train/step_loss", losses[-1], self.global_step)
                # The loss's parts (ACT's l1 and kl, ...): a collapse shows here, not in the sum.
                for key, value in info.items():
                    self.log.tb.add_scalar(f"train/{key}", float(value), self.global_step)
        readback.flush()
        return losses

    def step(self, batch: dict[str, np.ndarray]) -> tuple[Tensor, dict[str, Tensor]]:
        """One gradient step on a sampler batch, without waiting for the device.

        The loss comes from calling the policy module (`Policy.forward`), so a wrapper that
        hooks the call, as DistributedDataParallel does to synchronise gradients, sees it.
        Returns the loss before the step and the policy's info, as detached 0-d tensors on
        the policy's device. Nothing here reads a value back, so on a GPU the host queues
        the next batch while this step runs; `run_epoch` reads the losses back (and checks
        that they are finite) 32 steps at a time there.

        precision bf16: the forward pass runs under bfloat16 autocast (weights and optimizer
        stay float32); the backward pass follows the forward's dtypes, as autocast prescribes.
        """
        bf16 = self.config.precision == "bf16"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
            loss, info = self.train_module(batch_to_tensors(batch, self.device))
        # set_to_none skips a memset per parameter; the next backward writes fresh grads.
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.policy.after_optimizer_step()
        if self.ema is not None:  # after the policy's hook: its counters are copied as they end
            self.ema.update(self.policy)
        if self.lr_scheduler is not None:
            self.lr_scheduler.step()
        return loss.detach(), info

    # ---- validation, evaluation, best -------------------------------------------------------

    def validate(self) -> float | None:
        """Mean loss of `acting_policy` on the validation demos (None without them)."""
        from apprentice.data.dataset import WindowSampler

        if self.data.valid is None:
            return None
        # A fixed seed: every epoch validates on the same windows, so curves compare.
        valid_sampler = WindowSampler.for_policy(
            self.data.valid,
            self.config.policy,
            batch_size=self.config.batch_size,
            rng=np.random.default_rng(self.config.seed + 1),
        )
        return bc_validation_loss(self.acting_policy, valid_sampler.epoch(), device=self.device)

    def evaluate_and_select(self, epoch: int, record: dict[str, Any]) -> None:
        """Roll out when due (adding the results to `record`), then keep best.pt: the best
        success rate when evaluating, else the lowest validation (else training) loss."""
        config = self.config
        candidate: tuple[float, float] | None = None
        due = self.evaluating and (epoch % config.eval_every == 0 or epoch == config.epochs)
        if due and self.rollouts is not None:
            policy = self.acting_policy
            results = self.rollouts(_rollout_copy(policy, self.device), config.eval_episodes)
            policy.reset()
            if "success_rate" not in results:
                raise ApprenticeError(
                    f"the evaluate callback returned {sorted(results)} without "
                    "'success_rate' (needed to pick best.pt)"
                )
            record.update({k: float(v) for k, v in results.items()})
            candidate = (
                float(results["success_rate"]),
                float(results.get("mean_max_reward", results["success_rate"])),
            )
        elif not self.evaluating:
            # Without rollouts, lower validation (else training) loss is better.
            valid, train = record["valid_loss"], record["train_loss"]
            loss = valid if valid is not None else train
            candidate = None if loss is None else (-float(loss), 0.0)
        if candidate is not None and (self.best_metric is None or candidate > self.best_metric):
            self.best_metric, self.best_epoch = candidate, epoch
            self.save_checkpoint("best.pt", epoch=epoch)

    # ---- checkpoints ------------------------------------------------------------------------

    def save_checkpoint(self, name: str, *, epoch: int) -> None:
        """The weights alone (`acting_policy`'s), as `name` in the run folder (best, final,
        epoch_N)."""
        save_checkpoint(
            self.run_dir / name,
            self.acting_policy,
            env_args=self.data.env_args,
            extra={"epoch": epoch},
        )

    def save_last(self, epoch: int) -> None:
        """last.pt: the weights (`acting_policy`'s) and everything a resume needs to go on
        bit for bit (with the EMA on, the trained weights too)."""
        extra: dict[str, Any] = {
            "epoch": epoch,
            "global_step": self.global_step,
            "optimizer": self.optimizer.state_dict(),
            **self._generators(),
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
        }
        if self.process_generators is not None:  # every torchrun process's, by rank
            # Rank 0's as they are now, after the rollouts' draws, as in its own fields.
            extra["process_generators"] = [self._generators(), *self.process_generators[1:]]
        if self.lr_scheduler is not None:
            extra["lr_scheduler"] = self.lr_scheduler.state_dict()
        if self.ema is not None:
            trained = {
                k: v.detach().to("cpu", copy=True) for k, v in self.policy.state_dict().items()
            }
            extra["ema"] = {"updates": self.ema.updates, "trained_weights": trained}
        save_checkpoint(
            self.run_dir / "last.pt", self.acting_policy, env_args=self.data.env_args, extra=extra
        )

    def _generators(self) -> dict[str, Any]:
        """The states of this process's generators: the sampler's and torch's."""
        return {"numpy_rng": self.rng.bit_generator.state, "torch_rng": torch.get_rng_state()}


def train(
    config: TrainConfig,
    *,
    evaluate: Evaluate | None = None,
    processes: Processes | None = None,
) -> TrainResult:
    """Train `config.policy` with BC on `config.dataset`; see the module docstring. Under
    torchrun, across its processes: `processes` already joined (`join_processes`), or joined
    here for the run."""
    if processes is not None:
        return Trainer(config, evaluate=evaluate, processes=processes).fit()
    with join_processes(config) as joined:
        return Trainer(config, evaluate=evaluate, processes=joined).fit()


def readback_every(device: torch.device) -> int:
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
    "Trainer",
    "load_train_config",
    "resolve_device",
    "train",
]
