"""LeRobot folders: robomimic -> LeRobot -> reading round trips, v2.1 folders, mappings, the frame
cache, and one clear error for each way a folder can be broken. LeRobot itself is not needed
(tests/lerobot checks against it)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import apprentice.data.lerobot.reader as lerobot_reader
import apprentice.data.lerobot.writer as lerobot_writer
from apprentice.data import DemoFile, DemoWriter, Episode, write_mask
from apprentice.data.lerobot import (
    LeRobotSource,
    is_lerobot,
    load_mapping,
    write_lerobot,
)
from apprentice.data.source import DemoSource
from apprentice.errors import ApprenticeError
from conftest import ENV_ARGS, synthetic_episode

FPS = 20
LENGTHS = (5, 9, 7)


def _smooth_frames(t: int, seed: int, size: int = 32) -> np.ndarray:
    """(t, size, size, 3) uint8: a colour gradient and a moving bright disc, as a camera sees a
    scene (unlike noise, which no lossy codec keeps)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size  # size, size in [0, 1)
    cx, cy = rng.uniform(0.25, 0.75, 2)
    base = np.stack([60 + 80 * x, 70 + 60 * y, 90 + 40 * x * y], axis=-1)  # size, size, 3
    frames = np.empty((t, size, size, 3), dtype=np.uint8)
    for i in range(t):
        disc = (x - cx - i / size) ** 2 + (y - cy) ** 2 < 0.04
        frames[i] = base + 90 * disc[..., None]
    return frames


def _episodes(*, smooth: bool) -> list[Episode]:
    eps = []
    for seed, t in enumerate(LENGTHS):
        ep = synthetic_episode(t, seed, image=True, datagen=True)
        obs = dict(ep.obs, object=np.arange(t * 4, dtype=np.float32).reshape(t, 4) + seed)
        if smooth:
            obs["agentview_image"] = _smooth_frames(t, seed)
            obs["wrist_image"] = _smooth_frames(t, seed + 10)[:, ::-1].copy()
        eps.append(replace(ep, obs=obs, next_obs={}))
    return eps


def _hdf5(path: Path, episodes: list[Episode]) -> Path:
    with DemoWriter(path, env_args=ENV_ARGS) as writer:
        names = [writer.append(ep) for ep in episodes]
    write_mask(path, "train", names[:2])
    write_mask(path, "valid", names[2:])
    write_mask(path, "grasped", names[1:])
    return path


