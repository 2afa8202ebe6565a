"""Running a sweep's cells: side by side in a local process pool or as Ray tasks, each
recorded in cells.jsonl the moment it ends, so that a sweep stopped at any point keeps what
it finished and a rerun runs only the rest.

The demos a cell needs are collected here, in the calling process, when the first cell of
its data group is about to start, while the cells already started go on training.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from apprentice.envs.pool import make_pool
from apprentice.errors import ApprenticeError
from apprentice.files import write_text_atomic
from apprentice.sweep.cell import error_record, execute_cell
from apprentice.sweep.grid import Cell, CellJob, DemoSpec

Echo = Callable[[str], None]
"""Where the sweep says what it does, a line at a time."""

CELLS_FILE = "cells.jsonl"


class CellLog:
    """OUT/cells.jsonl: one JSON line per cell run, a failure's too; the latest line of a
    cell is its result. A line is written with one append and synced before the next cell
    is counted as done; a line torn by a kill is dropped when the log is opened again."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: list[dict[str, Any]] = []
        if not path.exists():
            return
        text = path.read_text()
        lines = text.splitlines()
        for line in lines:
            try:
                self.records.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a torn last line: it and anything after it are dropped
        if len(self.records) < len(lines) or (text and not text.endswith("\n")):
            write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in self.records))

    def finished(self) -> dict[str, dict[str, Any]]:
        """The latest record of each cell that ended with a score, by cell key."""
        latest: dict[str, dict[str, Any]] = {}
        for r in self.records:
            latest[_key_of(r)] = r
        return {k: r for k, r in latest.items() if "error" not in r}

    def append(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(record) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.records.append(record)


def _key_of(record: dict[str, Any]) -> str:
    """A record's cell key (records written before keys were stored hold the cell alone)."""
    if "key" in record:
        return str(record["key"])
    return Cell(**record["cell"]).key


@dataclass
class CellsOutcome:
    """What a `run_cells` call did."""

    done_before: list[str]
    """Cells already finished in cells.jsonl, not run again."""
    ran: list[dict[str, Any]] = field(default_factory=list)
    """The records of the cells run now, failures included, in the order they ended."""
    not_started: list[str] = field(default_factory=list)
    """Cells left unstarted (`may_start` said no)."""

    @property
    def failed(self) -> list[str]:
        return [r["key"] for r in self.ran if "error" in r]


def check_settings(jobs: Sequence[CellJob], finished: dict[str, dict[str, Any]], log: Path) -> None:
    """Refuse a rerun whose cells would differ from the finished ones of the same key (other
    training settings, demos or scoring): their results would not be comparable. Settings
    present in only one of the two (one added to the training config since) are not
    compared."""
    for job in jobs:
        previous = finished.get(job.cell.key, {}).get("settings")
        if previous is None:
            continue
        differ = _differences(previous, job.settings())
        if differ:
            raise ApprenticeError(
                f"{log} holds cell {job.cell.key} with other settings ({', '.join(differ)} "
                "differ); use a new --out, or remove its line to run it again"
            )


def _differences(previous: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    out: list[str] = []
    for k in sorted(set(previous) & set(current)):
        a, b = previous[k], current[k]
        if isinstance(a, dict) and isinstance(b, dict) and k == "train":
            out += _differences(a, b, f"{k}.")
        elif a != b:
            out.append(prefix + k)
    return out


class CellExecutor(Protocol):
    """Where cells run: `submit` starts one and returns its record's future."""

    def submit(self, job: CellJob) -> Future[dict[str, Any]]: ...


class InlineCells:
    """One cell at a time in this process (no start-up cost; what debuggers want). The
    torch thread count a cell sets is put back after it."""

    def submit(self, job: CellJob) -> Future[dict[str, Any]]:
        import torch

        future: Future[dict[str, Any]] = Future()
        threads = torch.get_num_threads()
        try:
            future.set_result(execute_cell(job))
        finally:
            torch.set_num_threads(threads)
        return future


class PoolCells:
    """Cells in a pool of `workers` (`make_pool`: processes forked from the preloaded fork
    server, as collection's and evaluation's, or Ray tasks). A process that dies (killed for
    memory) fails its cell; the next cell starts a fresh pool."""

    def __init__(self, workers: int, backend: str) -> None:
        self.workers, self.backend = workers, backend
        self._stack = contextlib.ExitStack()
        self._pool = self._stack.enter_context(make_pool(workers, backend))

    def submit(self, job: CellJob) -> Future[dict[str, Any]]:
        try:
            return self._pool.submit(execute_cell, job)
        except BrokenProcessPool:
            self._stack.close()
            self._stack = contextlib.ExitStack()
            self._pool = self._stack.enter_context(make_pool(self.workers, self.backend))
            return self._pool.submit(execute_cell, job)

    def __enter__(self) -> PoolCells:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Left by an exception (Ctrl-C among them), the pool stops its workers or cancels
        # its Ray tasks instead of waiting for them.
        self._stack.__exit__(exc_type, exc, tb)


@contextlib.contextmanager
def cell_executor(backend: str, workers: int) -> Iterator[CellExecutor]:
    """Where `workers` cells run at once with `backend` (process or ray): this process
    itself for one local worker."""
    if backend == "process" and workers == 1:
        yield InlineCells()
        return
    with PoolCells(workers, backend) as pool:
        yield pool


def run_cells(
    jobs: Sequence[CellJob],
    out: Path,
    *,
    workers: int,
    backend: str = "process",
    collect_workers: int | None = None,
    may_start: Callable[[float], bool] | None = None,
    echo: Echo = print,
) -> CellsOutcome:
    """Run the cells of `jobs` that OUT/cells.jsonl does not hold finished, `workers` at a
    time, recording each as it ends. `may_start(slowest)` (the seconds of the slowest cell
    finished so far, 0 before any) says whether another cell may start; the sweep stops
    starting cells at its first no. A cell that fails is recorded with its error, and the
    others go on."""
    log = CellLog(out / CELLS_FILE)
    finished = log.finished()
    check_settings(jobs, finished, log.path)
    outcome = CellsOutcome([j.cell.key for j in jobs if j.cell.key in finished])
    todo = deque(j for j in jobs if j.cell.key not in finished)
    echo(f"{len(outcome.done_before)} cells done, {len(todo)} to run")
    demos = _Demos(out / "data", todo, collect_workers or workers, echo)
    recorder = _Recorder(log, outcome, echo)
    slowest = 0.0
    with cell_executor(backend, workers) as executor:
        pending: dict[Future[dict[str, Any]], CellJob] = {}
        while todo or pending:
            while todo and len(pending) < workers:
                if may_start is not None and not may_start(slowest):
                    outcome.not_started = [j.cell.key for j in todo]
                    todo.clear()
                    break
                job = _with_demos(todo.popleft(), demos, recorder)
                if job is not None:
                    future = executor.submit(job)
                    pending[future] = job
                    future.add_done_callback(functools.partial(recorder.settle, job))
            if not pending:
                break
            ended, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in ended:
                r = recorder.settle(pending.pop(future), future)
                if "error" not in r:
                    slowest = max(slowest, r["train_s"] + r["eval_s"])
    return outcome


def _with_demos(job: CellJob, demos: _Demos, recorder: _Recorder) -> CellJob | None:
    """`job` with its demo file, collected first where missing; None where the demos could
    not be made (the cell is then recorded as failed)."""
    try:
        dataset = demos.file(job)
    except Exception as exc:  # the oracle failed too often, a task that does not build, ...
        recorder.record(job, error_record(job, exc, traceback.format_exc()))
        return None
    return replace(job, train=replace(job.train, dataset=str(dataset)))


class _Recorder:
    """Writes each cell's record once, whichever comes first: the future's callback (which
    records cells that end while demos are being collected) or the sweep's loop."""

    def __init__(self, log: CellLog, outcome: CellsOutcome, echo: Echo) -> None:
        self.log, self.outcome, self.echo = log, outcome, echo
        self._lock = threading.Lock()
        self._settled: dict[Future[dict[str, Any]], dict[str, Any]] = {}

    def settle(self, job: CellJob, future: Future[dict[str, Any]]) -> dict[str, Any]:
        with self._lock:
            if future in self._settled:
                return self._settled[future]
            try:
                record = future.result()
            except Exception as exc:  # the worker itself died, or Ray lost the task
                record = error_record(job, exc)
            self._record(job, record)
            self._settled[future] = record
            return record

    def record(self, job: CellJob, record: dict[str, Any]) -> None:
        with self._lock:
            self._record(job, record)

    def _record(self, job: CellJob, r: dict[str, Any]) -> None:
        self.log.append(r)
        self.outcome.ran.append(r)
        if "error" in r:
            self.echo(f"FAILED {job.cell.key}: {r['error']}")
            return
        rate = f"{r['steps_per_s']:.1f} steps/s, " if r.get("steps_per_s") else ""
        self.echo(
            f"{job.cell.key}: {r['successes']}/{r['episodes']} "
            f"(train {r['train_s']} s, {rate}eval {r['eval_s']} s)"
        )


class _Demos:
    """The demo files of the cells to run, collected per data group when its first cell
    is about to start."""

    def __init__(self, folder: Path, jobs: Sequence[CellJob], workers: int, echo: Echo) -> None:
        self.folder, self.workers, self.echo = folder, workers, echo
        self.sizes: dict[DemoSpec, list[int]] = {}
        for job in jobs:
            self.sizes.setdefault(job.demos, []).append(job.cell.demos)
        self.files: dict[DemoSpec, dict[int, Path]] = {}
        self.failures: dict[DemoSpec, Exception] = {}

    def file(self, job: CellJob) -> Path:
        """The demo file of `job`'s cell; a collection that failed fails each of its
        group's cells with the same error, without being tried again."""
        spec = job.demos
        if spec in self.failures:
            raise self.failures[spec]
        if spec not in self.files:
            t0 = time.perf_counter()
            try:
                self.files[spec] = spec.collect(self.folder, self.sizes[spec], self.workers)
            except Exception as exc:
                self.failures[spec] = exc
                raise
            what = "cameras" if spec.camera else "low-dim"
            self.echo(f"demos {spec.task} ({what}): {time.perf_counter() - t0:.0f} s")
        return self.files[spec][job.cell.demos]
