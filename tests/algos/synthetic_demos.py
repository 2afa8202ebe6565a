"""Test helper: tiny demo files in the robomimic HDF5 layout, with learnable actions."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

OBS_DIMS = {"eef_pos": 3, "eef_quat": 4, "gripper_qpos": 2, "object": 10}
ACTION_DIM = 7


def write_demo_file(
    path: Path,
    *,
    num_demos: int = 6,
    length: int = 30,
    seed: int = 0,
    env_name: str = "lift",
    masks: dict[str, list[str]] | None = None,
    nan_action: bool = False,
) -> Path:
    """Demos whose actions are a fixed smooth function of the observation (learnable)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(sum(OBS_DIMS.values()), ACTION_DIM)) * 0.3
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["env_args"] = json.dumps({"env_name": env_name, "env_type": 0, "env_kwargs": {}})
        data.attrs["total"] = num_demos * length
        for i in range(num_demos):
            g = data.create_group(f"demo_{i}")
            obs = {
                k: (rng.normal(size=(length, d)) * 2 + 1).astype(np.float32)
                for k, d in OBS_DIMS.items()
            }
            flat = np.concatenate(list(obs.values()), axis=1)
            actions = np.tanh(flat @ w).astype(np.float32)
            if nan_action and i == 1:
                actions[3, 2] = np.nan
            for k, v in obs.items():
                g.create_dataset(f"obs/{k}", data=v)
            g.create_dataset("actions", data=actions)
            g.attrs["num_samples"] = length
        if masks:
            for name, demos in masks.items():
                f.create_dataset(f"mask/{name}", data=np.array(demos, dtype="S"))
    return path


CAMS = {"agentview_image": 32, "eye_in_hand_image": 24}


def write_camera_demos(path: Path, *, num_demos: int = 4, length: int = 20, seed: int = 0) -> Path:
    """Demos where a bright square's position in agentview (and nothing low-dim) sets the
    first two action dims, so a policy must read the image to fit them."""
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        env_args = {"env_name": "lift", "env_type": 0, "env_kwargs": {"camera": True}}
        data.attrs["env_args"] = json.dumps(env_args)
        data.attrs["total"] = num_demos * length
        for i in range(num_demos):
            g = data.create_group(f"demo_{i}")
            pos = rng.integers(2, 26, size=(length, 2))  # square corner (row, col)
            images = {
                k: rng.integers(0, 40, (length, s, s, 3), dtype=np.uint8) for k, s in CAMS.items()
            }
            for t, (r, c) in enumerate(pos):
                images["agentview_image"][t, r : r + 4, c : c + 4] = 255
            actions = np.zeros((length, 7), np.float32)
            actions[:, :2] = (pos - 14) / 12.0
            actions[:, 2:] = rng.uniform(-0.1, 0.1, (length, 5))
            g.create_dataset("obs/eef_pos", data=rng.normal(size=(length, 3)).astype(np.float32))
            for k, v in images.items():
                g.create_dataset(f"obs/{k}", data=v)
            g.create_dataset("actions", data=actions)
            g.attrs["num_samples"] = length
    return path