def _convert(tmp_path: Path, episodes: list[Episode], **kw: Any) -> Path:
    dst = tmp_path / "lerobot"
    with DemoFile(_hdf5(tmp_path / "demos.hdf5", episodes)) as src:
        write_lerobot(src, dst, fps=FPS, **kw)
    return dst


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Decoded frames go under the test's folder, never ~/.cache."""
    monkeypatch.setenv("APPRENTICE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "lerobot"


@pytest.fixture(scope="module")
def lossless(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder written losslessly from `_episodes(smooth=False)` (noise images)."""
    return _convert(tmp_path_factory.mktemp("lossless"), _episodes(smooth=False), lossless=True)


def _copy(folder: Path, tmp_path: Path) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(folder, out)
    return out


# ---- round trips --------------------------------------------------------------------------------


def test_round_trip_keeps_low_dim_exact_and_frames_within_codec_loss(tmp_path: Path) -> None:
    episodes = _episodes(smooth=True)
    dst = tmp_path / "lerobot"
    with DemoFile(_hdf5(tmp_path / "demos.hdf5", episodes)) as src:
        notes = write_lerobot(src, dst, fps=FPS, task="lift the cube")
    assert (notes.demos, notes.frames) == (3, sum(LENGTHS))
    assert any("states" in d for d in notes.dropped)
    assert any("datagen_info" in d for d in notes.dropped)
    assert any("libsvtav1" in i or "libx264" in i for i in notes.info)
    with LeRobotSource(dst) as got:
        assert isinstance(got, DemoSource)
        assert got.demo_names == ["demo_0", "demo_1", "demo_2"]
        assert got.env_args == ENV_ARGS and got.fps == FPS
        assert got.masks == {
            "train": ["demo_0", "demo_1"],
            "valid": ["demo_2"],
            "grasped": ["demo_1", "demo_2"],
        }
        assert got.obs_shapes == {
            "agentview_image": (32, 32, 3),
            "eef_pos": (3,),
            "gripper_qpos": (2,),
            "object": (4,),
            "wrist_image": (32, 32, 3),
        }
        assert got.image_keys == ["agentview_image", "wrist_image"] and got.action_dim == 4
        psnrs = []
        for name, want in zip(got.demo_names, episodes, strict=True):
            attrs = got.attrs(name)
            assert (attrs["seed"], attrs["success"], attrs["source"]) == (
                want.seed,
                want.success,
                want.source,
            )
            assert attrs["task"] == "lift the cube"
            part = got.read(name, obs_keys=["eef_pos", "wrist_image"], with_images=False)
            assert set(part.obs) == {"eef_pos"} and part.next_obs == {}
            ep = got.read(name)
            np.testing.assert_array_equal(ep.actions, want.actions)
            for key in ("eef_pos", "gripper_qpos", "object"):
                np.testing.assert_array_equal(ep.obs[key], want.obs[key])
            np.testing.assert_array_equal(ep.dones, want.dones)
            assert ep.states.shape == (want.num_samples, 0) and got.read_states(name) is None
            assert (ep.seed, ep.success, ep.source) == (want.seed, want.success, want.source)
            for key in got.image_keys:
                assert ep.obs[key].dtype == np.uint8
                psnrs.append(_psnr(ep.obs[key], want.obs[key]))
    # AV1 at LeRobot's crf 30 keeps these frames at 37-42 dB; below 30 dB the loss is visible.
    print(f"PSNR per demo and camera (dB): {[round(float(p), 1) for p in psnrs]}")
    assert min(psnrs) > 30, f"PSNR per demo and camera: {psnrs}"


def test_lossless_video_reads_back_bit_exact(lossless: Path) -> None:
    with LeRobotSource(lossless) as got:
        for name, want in zip(got.demo_names, _episodes(smooth=False), strict=True):
            np.testing.assert_array_equal(
                got.read_obs(name, "agentview_image"), want.obs["agentview_image"]
            )
            np.testing.assert_array_equal(got.read_actions(name), want.actions)


def test_written_folder_is_lerobot_v3(lossless: Path) -> None:
    info = json.loads((lossless / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == FPS
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (3, 21, 1)
    assert info["splits"] == {"train": "0:2", "valid": "2:3"}
    state = info["features"]["observation.state"]
    assert state["names"] == [
        "eef_pos.0",
        "eef_pos.1",
        "eef_pos.2",
        "gripper_qpos.0",
        "gripper_qpos.1",
    ]
    assert info["features"]["observation.environment_state"]["shape"] == [4]
    camera = info["features"]["observation.images.agentview"]
    assert camera["dtype"] == "video" and camera["shape"] == [8, 8, 3]
    assert camera["info"]["video.codec"] == "h264" and camera["info"]["video.fps"] == FPS
    assert info["features"]["action"]["names"] == ["action.0", "action.1", "action.2", "action.3"]
    data = pq.read_table(lossless / "data" / "chunk-000" / "file-000.parquet")
    assert data.schema.field("observation.state").type == pa.list_(pa.float32(), 5)
    assert data["index"].to_pylist() == list(range(21))
    episodes = pq.read_table(lossless / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    rows = episodes.to_pylist()
    key = "videos/observation.images.agentview"
    assert [r[f"{key}/from_timestamp"] for r in rows] == [0.0, 5 / FPS, 14 / FPS]
    assert [r["dataset_to_index"] for r in rows] == [5, 14, 21]
    assert rows[0]["stats/observation.state/count"] == [5]
    assert np.shape(rows[0]["stats/observation.images.agentview/q50"]) == (3, 1, 1)
    stats = json.loads((lossless / "meta" / "stats.json").read_text())
    assert set(stats["action"]) == set("min max mean std count q01 q10 q50 q90 q99".split())
    assert stats["action"]["count"] == [21]
    tasks = pq.read_table(lossless / "meta" / "tasks.parquet")
    assert tasks.to_pylist() == [{"task_index": 0, "task": "Lift"}]
    assert json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == ["task"]
    assert is_lerobot(lossless) and not is_lerobot(lossless / "meta")


# ---- v2.1 ---------------------------------------------------------------------------------------


def _encode(path: Path, frames: np.ndarray, fps: int = FPS) -> None:
    """frames (T, H, W, 3) as an mp4 losslessly, frame i at i / fps seconds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264rgb", rate=fps, options={"qp": "0"})
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "rgb24"
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def _png(image: np.ndarray) -> bytes:
    """(H, W, 3) uint8 as PNG bytes, as LeRobot's image features hold frames."""
    codec = av.CodecContext.create("png", "w")
    codec.width, codec.height, codec.pix_fmt = image.shape[1], image.shape[0], "rgb24"
    (packet,) = codec.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), "rgb24"))
    return bytes(packet)


