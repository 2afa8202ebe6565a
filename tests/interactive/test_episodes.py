"""One interactive episode: labels are the expert's, whoever drives; hg keeps takeovers only."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, cast

import numpy as np

from apprentice.data.reader import DemoFile
from apprentice.data.store import DemoWriter
from apprentice.envs import gym_tasks  # noqa: F401  (registers gym/<id>)
from apprentice.envs.base import make_task
from apprentice.interactive.episodes import run_episode
from apprentice.interactive.gates import ActionGapGate
from apprentice.policies.base import Policy

TASK = "gym/InvertedPendulum-v5"


class ConstantExpert:
    name = "test"
    noise_free_dims: tuple[int, ...] = ()

    def __init__(self, value: float) -> None:
        self.value = value
        self.calls = 0

    def reset(self) -> None:
        pass

    def label(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        self.calls += 1
        return np.array([self.value], dtype=np.float32)


class ScriptedLearner:
    """Proposes `actions[t]` at step t of an episode (a learner with state: its step count)."""

    obs_keys: ClassVar[list[str]] = ["state"]

    def __init__(self, actions: list[float]) -> None:
        self.actions = actions
        self.t = 0

    def reset(self) -> None:
        self.t = 0

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        a = self.actions[min(self.t, len(self.actions) - 1)]
        self.t += 1
        return np.array([a], dtype=np.float32)


def test_dagger_labels_every_state_with_the_expert_action(tmp_path: Path) -> None:
    task = make_task(TASK)
    expert = ConstantExpert(0.01)
    learner = ScriptedLearner([-0.02])
    record = run_episode(
        task,
        expert,
        seed=3,
        mode="dagger",
        rng=np.random.default_rng(0),
        learner=cast(Policy, learner),
        beta=0.5,
        max_labels=8,
        attrs={"round": 2, "rollout": 0},
    )
    assert record.labels == record.steps == 8 == expert.calls
    assert 0 < record.learner_steps < 8  # both drove
    (episode,) = record.segments
    # The stored actions are the expert's labels, never the learner's -0.02.
    np.testing.assert_array_equal(episode.actions, np.full((8, 1), 0.01, dtype=np.float32))
    path = tmp_path / "agg.hdf5"
    with DemoWriter(path, env_args=task.env_args) as writer:
        writer.append(episode)
    with DemoFile(path) as f:
        attrs = f.attrs("demo_0")
        assert (attrs["source"], attrs["round"], attrs["num_samples"]) == ("dagger", 2, 8)
        np.testing.assert_array_equal(f.read_field("demo_0", "actions"), episode.actions)


def test_states_replay_the_executed_actions() -> None:
    """The stored state before each step is the simulator's, so a replay reproduces obs."""
    task = make_task(TASK)
    record = run_episode(
        task, ConstantExpert(0.0), seed=5, mode="expert", rng=np.random.default_rng(0)
    )
    ep = record.segments[0]
    replay = make_task(TASK)
    replay.reset(seed=0)
    replay.set_state(ep.states[4])
    np.testing.assert_allclose(replay.get_observation()["state"], ep.obs["state"][4], atol=1e-6)


def test_hg_dagger_labels_only_the_takeover_segments() -> None:
    task = make_task(TASK)
    # The learner agrees with the expert (0.0) except on steps 3-4 and 12, where it drifts.
    proposals = [0.0] * 20
    proposals[3] = proposals[4] = proposals[12] = 0.9
    learner = ScriptedLearner(proposals)
    gate = ActionGapGate(threshold=0.5, release=0.1, min_steps=2)
    record = run_episode(
        task,
        ConstantExpert(0.0),
        seed=1,
        mode="hg",
        rng=np.random.default_rng(0),
        learner=cast(Policy, learner),
        gate=gate,
        max_labels=None,
        steps_after_success=-1,
    )
    # Seed 1 with these actions is deterministic: the episode must reach the second drift.
    assert record.steps >= 15, f"the pendulum fell at step {record.steps}, before step 12"
    assert record.interventions == gate.interventions == 2
    # Takeover 1: steps 3, 4 (gap 0.9 on step 4 keeps it past min_steps), released at step 5
    # -> labels steps 3-4; takeover 2: step 12 held for min_steps -> steps 12-13.
    assert [s.num_samples for s in record.segments] == [2, 2]
    assert record.labels == 4
    assert record.learner_steps == record.steps - 4
    for segment in record.segments:
        np.testing.assert_array_equal(segment.actions, 0.0)
        assert segment.dones[-1] == 1.0
