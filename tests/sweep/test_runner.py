"""The sweep's cell log and its workers: a torn line dropped, a dead worker replaced."""

from __future__ import annotations

import json
import os
from pathlib import Path

from apprentice.algos.config import TrainConfig
from apprentice.sweep import Cell, CellJob, CellLog, DemoSpec
from apprentice.sweep.runner import PoolCells


def record(key: str, **fields: object) -> dict[str, object]:
    task, obs, policy, demos, seed = key.split("/")
    cell = Cell(task, obs, policy, int(demos[1:]), int(seed[1:]))
    return {"key": key, "cell": vars(cell), **fields}


def test_the_log_keeps_each_cells_latest_line_and_drops_a_torn_one(tmp_path: Path) -> None:
    path = tmp_path / "cells.jsonl"
    log = CellLog(path)
    log.append(record("lift/low_dim/mlp/d2/s0", successes=1, episodes=2))
    log.append(record("lift/low_dim/mlp/d2/s1", error="RuntimeError: boom"))
    log.append(record("lift/low_dim/mlp/d2/s2", error="RuntimeError: boom"))
    log.append(record("lift/low_dim/mlp/d2/s2", successes=2, episodes=2))
    with path.open("a") as f:
        f.write('{"key": "lift/low_dim/mlp/d2/s3", "succ')  # killed mid-line
    again = CellLog(path)
    assert sorted(again.finished()) == ["lift/low_dim/mlp/d2/s0", "lift/low_dim/mlp/d2/s2"]
    assert len(again.records) == 4 and path.read_text().endswith("}\n")
    again.append(record("lift/low_dim/mlp/d2/s3", successes=0, episodes=2))
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["key"] for r in lines][-1] == "lift/low_dim/mlp/d2/s3" and len(lines) == 5
    # A record without a key (as the zoo wrote before the sweep) is found by its cell.
    legacy = record("lift/images/act/d50/s1", successes=3, episodes=50)
    legacy.pop("key")
    again.append(legacy)
    assert "lift/images/act/d50/s1" in CellLog(path).finished()


class _DiesWhenUnpickled:
    """Unpickled in a worker, it ends that process at once (as the kernel's OOM killer would)."""

    def __reduce__(self) -> tuple[object, tuple[int]]:
        return (os._exit, (3,))


def test_a_dead_worker_fails_its_cell_and_the_next_cell_gets_a_fresh_pool() -> None:
    cell = Cell("lift", "low_dim", "mlp", 2, 0)
    killer = CellJob(cell, DemoSpec("lift"), _DiesWhenUnpickled(), 1)  # type: ignore[arg-type]
    # No demos: the cell itself ends at once with its error record.
    uncollected = CellJob(cell, DemoSpec("lift"), TrainConfig(), 1)
    with PoolCells(2, "process") as pool:
        dead = pool.submit(killer)
        assert dead.exception(timeout=120) is not None
        record = pool.submit(uncollected).result(timeout=120)
    assert record["key"] == cell.key and "its demos were not collected" in record["error"]
