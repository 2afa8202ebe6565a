"""Replay from states (exact), from actions (divergence), to video; the oracle reference."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

os.environ.setdefault("MUJOCO_GL", "egl")

from apprentice.cli.main import main
from apprentice.collect.oracle import CollectConfig, collect_demos
from apprentice.collect.replay import ReplayConfig, oracle_path_lengths, replay
from apprentice.data import DemoFile
from apprentice.errors import ApprenticeError


@pytest.fixture(scope="module")
def lift_demos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("replay") / "lift.hdf5"
    collect_demos(CollectConfig(task="lift", n=3, out=str(out), workers=1, progress=False))
    return out


def test_replay_from_states_is_exact(lift_demos: Path) -> None:
    r = replay(ReplayConfig(file=str(lift_demos), demo="1", mode="states"))
    assert r.demo == "demo_1" and r.steps > 20
    assert r.max_state_error == 0.0
    assert r.max_obs_error is not None and r.max_obs_error <= 1e-6
    assert r.eef_error is None


def test_replay_from_actions_reports_divergence(lift_demos: Path) -> None:
    r = replay(ReplayConfig(file=str(lift_demos), demo="demo_2", mode="actions"))
    assert r.eef_error is not None and r.object_error is not None
    assert r.eef_error.shape == (r.steps - 1,) and r.object_error.shape == (r.steps - 1,)
    assert r.eef_error.max() < 1e-6 and r.object_error.max() < 1e-6
    assert r.stored_success is True and r.success_matches is True


def test_replay_from_actions_sees_a_perturbed_action(lift_demos: Path, tmp_path: Path) -> None:
    path = tmp_path / "edited.hdf5"
    path.write_bytes(lift_demos.read_bytes())
    with h5py.File(path, "r+") as f:
        actions = f["data/demo_0/actions"]
        a = actions[()]
        a[5, 0] += 0.5  # one action pushed 2.5 cm sideways
        actions[...] = a
    r = replay(ReplayConfig(file=str(path), demo="0", mode="actions"))
    assert r.eef_error is not None
    assert r.eef_error[:5].max() < 1e-9
    assert r.eef_error[5] > 0.005


def test_replay_video_is_written(lift_demos: Path, tmp_path: Path) -> None:
    import imageio.v2 as imageio

    video = tmp_path / "out.mp4"
    r = replay(ReplayConfig(file=str(lift_demos), demo="0", video=str(video), size=32))
    assert r.video == video and 0 < video.stat().st_size < 200_000
    frames = imageio.mimread(video)
    # Side by side: the states replay (T frames, padded) and the actions replay (T + 1).
    assert len(frames) == r.steps + 1 and frames[0].shape == (32, 64, 3)


def test_unknown_demo_lists_what_exists(lift_demos: Path) -> None:
    with pytest.raises(ApprenticeError, match=r"no demo 'demo_7'; it has 3 demos: demo_0"):
        replay(ReplayConfig(file=str(lift_demos), demo="7"))
    with pytest.raises(ApprenticeError, match="--mode"):
        replay(ReplayConfig(file=str(lift_demos), mode="sideways"))


def test_a_demo_without_states_or_a_malformed_file_errors_clearly(
    lift_demos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "nostates.hdf5"
    path.write_bytes(lift_demos.read_bytes())
    with h5py.File(path, "r+") as f:
        del f["data/demo_0/states"]
    with pytest.raises(ApprenticeError, match="demo_0/states is missing"):
        replay(ReplayConfig(file=str(path), demo="0"))
    bad = tmp_path / "bad.hdf5"
    bad.write_bytes(b"not hdf5")
    assert main(["replay", str(bad), "--demo", "0"]) == 2
    assert "bad.hdf5" in capsys.readouterr().err


def test_replay_cli_prints_the_errors(lift_demos: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(lift_demos), "--demo", "1"]) == 0
    out = capsys.readouterr().out
    assert "max state error" in out and "eef error" in out and "True / True" in out


def test_oracle_path_lengths_reproduce_oracle_demos(lift_demos: Path, tmp_path: Path) -> None:
    lengths, notes = oracle_path_lengths(lift_demos)
    assert notes == {} and np.all(lengths > 0.05)
    with DemoFile(lift_demos) as f:
        eef = f.read_field("demo_0", "obs/eef_pos").astype(np.float64)
        first = int(np.argmax(f.read_field("demo_0", "rewards") > 0))
    path = float(np.linalg.norm(np.diff(eef[: first + 1], axis=0), axis=1).sum())
    assert lengths[0] == pytest.approx(path, rel=1e-5)

    other = tmp_path / "unknown_task.hdf5"
    other.write_bytes(lift_demos.read_bytes())
    with h5py.File(other, "r+") as f:
        f["data"].attrs["env_args"] = '{"env_name": "nope", "env_kwargs": {}}'
    lengths, notes = oracle_path_lengths(other)
    assert np.all(np.isnan(lengths)) and "unknown task 'nope'" in notes["path"]
