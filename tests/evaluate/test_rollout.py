"""The one rollout loop: a recorder sees every step and changes no result; steps past success."""

from __future__ import annotations

import itertools

import numpy as np

from apprentice.envs.base import Task, make_task
from apprentice.evaluate.rollout import EpisodeResult, PerObservation, Step, rollout_batch

SEEDS = [7, 8]


def _oracles(tasks: list[Task]) -> PerObservation:
    """lift's oracle, one per env, as a batched policy: rows are asked in order each step."""
    oracles = [t.oracle(np.random.default_rng(i)) for i, t in enumerate(tasks)]
    rows = itertools.cycle(oracles)

    def reset() -> None:
        for o in oracles:
            o.reset()

    return PerObservation(lambda obs: next(rows).act(obs), reset=reset)


class _Recorder:
    """Keeps every step per env; ends env `stop_env`'s episode after `stop_at` steps."""

    def __init__(self, stop_env: int = -1, stop_at: int = 0) -> None:
        self.steps: dict[int, list[Step]] = {}
        self.before: dict[int, int] = {}
        self.stop_env, self.stop_at = stop_env, stop_at

    def before_step(self, env: int, action: np.ndarray) -> None:
        self.before[env] = self.before.get(env, 0) + 1

    def after_step(self, env: int, step: Step) -> bool:
        self.steps.setdefault(env, []).append(step)
        return env == self.stop_env and len(self.steps[env]) >= self.stop_at


def _rollout(**kw: object) -> list[EpisodeResult]:
    tasks = [make_task("lift") for _ in SEEDS]
    return rollout_batch(_oracles(tasks), tasks, SEEDS, **kw)  # type: ignore[arg-type]


def test_a_recorder_sees_every_step_and_changes_no_result() -> None:
    plain = _rollout()
    assert all(r.success for r in plain), "lift's oracle should succeed on these seeds"
    recorder = _Recorder()
    assert _rollout(recorder=recorder) == plain
    for env, result in enumerate(plain):
        steps = recorder.steps[env]
        assert len(steps) == recorder.before[env] == result.length
        # Each step starts from the observation the one before it ended in.
        for prev, nxt in itertools.pairwise(steps):
            for key, value in prev.next_obs.items():
                np.testing.assert_array_equal(value, nxt.obs[key])
        assert [s.done for s in steps] == [False] * (len(steps) - 1) + [True]
        assert sum(s.reward for s in steps) == result.episode_return


def test_steps_past_success_are_kept_but_not_scored() -> None:
    plain = _rollout()
    longer = _rollout(steps_after_success=3)
    for a, b in zip(plain, longer, strict=True):
        assert b.length == a.length + 3 and b.success
        # The score is the episode's up to its first success, whatever follows it.
        assert (b.episode_return, b.max_reward) == (a.episode_return, a.max_reward)
    horizon = make_task("lift").horizon
    assert all(r.length == horizon for r in _rollout(steps_after_success=None))


def test_a_recorder_ends_an_episode() -> None:
    recorder = _Recorder(stop_env=1, stop_at=5)
    first, second = _rollout(recorder=recorder)
    assert second.length == 5 and not second.success
    assert first == _rollout()[0]  # the other env is not affected
    # The recorder's stop is its own: the loop's done of that step stays False.
    assert not recorder.steps[1][-1].done
