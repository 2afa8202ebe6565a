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
