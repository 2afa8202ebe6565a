"""Isaac Lab's HDF5 demo files: read as a DemoSource, written from any DemoSource.

The files here are built as Isaac Lab's `HDF5DatasetFileHandler` writes them: nested dicts of
per-step arrays become nested groups of gzip datasets, demo attrs num_samples/seed/success,
data attrs total and env_args (type 2), and the file attr format_version (1: quaternions
x, y, z, w) or none (legacy: w, x, y, z).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from apprentice.data import DemoFile, DemoWriter, Episode, write_mask
from apprentice.data.isaaclab import (
    IsaacLabSource,
    is_isaaclab,
    obs_key_names,
    quat_order,
    write_isaaclab,
)
from apprentice.data.source import DemoSource, open_source
from apprentice.errors import ApprenticeError
from conftest import ENV_ARGS, synthetic_episode

S = float(np.sqrt(0.5))
QUAT_RX90_WXYZ = np.array([S, S, 0.0, 0.0])
"""90 degrees about x, (w, x, y, z): turns y into z."""
LENGTHS = (6, 4)
BUILTIN_ENV_ARGS = {"env_name": "lift", "env_type": "apprentice", "env_kwargs": {}}
"""One of apprentice's own MuJoCo tasks: its observations hold quaternions (w, x, y, z). (The
shared ENV_ARGS name robosuite's Lift, env_type 1: (x, y, z, w).)"""


def _rotate(q_wxyz: np.ndarray, v: np.ndarray) -> np.ndarray:
    """v rotated by the unit quaternion (w, x, y, z)."""
    w, u = q_wxyz[0], q_wxyz[1:]
    return v + 2 * w * np.cross(u, v) + 2 * np.cross(u, np.cross(u, v))


def _in_file_order(q_wxyz: np.ndarray, xyzw: bool) -> np.ndarray:
    return np.concatenate([q_wxyz[..., 1:], q_wxyz[..., :1]], axis=-1) if xyzw else q_wxyz


