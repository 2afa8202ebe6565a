"""Where generation attempts run: this process, a local process pool, or a Ray cluster.

All three run the same `run_job` on the same picklable jobs, so a run's output does not
depend on the backend or the number of workers.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol

from apprentice.envs.pool import BACKENDS, make_pool
from apprentice.envs.ray_pool import start_ray
from apprentice.errors import ApprenticeError
from apprentice.generate.attempt import Attempt, AttemptJob, run_job


class Handle(Protocol):
    def result(self) -> list[Attempt]: ...

    def cancel(self) -> None: ...


class Backend(Protocol):
    workers: int

    def submit(self, job: AttemptJob) -> Handle: ...

    def close(self) -> None: ...


class _Deferred:
    """A job run in this process when its result is asked for."""

    def __init__(self, fn: Callable[[], list[Attempt]]) -> None:
        self._fn = fn

    def result(self) -> list[Attempt]:
        return self._fn()

    def cancel(self) -> None:
        pass


class InlineBackend:
    """One worker: this process (no start-up cost; what tests and debuggers want)."""

    workers = 1

    def submit(self, job: AttemptJob) -> Handle:
        return _Deferred(lambda: run_job(job))

    def close(self) -> None:
        pass


class _FutureHandle:
    def __init__(self, future: Future[list[Attempt]]) -> None:
        self._future = future

    def result(self) -> list[Attempt]:
        return self._future.result()

    def cancel(self) -> None:
        self._future.cancel()


class PoolBackend:
    """`workers` spawned processes on this machine."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool = make_pool(workers)

    def submit(self, job: AttemptJob) -> Handle:
        return _FutureHandle(self._pool.submit(run_job, job))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class _RayHandle:
    def __init__(self, ray: Any, ref: Any) -> None:
        self._ray = ray
        self._ref = ref

    def result(self) -> list[Attempt]:
        out: list[Attempt] = self._ray.get(self._ref)
        return out

    def cancel(self) -> None:
        self._ray.cancel(self._ref)


class RayBackend:
    """The same jobs as Ray tasks: on the cluster at RAY_ADDRESS if set, else a local one.

    A local instance is started with `workers` CPUs; on a cluster, `workers` bounds how many
    jobs are in flight at once.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._ray, self._started = start_ray(workers)
        self._remote = self._ray.remote(num_cpus=1)(run_job)

    def submit(self, job: AttemptJob) -> Handle:
        return _RayHandle(self._ray, self._remote.remote(job))

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()


def make_backend(name: str, workers: int) -> Backend:
    if workers < 1:
        raise ApprenticeError(f"--workers must be at least 1, got {workers}")
    if name == "ray":
        return RayBackend(workers)
    if name != "process":
        raise ApprenticeError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return InlineBackend() if workers == 1 else PoolBackend(workers)
