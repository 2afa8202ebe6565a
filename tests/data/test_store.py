"""The store: round trips, resumed numbering, masks, validation errors, robomimic files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from apprentice.data import DemoFile, DemoWriter, Episode, split_train_valid, write_mask
from apprentice.errors import ApprenticeError
from conftest import ENV_ARGS

MakeEpisode = Callable[..., Episode]


def _write(path: Path, make_episode: MakeEpisode, n: int = 3, **kw: bool) -> list[Episode]:
    eps = [make_episode(5 + i, seed=i, **kw) for i in range(n)]
    with DemoWriter(path, env_args=ENV_ARGS, overwrite=True) as w:
        for ep in eps:
            w.append(ep, masks=["all"])
    return eps


def test_round_trip_preserves_every_field(tmp_path: Path, make_episode: MakeEpisode) -> None:
    path = tmp_path / "d.hdf5"
    ep = make_episode(9, seed=4, image=True, datagen=True)
    latent = np.linspace(-1, 1, 9 * 4, dtype=np.float32).reshape(9, 4)
    ep = Episode(**{**ep.__dict__, "attrs": {"dagger_round": 2}, "action_dict": {"latent": latent}})
    with DemoWriter(path, env_args=ENV_ARGS) as w:
        assert w.append(ep, masks=["train"]) == "demo_0"
    with DemoFile(path) as f:
        got = f.read("demo_0")
        assert f.env_args == ENV_ARGS
        assert f.masks == {"train": ["demo_0"]}
        assert f.obs_keys == ["agentview_image", "eef_pos", "gripper_qpos"]
        assert f.num_samples("demo_0") == 9
    for k in ep.obs:
        np.testing.assert_array_equal(got.obs[k], ep.obs[k])
        np.testing.assert_array_equal(got.next_obs[k], ep.next_obs[k])
    assert got.obs["agentview_image"].dtype == np.uint8
    for name in ("actions", "rewards", "dones", "states"):
        np.testing.assert_array_equal(getattr(got, name), getattr(ep, name))
    assert list(got.action_dict) == ["latent"]
    np.testing.assert_array_equal(got.action_dict["latent"], latent)
    assert (got.seed, got.success, got.source, got.attrs) == (4, ep.success, ep.source, ep.attrs)
    assert got.datagen_info is not None and ep.datagen_info is not None
    np.testing.assert_array_equal(got.datagen_info.target_pose, ep.datagen_info.target_pose)
    np.testing.assert_array_equal(
        got.datagen_info.object_poses["cube"], ep.datagen_info.object_poses["cube"]
    )
    np.testing.assert_array_equal(
        got.datagen_info.subtask_term_signals["grasp"],
        ep.datagen_info.subtask_term_signals["grasp"],
    )
    with h5py.File(path, "r") as h:
        assert h["data"].attrs["total"] == 9
        assert json.loads(h["data"].attrs["env_args"]) == ENV_ARGS
        assert h["mask/train"].dtype.kind == "S"


def test_read_subset_and_without_images(tmp_path: Path, make_episode: MakeEpisode) -> None:
    path = tmp_path / "d.hdf5"
    _write(path, make_episode, image=True)
    with DemoFile(path) as f:
        assert set(f.read("demo_1", obs_keys=["eef_pos"]).obs) == {"eef_pos"}
        assert "agentview_image" not in f.read("demo_1", with_images=False).obs
        with pytest.raises(ApprenticeError, match=r"'nope'.*eef_pos"):
            f.read("demo_1", obs_keys=["nope"])
        with pytest.raises(ApprenticeError, match="no demo 'demo_9'"):
            f.read("demo_9")


def test_resume_continues_numbering_and_total(tmp_path: Path, make_episode: MakeEpisode) -> None:
    path = tmp_path / "d.hdf5"
    _write(path, make_episode, n=11)
    with DemoWriter(path, env_args=ENV_ARGS) as w:
        assert w.append(make_episode(4, seed=99), masks=["all"]) == "demo_11"
    with DemoFile(path) as f:
        # numeric order, not string order (demo_10 after demo_9)
        assert f.demo_names == [f"demo_{i}" for i in range(12)]
        assert f.masks["all"] == f.demo_names
        assert sum(f.num_samples(n) for n in f.demo_names) == sum(range(5, 16)) + 4


def test_env_args_mismatch_and_overwrite(tmp_path: Path, make_episode: MakeEpisode) -> None:
    path = tmp_path / "d.hdf5"
    _write(path, make_episode)
    with pytest.raises(ApprenticeError, match="env_args"):
        DemoWriter(path, env_args={"env_name": "Stack"})
    with DemoWriter(path, env_args={"env_name": "Stack"}, overwrite=True) as w:
        assert w.append(make_episode(3, seed=0)) == "demo_0"
    with DemoFile(path) as f:
        assert f.demo_names == ["demo_0"] and f.env_args == {"env_name": "Stack"}


def test_second_writer_is_refused(tmp_path: Path, make_episode: MakeEpisode) -> None:
    path = tmp_path / "d.hdf5"
    with DemoWriter(path, env_args=ENV_ARGS) as w:
        w.append(make_episode(3, seed=0))
        with pytest.raises(ApprenticeError, match="another process is writing"):
            DemoWriter(path, env_args=ENV_ARGS)
    assert not Path(f"{path}.journal").exists()


def test_failed_append_rolls_back(tmp_path: Path, make_episode: MakeEpisode) -> None:
    path = tmp_path / "d.hdf5"
    bad = make_episode(3, seed=1)
    bad = Episode(**{**bad.__dict__, "attrs": {"source": "x"}})
    with DemoWriter(path, env_args=ENV_ARGS) as w:
        w.append(make_episode(3, seed=0))
        with pytest.raises(ApprenticeError, match="reserved"):
            w.append(bad)
    with DemoFile(path) as f:
        assert f.demo_names == ["demo_0"]


def test_masks_and_split(tmp_path: Path, make_episode: MakeEpisode) -> None:
    path = tmp_path / "d.hdf5"
    _write(path, make_episode, n=10)
    train, valid = split_train_valid(path, valid_fraction=0.2, seed=3)
    assert len(valid) == 2 and sorted(train + valid, key=lambda n: int(n[5:])) == [
        f"demo_{i}" for i in range(10)
    ]
    assert split_train_valid(path, valid_fraction=0.2, seed=3) == (train, valid)
    write_mask(path, "good", ["demo_3", "demo_1"])
    with DemoFile(path) as f:
        assert f.masks["train"] == train and f.masks["valid"] == valid
        assert f.masks["good"] == ["demo_1", "demo_3"]
    with pytest.raises(ApprenticeError, match="demo_42"):
        write_mask(path, "bad", ["demo_42"])


def test_reads_a_robomimic_file(robomimic_file: Path) -> None:
    with DemoFile(robomimic_file) as f:
        assert f.demo_names == ["demo_0", "demo_1", "demo_2"]
        assert f.masks == {"train": ["demo_0", "demo_2"], "valid": ["demo_1"]}
        assert f.env_args["env_name"] == "Lift"
        assert f.image_keys == ["agentview_image"]
        ep = f.read("demo_1")
    assert ep.seed is None and ep.source == "unknown" and ep.states.shape == (7, 0)
    assert ep.attrs["model_file"].startswith("<mujoco")
    assert ep.obs["object"].shape == (7, 10)


def _corrupt(path: Path, edit: Callable[[h5py.File], None]) -> None:
    with h5py.File(path, "r+") as f:
        edit(f)


def _set_nan(f: h5py.File) -> None:
    f["data/demo_1/actions"][2, 0] = np.nan


def _replace(f: h5py.File, key: str, value: np.ndarray) -> None:
    del f[key]
    f[key] = value


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda f: f.__delitem__("data"), r"data: missing group"),
        (lambda f: f.__delitem__("data/demo_2/actions"), r"data/demo_2/actions: missing"),
        (_set_nan, r"data/demo_1/actions: NaN or inf at step 2"),
        (
            lambda f: _replace(f, "data/demo_1/obs/object", np.zeros((3, 10))),
            r"data/demo_1/obs/object: has shape \(3, 10\), actions has 7 steps",
        ),
        (
            lambda f: _replace(f, "data/demo_2/obs/object", np.zeros((4, 9))),
            r"data/demo_2/obs/object: per-step shape \(9,\), other demos have \(10,\)",
        ),
        (
            lambda f: _replace(f, "data/demo_1/actions", np.zeros((7, 3))),
            r"data/demo_1/actions: has 3 dims, demo_0 has 7",
        ),
        (
            lambda f: f.create_dataset("data/demo_1/action_dict/latent", data=np.zeros((6, 8))),
            r"data/demo_1/action_dict/latent: has shape \(6, 8\), actions has 7 steps",
        ),
        (lambda f: f["data"].attrs.__setitem__("total", 99), r"data attr total"),
        (
            lambda f: _replace(f, "mask/valid", np.array([b"demo_7"])),
            r"mask/valid: lists demos not in data",
        ),
    ],
)
def test_validation_names_path_demo_and_field(
    robomimic_file: Path, edit: Callable[[h5py.File], None], message: str
) -> None:
    _corrupt(robomimic_file, edit)
    with pytest.raises(ApprenticeError, match=rf"{robomimic_file}: {message}"):
        DemoFile(robomimic_file)


def test_missing_and_non_hdf5_files(tmp_path: Path) -> None:
    with pytest.raises(ApprenticeError, match="no such file"):
        DemoFile(tmp_path / "absent.hdf5")
    junk = tmp_path / "junk.hdf5"
    junk.write_bytes(b"not hdf5 at all" * 100)
    with pytest.raises(ApprenticeError, match="not a readable HDF5 file"):
        DemoFile(junk)
    with pytest.raises(ApprenticeError, match="not a readable HDF5 file"):
        DemoWriter(junk, env_args={})
