"""One interactive episode: labels are the expert's, whoever drives; hg keeps takeovers only."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import ClassVar, cast

import numpy as np

from apprentice.collect.record import record_episode
from apprentice.data.episode import Episode
from apprentice.data.reader import DemoFile
from apprentice.data.store import DemoWriter
from apprentice.envs import gym_tasks  # noqa: F401  (registers gym/<id>)
from apprentice.envs.base import make_task
from apprentice.envs.gym_tasks import builtin_expert
from apprentice.interactive.episodes import run_episode
from apprentice.interactive.experts import OracleExpert
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


class _StillLearner:
    """Proposes holding still (a learner whose action differs from the oracle's)."""

    obs_keys: ClassVar[list[str]] = []

    def reset(self) -> None:
        pass

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return np.zeros(7, dtype=np.float32)


def _digest(episodes: list[Episode]) -> str:
    h = hashlib.sha256()
    for ep in episodes:
        for part in (ep.obs, ep.next_obs):
            for key in sorted(part):
                h.update(np.ascontiguousarray(part[key]).tobytes())
        for array in (ep.actions, ep.rewards, ep.dones, ep.states):
            h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()[:16]


def test_a_dagger_episode_on_lift_is_the_one_recorded_for_its_seed() -> None:
    """A mixture episode (coin flips, the oracle labelling in shadow, the steps kept past
    success) gives the arrays recorded for this seed, bit for bit."""
    task = make_task("lift")
    record = run_episode(
        task,
        OracleExpert(task, np.random.default_rng(0)),
        seed=3,
        mode="dagger",
        rng=np.random.default_rng(1),
        learner=cast(Policy, _StillLearner()),
        beta=0.6,
    )
    assert (record.steps, record.learner_steps, record.labels, record.success) == (42, 16, 42, True)
    assert _digest(record.segments) == "dd54551172744261"


def test_an_expert_episode_is_the_demo_collection_records() -> None:
    """DAgger's expert episodes and `apprentice collect`'s demos are one loop: the same
    expert from the same seed gives the same arrays through both."""
    task = make_task(TASK)
    law = builtin_expert(task)

    class PD:
        name = "pd"
        noise_free_dims: tuple[int, ...] = ()

        def reset(self) -> None:
            pass

        def label(self, obs: dict[str, np.ndarray]) -> np.ndarray:
            return law.act(obs)

    (labelled,) = run_episode(
        task, PD(), seed=5, mode="expert", rng=np.random.default_rng(0), steps_after_success=-1
    ).segments
    demo = record_episode(
        task, law.act, seed=5, source="pd", stop_on_success=False, with_datagen=False
    )
    assert labelled.num_samples == demo.num_samples > 1
    for key in demo.obs:
        np.testing.assert_array_equal(labelled.obs[key], demo.obs[key])
        np.testing.assert_array_equal(labelled.next_obs[key], demo.next_obs[key])
    for name in ("actions", "rewards", "dones", "states"):
        np.testing.assert_array_equal(getattr(labelled, name), getattr(demo, name))
