"""Small oracle source files, collected once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from apprentice.collect.oracle import CollectConfig, collect_demos


def collect(tmp_path_factory: pytest.TempPathFactory, task: str, n: int) -> Path:
    out = tmp_path_factory.mktemp(f"src_{task}") / f"{task}.hdf5"
    collect_demos(CollectConfig(task=task, n=n, out=str(out), workers=1, progress=False))
    return out


@pytest.fixture(scope="session")
def lift_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return collect(tmp_path_factory, "lift", 4)


@pytest.fixture(scope="session")
def stack_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return collect(tmp_path_factory, "stack", 3)
