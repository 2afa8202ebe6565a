"""Push-T (gym-pusht) behind the Task protocol, and its planning expert."""

from __future__ import annotations

import numpy as np
import pytest

from apprentice.envs import Oracle, Task, make_task, make_task_from_env_args
from apprentice.envs import pusht as pusht_module
from apprentice.envs.pusht import PushTTask, outline_contacts, pose_cost
from apprentice.errors import ApprenticeError
from apprentice.evaluate.rollout import rollout_batch


@pytest.fixture(scope="module")
def task() -> PushTTask:
    t = make_task("pusht")
    assert isinstance(t, PushTTask)
    return t


def test_spaces_observations_and_protocol(task: PushTTask) -> None:
    assert isinstance(task, Task)
    obs, info = task.reset(seed=3)
    assert set(obs) == {"agent_pos", "keypoints"}
    for key, value in obs.items():
        assert value.dtype == np.float32
        assert value.shape == task.observation_space[key].shape
    assert task.action_space.shape == (2,)
    assert 0.0 <= info["coverage"] <= 1.0
    # The keypoints are the T's eight corners: the block pose moved by the env moves them.
    pose = task.block_pose()
    corners = obs["keypoints"].reshape(8, 2)
    assert np.linalg.norm(corners.mean(axis=0) - pose[:2]) < 80.0


def test_actions_are_target_positions_scaled_to_unit_box(task: PushTTask) -> None:
    for target in ([0.0, 0.0], [512.0, 512.0], [128.0, 400.0]):
        a = task.from_env_action(np.array(target))
        assert np.all(np.abs(a) <= 1.0)
        np.testing.assert_allclose(task.to_env_action(a), target, atol=1e-3)
    # The pusher goes where the action says.
    task.reset(seed=0)
    goal = np.array([100.0, 420.0])
    for _ in range(15):
        task.step(task.from_env_action(goal))
    np.testing.assert_allclose(task.agent_position(), goal, atol=2.0)


def test_seeded_reset_is_deterministic_and_seeds_differ(task: PushTTask) -> None:
    a, _ = task.reset(seed=11)
    b, _ = task.reset(seed=11)
    c, _ = task.reset(seed=12)
    np.testing.assert_array_equal(a["keypoints"], b["keypoints"])
    assert not np.allclose(a["keypoints"], c["keypoints"])


def test_set_state_restores_the_state_and_replays(task: PushTTask) -> None:
    task.reset(seed=5)
    oracle = task.oracle(np.random.default_rng(5))
    obs = task.get_observation()
    states, actions = [], []
    for _ in range(40):  # the expert's first push moves the block
        states.append(task.get_state())
        actions.append(oracle.act(obs))
        obs, *_ = task.step(actions[-1])
    assert np.linalg.norm(states[-1][4:6] - states[0][4:6]) > 1.0, "the block never moved"
    after = task.get_observation()
    task.reset(seed=99)  # elsewhere
    task.set_state(states[-1])
    np.testing.assert_allclose(task.get_state(), states[-1])
    task.step(actions[-1])
    np.testing.assert_allclose(task.get_observation()["keypoints"], after["keypoints"], atol=0.5)


def test_the_expert_succeeds(task: PushTTask) -> None:
    for seed in (0, 1):
        obs, _ = task.reset(seed=seed)
        oracle = task.oracle(np.random.default_rng(seed))
        assert isinstance(oracle, Oracle)
        oracle.reset()
        for _ in range(task.horizon):
            obs, reward, terminated, _, info = task.step(oracle.act(obs))
            if terminated:
                break
        assert task.is_success(), f"seed {seed}: coverage {task.coverage():.3f}"
        assert info["success"] and task.coverage() > 0.95 and reward == 1.0


