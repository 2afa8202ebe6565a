"""DemoDataset loading and WindowSampler windows, checked against hand-computed indices."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from apprentice.data import DemoDataset, DemoWriter, Episode, ObsActSpec, WindowSampler
from apprentice.errors import ApprenticeError
from conftest import ENV_ARGS


def _index_dataset(lengths: list[int]) -> DemoDataset:
    """obs x and actions hold each step's global index, so windows show which steps they took."""
    n = sum(lengths)
    idx = np.arange(n, dtype=np.float32)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return DemoDataset(
        obs={"x": idx[:, None], "img": np.arange(n, dtype=np.uint8)[:, None, None, None]},
        actions=np.stack([idx, -idx], axis=1),
        episode_starts=starts,
        episode_lengths=np.array(lengths, dtype=np.int64),
        demo_names=[f"demo_{i}" for i in range(len(lengths))],
        env_args={},
    )


def test_windows_pad_at_episode_edges() -> None:
    ds = _index_dataset([3, 4])  # episode 0: steps 0..2, episode 1: steps 3..6
    s = WindowSampler(ds, seq_len=3, frame_stack=2, batch_size=4, rng=np.random.default_rng(0))
    b = s.batch(np.array([0, 2, 3, 5]))
    # obs steps t-1 .. t+2 clamped into the anchor's episode
    np.testing.assert_array_equal(
        b["obs/x"][..., 0], [[0, 0, 1, 2], [1, 2, 2, 2], [3, 3, 4, 5], [4, 5, 6, 6]]
    )
    np.testing.assert_array_equal(b["obs/img"][:, :, 0, 0, 0], b["obs/x"][..., 0])
    # actions t .. t+2, the last step repeated past the end with mask 0
    np.testing.assert_array_equal(
        b["actions"][..., 0], [[0, 1, 2], [2, 2, 2], [3, 4, 5], [5, 6, 6]]
    )
    np.testing.assert_array_equal(b["actions"][..., 1], -b["actions"][..., 0])
    np.testing.assert_array_equal(b["mask"], [[1, 1, 1], [1, 0, 0], [1, 1, 1], [1, 1, 0]])
    assert b["mask"].dtype == np.float32
    assert b["obs/img"].dtype == np.uint8


def test_shapes_and_determinism() -> None:
    ds = _index_dataset([5, 9, 2])

    def draw(seed: int) -> dict[str, np.ndarray]:
        s = WindowSampler(
            ds, seq_len=4, frame_stack=3, batch_size=7, rng=np.random.default_rng(seed)
        )
        return s.sample()

    b = draw(1)
    assert b["obs/x"].shape == (7, 6, 1)
    assert b["obs/img"].shape == (7, 6, 1, 1, 1)
    assert b["actions"].shape == (7, 4, 2)
    assert b["mask"].shape == (7, 4)
    for k, v in draw(1).items():
        np.testing.assert_array_equal(v, b[k])
    assert not np.array_equal(draw(2)["obs/x"], b["obs/x"])


def test_epoch_covers_every_anchor_once() -> None:
    ds = _index_dataset([5, 9, 2])
    s = WindowSampler(ds, seq_len=2, batch_size=5, rng=np.random.default_rng(0))
    batches = list(s.epoch())
    assert s.num_anchors == 16 and len(batches) == len(s) == 4
    assert [len(b["actions"]) for b in batches] == [5, 5, 5, 1]
    # The anchor is the first action step; with frame_stack=1 also the first obs step.
    anchors = np.concatenate([b["actions"][:, 0, 0] for b in batches])
    np.testing.assert_array_equal(np.sort(anchors), np.arange(16))
    assert not np.array_equal(anchors, np.arange(16)), "epoch order should be shuffled"


def test_bad_sampler_arguments() -> None:
    with pytest.raises(ApprenticeError, match="seq_len"):
        WindowSampler(_index_dataset([3]), seq_len=0, batch_size=2, rng=np.random.default_rng())


def _store(path: Path, make_episode: Callable[..., Episode]) -> list[Episode]:
    eps = [make_episode(4 + i, seed=i, image=True) for i in range(4)]
    with DemoWriter(path, env_args=ENV_ARGS) as w:
        for i, ep in enumerate(eps):
            w.append(ep, masks=["train"] if i < 3 else ["valid"])
    return eps


def test_load_concatenates_demos(tmp_path: Path, make_episode: Callable[..., Episode]) -> None:
    path = tmp_path / "d.hdf5"
    eps = _store(path, make_episode)
    ds = DemoDataset.load(path, mask="train")
    assert ds.demo_names == ["demo_0", "demo_1", "demo_2"]
    np.testing.assert_array_equal(ds.episode_lengths, [4, 5, 6])
    np.testing.assert_array_equal(ds.episode_starts, [0, 4, 9])
    np.testing.assert_array_equal(ds.obs["eef_pos"][4:9], eps[1].obs["eef_pos"])
    np.testing.assert_array_equal(ds.actions[9:], eps[2].actions)
    assert ds.obs["eef_pos"].dtype == np.float32 and ds.obs["eef_pos"].flags.c_contiguous
    assert ds.obs["agentview_image"].dtype == np.uint8
    assert ds.spec == ObsActSpec(
        {"agentview_image": (8, 8, 3), "eef_pos": (3,), "gripper_qpos": (2,)}, 4
    )
    assert ds.env_args == ENV_ARGS
    small = DemoDataset.load(path, demos=["demo_3"], obs_keys=["eef_pos"], with_images=False)
    assert list(small.obs) == ["eef_pos"] and small.num_steps == 7


def test_load_errors_name_what_exists(tmp_path: Path, make_episode: Callable[..., Episode]) -> None:
    path = tmp_path / "d.hdf5"
    _store(path, make_episode)
    with pytest.raises(ApprenticeError, match=r"no mask 'test' \(it has: train, valid\)"):
        DemoDataset.load(path, mask="test")
    with pytest.raises(ApprenticeError, match=r"'joint_pos' \(it has: agentview_image, eef_pos"):
        DemoDataset.load(path, obs_keys=["joint_pos"])
    with pytest.raises(ApprenticeError, match="demo_8"):
        DemoDataset.load(path, demos=["demo_8"])


def test_load_a_robomimic_file(robomimic_file: Path) -> None:
    ds = DemoDataset.load(robomimic_file, mask="train", with_images=False)
    assert ds.demo_names == ["demo_0", "demo_2"]
    assert set(ds.obs) == {"object", "robot0_eef_pos"}
    assert ds.obs["object"].dtype == np.float32 and ds.obs["object"].shape == (9, 10)
    assert ds.actions.shape == (9, 7)
    b = WindowSampler(ds, seq_len=3, batch_size=4, rng=np.random.default_rng(0)).sample()
    assert b["obs/object"].shape == (4, 3, 10)
