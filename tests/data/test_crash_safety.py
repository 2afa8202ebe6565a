"""A writer SIGKILLed at any instant loses at most the episode in flight; the file stays valid."""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from apprentice.data import DemoFile

CHILD = Path(__file__).with_name("crash_writer.py")


def _child_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("crash_writer", CHILD)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run_and_kill(path: Path, delay: float | None, kill_at: int | None = None) -> list[str]:
    """Start the writer, SIGKILL it `delay` s after it is ready; return the demos it reported."""
    args = [sys.executable, str(CHILD), str(path)]
    if kill_at is not None:
        args.append(str(kill_at))
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    if delay is not None:
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=120)  # generous: CI machines can be busy
    assert proc.returncode == -signal.SIGKILL
    # A name printed without its newline may have been cut by the kill: it does not count.
    return [line for line in out.split("\n")[:-1] if line]


def _check(
    path: Path, reported: set[str], make_episode: object, checked: frozenset[str] = frozenset()
) -> set[str]:
    """Open (repairs, validates), find every reported demo; returns the demos in the file."""
    with DemoFile(path) as f:
        names = set(f.demo_names)
        missing = reported - names
        assert not missing, f"appended demos lost: {sorted(missing)}"
        assert len(names - reported) <= 1, f"more than the demo in flight: {names - reported}"
        # Masks and total are checked by validation; check content against the generator too
        # (demos checked after an earlier kill are not re-read, to keep the test fast).
        for name in names - checked:
            ep = f.read(name)
            want = make_episode(ep.seed)  # type: ignore[operator]
            np.testing.assert_array_equal(ep.actions, want.actions)
            np.testing.assert_array_equal(ep.obs["agentview_image"], want.obs["agentview_image"])
            assert (ep.seed % 2 == 0) == (name in f.masks.get("even", []))
    assert not Path(str(path) + ".journal").exists()
    return names


def test_random_sigkills_lose_at_most_the_episode_in_flight(tmp_path: Path) -> None:
    mod = _child_module()
    path = tmp_path / "demos.hdf5"
    rng = np.random.default_rng(0)
    reported: set[str] = set()
    checked: set[str] = set()
    start = time.monotonic()
    kills = 0
    for _ in range(24):
        reported |= set(_run_and_kill(path, delay=float(rng.uniform(0.0, 0.25))))
        kills += 1
        if path.exists():
            checked = _check(path, reported, mod.make_episode, frozenset(checked))
            reported = set(checked)
    assert kills >= 20
    assert len(reported) > 24, "the writer should have appended across the kills"
    assert time.monotonic() - start < 60


@pytest.mark.parametrize("kill_at", [1, 3, 8, 21, 34, 55])
def test_kill_at_each_hdf5_write(tmp_path: Path, kill_at: int) -> None:
    """Deterministic: die exactly at the k-th write HDF5 issues, inside metadata updates."""
    mod = _child_module()
    path = tmp_path / "demos.hdf5"
    reported = set(_run_and_kill(path, delay=0.15))  # some committed demos first
    reported = _check(path, reported, mod.make_episode)
    reported |= set(_run_and_kill(path, delay=None, kill_at=kill_at))
    _check(path, reported, mod.make_episode)
