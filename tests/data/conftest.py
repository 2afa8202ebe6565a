"""Shared fixtures for the data layer: synthetic episodes and a file written as robomimic does."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from apprentice.data import DatagenInfo, Episode

ENV_ARGS = {"env_name": "Lift", "env_type": 1, "env_kwargs": {"control_freq": 20}}


def synthetic_episode(t: int, seed: int, *, image: bool = False, datagen: bool = False) -> Episode:
    rng = np.random.default_rng(seed)
    obs = {
        "eef_pos": rng.normal(size=(t, 3)).astype(np.float32),
        "gripper_qpos": rng.normal(size=(t, 2)).astype(np.float32),
    }
    if image:
        obs["agentview_image"] = rng.integers(0, 255, (t, 8, 8, 3), dtype=np.uint8)
    info = None
    if datagen:
        poses = np.tile(np.eye(4), (t, 1, 1))
        info = DatagenInfo(
            eef_pose=poses,
            target_pose=poses + 1,
            gripper_action=rng.uniform(-1, 1, (t, 1)),
            object_poses={"cube": poses * 2},
            subtask_term_signals={"grasp": (np.arange(t) > t // 2).astype(np.int64)},
        )
    return Episode(
        obs=obs,
        next_obs={k: v + 1 for k, v in obs.items()},
        actions=rng.uniform(-1, 1, (t, 4)).astype(np.float32),
        rewards=np.zeros(t, dtype=np.float32),
        dones=(np.arange(t) == t - 1).astype(np.int64),
        states=rng.normal(size=(t, 6)),
        datagen_info=info,
        seed=seed,
        success=seed % 3 != 0,
        source="oracle" if seed % 2 else "teleop:spacemouse",
    )


@pytest.fixture
def make_episode() -> Callable[..., Episode]:
    return synthetic_episode


def write_robomimic_file(path: Path, lengths: tuple[int, ...] = (5, 7, 4)) -> None:
    """A file as robomimic's docs and conversion scripts write it: no seed/source/success attrs,
    model_file attr, masks as fixed-length byte strings, obs 'object' and an image key."""
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        for i, t in enumerate(lengths):
            g = data.create_group(f"demo_{i}")
            g.attrs["num_samples"] = t
            g.attrs["model_file"] = "<mujoco model='base'/>"
            for grp in ("obs", "next_obs"):
                g.create_dataset(f"{grp}/robot0_eef_pos", data=rng.normal(size=(t, 3)))
                g.create_dataset(f"{grp}/object", data=rng.normal(size=(t, 10)))
                g.create_dataset(
                    f"{grp}/agentview_image",
                    data=rng.integers(0, 255, (t, 6, 6, 3), dtype=np.uint8),
                )
            g.create_dataset("actions", data=rng.uniform(-1, 1, (t, 7)))
            g.create_dataset("rewards", data=np.zeros(t))
            g.create_dataset("dones", data=(np.arange(t) == t - 1).astype(np.int64))
            if i != 1:  # states are optional (e.g. real-robot data)
                g.create_dataset("states", data=rng.normal(size=(t, 32)))
        data.attrs["total"] = sum(lengths)
        data.attrs["env_args"] = json.dumps(
            {"env_name": "Lift", "type": 1, "env_kwargs": {"has_renderer": False}}
        )
        f.create_dataset("mask/train", data=np.array([b"demo_0", b"demo_2"], dtype="S"))
        f.create_dataset("mask/valid", data=np.array([b"demo_1"], dtype="S"))


@pytest.fixture
def robomimic_file(tmp_path: Path) -> Path:
    path = tmp_path / "robomimic.hdf5"
    write_robomimic_file(path)
    return path
