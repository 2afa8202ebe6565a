"""Training under torchrun: one run, several processes, DistributedDataParallel (DDP).

`torchrun --nproc_per_node=N -m apprentice train ...` (with `--nnodes` over several machines)
starts N processes with WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR and MASTER_PORT set.
`launch.join_processes` reads them and joins the processes in one process group: gloo on the
CPU, NCCL on CUDA GPUs, each process on the GPU of its LOCAL_RANK. Without them, or with
WORLD_SIZE 1, it gives `Processes`, this process alone, whose hooks change nothing.

The trainer calls the hooks of `Processes`; under torchrun (`DistributedProcesses`):

- Batch: `batch_size` is each process's. A gradient step averages the gradients of the
  processes (DDP's all-reduce), each the mean over its own batch, so it is the step one
  process takes on their concatenated batch: the global batch is batch_size x world_size.
  The learning rate is not scaled. An epoch without steps_per_epoch is one pass over the
  windows shared by the processes: each takes ceil(windows / global batch) steps.
- Windows: each process samples its own, from a generator seeded by (seed, rank); nothing is
  shared. The torch generator (dropout, augmentation) and a policy's own training noise
  (`Policy.as_replica`) are each process's too.
- Weights: built from the same seed and broadcast from rank 0 before training; the
  all-reduced gradients give every process the same optimizer step, hence the same weights,
  and the trainer's EMA, copied from them and updated from them, stays the same everywhere.
  Buffers are not synchronised during training: they stay the same on every process by
  construction, except a BatchNorm's running statistics, which are each process's own (rank
  0's, the ones saved, follow its batches, as they would under DDP's per-step broadcast).
- Data and config: each process loads the dataset itself; the config, then the demo split,
  the normalizer's statistics and the dataset's size are checked to be the same on every
  process (a node with another copy of the file stops the run at the start, naming its rank).
- Rank 0 alone writes: the console, TensorBoard, metrics.jsonl, validation, rollouts,
  checkpoints and the run folder; the other processes print only errors. They wait for its
  work (the run folder, a recipe's stages, the end of each epoch) on a group that
  `dist_timeout` does not bound (`PATIENT_WAIT`): rollouts take what they take.
- Resume: rank 0 finds last.pt and every process loads it; last.pt holds every process's
  generators, so a resumed run goes on as the killed one would have (another world size
  draws fresh generators from (seed, rank, epoch)).
- Failures: a process that dies closes its connections, and one that hangs makes the others'
  exchange wait `dist_timeout` seconds; either way rank 0 (or, if it is the one lost, each
  other process) stops with one line (`collectives`), torchrun stops the rest (quietly:
  SIGTERM is caught), and the same command resumes the run from last.pt, as
  do the processes torchrun starts again itself with `--max-restarts`. (On GPUs, NCCL's
  watchdog ends a process whose collective outlasts `dist_timeout`.) A process that cannot
  reach MASTER_ADDR:MASTER_PORT within `dist_timeout` stops with one line.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from types import FrameType
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from apprentice.console import console
from apprentice.errors import ApprenticeError, ReportedError
from apprentice.policies.base import Policy

T = TypeVar("T")

PATIENT_WAIT = timedelta(days=7)
"""How long the other processes wait for rank 0's own work (the run folder, a recipe's stages,
an epoch's validation, rollouts and checkpoints): without a bound in practice, as that work
takes what it takes. A rank 0 that dies meanwhile ends the wait at once (its connections
close). Rank 0 never waits on this group: it only sends."""


class Processes:
    """This process alone, training by itself: the trainer's hooks change nothing.

    `DistributedProcesses` gives them their meaning under torchrun (module docstring).
    """

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Whether this process logs, evaluates and writes the run folder (rank 0)."""
        return self.rank == 0

    def training_device(self, device: torch.device) -> torch.device:
        """Where this process trains a run configured for `device`."""
        return device

    def on_main(self, work: Callable[[], T]) -> T:
        """`work()`, run by rank 0 alone (it writes files), its result given to every
        process; an ApprenticeError it raises stops every process (printed by rank 0)."""
        return work()

    def check_same(self, what: str, value: Any, hint: str) -> None:
        """Stop the run, naming `what` and `hint`, unless every process holds the same `value`
        (JSON-able)."""

    def sampler_rng(self, seed: int) -> np.random.Generator:
        """The generator this process samples its training windows with."""
        return np.random.default_rng(seed)

    def pass_steps(self, windows: int, batch_size: int) -> int:
        """Steps of one epoch that passes once over `windows` training windows."""
        return -(-windows // (batch_size * self.world_size))

    def broadcast_weights(self, policy: Policy) -> None:
        """Give every process rank 0's weights and buffers of `policy`."""

    def as_replica(self, policy: Policy, seed: int) -> None:
        """Once the policy and its starting weights are in place: this process's own torch
        generator and policy noise, drawn from `seed`."""

    def wrap(self, policy: Policy) -> nn.Module:
        """The module a training step calls: `policy` itself, or DDP around it."""
        return policy

    def gather_epoch(
        self, losses: list[float], generators: dict[str, Any]
    ) -> tuple[float | None, list[dict[str, Any]] | None]:
        """For rank 0: the epoch's mean training loss over every process's steps, and every
        process's `generators` (None alone: last.pt keeps this process's anyway)."""
        return (float(np.mean(losses)) if losses else None), None

    def own_generators(self, extra: dict[str, Any], seed: int) -> tuple[dict[str, Any], Tensor]:
        """(sampler generator state, torch generator state) of this process in last.pt's
        `extra`."""
        return extra["numpy_rng"], extra["torch_rng"]

    def wait_for_main(self) -> None:
        """The others wait until rank 0 has ended its epoch (validation, rollouts,
        checkpoints); rank 0 tells them, without waiting for them."""

    @contextmanager
    def collectives(self) -> Iterator[None]:
        """Turn a failed exchange between processes (one died, or stopped answering) into
        one ApprenticeError line."""
        yield

    def close(self) -> None:
        """Leave the process group."""


class DistributedProcesses(Processes):
    """torchrun's processes, joined in a process group (`launch.join_processes`)."""

    def __init__(
        self,
        rank: int,
        world_size: int,
        device: torch.device,
        *,
        backend: str,
        timeout_s: float,
        control: dist.ProcessGroup | None,
        patient: dist.ProcessGroup,
        owns_world: bool,
    ) -> None:
        self.device = device
        """This process's device: the CPU, or the GPU of its LOCAL_RANK."""
        self.rank, self.world_size = rank, world_size
        self.backend = backend
        """gloo or nccl: the gradients' all-reduce."""
        self.timeout_s = timeout_s
        self.control = control
        """gloo, bounded by timeout_s: the small exchanges of CPU values (None: the default
        group, gloo already)."""
        self.patient = patient
        """gloo, bounded by PATIENT_WAIT: the others' waits for rank 0's own work."""
        self.owns_world = owns_world
        """Whether `join_processes` made the default process group (and `close` ends it),
        or found the caller's (and keeps it)."""

    def training_device(self, device: torch.device) -> torch.device:
        return self.device

    def announce(self, batch_size: int) -> None:
        if self.is_main:
            console.print(
                f"distributed: {self.world_size} processes ({self.backend}), batch "
                f"{batch_size} per process, global batch {batch_size * self.world_size}",
                soft_wrap=True,
            )

    def on_main(self, work: Callable[[], T]) -> T:
        outcome: list[Any] = [None]
        if self.is_main:
            try:
                outcome[0] = ("done", work())
            except ApprenticeError as exc:
                outcome[0] = ("failed", str(exc))
                dist.broadcast_object_list(outcome, src=0, group=self.patient)
                raise
        dist.broadcast_object_list(outcome, src=0, group=self.patient)
        status, value = outcome[0]
        if status == "failed":
            raise ReportedError(value)
        return value

    def check_same(self, what: str, value: Any, hint: str) -> None:
        found: list[Any] = [None] * self.world_size
        dist.all_gather_object(found, fingerprint(value), group=self.control)
        differ = [rank for rank, seen in enumerate(found) if seen != found[0]]
        if not differ:
            return
        message = f"{what} of rank {differ[0]} differ from rank 0's: {hint}"
        raise ApprenticeError(message) if self.is_main else ReportedError(message)

    def sampler_rng(self, seed: int) -> np.random.Generator:
        return np.random.default_rng([seed, self.rank])

    def broadcast_weights(self, policy: Policy) -> None:
        with torch.no_grad():
            for tensor in [*policy.parameters(), *policy.buffers()]:
                # CPU tensors (a generative policy's counters stay there) go through gloo.
                group = self.control if tensor.device.type == "cpu" else None
                if tensor.is_contiguous():
                    dist.broadcast(tensor.data, src=0, group=group)
                else:
                    dense = tensor.data.contiguous()
                    dist.broadcast(dense, src=0, group=group)
                    tensor.data.copy_(dense)

    def as_replica(self, policy: Policy, seed: int) -> None:
        torch.manual_seed(mixed_seed(seed, self.rank))
        policy.as_replica(self.rank)

    def wrap(self, policy: Policy) -> nn.Module:
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(policy, device_ids=device_ids, **_LEAVE_BUFFERS)

    def gather_epoch(
        self, losses: list[float], generators: dict[str, Any]
    ) -> tuple[float | None, list[dict[str, Any]] | None]:
        found: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object((losses, generators), found, dst=0, group=self.control)
        if found is None:
            return None, None
        every = [loss for process_losses, _ in found for loss in process_losses]
        return (float(np.mean(every)) if every else None), [g for _, g in found]

    def own_generators(self, extra: dict[str, Any], seed: int) -> tuple[dict[str, Any], Tensor]:
        saved = extra.get("process_generators")
        if saved is not None and len(saved) == self.world_size:
            mine = saved[self.rank]
            return mine["numpy_rng"], mine["torch_rng"]
        epoch = int(extra["epoch"])
        if self.is_main:
            console.print(
                f"distributed: last.pt holds the generators of {len(saved or [0])} "
                f"process(es), not {self.world_size}: each process draws afresh from "
                f"(seed, rank, epoch {epoch})",
                soft_wrap=True,
            )
        numpy_state = dict(np.random.default_rng([seed, self.rank, epoch]).bit_generator.state)
        torch_state = torch.Generator().manual_seed(mixed_seed(seed, self.rank, epoch)).get_state()
        return numpy_state, torch_state

    def wait_for_main(self) -> None:
        # A broadcast, not a barrier: rank 0's send returns at once, so a process that hangs
        # meanwhile stalls rank 0 only at the next step's exchange, bounded by dist_timeout.
        dist.broadcast(torch.zeros(1), src=0, group=self.patient)

    @contextmanager
    def collectives(self) -> Iterator[None]:
        previous = _on_sigterm(_raise_stopped)
        try:
            yield
        except _Stopped:
            # torchrun stops the processes left when one fails: rank 0 says so, once.
            message = (
                f"rank {self.rank} of {self.world_size} was stopped (SIGTERM: torchrun stops "
                "every process when one fails, as a scheduler may); the same torchrun command "
                "resumes the run from last.pt"
            )
            raise ApprenticeError(message) if self.is_main else ReportedError(message) from None
        except RuntimeError as exc:
            if not _exchange_failed(exc):
                raise
            raise ApprenticeError(self._lost_contact(exc)) from None
        finally:
            _on_sigterm(previous)

    def _lost_contact(self, exc: BaseException) -> str:
        reason = failure_reason(exc)
        cause = (
            f"one stopped answering for --dist-timeout {self.timeout_s:g} s"
            if re.search(r"time(d)? ?out", reason, re.IGNORECASE)
            else "one died or closed its connection"
        )
        return (
            f"rank {self.rank} of {self.world_size} lost contact with the other training "
            f"processes ({cause}: {reason}); the run stops, and the same torchrun command "
            "resumes it from last.pt"
        )

    def close(self) -> None:
        if self.owns_world:
            dist.destroy_process_group()
            return
        for group in (self.control, self.patient):
            if group is not None:
                dist.destroy_process_group(group)


def _ddp_buffer_options() -> dict[str, Any]:
    """DDP's options that leave the buffers alone (module docstring: they are the same on
    every process without it, and `broadcast_weights` has already synchronised everything,
    also the CPU buffers NCCL cannot carry). torch 2.13 names them anew."""
    known = inspect.signature(DistributedDataParallel.__init__).parameters
    if "forward_sync_buffers" in known and "init_sync" in known:
        return {"init_sync": False, "forward_sync_buffers": False}
    return {"broadcast_buffers": False}


_LEAVE_BUFFERS = _ddp_buffer_options()


def mixed_seed(*entropy: int) -> int:
    """One 64-bit seed from several integers (numpy's SeedSequence hashing)."""
    return int(np.random.SeedSequence(list(entropy)).generate_state(1, np.uint64)[0])


class _Stopped(Exception):
    """SIGTERM arrived while training (`DistributedProcesses.collectives`)."""


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    raise _Stopped


def _on_sigterm(handler: Any) -> Any:
    """Install `handler` for SIGTERM where Python can (the main thread); the one it replaces."""
    if threading.current_thread() is not threading.main_thread() or handler is None:
        return None
    return signal.signal(signal.SIGTERM, handler)


def _exchange_failed(exc: RuntimeError) -> bool:
    """Whether `exc` is a collective's failure (gloo and NCCL raise RuntimeErrors)."""
    text = str(exc)
    return isinstance(exc, dist.DistError) or any(
        mark in text for mark in ("gloo", "NCCL", "Connection reset", "Connection closed")
    )


def failure_reason(exc: BaseException) -> str:
    """The first line of a collective's error, without the native source location and
    advice: "Read error [10.0.0.2]:41234: Connection reset by peer"."""
    line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    line = re.sub(r"^\[[^\]]*\.(cc|cpp|h):\d+\]\s*", "", line)
    return re.split(r"\. (This is typically|Check the logs)", line)[0].rstrip(". ")


def fingerprint(value: Any) -> str:
    """A digest of a JSON-able value, the same in every process that holds the value."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


__all__ = ["PATIENT_WAIT", "DistributedProcesses", "Processes", "failure_reason", "fingerprint"]