def test_pose_cost_and_outline() -> None:
    goal = np.array([256.0, 256.0, np.pi / 4])
    assert pose_cost(goal, goal) == 0.0
    # An angle a full turn away is the same pose.
    assert pose_cost(goal + np.array([0.0, 0.0, 2 * np.pi]), goal) == pytest.approx(0.0, abs=1e-9)
    assert pose_cost(goal + np.array([3.0, 4.0, 0.0]), goal) == pytest.approx(5.0)
    points, normals = outline_contacts()
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0)
    # Every normal points out of the T: a step along it leaves the outline's polygon.
    from shapely.geometry import Point, Polygon

    tee = Polygon(pusht_module.tee_outline())
    assert tee.is_valid and tee.exterior.is_ccw
    assert all(not tee.contains(Point(p + 2.0 * n)) for p, n in zip(points, normals, strict=True))
    assert all(tee.contains(Point(p - 2.0 * n)) for p, n in zip(points, normals, strict=True))


def test_env_args_rebuild_the_task(task: PushTTask) -> None:
    assert task.env_args["env_name"] == "pusht"
    again = make_task_from_env_args(task.env_args)
    assert isinstance(again, PushTTask)


def test_camera_gives_the_top_down_view_and_rebuilds_with_it() -> None:
    task = make_task("pusht", camera=True, image_size=32)
    obs, _ = task.reset(seed=3)
    assert obs["image"].shape == (32, 32, 3) and obs["image"].dtype == np.uint8
    assert task.observation_space.contains(obs)
    np.testing.assert_array_equal(obs["image"], task.render_frame("top", 32))
    before = obs["image"].copy()
    obs, *_ = task.step(np.array([0.9, -0.9], dtype=np.float32))  # the pusher moves
    assert not np.array_equal(obs["image"], before)
    again = make_task_from_env_args(task.env_args)
    assert again.reset(seed=3)[0]["image"].shape == (32, 32, 3)
    np.testing.assert_array_equal(again.reset(seed=3)[0]["image"], task.reset(seed=3)[0]["image"])
    state_only = make_task("pusht")
    assert "image" not in state_only.reset(seed=3)[0]
    assert state_only.env_args["env_kwargs"] == {}


def test_bad_input_is_named(task: PushTTask) -> None:
    with pytest.raises(ApprenticeError, match="unknown arguments"):
        make_task("pusht", colour="red")
    with pytest.raises(ApprenticeError, match="image_size"):
        make_task("pusht", camera=True, image_size=2)
    with pytest.raises(ApprenticeError, match="variant"):
        make_task("pusht", variant="D1")
    with pytest.raises(ApprenticeError, match=r"expected \(10,\)"):
        task.set_state(np.zeros(5))
    task.reset(seed=0)
    with pytest.raises(ApprenticeError, match="2 finite numbers"):
        task.step(np.array([np.nan, 0.0], dtype=np.float32))
    with pytest.raises(ApprenticeError, match="2 finite numbers"):
        task.step(np.zeros(7, dtype=np.float32))


def test_missing_package_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pusht_module, "_available", lambda: False)
    with pytest.raises(ApprenticeError, match=r"apprentice\[pusht\]"):
        PushTTask()


class _OraclePolicy:
    """The expert behind the batched policy interface that rollouts call."""

    def __init__(self, tasks: list[PushTTask]) -> None:
        self.oracles = [t.oracle(np.random.default_rng(i)) for i, t in enumerate(tasks)]

    def reset(self) -> None:
        for o in self.oracles:
            o.reset()

    def act_batch(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return np.stack([o.act({}) for o in self.oracles])


def test_rollouts_record_the_best_reward() -> None:
    """The score Diffusion Policy reports on Push-T: each episode's best normalized coverage."""
    tasks = [PushTTask(), PushTTask()]
    results = rollout_batch(_OraclePolicy(tasks), tasks, [2, 3])  # type: ignore[arg-type]
    for r, t in zip(results, tasks, strict=True):
        assert r.success and r.max_reward == 1.0
        assert r.length < t.horizon
    # A pusher that stays put leaves the T where it is: the best reward is its first coverage.
    still = PushTTask()
    _, info = still.reset(seed=4)

    class Still:
        def reset(self) -> None: ...

        def act_batch(self, obs: dict[str, np.ndarray]) -> np.ndarray:
            return PushTTask.from_env_action(obs["agent_pos"])

    (r,) = rollout_batch(Still(), [still], [4])  # type: ignore[arg-type]
    assert not r.success and r.length == still.horizon
    assert r.max_reward == pytest.approx(min(info["coverage"] / 0.95, 1.0), abs=1e-6)