def _v21(root: Path) -> dict[str, list[np.ndarray]]:
    """A v2.1 folder as LeRobot 0.3 wrote it, two episodes; returns what it holds."""
    rng = np.random.default_rng(3)
    held: dict[str, list[np.ndarray]] = {
        "state": [],
        "env": [],
        "action": [],
        "frames": [],
        "reward": [],
    }
    features = {
        "observation.state": {
            "dtype": "float32",
            "shape": [2],
            "names": ["shoulder_pan.pos", "gripper.pos"],
        },
        "observation.environment_state": {
            "dtype": "float32",
            "shape": [3],
            "names": ["cube_pos.0", "cube_pos.1", "cube_quat.0"],
        },
        "observation.images.top": {
            "dtype": "video",
            "shape": [6, 8, 3],
            "names": ["height", "width", "channels"],
            "info": {"video.codec": "h264", "video.fps": FPS, "video.pix_fmt": "gbrp"},
        },
        "action": {"dtype": "float32", "shape": [2], "names": ["shoulder_pan.pos", "gripper.pos"]},
        "observation.image": {"dtype": "image", "shape": [6, 8, 3], "names": ["h", "w", "c"]},
        "next.reward": {"dtype": "float32", "shape": [1], "names": None},
        **{
            k: {"dtype": "int64", "shape": [1], "names": None}
            for k in ("frame_index", "episode_index", "index", "task_index")
        },
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    }
    episodes, index = [], 0
    for ep, t in enumerate((4, 6)):
        state, env = (
            rng.normal(size=(t, 2)).astype(np.float32),
            rng.normal(size=(t, 3)).astype(np.float32),
        )
        action, reward = (
            rng.normal(size=(t, 2)).astype(np.float32),
            rng.uniform(size=t).astype(np.float32),
        )
        frames = rng.integers(0, 255, (t, 6, 8, 3), dtype=np.uint8)
        for k, v in zip(held, (state, env, action, frames, reward), strict=True):
            held[k].append(v)
        table = pa.table(
            {
                "observation.state": [list(r) for r in state],
                "observation.environment_state": [list(r) for r in env],
                "action": [list(r) for r in action],
                "observation.image": [{"bytes": _png(f[:, ::-1]), "path": None} for f in frames],
                "next.reward": reward,
                "timestamp": (np.arange(t) / FPS).astype(np.float32),
                "frame_index": np.arange(t),
                "episode_index": np.full(t, ep),
                "index": index + np.arange(t),
                "task_index": np.zeros(t, dtype=np.int64),
            }
        )
        data = root / "data" / "chunk-000" / f"episode_{ep:06d}.parquet"
        data.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, data)
        _encode(
            root / "videos" / "chunk-000" / "observation.images.top" / f"episode_{ep:06d}.mp4",
            frames,
        )
        episodes.append({"episode_index": ep, "tasks": ["stack"], "length": t})
        index += t
    info = {
        "codebase_version": "v2.1",
        "robot_type": "so100",
        "total_episodes": 2,
        "total_frames": index,
        "total_tasks": 1,
        "total_videos": 2,
        "total_chunks": 1,
        "chunks_size": 1000,
        "fps": FPS,
        "splits": {"train": "0:1", "valid": "1:2"},
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": (
            "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
        ),
        "features": features,
    }
    meta = root / "meta"
    meta.mkdir(parents=True)
    (meta / "info.json").write_text(json.dumps(info))
    (meta / "episodes.jsonl").write_text("".join(json.dumps(e) + "\n" for e in episodes))
    (meta / "tasks.jsonl").write_text(json.dumps({"task_index": 0, "task": "stack"}) + "\n")
    (meta / "episodes_stats.jsonl").write_text("")
    return held


