"""A process pool in which each worker keeps its own task instances.

Shared by collection, generation and evaluation; it lives with the envs because a worker's
one job is to own simulators.

Workers are forked from a fork server that has imported torch, mujoco and the tasks once
(`PRELOAD`), so a worker starts in milliseconds instead of paying those imports (seconds)
itself, as a spawned one does. The fork server is a fresh single-threaded process: no torch
thread pool and no GL context of the parent is copied into a worker, which is what makes a
plain fork unsafe. Where there is no fork server (Windows), workers are spawned.

`make_pool(workers, "ray")` runs the same calls as Ray tasks (`apprentice.envs.ray_pool`)."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from multiprocessing.context import BaseContext
from types import TracebackType
from typing import Any

from apprentice.envs.base import Task, make_task
from apprentice.errors import ApprenticeError
from apprentice.interrupts import sigint_deferred


def _init_worker() -> None:
    # Ctrl-C reaches the whole process group: the parent alone turns it into KeyboardInterrupt
    # and stops the workers (see _Pool), instead of each worker printing a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # One simulator and at most one torch thread per worker: the pool is the parallelism.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a dependency, but envs do not need it
        pass


_MAX_TASKS = 64
_tasks: dict[tuple[str, str, int], Task] = {}
"""This worker process's tasks, by (name, kwargs as JSON, copy); the oldest is dropped past
_MAX_TASKS."""


def worker_task(name: str, kwargs_items: tuple[tuple[str, Any], ...], copy: int = 0) -> Task:
    """Instance number `copy` of task (name, kwargs) in this worker; built once per process.

    `copy` tells apart several envs of one task stepped in lockstep. Keyword values may be
    dicts and lists (a robosuite task's env_kwargs hold its controller config): the cache
    keys on their JSON form.
    """
    key = (name, json.dumps(dict(kwargs_items), sort_keys=True, default=repr), copy)
    task = _tasks.get(key)
    if task is None:
        task = make_task(name, **dict(kwargs_items))
        if len(_tasks) >= _MAX_TASKS:
            del _tasks[next(iter(_tasks))]
        _tasks[key] = task
    return task


class _Pool(ProcessPoolExecutor):
    """Left by an exception (Ctrl-C among them), the pool stops its workers and cancels the
    queued work rather than waiting for it: its workers ignore SIGINT."""

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        if exc_type is not None:
            for process in list((self._processes or {}).values()):
                process.terminate()
        self.shutdown(wait=True, cancel_futures=exc_type is not None)
        return None

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        # A submit may start workers. Ctrl-C between a worker's fork and its registration in
        # the pool would leave one that __exit__ cannot stop, and that worker then fails
        # loudly reading its set-up from a parent already gone: hold Ctrl-C until it is in.
        with sigint_deferred():
            return super().submit(fn, *args, **kwargs)


PRELOAD = ("torch", "apprentice.envs.tasks", "apprentice.envs.gym_tasks")
"""Imported once by the fork server, before it forks any worker: what every pool's workers
need that takes seconds to import (torch for policies, mujoco with the tasks)."""


def pool_context() -> BaseContext:
    """The fork server with `PRELOAD`, where the platform has one; else spawn."""
    if "forkserver" not in mp.get_all_start_methods():  # pragma: no cover - Windows
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    # Takes effect when the server starts (the first pool of this process); later pools fork
    # from the same server.
    ctx.set_forkserver_preload(list(PRELOAD))
    _start_forkserver_deaf_to_sigint()
    return ctx


def _start_forkserver_deaf_to_sigint() -> None:
    """Start the fork server (if it is not running) with SIGINT ignored. The server ignores
    SIGINT itself only once its preload is imported; a Ctrl-C to the process group during
    those seconds of imports would otherwise print its traceback beside the command's one-line
    exit. An ignored disposition survives the server's exec; its forked workers set their own
    (`_init_worker`)."""
    from multiprocessing import forkserver

    if threading.current_thread() is not threading.main_thread():
        forkserver.ensure_running()  # signal handlers can be set in the main thread only
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, previous)


BACKENDS = ("process", "ray")
"""Where a pool's workers run: processes of this machine, or Ray tasks (`envs.ray_pool`)."""


def make_pool(workers: int, backend: str = "process") -> Executor:
    """A pool of `workers` processes forked from the preloaded fork server (see the module
    docstring), safe with torch and MuJoCo renderers; or, with backend "ray", the same
    calls as Ray tasks (`apprentice.envs.ray_pool.RayPool`)."""
    if backend == "ray":
        from apprentice.envs.ray_pool import RayPool

        return RayPool(workers)
    if backend != "process":
        raise ApprenticeError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    return _Pool(max_workers=workers, mp_context=pool_context(), initializer=_init_worker)