def _isaaclab_demo(t: int, seed: int, *, xyzw: bool) -> dict[str, Any]:
    """One recorded episode as Isaac Lab's EpisodeData holds it (apprentice's quaternion order
    turned into the file's)."""
    rng = np.random.default_rng(seed)
    quat = np.tile(QUAT_RX90_WXYZ, (t, 1)).astype(np.float32)

    def pose(rows: int) -> np.ndarray:  # root_pose: pos 3 + quat 4
        pos = rng.normal(size=(rows, 3))
        return np.concatenate([pos, _in_file_order(quat[:rows], xyzw)], axis=1).astype(np.float32)

    def scene(rows: int) -> dict[str, Any]:
        return {
            "articulation": {
                "robot": {
                    "root_pose": pose(rows),
                    "root_velocity": rng.normal(size=(rows, 6)).astype(np.float32),
                    "joint_position": rng.normal(size=(rows, 9)).astype(np.float32),
                    "joint_velocity": rng.normal(size=(rows, 9)).astype(np.float32),
                }
            },
            "rigid_object": {
                name: {
                    "root_pose": pose(rows),
                    "root_velocity": rng.normal(size=(rows, 6)).astype(np.float32),
                }
                for name in ("cube_2", "cube_1")
            },
        }

    eye = np.tile(np.eye(4, dtype=np.float32), (t, 1, 1))
    return {
        "actions": rng.uniform(-1, 1, (t, 7)).astype(np.float32),
        "processed_actions": rng.uniform(-1, 1, (t, 8)).astype(np.float32),
        "obs": {
            "eef_pos": rng.normal(size=(t, 3)).astype(np.float32),
            "eef_quat": _in_file_order(quat, xyzw),
            "joint_pos": rng.normal(size=(t, 9)).astype(np.float32),
            "table_cam": rng.integers(0, 255, (t, 8, 8, 3), dtype=np.uint8),
            "critic": {"joint_pos": rng.normal(size=(t, 9)).astype(np.float32)},
            "subtask_terms": {"grasp_1": np.arange(t) >= t // 2},
            "datagen_info": {
                "eef_pose": {"franka": eye + seed},
                "target_eef_pose": {"franka": eye * 2 + seed},
                "object_pose": {"cube_1": eye * 3, "cube_2": eye * 4},
                "subtask_term_signals": {
                    "grasp_1": np.arange(t) >= t // 2,
                    "stack_1": (np.arange(t) == t - 1)[:, None],  # (T, 1), as some envs give
                },
            },
        },
        "initial_state": scene(1),
        "states": scene(t),
    }


def _write_like_isaaclab(
    path: Path, demos: list[dict[str, Any]], *, format_version: int | None
) -> Path:
    """Write `demos` as HDF5DatasetFileHandler.create + write_episode does."""

    def put(group: h5py.Group, key: str, value: Any) -> None:
        if isinstance(value, dict):
            sub = group.create_group(key)
            for k, v in value.items():
                put(sub, k, v)
        else:
            group.create_dataset(key, data=value, compression="gzip")

    with h5py.File(path, "w") as f:
        if format_version is not None:
            f.attrs["format_version"] = format_version
        data = f.create_group("data")
        data.attrs["total"] = 0
        data.attrs["env_args"] = json.dumps({"env_name": "Isaac-Stack-Cube-Franka-v0", "type": 2})
        for i, demo in enumerate(demos):
            g = data.create_group(f"demo_{i}")
            g.attrs["num_samples"] = len(demo["actions"])
            g.attrs["seed"] = 10 + i
            g.attrs["success"] = np.bool_(i == 0)
            for key, value in demo.items():
                put(g, key, value)
            data.attrs["total"] += g.attrs["num_samples"]
    return path


def _isaaclab_file(tmp_path: Path, format_version: int | None = 1) -> tuple[Path, list[Any]]:
    xyzw = format_version == 1
    demos = [_isaaclab_demo(t, seed, xyzw=xyzw) for seed, t in enumerate(LENGTHS)]
    path = _write_like_isaaclab(
        tmp_path / f"isaac_v{format_version}.hdf5", demos, format_version=format_version
    )
    return path, demos


def _apprentice_file(tmp_path: Path) -> Path:
    """A store as apprentice writes it, with camera images, datagen_info and masks."""
    path = tmp_path / "apprentice.hdf5"
    episodes = [synthetic_episode(t, s, image=True, datagen=True) for s, t in enumerate((5, 9, 7))]
    with DemoWriter(path, env_args=ENV_ARGS) as writer:
        names = [writer.append(ep) for ep in episodes]
    write_mask(path, "train", names[:2])
    write_mask(path, "valid", names[2:])
    return path


def _store_with_quat(path: Path, env_args: dict[str, Any], key: str, quat: np.ndarray) -> Path:
    """A one-demo store recorded on the task of `env_args` whose obs `key` is `quat` (T, 4)."""
    ep = synthetic_episode(len(quat), 1)
    ep = replace(ep, obs={**ep.obs, key: quat}, next_obs={**ep.next_obs, key: quat[::-1]})
    with DemoWriter(path, env_args=env_args) as writer:
        writer.append(ep)
    return path


def _leaves(group: h5py.Group) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    group.visititems(
        lambda name, item: out.update({name: item[()]}) if isinstance(item, h5py.Dataset) else None
    )
    return out


# ---- reading what Isaac Lab writes ------------------------------------------------------------


@pytest.mark.parametrize("format_version", [1, None])
def test_reads_a_file_as_isaac_lab_writes_it(tmp_path: Path, format_version: int | None) -> None:
    path, demos = _isaaclab_file(tmp_path, format_version)
    with IsaacLabSource(path) as src:
        assert isinstance(src, DemoSource)
        assert src.demo_names == ["demo_0", "demo_1"]
        assert [src.num_samples(n) for n in src.demo_names] == list(LENGTHS)
        assert src.env_args == {
            "env_name": "Isaac-Stack-Cube-Franka-v0",
            "env_type": 2,
            "env_kwargs": {},
        }
        assert src.isaaclab_env_args == {"env_name": "Isaac-Stack-Cube-Franka-v0", "type": 2}
        # A term's own name where unique; nested and ambiguous ones by path.
        assert src.obs_paths == {
            "critic__joint_pos": "critic/joint_pos",
            "eef_pos": "eef_pos",
            "eef_quat": "eef_quat",
            "grasp_1": "subtask_terms/grasp_1",
            "joint_pos": "joint_pos",
            "table_cam": "table_cam",
        }
        assert src.obs_shapes["table_cam"] == (8, 8, 3) and src.image_keys == ["table_cam"]
        assert src.action_dim == 7 and src.masks == {}
        assert src.datagen_eef == "franka"
        assert src.unmapped == ["processed_actions"]
        for name, demo in zip(src.demo_names, demos, strict=True):
            i = int(name[-1])
            assert src.attrs(name) == {"num_samples": LENGTHS[i], "seed": 10 + i, "success": i == 0}
            np.testing.assert_array_equal(src.read_actions(name), demo["actions"])
            np.testing.assert_array_equal(src.read_obs(name, "eef_pos"), demo["obs"]["eef_pos"])
            np.testing.assert_array_equal(
                src.read_obs(name, "critic__joint_pos"), demo["obs"]["critic"]["joint_pos"]
            )
            np.testing.assert_allclose(
                src.read_obs(name, "eef_quat"), np.tile(QUAT_RX90_WXYZ, (LENGTHS[i], 1)), atol=1e-7
            )
            ep = src.read(name, with_images=False)
            assert "table_cam" not in ep.obs and ep.next_obs == {}
            assert (ep.seed, ep.success, ep.source) == (10 + i, i == 0, "unknown")
            np.testing.assert_array_equal(ep.dones, np.arange(LENGTHS[i]) == LENGTHS[i] - 1)


def test_states_are_the_scene_before_each_action_in_layout_order(tmp_path: Path) -> None:
    path, demos = _isaaclab_file(tmp_path, format_version=None)
    with IsaacLabSource(path) as src:
        assert [(f.path, f.start, f.stop) for f in src.state_layout] == [
            ("articulation/robot/root_pose", 0, 7),
            ("articulation/robot/root_velocity", 7, 13),
            ("articulation/robot/joint_position", 13, 22),
            ("articulation/robot/joint_velocity", 22, 31),
            ("rigid_object/cube_1/root_pose", 31, 38),
            ("rigid_object/cube_1/root_velocity", 38, 44),
            ("rigid_object/cube_2/root_pose", 44, 51),
            ("rigid_object/cube_2/root_velocity", 51, 57),
        ]
        demo = demos[0]
        states = src.read_states("demo_0")
        assert states is not None and states.shape == (LENGTHS[0], 57)
        # Row 0 is the scene after reset, row t the scene after step t - 1.
        robot = demo["initial_state"]["articulation"]["robot"]
        np.testing.assert_array_equal(states[0, 13:22], robot["joint_position"][0])
        after = demo["states"]["rigid_object"]["cube_2"]["root_velocity"]
        np.testing.assert_array_equal(states[1:, 51:57], after[:-1])
        initial, post = src.read_scene_states("demo_0")
        assert initial is not None and post is not None and post.shape == (LENGTHS[0], 57)


@pytest.mark.parametrize("format_version", [1, None])
def test_datagen_info_maps_mimics_annotation(tmp_path: Path, format_version: int | None) -> None:
    path, demos = _isaaclab_file(tmp_path, format_version)
    with IsaacLabSource(path) as src:
        for name, demo in zip(src.demo_names, demos, strict=True):
            dg = demo["obs"]["datagen_info"]
            info = src.read_datagen_info(name)
            assert info is not None
            np.testing.assert_array_equal(info.eef_pose, dg["eef_pose"]["franka"])
            np.testing.assert_array_equal(info.target_pose, dg["target_eef_pose"]["franka"])
            assert sorted(info.object_poses) == ["cube_1", "cube_2"]
            np.testing.assert_array_equal(info.object_poses["cube_2"], dg["object_pose"]["cube_2"])
            signal = info.subtask_term_signals["grasp_1"]
            assert signal.dtype == np.int8
            np.testing.assert_array_equal(signal, dg["subtask_term_signals"]["grasp_1"])
            stack = info.subtask_term_signals["stack_1"]
            np.testing.assert_array_equal(stack, dg["subtask_term_signals"]["stack_1"][:, 0])
            # Mimic's Franka environments take the gripper from the last action dim.
            np.testing.assert_array_equal(info.gripper_action, demo["actions"][:, -1:])
            # The shapes `apprentice generate` checks.
            t = src.num_samples(name)
            assert info.eef_pose.shape == (t, 4, 4) and info.gripper_action.shape == (t, 1)
            assert signal.shape == stack.shape == (t,)


@pytest.mark.parametrize("format_version", [1, None])
def test_quaternions_read_as_w_x_y_z_whatever_the_file_stores(
    tmp_path: Path, format_version: int | None
) -> None:
    path, demos = _isaaclab_file(tmp_path, format_version)
    stored = demos[0]["obs"]["eef_quat"][0]
    assert stored.tolist() == pytest.approx([S, 0, 0, S] if format_version else [S, S, 0, 0])
    with IsaacLabSource(path) as src:
        quat = src.read_obs("demo_0", "eef_quat")[0]
        states = src.read_states("demo_0")
        assert states is not None
        root_quats = [
            states[0, f.start + 3 : f.stop] for f in src.state_layout if f.stop - f.start == 7
        ]
        notes = src.notes
    for q in [quat, *root_quats]:
        np.testing.assert_allclose(q, QUAT_RX90_WXYZ, atol=1e-7)
        np.testing.assert_allclose(_rotate(q, np.array([0.0, 1, 0])), [0, 0, 1], atol=1e-6)
    assert len(notes) == 1 and "obs/eef_quat" in notes[0]
    assert "states/articulation/robot/root_pose" in notes[0]
    if format_version:
        assert notes[0].startswith("quaternions: read as (w, x, y, z) from format_version 1's")
    else:
        assert notes[0].startswith("quaternions: none reordered in obs/eef_quat")


# ---- writing ----------------------------------------------------------------------------------


def test_apprentice_store_round_trips_through_isaac_lab(tmp_path: Path) -> None:
    src_path = _apprentice_file(tmp_path)
    dst = tmp_path / "isaac.hdf5"
    with DemoFile(src_path) as df:
        notes = write_isaaclab(df, dst)
    assert (notes.demos, notes.frames) == (3, 21)
    assert any(d.startswith("initial_state, states:") for d in notes.dropped)
    assert any(n.startswith("datagen_info:") for n in notes.info)
    assert is_isaaclab(dst)
    with DemoFile(src_path) as want, IsaacLabSource(dst) as got:
        assert got.env_args == want.env_args == ENV_ARGS
        assert got.isaaclab_env_args["type"] == 2
        assert got.demo_names == want.demo_names and got.masks == want.masks
        assert got.obs_shapes == want.obs_shapes and got.image_keys == ["agentview_image"]
        for name in want.demo_names:
            a, b = want.read(name), got.read(name)
            for key in a.obs:
                np.testing.assert_array_equal(b.obs[key], a.obs[key])
                np.testing.assert_array_equal(b.next_obs[key], a.next_obs[key])
            for field in ("actions", "rewards", "dones", "states"):
                np.testing.assert_array_equal(getattr(b, field), getattr(a, field))
            assert (b.seed, b.success, b.source) == (a.seed, a.success, a.source)
            assert a.datagen_info is not None and b.datagen_info is not None
            for field in ("eef_pose", "target_pose", "gripper_action"):
                np.testing.assert_array_equal(
                    getattr(b.datagen_info, field), getattr(a.datagen_info, field)
                )
            np.testing.assert_array_equal(
                b.datagen_info.object_poses["cube"], a.datagen_info.object_poses["cube"]
            )
            np.testing.assert_array_equal(
                b.datagen_info.subtask_term_signals["grasp"],
                a.datagen_info.subtask_term_signals["grasp"],
            )
    with h5py.File(dst, "r") as f:  # Mimic's layout, as its DataGenInfoPool indexes it
        dg = f["data/demo_0/obs/datagen_info"]
        assert {"eef_pose/eef", "target_eef_pose/eef", "object_pose/cube"} <= set(_leaves(dg))
        assert dg["subtask_term_signals/grasp"].dtype == np.bool_


def test_robomimic_file_round_trips_through_isaac_lab(tmp_path: Path, robomimic_file: Path) -> None:
    dst = tmp_path / "isaac.hdf5"
    with DemoFile(robomimic_file) as df:
        write_isaaclab(df, dst, format_version=0)
    with DemoFile(robomimic_file) as want, IsaacLabSource(dst) as got:
        assert got.format_version == 0 and got.env_args == want.env_args
        assert got.masks == {"train": ["demo_0", "demo_2"], "valid": ["demo_1"]}
        for name in want.demo_names:
            a, b = want.read(name), got.read(name)
            np.testing.assert_array_equal(b.actions, a.actions)
            np.testing.assert_array_equal(b.obs["agentview_image"], a.obs["agentview_image"])
            np.testing.assert_array_equal(b.next_obs["object"], a.next_obs["object"])
            np.testing.assert_array_equal(b.states, a.states)  # (T, 0) in demo_1


def test_quaternions_are_written_in_the_files_order(tmp_path: Path) -> None:
    # A built-in task's observations hold (w, x, y, z): format_version 1 reorders them.
    quat = np.tile(QUAT_RX90_WXYZ, (5, 1)).astype(np.float32)
    src_path = _store_with_quat(tmp_path / "quat.hdf5", BUILTIN_ENV_ARGS, "eef_quat", quat)
    for version, stored in ((1, [S, 0, 0, S]), (0, [S, S, 0, 0])):
        dst = tmp_path / f"v{version}.hdf5"
        with DemoFile(src_path) as df:
            notes = write_isaaclab(df, dst, format_version=version)
        with h5py.File(dst, "r") as f:
            np.testing.assert_allclose(f["data/demo_0/obs/eef_quat"][0], stored, atol=1e-7)
            eef_pos = synthetic_episode(5, 1).obs["eef_pos"]
            np.testing.assert_array_equal(f["data/demo_0/obs/eef_pos"][()], eef_pos)
        said = [n for n in notes.info if n.startswith("quaternions: obs/eef_quat written")]
        assert said == [
            "quaternions: obs/eef_quat written (x, y, z, w) from (w, x, y, z), as format_version 1 "
            "says"
            if version
            else "quaternions: obs/eef_quat written as held, (w, x, y, z), already format_version "
            "0's order"
        ]
        with IsaacLabSource(dst) as got:
            assert got.obs_quat_order == "wxyz"
            np.testing.assert_allclose(got.read_obs("demo_0", "eef_quat"), quat, atol=1e-7)


@pytest.mark.parametrize("format_version", [1, 0])
def test_robosuite_quaternions_round_trip_without_a_second_reorder(
    tmp_path: Path, format_version: int
) -> None:
    # robosuite's observations (env_type 1) hold (x, y, z, w), format_version 1's own order:
    # written as given, and read back as given. format_version 0 reorders on write and back
    # on read.
    quat_xyzw = np.tile(_in_file_order(QUAT_RX90_WXYZ, xyzw=True), (5, 1)).astype(np.float32)
    assert ENV_ARGS["env_type"] == 1
    src_path = _store_with_quat(tmp_path / "robosuite.hdf5", ENV_ARGS, "robot0_eef_quat", quat_xyzw)
    dst = tmp_path / "isaac.hdf5"
    with DemoFile(src_path) as df:
        notes = write_isaaclab(df, dst, format_version=format_version)
    with h5py.File(dst, "r") as f:
        stored = f["data/demo_0/obs/robot0_eef_quat"][()]
    if format_version == 1:
        np.testing.assert_array_equal(stored, quat_xyzw)
        assert (
            "quaternions: obs/robot0_eef_quat written as held, (x, y, z, w), already "
            "format_version 1's order" in notes.info
        )
    else:
        np.testing.assert_allclose(stored, np.tile(QUAT_RX90_WXYZ, (5, 1)), atol=1e-7)
        assert (
            "quaternions: obs/robot0_eef_quat written (w, x, y, z) from (x, y, z, w), as "
            "format_version 0 says" in notes.info
        )
    with DemoFile(src_path) as want, IsaacLabSource(dst) as got:
        assert got.env_args == want.env_args == ENV_ARGS
        assert got.obs_quat_order == "xyzw"
        a, b = want.read("demo_0"), got.read("demo_0")
        assert sorted(b.obs) == sorted(a.obs) and sorted(b.next_obs) == sorted(a.next_obs)
        for key in a.obs:
            np.testing.assert_array_equal(b.obs[key], a.obs[key])
            np.testing.assert_array_equal(b.next_obs[key], a.next_obs[key])
        assert got.notes == [
            "quaternions: none reordered in obs/robot0_eef_quat: format_version 1 stores them "
            "(x, y, z, w), the order apprentice reads them in"
            if format_version
            else "quaternions: read as (x, y, z, w) from format_version 0's (w, x, y, z) in "
            "obs/robot0_eef_quat"
        ]
        # Written again from the Isaac Lab file, the quaternions stay as robosuite gave them.
        again = tmp_path / "again.hdf5"
        write_isaaclab(got, again)
    with h5py.File(again, "r") as f:
        np.testing.assert_array_equal(f["data/demo_0/obs/robot0_eef_quat"][()], quat_xyzw)


@pytest.mark.parametrize("source_version", [1, None])
def test_isaac_lab_file_rewritten_keeps_its_layout(
    tmp_path: Path, source_version: int | None
) -> None:
    path, _ = _isaaclab_file(tmp_path, source_version)
    dst = tmp_path / "again.hdf5"
    with IsaacLabSource(path) as src:
        notes = write_isaaclab(src, dst)
    assert notes.dropped == ["processed_actions: no DemoSource field carries it"]
    # A legacy file becomes format_version 1: its root_pose quaternions are reordered, as
    # Isaac Lab's own convert_dataset_to_xyzw does.
    (tmp_path / "v1").mkdir()
    want_path = path if source_version == 1 else _isaaclab_file(tmp_path / "v1", 1)[0]
    with h5py.File(want_path, "r") as w, h5py.File(dst, "r") as g:
        assert g.attrs["format_version"] == 1
        assert json.loads(g["data"].attrs["env_args"]) == json.loads(w["data"].attrs["env_args"])
        for name in ("demo_0", "demo_1"):
            want = _leaves(w[f"data/{name}"])
            got = _leaves(g[f"data/{name}"])
            del want["processed_actions"]
            assert sorted(got) == sorted(want)
            for key, arr in want.items():
                assert got[key].dtype == arr.dtype, key
                # A (T, 1) subtask signal is written (T,), as apprentice holds it.
                np.testing.assert_allclose(got[key].reshape(arr.shape), arr, atol=1e-7, err_msg=key)


# ---- telling formats apart --------------------------------------------------------------------


def test_is_isaaclab_tells_isaac_lab_files_from_others(
    tmp_path: Path, robomimic_file: Path
) -> None:
    for version in (1, None):
        assert is_isaaclab(_isaaclab_file(tmp_path, version)[0])
    apprentice = _apprentice_file(tmp_path)
    assert not is_isaaclab(apprentice) and not is_isaaclab(robomimic_file)
    legacy = tmp_path / "legacy_written.hdf5"
    with DemoFile(apprentice) as df:
        write_isaaclab(df, legacy, format_version=0)
    assert is_isaaclab(legacy)
    text = tmp_path / "notes.hdf5"
    text.write_text("hello")
    assert not is_isaaclab(text) and not is_isaaclab(tmp_path / "missing.hdf5")
    with open_source(legacy) as src:
        assert isinstance(src, IsaacLabSource)
    with open_source(apprentice) as src:
        assert isinstance(src, DemoFile)


def test_quat_order_follows_the_task_in_env_args() -> None:
    assert quat_order(ENV_ARGS) == quat_order({"env_name": "Lift", "type": 1}) == "xyzw"
    assert quat_order(BUILTIN_ENV_ARGS) == quat_order({"type": 2}) == quat_order({}) == "wxyz"


def test_obs_key_names() -> None:
    assert obs_key_names(["a/x", "b/x", "c/y", "z"]) == {
        "a/x": "a__x",
        "b/x": "b__x",
        "c/y": "y",
        "z": "z",
    }
    assert obs_key_names([""]) == {"": "policy"}
    with pytest.raises(ApprenticeError, match="map onto the key 'a__x'"):
        obs_key_names(["a/x", "a__x", "b/x"])


# ---- bad input --------------------------------------------------------------------------------


def test_a_demo_without_actions_is_named(tmp_path: Path) -> None:
    path, _ = _isaaclab_file(tmp_path)
    with h5py.File(path, "r+") as f:
        del f["data/demo_1/actions"]
    with pytest.raises(ApprenticeError, match=rf"^{path}: data/demo_1/actions: missing"):
        IsaacLabSource(path)


@pytest.mark.parametrize(
    ("field", "match"),
    [
        ("obs/critic/joint_pos", r"data/demo_0/obs/critic/joint_pos: has shape \(5, 9\)"),
        ("states/rigid_object/cube_1/root_pose", r"data/demo_0/states/rigid_object/cube_1"),
        ("obs/datagen_info/eef_pose/franka", r"data/demo_0/obs/datagen_info/eef_pose/franka"),
    ],
)
def test_an_array_of_the_wrong_length_is_named(tmp_path: Path, field: str, match: str) -> None:
    path, _ = _isaaclab_file(tmp_path)
    with h5py.File(path, "r+") as f:
        arr = f[f"data/demo_0/{field}"][()]
        del f[f"data/demo_0/{field}"]
        f[f"data/demo_0/{field}"] = arr[:-1]
    with pytest.raises(ApprenticeError, match=match):
        IsaacLabSource(path)


def test_num_samples_that_disagree_with_actions_are_named(tmp_path: Path) -> None:
    path, _ = _isaaclab_file(tmp_path)
    with h5py.File(path, "r+") as f:
        f["data/demo_1"].attrs["num_samples"] = 99
    with pytest.raises(ApprenticeError, match=r"data/demo_1 attr num_samples: says 99"):
        IsaacLabSource(path)


def test_what_is_not_hdf5_is_said(tmp_path: Path) -> None:
    text = tmp_path / "notes.hdf5"
    text.write_text("hello")
    with pytest.raises(ApprenticeError, match="not a readable HDF5 file"):
        IsaacLabSource(text)
    with pytest.raises(ApprenticeError, match="no such file"):
        IsaacLabSource(tmp_path / "missing.hdf5")


def test_several_end_effectors_take_the_first_or_the_one_named(tmp_path: Path) -> None:
    path, _ = _isaaclab_file(tmp_path)
    with h5py.File(path, "r+") as f:
        for name in ("demo_0", "demo_1"):
            dg = f[f"data/{name}/obs/datagen_info"]
            for field in ("eef_pose", "target_eef_pose"):
                dg[f"{field}/arm_a"] = dg[f"{field}/franka"][()] + 100
    with IsaacLabSource(path) as src:
        assert src.datagen_eef == "arm_a"
        assert any("'arm_a' of arm_a, franka" in n for n in src.notes)
        assert "obs/datagen_info/eef_pose/franka" in src.unmapped
        info = src.read_datagen_info("demo_0")
        assert info is not None and info.eef_pose[0, 0, 0] == 101
    with IsaacLabSource(path, eef="franka") as src:
        info = src.read_datagen_info("demo_0")
        assert info is not None and info.eef_pose[0, 0, 0] == 1
    with pytest.raises(ApprenticeError, match=r"no end-effector 'left' .*arm_a, franka"):
        IsaacLabSource(path, eef="left")


def test_an_existing_destination_is_refused(tmp_path: Path) -> None:
    src_path = _apprentice_file(tmp_path)
    dst = tmp_path / "isaac.hdf5"
    dst.write_text("keep me")
    with DemoFile(src_path) as df:
        with pytest.raises(ApprenticeError, match="exists; give --overwrite"):
            write_isaaclab(df, dst)
        assert dst.read_text() == "keep me"
        with pytest.raises(ApprenticeError, match="format_version 2"):
            write_isaaclab(df, tmp_path / "v2.hdf5", format_version=2)
        write_isaaclab(df, dst, overwrite=True)
    assert is_isaaclab(dst)


def test_a_failure_mid_write_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src_path = _apprentice_file(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    dst = out / "isaac.hdf5"
    read = DemoFile.read

    def fail_on_demo_1(self: DemoFile, name: str, *args: Any, **kwargs: Any) -> Episode:
        if name == "demo_1":
            raise ApprenticeError("disk on fire")
        return read(self, name, *args, **kwargs)

    monkeypatch.setattr(DemoFile, "read", fail_on_demo_1)
    with DemoFile(src_path) as df:
        with pytest.raises(ApprenticeError, match="disk on fire"):
            write_isaaclab(df, dst)
        assert list(out.iterdir()) == []
        dst.write_text("old")
        with pytest.raises(ApprenticeError, match="disk on fire"):
            write_isaaclab(df, dst, overwrite=True)
    assert dst.read_text() == "old" and list(out.iterdir()) == [dst]
