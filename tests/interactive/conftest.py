"""Fixtures: a tiny SB3 expert for gym/InvertedPendulum-v5, trained in a couple of seconds."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")  # before mujoco loads: the teleop tests render


@pytest.fixture(scope="session")
def pendulum_expert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PPO model after 128 steps (a poor expert, but a deterministic labeller) and its
    record; the returns in the record are placeholders the normalization divides by."""
    import gymnasium as gym
    import torch
    from stable_baselines3 import PPO

    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("experts")
    model = PPO(
        "MlpPolicy",
        gym.make("InvertedPendulum-v5"),
        n_steps=64,
        batch_size=64,
        n_epochs=1,
        seed=0,
        policy_kwargs={"net_arch": [16]},
    )
    model.learn(total_timesteps=128)
    path = folder / "InvertedPendulum-v5.zip"
    model.save(path)
    record = {
        "env_name": "gym/InvertedPendulum-v5",
        "algo": "ppo",
        "expert_return": 100.0,
        "random_return": 5.0,
    }
    path.with_suffix(".json").write_text(json.dumps(record))
    return path
