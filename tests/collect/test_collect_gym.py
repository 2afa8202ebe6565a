"""`apprentice collect` on the gym/<id> control tasks: built-in or stable-baselines3 experts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from apprentice.collect.oracle import CollectConfig, collect_demos
from apprentice.data import DemoFile
from apprentice.envs import make_task
from apprentice.envs.gym_tasks import GymTask, builtin_expert
from apprentice.errors import ApprenticeError

PENDULUM = "gym/InvertedPendulum-v5"


@pytest.fixture(scope="module")
def sb3_expert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained PPO model of the pendulum and its record: a deterministic demonstrator."""
    import gymnasium as gym
    from stable_baselines3 import PPO

    path = tmp_path_factory.mktemp("experts") / "pendulum.zip"
    model = PPO(
        "MlpPolicy", gym.make("InvertedPendulum-v5"), seed=0, policy_kwargs={"net_arch": [8]}
    )
    model.save(path)
    path.with_suffix(".json").write_text(json.dumps({"env_name": PENDULUM, "algo": "ppo"}))
    return path


def test_the_built_in_expert_records_whole_episodes(tmp_path: Path) -> None:
    out = tmp_path / "pendulum.hdf5"
    r = collect_demos(CollectConfig(task=PENDULUM, n=3, out=str(out), workers=1, progress=False))
    assert r.successes == 3
    task = make_task(PENDULUM)
    assert isinstance(task, GymTask)
    law = builtin_expert(task)
    with DemoFile(out) as f:
        names = f.demo_names
        assert f.env_args["env_name"] == PENDULUM
        assert sorted(f.masks["train"] + f.masks["valid"]) == sorted(names)
        ep = f.read(names[0])
    # The PD law balances the pole: the episode runs to the horizon, every step its action.
    assert ep.num_samples == task.horizon and ep.source == "oracle"
    assert ep.datagen_info is None
    for t in (0, 10, 500):
        step_obs = {"state": ep.obs["state"][t]}
        np.testing.assert_array_equal(ep.actions[t], law.act(step_obs))


def test_an_sb3_expert_demonstrates_a_gym_task(tmp_path: Path, sb3_expert: Path) -> None:
    out = tmp_path / "sb3.hdf5"
    cfg = CollectConfig(
        task=PENDULUM, n=2, out=str(out), workers=1, expert=str(sb3_expert), progress=False
    )
    assert collect_demos(cfg).successes == 2
    with DemoFile(out) as f:
        episodes = [f.read(n) for n in f.demo_names]
    assert [ep.source for ep in episodes] == ["sb3", "sb3"]
    assert [ep.seed for ep in episodes] == [0, 1]


def test_a_gym_task_without_a_built_in_expert_asks_for_one(tmp_path: Path) -> None:
    with pytest.raises(ApprenticeError, match=r"no built-in expert.*--expert model\.zip"):
        collect_demos(CollectConfig(task="gym/Reacher-v5", n=1, out=str(tmp_path / "r.hdf5")))


def test_an_sb3_expert_for_a_manipulation_task_is_refused(tmp_path: Path, sb3_expert: Path) -> None:
    with pytest.raises(ApprenticeError, match="records its scripted oracle"):
        collect_demos(
            CollectConfig(task="lift", n=1, out=str(tmp_path / "l.hdf5"), expert=str(sb3_expert))
        )
