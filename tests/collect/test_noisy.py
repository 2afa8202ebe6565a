"""Human-like defects act through the task's mapping: a hand's fingers and each of two arms'
grippers pause, chatter and let go as a gripper does, and a gripper's demos stay as they were."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from apprentice.collect.noisy import (
    DEFECTS,
    HumanNoise,
    add_motion_noise,
    collect_human_like,
    motion_dims,
)
from apprentice.envs import make_task
from apprentice.envs.hand_grasp import grasp_synergy


def only(defect: str) -> HumanNoise:
    return HumanNoise(**{d: 1.0 if d == defect else 0.0 for d in DEFECTS})  # type: ignore[arg-type]


def stretches(mask: np.ndarray) -> list[range]:
    """The runs of True in `mask` (T,), as step ranges."""
    runs, start = [], None
    for t, on in enumerate([*mask.tolist(), False]):
        if on and start is None:
            start = t
        elif not on and start is not None:
            runs.append(range(start, t))
            start = None
    return runs


@pytest.mark.parametrize("defect", DEFECTS)
def test_every_hand_action_keeps_the_fingers_on_the_grasp_synergy(defect: str) -> None:
    """Before, a pause sent 0 (mid-range) to 19 finger targets and a failed grasp opened the
    thumb's last joint only; now every action's fingers are the synergy of its grasp level."""
    task = make_task("hand_grasp")
    episode = collect_human_like(task, task.oracle(np.random.default_rng(1)), only(defect), seed=1)
    assert episode.attrs["injected"] == defect
    actions = episode.actions
    assert actions.shape[1] == 26
    for action in actions:
        np.testing.assert_allclose(action[6:], grasp_synergy(float(action[-1])), atol=1e-6)
    level = actions[:, -1]
    if defect in ("pause", "hesitation"):  # the wrist held still, the grasp as it was
        still = np.all(actions[:, :6] == 0.0, axis=1)
        assert still.sum() >= (12 if defect == "pause" else 6)
        for run in stretches(still):
            assert run.start > 0 and np.all(level[run] == level[run.start - 1])
    if defect == "chatter":  # taps to closed in free space, open again before the grasp
        taps = stretches(level[:20] == 1.0)
        assert len(taps) >= 2 and all(level[r.stop] == -1.0 for r in taps)
    if defect == "failed_grasp":  # closes, opens fully for a few steps, closes again
        closed = np.flatnonzero(level > 0)
        reopened = np.flatnonzero(level[closed[0] :] == -1.0) + closed[0]
        assert len(reopened) >= 5 and np.any(level[reopened[-1] :] > 0)


@pytest.mark.parametrize("defect", ["pause", "chatter", "failed_grasp", "jitter"])
def test_two_arm_defects_act_per_arm(defect: str, fake_two_arm: Any) -> None:
    task = make_task("test_two_arm")
    oracle = task.oracle(np.random.default_rng(0))
    episode = collect_human_like(task, oracle, only(defect), seed=2, after=30)
    a = episode.actions
    assert a.shape[1] == 14 and episode.attrs["injected"] == defect
    grippers = a[:, [6, 13]]
    if defect == "pause":  # both arms still, both grippers held
        still = np.all(a[:, [*range(6), *range(7, 13)]] == 0.0, axis=1)
        assert still.sum() >= 12
        for run in stretches(still):
            assert np.all(grippers[run] == grippers[run.start - 1])
    if defect == "chatter":  # one arm's gripper taps closed; the other stays open
        taps = grippers[:12] == 1.0
        assert taps.any() and taps.any(axis=0).sum() == 1
    if defect == "failed_grasp":  # the arm that closed first lets go for a few steps
        first = int(np.argmax(np.any(grippers > 0, axis=1)))
        arm = int(np.argmax(grippers[first] > 0))
        assert np.sum(grippers[first:, arm] == -1.0) >= 5
    if defect == "jitter":  # tremor on the motion, never on a gripper
        assert set(np.unique(grippers)) <= {-1.0, 1.0}
        assert np.any(np.abs(a[:, [*range(6), *range(7, 13)]]) > 0.7)


def test_a_gripper_pause_is_zero_motion_with_the_gripper_held() -> None:
    task = make_task("lift")
    episode = collect_human_like(task, task.oracle(np.random.default_rng(0)), only("pause"), seed=0)
    still = np.all(episode.actions[:, :6] == 0.0, axis=1)
    (run,) = stretches(still)
    assert len(run) >= 12
    np.testing.assert_array_equal(episode.actions[run, 6], episode.actions[run.start - 1, 6])


@pytest.mark.parametrize("name", ["handover", "bimanual_lift"])
def test_a_pause_holds_both_grippers_of_a_built_in_two_arm_task(name: str) -> None:
    task = make_task(name)
    episode = collect_human_like(task, task.oracle(np.random.default_rng(0)), only("pause"), seed=0)
    a = episode.actions
    still = np.all(a[:, [*range(6), *range(7, 13)]] == 0.0, axis=1)
    run = max(stretches(still), key=len)  # the pause; the oracle may hold still on its own
    assert len(run) >= 12
    np.testing.assert_array_equal(
        a[run][:, [6, 13]], np.tile(a[run.start - 1, [6, 13]], (len(run), 1))
    )


@pytest.mark.parametrize(
    ("name", "moved"),
    [
        ("lift", list(range(6))),
        ("handover", [*range(6), *range(7, 13)]),
        ("hand_grasp", list(range(6))),
        ("pusht", [0]),
    ],
)
def test_action_noise_moves_each_arms_pose_and_not_its_grasp(name: str, moved: list[int]) -> None:
    task = make_task(name)
    dims = motion_dims(task)
    assert dims == moved
    action = np.zeros(task.action_space.shape[0])
    noisy = add_motion_noise(action, dims, 0.1, np.random.default_rng(0))
    assert np.all(noisy[moved] != 0.0)
    np.testing.assert_array_equal(np.delete(noisy, moved), np.delete(action, moved))
    task.close()
