"""Shared fixtures: a tiny demo file and the data layer (real, or stand-ins until it lands)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

_FAKE = Path(__file__).resolve().parents[1] / "algos" / "fake_data.py"


def _fake_data_module() -> Any:
    # Loaded by path under one name so tests/policies and tests/algos share it.
    name = "apprentice_test_fake_data"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, _FAKE)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def fake_data() -> Any:
    module = _fake_data_module()
    module.install()
    return module


@pytest.fixture(scope="session")
def demo_file(tmp_path_factory: pytest.TempPathFactory, fake_data: Any) -> Path:
    path = tmp_path_factory.mktemp("demos") / "demos.hdf5"
    return fake_data.write_demo_file(path)
