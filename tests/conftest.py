"""Shared fixtures: the synthetic-demo helper, a tiny demo file, a fake clock, read-only
folders, and W&B offline with the reader of its runs."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

_FAKE = Path(__file__).resolve().parent / "algos" / "synthetic_demos.py"


def _helper_module(name: str, path: Path) -> Any:
    # Loaded by path under one name: tests/ is not a package, and several folders use it.
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _synthetic_module() -> Any:
    return _helper_module("apprentice_test_synthetic_demos", _FAKE)


@pytest.fixture(scope="session")
def synthetic() -> Any:
    return _synthetic_module()


@pytest.fixture
def fake_two_arm() -> Iterator[Any]:
    """The module of `FakeTwoArm` (tests/two_arm_fake.py), a kinematic 14-D two-arm task,
    registered by its name ("test_two_arm") for the test."""
    from apprentice.envs import base

    module = _helper_module("apprentice_test_two_arm_fake", _FAKE.parents[1] / "two_arm_fake.py")
    base.task_names()  # the built-in tasks first, so that they are not loaded over it
    base.register_task(module.NAME, "a kinematic two-arm task for tests")(module.FakeTwoArm)
    yield module
    base._REGISTRY.pop(module.NAME, None)


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


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@pytest.fixture
def make_read_only() -> Iterator[Callable[[Path], None]]:
    """Make a folder, files included, read-only for one test. An ordinary user gets mode
    0o555; root writes through permission bits, so it gets a read-only tmpfs mounted over the
    folder holding copies of its files (where mounting is not allowed, the test skips)."""
    undo: list[Callable[[], None]] = []

    def make(folder: Path) -> None:
        if os.geteuid() != 0:
            folder.chmod(0o555)
            undo.append(lambda: folder.chmod(0o755))
            return
        saved = Path(tempfile.mkdtemp(prefix="read-only-"))
        shutil.copytree(folder, saved / "files")
        if not _mount("-t", "tmpfs", "tmpfs", str(folder)):
            shutil.rmtree(saved)
            pytest.skip("root writes through permission bits and may not mount a tmpfs here")
        undo.append(lambda: (_mount_off(folder), shutil.rmtree(saved)))
        shutil.copytree(saved / "files", folder, dirs_exist_ok=True)
        assert _mount("-o", "remount,ro", str(folder)), f"cannot remount {folder} read-only"

    yield make
    for step in reversed(undo):
        step()


def _mount_off(folder: Path) -> None:
    subprocess.run(["umount", str(folder)], check=True)


_WANDB_OFFLINE = Path(__file__).resolve().parent / "wandb_offline.py"


@pytest.fixture
def wandb_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """W&B in offline mode with its settings and caches in a temporary folder; the reader of
    what an offline run wrote (`tests/wandb_offline.py`)."""
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb-home" / name.lower()))
    return _helper_module("apprentice_test_wandb_offline", _WANDB_OFFLINE)
