"""How the processes of a torchrun run find each other: torchrun's variables (`Launch`) and
the process group they join (`join_processes`), whose hooks the trainer calls
(`algos/distributed.py` says what they do)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from apprentice.algos.config import TrainConfig, resolve_device
from apprentice.algos.distributed import (
    PATIENT_WAIT,
    DistributedProcesses,
    Processes,
    failure_reason,
)
from apprentice.errors import ApprenticeError

LAUNCH_VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
"""What torchrun sets in each process it starts, and what a run across processes reads."""


@dataclass(frozen=True)
class Launch:
    """What torchrun tells a process it starts (its environment variables)."""

    world_size: int
    rank: int
    local_rank: int
    master: str
    """MASTER_ADDR:MASTER_PORT, where the processes meet."""
    restarts: int = 0
    """How many times torchrun has restarted the processes after a failure (--max-restarts):
    TORCHELASTIC_RESTART_COUNT."""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Launch | None:
        """The launch `environ` (os.environ) describes; None where WORLD_SIZE is unset or 1
        (one process: nothing to join). Raises ApprenticeError for a partial or malformed one."""
        env = os.environ if environ is None else environ
        world_size = _int_variable(env, "WORLD_SIZE", default=1)
        if world_size <= 1:
            return None
        missing = [name for name in LAUNCH_VARIABLES if not env.get(name)]
        if missing:
            raise ApprenticeError(
                f"WORLD_SIZE={world_size} is set but {', '.join(missing)} not: start the "
                f"processes with torchrun, which sets {', '.join(LAUNCH_VARIABLES)}"
            )
        rank = _int_variable(env, "RANK")
        local_rank = _int_variable(env, "LOCAL_RANK")
        if not 0 <= rank < world_size or local_rank < 0:
            raise ApprenticeError(
                f"RANK={rank}, LOCAL_RANK={local_rank} do not fit WORLD_SIZE={world_size} "
                "(0 <= RANK < WORLD_SIZE, LOCAL_RANK >= 0)"
            )
        master = f"{env['MASTER_ADDR']}:{env['MASTER_PORT']}"
        restarts = _int_variable(env, "TORCHELASTIC_RESTART_COUNT", default=0)
        return cls(world_size, rank, local_rank, master, restarts)


def main_process(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process is alone or rank 0 of torchrun's: the one that prints."""
    launch = Launch.from_environ(environ)
    return launch is None or launch.rank == 0


def _int_variable(env: Mapping[str, str], name: str, default: int | None = None) -> int:
    value = env.get(name)
    if not value and default is not None:
        return default
    try:
        return int(value or "")
    except ValueError:
        raise ApprenticeError(f"{name}={value!r} is not an integer (torchrun sets it)") from None


@contextmanager
def join_processes(
    config: TrainConfig, environ: Mapping[str, str] | None = None
) -> Iterator[Processes]:
    """The processes that train `config`'s run: torchrun's, joined in a process group for the
    block (and left after it), when `environ` (os.environ) says WORLD_SIZE > 1; else this
    process alone. Under torchrun, rank 0 prints the one line that says so first.

    A process joins once: torch cannot reliably make a new default process group under
    torchrun once one has ended (the store keeps the old one's addresses). Several runs in
    one process share one block, or a default group that the caller made
    (`torch.distributed.init_process_group`), which is then used and kept."""
    launch = Launch.from_environ(environ)
    if launch is None:
        yield Processes()
        return
    processes = _join(launch, config)
    try:
        with processes.collectives():
            processes.check_same(
                "the train config",
                config.to_dict(),
                "give every process the same command (torchrun's arguments after the module)",
            )
        processes.announce(config.batch_size)
        yield processes
    finally:
        processes.close()


def _join(launch: Launch, config: TrainConfig) -> DistributedProcesses:
    device, backend = _process_device(launch, config.device)
    timeout = timedelta(seconds=config.dist_timeout)
    owns_world = not dist.is_initialized()
    if not owns_world:
        _check_callers_group(launch)
        backend = str(dist.get_backend())
    try:
        # The store's native client logs each failed try with a stack trace on fd 2.
        with _native_stderr_silenced():
            if owns_world:
                dist.init_process_group(
                    backend,
                    store=_meeting_store(launch, timeout),
                    rank=launch.rank,
                    world_size=launch.world_size,
                    timeout=timeout,
                )
            control = None if backend == "gloo" else dist.new_group(backend="gloo", timeout=timeout)
            patient = dist.new_group(backend="gloo", timeout=PATIENT_WAIT)
    except RuntimeError as exc:
        if owns_world and dist.is_initialized():
            dist.destroy_process_group()
        raise ApprenticeError(
            f"rank {launch.rank} of {launch.world_size} could not reach the other training "
            f"processes at {launch.master} within --dist-timeout {config.dist_timeout:g} s "
            f"({failure_reason(exc)}); check MASTER_ADDR and MASTER_PORT, and that every process "
            "started"
        ) from None
    return DistributedProcesses(
        launch.rank,
        launch.world_size,
        device,
        backend=backend,
        timeout_s=config.dist_timeout,
        control=control,
        patient=patient,
        owns_world=owns_world,
    )


def _meeting_store(launch: Launch, timeout: timedelta) -> dist.Store:
    """The store at MASTER_ADDR:MASTER_PORT (env://: torchrun's agent's, or rank 0's), its keys
    under a prefix of torchrun's restart count: processes that torchrun starts again after a
    failure (--max-restarts) must not find the addresses of those they replace."""
    store, _, _ = next(
        dist.rendezvous("env://", rank=launch.rank, world_size=launch.world_size, timeout=timeout)
    )
    return dist.PrefixStore(f"apprentice/attempt_{launch.restarts}", store)


def _check_callers_group(launch: Launch) -> None:
    """A default process group made by the caller must be the launch's."""
    rank, world_size = dist.get_rank(), dist.get_world_size()
    if (rank, world_size) != (launch.rank, launch.world_size):
        raise ApprenticeError(
            f"the process group already made is rank {rank} of {world_size}, but torchrun's "
            f"variables say rank {launch.rank} of {launch.world_size}"
        )


def _process_device(launch: Launch, name: str) -> tuple[torch.device, str]:
    """(this process's device, the backend) for TrainConfig.device `name`: the CPU with gloo,
    or LOCAL_RANK's GPU with NCCL."""
    device = resolve_device(name)
    if device.type == "cpu":
        return device, "gloo"
    if device.index is not None:
        raise ApprenticeError(
            f"--device {name} under torchrun would put every process on one GPU; use --device "
            "cuda: each process trains on the GPU of its LOCAL_RANK"
        )
    visible = torch.cuda.device_count()
    if launch.local_rank >= visible:
        raise ApprenticeError(
            f"LOCAL_RANK {launch.local_rank} has no GPU of its own ({visible} visible): start "
            f"at most {visible} processes per node (--nproc_per_node)"
        )
    torch.cuda.set_device(launch.local_rank)
    return torch.device("cuda", launch.local_rank), "nccl"


@contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """File descriptor 2 to /dev/null for the block: what native code writes there (not
    Python's exceptions, which the caller turns into one line) is dropped."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


__all__ = ["LAUNCH_VARIABLES", "Launch", "join_processes", "main_process"]
