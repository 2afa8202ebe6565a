"""The oracle labelling in shadow, and a small run of the DAgger benchmark script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import cast

import numpy as np
import pytest

from apprentice.envs.base import Task, make_task
from apprentice.interactive.experts import OracleExpert

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def test_oracle_re_derives_its_grasp_phase_from_the_state() -> None:
    """A learner that closed the hand on the cube while the oracle was still approaching:
    the label keeps the hand closed instead of the approach's 'open'."""
    task = make_task("lift")
    obs, _ = task.reset(seed=4)
    driver = OracleExpert(task, np.random.default_rng(0))
    driver.reset()
    for _ in range(task.horizon):
        if task.subtask_signals()["grasp"]:
            break
        obs = task.step(driver.label(obs))[0]
    assert task.subtask_signals()["grasp"], "the oracle did not grasp within the horizon"
    shadow = OracleExpert(task, np.random.default_rng(1))
    shadow.reset()  # phase "reach": alone, the oracle would open the hand to approach
    assert shadow.oracle.phase == "reach"  # type: ignore[attr-defined]
    label = shadow.label(obs)
    assert label[-1] == 1.0
    assert shadow.oracle.phase == "close"  # type: ignore[attr-defined]


def test_bench_dagger_small_run_writes_json_table_and_curve(tmp_path: Path) -> None:
    r = subprocess.run(
        [
            sys.executable,
            str(BENCH / "bench_dagger.py"),
            *("--tasks", "lift", "--methods", "bc", "dagger", "--seeds", "0", "--rounds", "1"),
            *("--labels-per-round", "20", "--epochs", "1", "--steps-per-epoch", "3"),
            *("--episodes", "2", "--policy-args", "hidden_dims=[8]"),
            *("--work", str(tmp_path / "runs"), "--out", str(tmp_path)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "| 1 |" in r.stdout
    result = json.loads((tmp_path / "lift.json").read_text())
    bc, dagger = result["runs"]["bc"][0]["history"], result["runs"]["dagger"][0]["history"]
    # Equal label budgets: both methods have used the same labels after every round.
    assert [h["labels"] for h in bc] == [h["labels"] for h in dagger]
    assert bc[1]["labels"] - bc[0]["labels"] == 20
    assert (tmp_path / "lift.png").stat().st_size > 0


class _FakeOracle:
    hover = 0.07

    def __init__(self) -> None:
        self.phase = "reach"
        self.picked: list[str] = []

    def goto(self, phase: str) -> None:
        self.phase = phase

    def pick(self, part_pos: np.ndarray, part_yaw: float, period: float) -> None:
        self.picked.append(self.phase)


class _FakeTask:
    def __init__(self, eef_xyz: tuple[float, float, float]) -> None:
        from apprentice.envs.mujoco_task import topdown_rotation

        self.pose = np.eye(4)
        self.pose[:3, :3] = topdown_rotation(0.0)
        self.pose[:3, 3] = eef_xyz

    def eef_pose(self) -> np.ndarray:
        return self.pose


@pytest.mark.parametrize(
    ("eef", "phase"),
    [
        ((0.008, 0.0, 0.03), "descend"),  # low, 8 mm off centre: the demos descend here
        ((0.008, 0.0, 0.20), "reach"),  # above the hover height: still approaching
        ((0.030, 0.0, 0.03), "reach"),  # low but 3 cm off: the oracle would re-centre
    ],
)
def test_oracle_approach_phase_follows_the_state(
    eef: tuple[float, float, float], phase: str
) -> None:
    from apprentice.interactive.experts import _DescendWhenLow

    oracle = _FakeOracle()
    wrapped = _DescendWhenLow(oracle, oracle.pick, cast(Task, _FakeTask(eef)))
    wrapped(np.array([0.0, 0.0, 0.0225]), 0.0, np.pi / 2)
    assert oracle.picked == [phase]
