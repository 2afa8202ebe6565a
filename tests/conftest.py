"""Shared fixtures: the synthetic-demo helper, a tiny demo file, and a fake clock."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

_FAKE = Path(__file__).resolve().parent / "algos" / "synthetic_demos.py"


def _synthetic_module() -> Any:
    # Loaded by path under one name: tests/ is not a package, and several folders use it.
    name = "apprentice_test_synthetic_demos"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, _FAKE)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def synthetic() -> Any:
    return _synthetic_module()


@pytest.fixture(scope="session")
def demo_file(tmp_path_factory: pytest.TempPathFactory, synthetic: Any) -> Path:
    path = tmp_path_factory.mktemp("demos") / "demos.hdf5"
    return synthetic.write_demo_file(path)


class FakeTime:
    """A clock that sleeping advances: a paced loop runs as fast as the CPU allows."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()
