"""The DemoSource contract, run over every implementation, and the errors of reading a dataset
that training or `inspect` cannot use (one line, no traceback, no run folder left behind)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest

from apprentice.algos import TrainConfig, train
from apprentice.cli.main import main
from apprentice.data import DemoFile, DemoWriter, Episode, summarize, write_mask
from apprentice.data.isaaclab import IsaacLabSource, write_isaaclab
from apprentice.data.source import DemoSource, open_source, source_format
from apprentice.errors import ApprenticeError
from apprentice.policies import MLPConfig
from conftest import ENV_ARGS, synthetic_episode

EPISODES = [
    synthetic_episode(t, seed, image=True, datagen=True) for seed, t in enumerate((5, 9, 7))
]


def _write_hdf5(path: Path, episodes: list[Episode]) -> Path:
    out = path / "demos.hdf5"
    with DemoWriter(out, env_args=ENV_ARGS) as writer:
        names = [writer.append(ep) for ep in episodes]
    write_mask(out, "train", names[:2])
    write_mask(out, "valid", names[2:])
    return out


def _write_isaaclab(path: Path, episodes: list[Episode]) -> Path:
    out = path / "isaac.hdf5"
    with DemoFile(_write_hdf5(path, episodes)) as store:
        write_isaaclab(store, out)
    return out


WRITERS: dict[str, Callable[[Path, list[Episode]], Path]] = {
    "robomimic": _write_hdf5,
    "isaaclab": _write_isaaclab,
}
"""Per format (as `source_format` names it): write `episodes` (masks train = the first two,
valid = the last) in it under a folder; return the path `open_source` takes."""


@pytest.fixture(params=sorted(WRITERS))
def source_path(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path]:
    return request.param, WRITERS[request.param](tmp_path, EPISODES)


def test_source_describes_the_dataset(source_path: tuple[str, Path]) -> None:
    fmt, path = source_path
    with open_source(path) as src:
        assert isinstance(src, DemoSource)
        assert source_format(src) == fmt
        assert src.path == path
        assert src.env_args == ENV_ARGS
        assert src.demo_names == ["demo_0", "demo_1", "demo_2"]
        assert src.masks == {"train": ["demo_0", "demo_1"], "valid": ["demo_2"]}
        shapes = {"agentview_image": (8, 8, 3), "eef_pos": (3,), "gripper_qpos": (2,)}
        assert src.obs_shapes == shapes
        assert src.obs_keys == sorted(shapes)
        assert src.image_keys == ["agentview_image"]
        assert src.action_dim == 4
        assert src.spec.obs_shapes == shapes and src.spec.action_dim == 4
        assert [src.num_samples(n) for n in src.demo_names] == [5, 9, 7]
        attrs = src.attrs("demo_1")
        assert (attrs["seed"], attrs["success"], attrs["source"]) == (1, True, "oracle")


def test_source_reads_each_episode_as_written(source_path: tuple[str, Path]) -> None:
    with open_source(source_path[1]) as src:
        for name, want in zip(src.demo_names, EPISODES, strict=True):
            np.testing.assert_array_equal(src.read_actions(name), want.actions)
            for key, arr in want.obs.items():
                np.testing.assert_array_equal(src.read_obs(name, key), arr)
            states = src.read_states(name)
            assert states is not None
            np.testing.assert_array_equal(states, want.states)
            info = src.read_datagen_info(name)
            assert info is not None and want.datagen_info is not None
            np.testing.assert_array_equal(info.target_pose, want.datagen_info.target_pose)
            ep = src.read(name, obs_keys=["eef_pos", "agentview_image"], with_images=False)
            assert set(ep.obs) == {"eef_pos"} and set(ep.next_obs) == {"eef_pos"}
            np.testing.assert_array_equal(ep.next_obs["eef_pos"], want.next_obs["eef_pos"])
            np.testing.assert_array_equal(ep.actions, want.actions)
            assert ep.seed == want.seed and ep.success == want.success


def test_source_names_what_it_lacks(source_path: tuple[str, Path]) -> None:
    with open_source(source_path[1]) as src:
        with pytest.raises(ApprenticeError, match=r"no demo 'demo_9'.*demo_0"):
            src.read_actions("demo_9")
        with pytest.raises(ApprenticeError, match=r"no observation key 'nope'.*eef_pos"):
            src.check_obs_keys(["eef_pos", "nope"])
        with pytest.raises(ApprenticeError, match="'nope'"):
            src.read_obs("demo_0", "nope")


def test_open_source_on_what_is_no_dataset(tmp_path: Path) -> None:
    with pytest.raises(ApprenticeError, match="no such file"):
        open_source(tmp_path / "missing.hdf5")
    with pytest.raises(ApprenticeError, match=r"is a folder with no meta/info\.json"):
        open_source(tmp_path)
    text = tmp_path / "notes.hdf5"
    text.write_text("hello")
    with pytest.raises(ApprenticeError, match="not a readable HDF5 file"):
        open_source(text)


# ---- what training refuses, before any run folder exists --------------------------------------


def _state_only(tmp_path: Path) -> Path:
    """A dataset as `label-actions --strip` writes it: actions stored as (T, 0)."""
    path = tmp_path / "states.hdf5"
    with DemoWriter(path, env_args=ENV_ARGS) as writer:
        for ep in EPISODES:
            writer.append(replace(ep, actions=np.zeros((ep.num_samples, 0), np.float32)))
    return path


def _config(dataset: Path, out: Path, **policy: object) -> TrainConfig:
    return TrainConfig(
        dataset=str(dataset),
        out=str(out),
        policy=MLPConfig(hidden_dims=(8,), **policy),  # type: ignore[arg-type]
        epochs=1,
        steps_per_epoch=1,
        batch_size=4,
        progress=False,
        threads=1,
    )


def test_train_on_unknown_obs_key_lists_the_datasets_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write_hdf5(tmp_path, EPISODES)
    run = tmp_path / "run"
    with pytest.raises(ApprenticeError, match=r"no observation key 'nope' \(it has: .*eef_pos"):
        train(_config(path, run, obs_keys=("nope",)))
    assert not run.exists()
    argv = ["train", "--dataset", str(path), "--out", str(run), "--policy", "mlp"]
    assert main([*argv, "--policy-args", "obs_keys=nope", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "no observation key 'nope'" in err and "eef_pos, gripper_qpos" in err
    assert not run.exists()


def test_train_on_a_state_only_file_says_how_to_label_actions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _state_only(tmp_path)
    run = tmp_path / "run"
    with pytest.raises(ApprenticeError, match=r"holds no actions.*apprentice label-actions"):
        train(_config(path, run))
    assert not run.exists()
    argv = ["train", "--dataset", str(path), "--out", str(run), "--policy", "mlp"]
    assert main([*argv, "--epochs", "1", "--eval-every", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"{path}: holds no actions" in err and "apprentice label-actions" in err
    assert not run.exists()


# ---- inspect: Isaac Lab's nested layout and folders -------------------------------------------


def _isaac_lab_file(path: Path) -> Path:
    """A file in Isaac Lab's recorder layout, as Isaac Lab Mimic's annotation writes it: nested
    groups inside each demo."""
    t = 6
    rng = np.random.default_rng(0)
    pose = np.tile(np.eye(4), (t, 1, 1))
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["total"] = t
        data.attrs["env_args"] = json.dumps({"env_name": "Isaac-Lift-Cube-Franka-v0", "type": 2})
        g = data.create_group("demo_0")
        g.attrs["num_samples"] = t
        g.attrs["success"] = True
        g.create_dataset("actions", data=rng.uniform(-1, 1, (t, 7)).astype(np.float32))
        g.create_dataset("obs/joint_pos", data=rng.normal(size=(t, 9)).astype(np.float32))
        dg = g.create_group("obs/datagen_info")
        dg.create_dataset("eef_pose/franka", data=pose)
        dg.create_dataset("target_eef_pose/franka", data=pose + 1)
        dg.create_dataset("object_pose/cube", data=pose * 2)
        dg.create_dataset("subtask_term_signals/grasp", data=np.arange(t) >= t // 2)
        for group in ("initial_state", "states"):
            g.create_dataset(
                f"{group}/articulation/robot/joint_position",
                data=rng.normal(size=(1 if group == "initial_state" else t, 9)),
            )
    return path


def test_inspect_on_an_isaac_lab_file_prints_its_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _isaac_lab_file(tmp_path / "isaac.hdf5")
    text = summarize(path)
    assert '"env_name": "Isaac-Lift-Cube-Franka-v0"' in text
    assert "demos: 1   samples: 6   successful: 1/1" in text
    joint = next(line for line in text.splitlines() if line.startswith("obs/joint_pos"))
    assert "(9,)" in joint and "float32" in joint
    actions = next(line for line in text.splitlines() if line.startswith("actions"))
    assert "(7,)" in actions
    assert "datagen_info" not in text  # Mimic's annotation is no observation
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "obs/joint_pos" in out and "demos: 1   samples: 6" in out
    with open_source(path) as src:
        assert isinstance(src, IsaacLabSource)
        assert src.obs_keys == ["joint_pos"]
        info = src.read_datagen_info("demo_0")
        assert info is not None and info.target_pose.shape == (6, 4, 4)
        assert sorted(info.object_poses) == ["cube"]
        np.testing.assert_array_equal(info.subtask_term_signals["grasp"], [0, 0, 0, 1, 1, 1])
        states = src.read_states("demo_0")
        assert states is not None and states.shape == (6, 9)


def test_inspect_on_a_folder_says_it_is_a_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path}: is a folder with no meta/info.json" in err
    assert err.count("\n") == 1
