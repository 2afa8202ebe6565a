"""apprentice's LeRobot folders against LeRobot itself: LeRobot loads what `write_lerobot` writes,
and `LeRobotSource` reads what LeRobot writes.

Runs only where the `lerobot` package is installed (its own venv: `.venv-lerobot`, LeRobot 0.6.1):
    .venv-lerobot/bin/pytest -q -p no:cacheprovider tests/lerobot
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

lerobot_dataset = pytest.importorskip("lerobot.datasets.lerobot_dataset")

import apprentice.data.lerobot.writer as lerobot_writer  # noqa: E402
from apprentice.data import DemoFile, DemoWriter, Episode  # noqa: E402
from apprentice.data.lerobot import LeRobotSource, write_lerobot  # noqa: E402

FPS = 10
LENGTHS = (6, 9, 4)
ENV_ARGS = {"env_name": "Lift", "env_type": 1, "env_kwargs": {"control_freq": FPS}}


@pytest.fixture(autouse=True)
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No Hub, and caches under the test's folder."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("APPRENTICE_CACHE", str(tmp_path / "cache"))


def _frames(t: int, seed: int, h: int = 24, w: int = 32) -> np.ndarray:
    """(t, h, w, 3) uint8: a gradient and a moving bright disc."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    cx, cy = rng.uniform(0.3, 0.7, 2)
    base = np.stack([60 + 80 * x, 70 + 60 * y, 90 + 40 * x * y], axis=-1)
    disc = [(x - cx - i / w) ** 2 + (y - cy) ** 2 < 0.04 for i in range(t)]
    return np.stack([base + 90 * d[..., None] for d in disc]).astype(np.uint8)


def _episode(t: int, seed: int) -> Episode:
    rng = np.random.default_rng(seed)
    obs = {
        "eef_pos": rng.normal(size=(t, 3)).astype(np.float32),
        "object": rng.normal(size=(t, 7)).astype(np.float32),
        "agentview_image": _frames(t, seed),
    }
    return Episode(
        obs=obs,
        next_obs={},
        actions=rng.uniform(-1, 1, (t, 4)).astype(np.float32),
        rewards=(np.arange(t) == t - 1).astype(np.float32),
        dones=(np.arange(t) == t - 1).astype(np.int64),
        states=rng.normal(size=(t, 5)),
        seed=seed,
    )


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def _load(root: Path) -> lerobot_dataset.LeRobotDataset:
    return lerobot_dataset.LeRobotDataset("apprentice/test", root=root, video_backend="pyav")


@pytest.mark.parametrize(
    ("lossless", "one_episode_per_file"), [(False, False), (True, False), (True, True)]
)
def test_lerobot_loads_what_apprentice_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lossless: bool, one_episode_per_file: bool
) -> None:
    if one_episode_per_file:  # every data and video file full after one episode, 2 to a chunk
        monkeypatch.setattr(lerobot_writer, "DATA_FILE_MB", 1e-9)
        monkeypatch.setattr(lerobot_writer, "VIDEO_FILE_MB", 1e-9)
        monkeypatch.setattr(lerobot_writer, "CHUNKS_SIZE", 2)
    episodes = [_episode(t, seed) for seed, t in enumerate(LENGTHS)]
    with DemoWriter(tmp_path / "demos.hdf5", env_args=ENV_ARGS) as writer:
        for ep in episodes:
            writer.append(ep)
    with DemoFile(tmp_path / "demos.hdf5") as src:
        write_lerobot(src, tmp_path / "lerobot", fps=FPS, lossless=lossless)
    if one_episode_per_file:  # the limits took: the third episode's data file opens chunk 1
        assert (tmp_path / "lerobot" / "data" / "chunk-001" / "file-000.parquet").is_file()
        assert len(list((tmp_path / "lerobot" / "videos").rglob("*.mp4"))) > 1
    ds = _load(tmp_path / "lerobot")
    assert (ds.num_episodes, ds.num_frames, len(ds)) == (3, sum(LENGTHS), sum(LENGTHS))
    assert ds.meta.video_keys == ["observation.images.agentview"]
    frame = 0
    for i, ep in enumerate(episodes):
        for step in range(ep.num_samples):
            item = ds[frame]
            assert int(item["episode_index"]) == i and int(item["frame_index"]) == step
            np.testing.assert_array_equal(item["action"].numpy(), ep.actions[step])
            np.testing.assert_array_equal(
                item["observation.state"].numpy(), ep.obs["eef_pos"][step]
            )
            np.testing.assert_array_equal(
                item["observation.environment_state"].numpy(), ep.obs["object"][step]
            )
            image = item["observation.images.agentview"]  # 3, H, W float32 in [0, 1]
            assert tuple(image.shape) == (3, 24, 32)
            got = np.round(image.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
            want = ep.obs["agentview_image"][step]
            if lossless:
                np.testing.assert_array_equal(got, want)
            else:
                assert _psnr(got, want) > 30
            assert item["task"] == "Lift"
            frame += 1


def test_apprentice_reads_what_lerobot_writes(tmp_path: Path) -> None:
    features = {
        "observation.state": {
            "dtype": "float32",
            "shape": (5,),
            "names": ["eef_pos.0", "eef_pos.1", "eef_pos.2", "gripper.0", "gripper.1"],
        },
        "observation.images.front": {
            "dtype": "video",
            "shape": (24, 32, 3),
            "names": ["height", "width", "channels"],
        },
        "action": {"dtype": "float32", "shape": (3,), "names": ["x", "y", "z"]},
        "next.reward": {"dtype": "float32", "shape": (1,), "names": None},
    }
    root = tmp_path / "recorded"
    ds = lerobot_dataset.LeRobotDataset.create(
        "test/recorded", fps=FPS, features=features, root=root, robot_type="koch"
    )
    rng = np.random.default_rng(0)
    recorded: list[dict[str, np.ndarray]] = []
    for seed, t in enumerate(LENGTHS):
        ep = {
            "observation.state": rng.normal(size=(t, 5)).astype(np.float32),
            "observation.images.front": _frames(t, seed),
            "action": rng.normal(size=(t, 3)).astype(np.float32),
            "next.reward": rng.uniform(size=(t, 1)).astype(np.float32),
        }
        for step in range(t):
            ds.add_frame({k: v[step] for k, v in ep.items()} | {"task": "pick"})
        ds.save_episode()
        recorded.append(ep)
    ds.finalize()

    with LeRobotSource(root) as src:
        assert src.demo_names == ["demo_0", "demo_1", "demo_2"]
        assert [src.num_samples(n) for n in src.demo_names] == list(LENGTHS)
        assert src.obs_shapes == {"eef_pos": (3,), "front_image": (24, 32, 3), "gripper": (2,)}
        assert src.env_args["env_name"] == "koch" and src.fps == FPS
        assert src.masks == {"train": ["demo_0", "demo_1", "demo_2"]}
        for name, want in zip(src.demo_names, recorded, strict=True):
            ep = src.read(name)
            state = want["observation.state"]
            np.testing.assert_array_equal(ep.obs["eef_pos"], state[:, :3])
            np.testing.assert_array_equal(ep.obs["gripper"], state[:, 3:])
            np.testing.assert_array_equal(ep.actions, want["action"])
            np.testing.assert_array_equal(ep.rewards, want["next.reward"][:, 0])
            assert src.attrs(name)["task"] == "pick"
            assert _psnr(ep.obs["front_image"], want["observation.images.front"]) > 30