def test_v21_folder_reads(tmp_path: Path) -> None:
    held = _v21(tmp_path / "v21")
    with LeRobotSource(tmp_path / "v21") as got:
        assert got.demo_names == ["demo_0", "demo_1"]
        # LeRobot's joint names stay one key; apprentice's `<key>.<i>` names split.
        assert got.obs_shapes == {
            "cube_pos": (2,),
            "cube_quat": (1,),
            "state": (2,),
            "image": (6, 8, 3),
            "top_image": (6, 8, 3),
        }
        assert got.env_args == {
            "env_name": "so100",
            "env_type": 0,
            "env_kwargs": {"control_freq": FPS},
        }
        assert got.masks == {"train": ["demo_0"], "valid": ["demo_1"]}
        assert got.attrs("demo_1") == {"episode_index": 1, "task": "stack"}
        assert got.read_datagen_info("demo_0") is None
        for i, name in enumerate(got.demo_names):
            ep = got.read(name)
            np.testing.assert_array_equal(ep.obs["state"], held["state"][i])
            np.testing.assert_array_equal(ep.obs["cube_pos"], held["env"][i][:, :2])
            np.testing.assert_array_equal(ep.obs["top_image"], held["frames"][i])
            np.testing.assert_array_equal(ep.obs["image"], held["frames"][i][:, :, ::-1])
            np.testing.assert_array_equal(ep.actions, held["action"][i])
            np.testing.assert_array_equal(ep.rewards, held["reward"][i])
            assert ep.dones.tolist() == [0] * (len(ep.dones) - 1) + [1]


# ---- mappings -----------------------------------------------------------------------------------


def test_mapping_splits_a_feature_into_keys(tmp_path: Path) -> None:
    held = _v21(tmp_path / "v21")
    mapping_file = tmp_path / "mapping.json"
    mapping_file.write_text(json.dumps({"observation.state": {"pan": [0, 1], "gripper": [1, 2]}}))
    with LeRobotSource(tmp_path / "v21", mapping=load_mapping(mapping_file)) as got:
        assert {"pan", "gripper"} <= set(got.obs_keys) and "state" not in got.obs_keys
        np.testing.assert_array_equal(got.read_obs("demo_1", "pan"), held["state"][1][:, :1])
        np.testing.assert_array_equal(got.read_obs("demo_1", "gripper"), held["state"][1][:, 1:])
    with pytest.raises(ApprenticeError, match=r"mapping: observation.state.pan: \[0, 9\) is past"):
        LeRobotSource(tmp_path / "v21", mapping={"observation.state": {"pan": [0, 9]}})


