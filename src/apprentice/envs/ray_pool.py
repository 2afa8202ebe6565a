"""The process pool's counterpart on Ray: the same picklable calls, as Ray tasks.

Ray runs on the cluster at RAY_ADDRESS when it is set, else on a local instance started for
the pool (and stopped with it). A Ray worker process runs task after task, so what a pool
worker keeps between calls (its `worker_task` instances, a loaded policy) it keeps here too.
Calls name files by path, as in a process pool: on a cluster of several machines, the
checkpoints and demo files must be on a file system every node mounts at the same path.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Executor, Future
from types import ModuleType
from typing import Any

from apprentice.errors import ApprenticeError


def import_ray() -> ModuleType:
    """The `ray` module; one error that says how to install it where it is missing."""
    try:
        import ray
    except ImportError:
        raise ApprenticeError(
            "--backend ray needs Ray: pip install -e '.[ray]' (or pip install ray)"
        ) from None
    return ray


def start_ray(workers: int) -> tuple[ModuleType, bool]:
    """Ray, connected to the cluster at RAY_ADDRESS if set, else to a local instance of
    `workers` CPUs; and whether this call connected (so its caller disconnects: a local
    instance then stops). A connection already made in this process is used as it is."""
    ray = import_ray()
    if ray.is_initialized():
        return ray, False
    settings: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, **settings)
    else:
        ray.init(num_cpus=workers, **settings)
    return ray, True


class RayPool(Executor):
    """`submit(fn, *args)` runs `fn(*args)` as a Ray task of one CPU and returns its future,
    as `make_pool`'s executor does in a process: `with RayPool(workers) as pool: ...`.

    `workers` is the number of CPUs of a local instance; on a cluster, Ray spreads the tasks
    over the CPUs it has.
    """

    def __init__(self, workers: int) -> None:
        self._ray, self._connected = start_ray(workers)
        self._remotes: dict[Callable[..., Any], Any] = {}
        self._refs: list[Any] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        remote = self._remotes.get(fn)
        if remote is None:  # exported to the cluster once per function
            remote = self._remotes[fn] = self._ray.remote(num_cpus=1)(fn)
        ref = remote.remote(*args, **kwargs)
        self._refs.append(ref)
        future: Future[Any] = ref.future()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Cancel the tasks not finished where `cancel_futures` (as a process pool left by an
        exception does), then disconnect from Ray if this pool connected."""
        if cancel_futures:
            for ref in self._refs:
                self._ray.cancel(ref, force=True)
        self._refs = []
        if self._connected:
            self._ray.shutdown()
            self._connected = False

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool | None:
        self.shutdown(wait=True, cancel_futures=exc_type is not None)
        return None
