"""A spawn-based process pool in which each worker keeps its own task instances.

Shared by collection, generation and evaluation; it lives with the envs because a worker's
one job is to own simulators."""

from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import Executor, ProcessPoolExecutor
from functools import lru_cache
from typing import Any

from apprentice.envs.base import Task, make_task


def _init_worker() -> None:
    # One simulator and at most one torch thread per worker: the pool is the parallelism.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a dependency, but envs do not need it
        pass


@lru_cache(maxsize=64)
def worker_task(name: str, kwargs_items: tuple[tuple[str, Any], ...], copy: int = 0) -> Task:
    """Instance number `copy` of task (name, kwargs) in this worker; built once per process."""
    del copy  # part of the cache key only: several envs of one task stepped in lockstep
    return make_task(name, **dict(kwargs_items))


def make_pool(workers: int) -> Executor:
    """A pool of `workers` spawned processes (spawn: safe with torch and MuJoCo renderers)."""
    return ProcessPoolExecutor(
        max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_init_worker
    )