def test_writing_with_a_mapping_places_keys_as_it_says(tmp_path: Path) -> None:
    mapping = {"observation.state": {"gripper_qpos": [0, 2], "eef_pos": [2, 5]}}
    dst = _convert(tmp_path, _episodes(smooth=False), lossless=True, mapping=mapping)
    info = json.loads((dst / "meta" / "info.json").read_text())
    assert info["features"]["observation.state"]["names"][:3] == [
        "gripper_qpos.0",
        "gripper_qpos.1",
        "eef_pos.0",
    ]
    assert "observation.object" in info["features"]  # unmapped keys keep a feature of their own
    with LeRobotSource(dst) as got:
        assert got.obs_shapes["object"] == (4,) and got.obs_shapes["eef_pos"] == (3,)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not JSON"),
        (
            '{"observation.state": {"eef_pos": [3, 1]}}',
            r"observation.state.eef_pos: expected \[start, stop\]",
        ),
        (
            '{"observation.state": {"a": [0, 3], "b": [2, 4]}}',
            r"observation.state: spans .* overlap",
        ),
        (
            '{"observation.state": {"a": [0, 3]}, "observation.x": {"a": [0, 1]}}',
            r"observation.x.a: key also mapped",
        ),
        ('["observation.state"]', r"expected \{feature"),
    ],
)
def test_load_mapping_names_the_bad_entry(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "mapping.json"
    path.write_text(text)
    with pytest.raises(ApprenticeError, match=message) as e:
        load_mapping(path)
    assert str(e.value).startswith(str(path))


# ---- what a broken folder says ------------------------------------------------------------------


def _edit_info(folder: Path, **changes: Any) -> None:
    path = folder / "meta" / "info.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


CAMERA = "observation.images.agentview"
MP4 = f"videos/{CAMERA}/chunk-000/file-000.mp4"


def _set_length(folder: Path, episode: int, length: int) -> None:
    path = folder / "meta" / "episodes" / "chunk-000" / "file-000.parquet"
    table = pq.read_table(path)
    lengths = table["length"].to_pylist()
    lengths[episode] = length
    i = table.schema.get_field_index("length")
    pq.write_table(table.set_column(i, "length", pa.array(lengths)), path)


BROKEN_ON_OPEN: dict[str, tuple[Callable[[Path], object], str]] = {
    "no info.json": (
        lambda f: (f / "meta" / "info.json").unlink(),
        "meta/info.json: missing",
    ),
    "unknown version": (
        lambda f: _edit_info(f, codebase_version="v9.0"),
        r"codebase_version: 'v9.0' is a LeRobot layout apprentice does not read",
    ),
    "no data parquet": (
        lambda f: (f / "data" / "chunk-000" / "file-000.parquet").unlink(),
        "data/chunk-000/file-000.parquet: missing",
    ),
    "total_frames disagrees": (
        lambda f: _edit_info(f, total_frames=99),
        "meta/info.json: total_frames: says 99, the dataset holds 21 frames",
    ),
    "total_episodes disagrees": (
        lambda f: _edit_info(f, total_episodes=4),
        "meta/info.json: total_episodes: says 4, the dataset holds 3 episodes",
    ),
    "episode length disagrees": (
        lambda f: _set_length(f, 1, 8),
        "data/chunk-000/file-000.parquet: holds 9 rows of episode 1, its length is 8",
    ),
    "no mp4": (lambda f: (f / MP4).unlink(), f"{MP4}: missing"),
}


@pytest.mark.parametrize("how", sorted(BROKEN_ON_OPEN))
def test_broken_folder_is_one_error_naming_the_file(
    lossless: Path, tmp_path: Path, how: str
) -> None:
    folder = _copy(lossless, tmp_path)
    breaks, message = BROKEN_ON_OPEN[how]
    breaks(folder)
    with pytest.raises(ApprenticeError, match=message) as e:
        LeRobotSource(folder)
    assert str(e.value).startswith(f"{folder}: ")


def test_unknown_codec_in_info_json(lossless: Path, tmp_path: Path) -> None:
    folder = _copy(lossless, tmp_path)
    info = json.loads((folder / "meta" / "info.json").read_text())
    info["features"][CAMERA]["info"]["video.codec"] = "nope"
    (folder / "meta" / "info.json").write_text(json.dumps(info))
    with pytest.raises(
        ApprenticeError, match=rf"features.{CAMERA}.info.video.codec: 'nope' is not a codec"
    ):
        LeRobotSource(folder)


def test_undecodable_video_names_the_file(lossless: Path, tmp_path: Path) -> None:
    folder = _copy(lossless, tmp_path)
    (folder / MP4).write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    with (
        LeRobotSource(folder) as got,
        pytest.raises(ApprenticeError, match=rf"{MP4}: cannot decode"),
    ):
        got.read_obs("demo_0", "agentview_image")


def test_video_shorter_than_its_episodes(lossless: Path, tmp_path: Path) -> None:
    folder = _copy(lossless, tmp_path)
    frames = np.concatenate([ep.obs["agentview_image"] for ep in _episodes(smooth=False)])
    _encode(folder / MP4, frames[:-3])
    with (
        LeRobotSource(folder) as got,
        pytest.raises(
            ApprenticeError,
            match=rf"{MP4}: video shorter than its episodes: it holds 18 of the 21 frames",
        ),
    ):
        got.read_obs("demo_0", "agentview_image")


def test_source_names_what_it_lacks(lossless: Path) -> None:
    with LeRobotSource(lossless) as got:
        with pytest.raises(ApprenticeError, match=r"no demo 'demo_9'.*demo_0"):
            got.read_actions("demo_9")
        with pytest.raises(ApprenticeError, match=r"no observation key 'nope'.*eef_pos"):
            got.check_obs_keys(["eef_pos", "nope"])
    with pytest.raises(ApprenticeError, match="no such folder"):
        LeRobotSource(lossless / "nope")


# ---- writing safely -----------------------------------------------------------------------------


def test_existing_destination_is_refused_unless_overwrite(lossless: Path, tmp_path: Path) -> None:
    dst = _copy(lossless, tmp_path)
    with DemoFile(_hdf5(tmp_path / "d.hdf5", _episodes(smooth=False)[:1])) as src:
        with pytest.raises(ApprenticeError, match="already exists; pass overwrite=True"):
            write_lerobot(src, dst, fps=FPS)
        assert json.loads((dst / "meta" / "info.json").read_text())["total_episodes"] == 3
        write_lerobot(src, dst, fps=FPS, lossless=True, overwrite=True)
    assert json.loads((dst / "meta" / "info.json").read_text())["total_episodes"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


class _FailsOnSecondDemo:
    """A DemoSource that breaks while the writer is halfway through."""

    def __init__(self, inner: DemoFile) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def read(self, name: str, *args: Any, **kw: Any) -> Episode:
        if name == "demo_1":
            raise ApprenticeError("disk on fire")
        return self._inner.read(name, *args, **kw)


def test_failure_mid_write_leaves_no_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with DemoFile(_hdf5(tmp_path / "d.hdf5", _episodes(smooth=True))) as src:
        with pytest.raises(ApprenticeError, match="disk on fire"):
            write_lerobot(_FailsOnSecondDemo(src), out / "lerobot", fps=FPS)  # type: ignore[arg-type]
    assert list(out.iterdir()) == []


def test_fps_must_be_whole(tmp_path: Path) -> None:
    with DemoFile(_hdf5(tmp_path / "d.hdf5", _episodes(smooth=False))) as src:
        with pytest.raises(ApprenticeError, match=r"fps 29.97: LeRobot keeps a whole"):
            write_lerobot(src, tmp_path / "x", fps=29.97)
    assert not (tmp_path / "x").exists()


# ---- the frame cache ----------------------------------------------------------------------------


def test_frames_are_decoded_once_into_the_cache(
    lossless: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Path] = []
    decode = lerobot_reader.decode_video

    def counting(path: Path, out: np.ndarray, fps: float) -> np.ndarray:
        calls.append(path)
        return decode(path, out, fps)

    monkeypatch.setattr(lerobot_reader, "decode_video", counting)
    want = _episodes(smooth=False)
    for _ in range(2):  # the second source finds the cache the first one wrote
        with LeRobotSource(lossless) as got:
            for name, ep in zip(got.demo_names, want, strict=True):
                for key in ("agentview_image", "agentview_image"):
                    np.testing.assert_array_equal(got.read_obs(name, key), ep.obs[key])
    assert [p.name for p in calls] == ["file-000.mp4"]
    cached = list(cache.rglob("*.npy"))
    assert len(cached) == 1 and not list(cache.rglob(".tmp-*"))
    assert np.load(cached[0], mmap_mode="r").shape == (21, 8, 8, 3)


def test_files_roll_over_past_their_size_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new data and video file once one is full, chunks_size files to a chunk folder."""
    monkeypatch.setattr(lerobot_writer, "DATA_FILE_MB", 1e-9)
    monkeypatch.setattr(lerobot_writer, "VIDEO_FILE_MB", 1e-9)
    monkeypatch.setattr(lerobot_writer, "CHUNKS_SIZE", 2)
    episodes = _episodes(smooth=False)
    dst = _convert(tmp_path, episodes, lossless=True)
    data = sorted(str(p.relative_to(dst)) for p in (dst / "data").rglob("*.parquet"))
    assert data == [
        "data/chunk-000/file-000.parquet",
        "data/chunk-000/file-001.parquet",
        "data/chunk-001/file-000.parquet",
    ]
    assert len(list((dst / "videos" / CAMERA).rglob("*.mp4"))) > 1
    with LeRobotSource(dst) as got:
        for name, want in zip(got.demo_names, episodes, strict=True):
            np.testing.assert_array_equal(
                got.read_obs(name, "agentview_image"), want.obs["agentview_image"]
            )
            np.testing.assert_array_equal(got.read_obs(name, "eef_pos"), want.obs["eef_pos"])


@pytest.mark.parametrize("vcodec", ["libx264", "mpeg4"])
def test_other_codecs_keep_frames_close(tmp_path: Path, vcodec: str) -> None:
    episodes = _episodes(smooth=True)[:1]
    with DemoFile(_hdf5(tmp_path / "d.hdf5", episodes)) as src:
        notes = write_lerobot(src, tmp_path / "out", fps=FPS, vcodec=vcodec)
    assert any(i.startswith(f"video: {vcodec} (g 2") for i in notes.info)
    with LeRobotSource(tmp_path / "out") as got:
        image = got.read_obs("demo_0", "wrist_image")
    assert _psnr(image, episodes[0].obs["wrist_image"]) > 30


def test_unknown_encoder_is_refused(tmp_path: Path) -> None:
    with DemoFile(_hdf5(tmp_path / "d.hdf5", _episodes(smooth=False))) as src:
        with pytest.raises(ApprenticeError, match="video codec 'nope': PyAV has no such encoder"):
            write_lerobot(src, tmp_path / "out", fps=FPS, vcodec="nope")
        with pytest.raises(ApprenticeError, match="lossless video is written with libx264rgb"):
            write_lerobot(src, tmp_path / "out", fps=FPS, vcodec="libx264", lossless=True)
    assert not (tmp_path / "out").exists()


def test_robomimic_file_round_trips(robomimic_file: Path, tmp_path: Path) -> None:
    """A file as robomimic writes it: float64 obs, no seed/success attrs, an `object` key."""
    with DemoFile(robomimic_file) as src:
        write_lerobot(src, tmp_path / "out", fps=FPS, lossless=True)
        with LeRobotSource(tmp_path / "out") as got:
            assert got.obs_shapes == src.obs_shapes and got.masks == src.masks
            for name in src.demo_names:
                for key in src.obs_keys:
                    want = src.read_obs(name, key)
                    assert got.read_obs(name, key).dtype == want.dtype
                    np.testing.assert_array_equal(got.read_obs(name, key), want)
                np.testing.assert_array_equal(got.read_actions(name), src.read(name).actions)
    info = json.loads((tmp_path / "out" / "meta" / "info.json").read_text())
    assert info["features"]["observation.environment_state"]["dtype"] == "float64"
