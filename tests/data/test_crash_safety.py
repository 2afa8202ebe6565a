"""A writer SIGKILLed at any instant loses at most the episode in flight; the file stays valid."""

from __future__ import annotations

import importlib.util
import os
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


def _run_and_kill(
    path: Path, delay: float | None, kill_at: int | None = None, sig: str = "KILL"
) -> list[str]:
    """Start the writer, send it SIG`sig` `delay` s after it is ready (or let it send itself the
    signal at HDF5's `kill_at`-th write); return the demos it reported."""
    args = [sys.executable, str(CHILD), str(path)]
    if kill_at is not None:
        args += [str(kill_at), sig]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    if delay is not None:
        time.sleep(delay)
        proc.send_signal(signal.Signals[f"SIG{sig}"])
    out, _ = proc.communicate(timeout=120)  # generous: CI machines can be busy
    # Ctrl-C ends the writer through KeyboardInterrupt (exit 130), never a crash in libhdf5.
    assert proc.returncode == (-signal.SIGKILL if sig == "KILL" else 130)
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


@pytest.mark.parametrize("sigint_at", [1, 3, 8, 21, 34, 55])
def test_ctrl_c_inside_an_hdf5_write_is_held_until_the_append_ends(
    tmp_path: Path, sigint_at: int
) -> None:
    """SIGINT while HDF5 calls back into the journal: the append completes, then the writer
    stops with KeyboardInterrupt; the file keeps every demo."""
    mod = _child_module()
    path = tmp_path / "demos.hdf5"
    reported = set(_run_and_kill(path, delay=0.15))
    reported = _check(path, reported, mod.make_episode)
    reported |= set(_run_and_kill(path, delay=None, kill_at=sigint_at, sig="INT"))
    names = _check(path, reported, mod.make_episode)
    assert len(names) > len(reported) or sigint_at == 1, "the append in flight completes"


def test_random_ctrl_c_always_exits_130_with_a_valid_file(tmp_path: Path) -> None:
    mod = _child_module()
    path = tmp_path / "demos.hdf5"
    rng = np.random.default_rng(1)
    reported: set[str] = set()
    for _ in range(12):
        reported |= set(_run_and_kill(path, delay=float(rng.uniform(0.05, 0.3)), sig="INT"))
        reported = _check(path, reported, mod.make_episode)


def _collect_and_interrupt(path: Path, workers: int, delay: float) -> str:
    """Run `apprentice collect` on lift, send Ctrl-C `delay` s after it creates `path` (to the
    whole process group, as a terminal does); returns stderr after checking the exit."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "apprentice.cli.main",
            "collect",
            "--task",
            "lift",
            "--n",
            "1000",
            "--workers",
            str(workers),
            "--out",
            str(path),
            "--no-progress",
        ],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while not path.exists():
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "collect never created its file"
            time.sleep(0.02)
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "apprentice collect: interrupted; rerun the same command to resume" in err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    return err


@pytest.mark.slow
@pytest.mark.parametrize(("workers", "delays"), [(1, (0.0, 0.3, 0.8, 1.5)), (2, (1.0,))])
def test_ctrl_c_during_collect_exits_130_with_the_hint_and_a_valid_file(
    tmp_path: Path, workers: int, delays: tuple[float, ...]
) -> None:
    for i, delay in enumerate(delays):
        path = tmp_path / f"lift_{i}.hdf5"
        _collect_and_interrupt(path, workers, delay)
        with DemoFile(path) as f:  # opens, rolls back what was in flight, validates
            for name in f.demo_names:
                assert f.read(name).success
        assert not Path(f"{path}.journal").exists()
