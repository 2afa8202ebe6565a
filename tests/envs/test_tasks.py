"""Contract test over every registered task, plus the cameras."""

from __future__ import annotations

import os

import numpy as np
import pytest

from apprentice.envs import Oracle, Task, make_task, make_task_from_env_args, task_names
from apprentice.envs.arms import ArmSubtask, MultiArmTask
from apprentice.envs.mujoco_task import MujocoTask
from apprentice.errors import ApprenticeError

# The built-in MuJoCo tasks; the robosuite ones (an optional extra) have
# tests/envs/test_robosuite.py, Push-T (a planar gym-pusht env) tests/envs/test_pusht.py, and
# the gym/<id> control tasks (no oracle, no end effector) tests/envs/test_gym_tasks.py.
TASKS = task_names("builtin")
ARM_TASKS = [name for name in TASKS if isinstance(make_task(name), MujocoTask)]
"""The parallel-jaw tasks, which also take body="arm" (apprentice.envs.bodies)."""
CASES = [*TASKS, *(f"{name}:arm" for name in ARM_TASKS)]
"""Every task with its default body, and each parallel-jaw task on the 7-DoF arm."""
ORACLE_SEEDS = tuple(range(10))


def _make(case: str) -> Task:
    """The task of a case: "name" or "name:body"."""
    name, _, body = case.partition(":")
    return make_task(name, body=body) if body else make_task(name)


def _random_actions(n: int, seed: int, dim: int) -> np.ndarray:
    # Beyond [-1, 1] on purpose: the env must clip.
    return np.random.default_rng(seed).uniform(-1.5, 1.5, size=(n, dim)).astype(np.float32)


def _action_dim(env: object) -> int:
    """7 for the parallel-jaw tasks, more for a hand: 6 wrist dims, then the fingers; 7 per
    arm for a task with several arms."""
    return int(env.action_space.shape[0])  # type: ignore[attr-defined]


def _arm_prefixes(env: object) -> list[str]:
    """The observation-key prefix of each arm: "" for a single-arm task, "robot0_", ... for
    a task with several arms (apprentice.envs.arms)."""
    if isinstance(env, MultiArmTask):
        return [f"{name}_" for name in env.arm_names]
    return [""]


def _rollout(env: object, actions: np.ndarray) -> list[dict[str, np.ndarray]]:
    return [env.step(a)[0] for a in actions]  # type: ignore[attr-defined]


def test_builtin_tasks_are_registered() -> None:
    assert {"lift", "stack", "pick_place", "peg_insert"} <= set(TASKS)
    for name in TASKS:
        env = make_task(name)
        assert isinstance(env, Task)
        assert isinstance(env.oracle(np.random.default_rng(0)), Oracle)


def test_unknown_task_name_raises() -> None:
    with pytest.raises(ApprenticeError, match="unknown task 'nope'"):
        make_task("nope")


@pytest.mark.parametrize("name", TASKS)
def test_bad_kwargs_raise(name: str) -> None:
    with pytest.raises(ApprenticeError, match="unknown arguments"):
        make_task(name, colour="red")
    with pytest.raises(ApprenticeError, match="image_size"):
        make_task(name, image_size=0)


@pytest.mark.parametrize("case", CASES)
def test_spaces_and_observations(case: str) -> None:
    env = _make(case)
    dim = _action_dim(env)
    assert env.name == case.partition(":")[0]
    assert env.control_freq == 20.0
    assert env.action_space.shape == (dim,) and dim >= 7
    assert np.all(env.action_space.low == -1.0) and np.all(env.action_space.high == 1.0)
    obs, info = env.reset(seed=0)
    assert set(obs) == set(env.observation_space.spaces)
    assert "object" in obs
    prefixes = _arm_prefixes(env)
    for arm in prefixes:
        assert {f"{arm}eef_pos", f"{arm}eef_quat"} <= set(obs)
        fingers = {f"{arm}gripper_qpos", f"{arm}hand_qpos"}
        assert fingers & set(obs), "the fingers' joint positions"
    for key, space in env.observation_space.spaces.items():
        assert obs[key].dtype == space.dtype == np.float32, key
        assert obs[key].shape == space.shape, key
    movable = set(env.object_poses()) - set(env.fixture_names)
    # Per object: pos (3), quat (4), and its position relative to each arm's eef (3 each).
    assert obs["object"].shape[0] == (7 + 3 * len(prefixes)) * len(movable)
    assert info["success"] is False
    obs, reward, terminated, truncated, info = env.step(np.full(dim, 5.0))
    assert env.observation_space.contains(obs)
    assert reward == 0.0 and terminated is False and truncated is False
    assert isinstance(info["success"], bool)
    # An out-of-range action acts as its clipped self.
    env.reset(seed=1)
    clipped = _rollout(env, np.clip(_random_actions(5, 3, dim), -1, 1))
    env.reset(seed=1)
    raw = _rollout(env, _random_actions(5, 3, dim))
    for arm in prefixes:
        np.testing.assert_array_equal(clipped[-1][f"{arm}eef_pos"], raw[-1][f"{arm}eef_pos"])
    with pytest.raises(ApprenticeError, match=f"{dim} finite"):
        env.step(np.full(dim, np.nan))
    with pytest.raises(ApprenticeError, match=f"{dim} finite"):
        env.step(np.zeros(dim + 1))
    assert set(env.subtask_signals()) and all(
        isinstance(v, bool) for v in env.subtask_signals().values()
    )
    assert env.eef_pose().shape == (4, 4)
    assert all(p.shape == (4, 4) for p in env.object_poses().values())


@pytest.mark.parametrize("case", CASES)
def test_truncates_at_horizon(case: str) -> None:
    env = _make(case)
    env.reset(seed=0)
    truncated = [env.step(np.zeros(_action_dim(env)))[3] for _ in range(env.horizon)]
    assert not any(truncated[:-1]) and truncated[-1]


@pytest.mark.parametrize("case", CASES)
def test_seeded_reset_is_deterministic(case: str) -> None:
    env = _make(case)
    first, _ = env.reset(seed=7)
    first_run = _rollout(env, _random_actions(10, 0, _action_dim(env)))
    second, _ = env.reset(seed=7)
    second_run = _rollout(env, _random_actions(10, 0, _action_dim(env)))
    np.testing.assert_array_equal(first["object"], second["object"])
    np.testing.assert_array_equal(first_run[-1]["object"], second_run[-1]["object"])
    other, _ = env.reset(seed=8)
    assert not np.array_equal(first["object"], other["object"])


@pytest.mark.parametrize("case", CASES)
def test_set_state_replays_exactly(case: str) -> None:
    env = _make(case)
    obs, _ = env.reset(seed=3)
    oracle = env.oracle(np.random.default_rng(0))
    oracle.reset()
    actions, states, observations = [], [], []
    for _ in range(30):
        states.append(env.get_state())
        action = oracle.act(obs)
        obs = env.step(action)[0]
        actions.append(action)
        observations.append(obs)
    assert states[0].dtype == np.float64 and states[0].ndim == 1
    env.reset(seed=99)
    env.set_state(states[10])
    assert env.get_observation()["object"].tobytes() == observations[9]["object"].tobytes()
    for t in range(10, 30):
        replayed = env.step(actions[t])[0]
        for key in observations[t]:
            assert replayed[key].tobytes() == observations[t][key].tobytes(), (t, key)
    with pytest.raises(ApprenticeError, match="must have"):
        env.set_state(np.zeros(3))


@pytest.mark.parametrize("case", CASES)
def test_action_and_target_pose_round_trip(case: str) -> None:
    env = _make(case)
    dim = _action_dim(env)
    env.reset(seed=0)
    _rollout(env, _random_actions(3, 1, dim))
    if isinstance(env, MultiArmTask):
        _check_arms_round_trip(env)
        return
    for action in np.random.default_rng(2).uniform(-1, 1, size=(20, dim)):
        pose = env.action_to_target_pose(action)
        np.testing.assert_allclose(pose[:3, :3] @ pose[:3, :3].T, np.eye(3), atol=1e-12)
        # The last action dim is the gripper level that recording keeps and generation
        # replays; a hand's other finger dims follow from it by the hand's grasp synergy.
        back = env.target_pose_to_action(pose, float(action[-1]))
        np.testing.assert_allclose(back[:6], action[:6], atol=1e-9)
        assert back[-1] == pytest.approx(action[-1], abs=1e-12)
    far = env.eef_pose()
    far[:3, 3] += 1.0
    assert np.all(env.target_pose_to_action(far, 3.0) <= 1.0)


def _check_arms_round_trip(env: MultiArmTask) -> None:
    """Each arm's share of an action maps to its target pose and back; the single-arm form
    drives arm 0 (or the arm named) and leaves the others where they are."""
    dim = _action_dim(env)
    assert len(env.arm_actions) == env.n_arms == len(env.eef_poses())
    assert sum(sl.stop - sl.start for sl in env.arm_actions) == dim
    for action in np.random.default_rng(2).uniform(-1, 1, size=(20, dim)):
        poses = env.action_to_target_poses(action)
        np.testing.assert_array_equal(poses[0], env.action_to_target_pose(action))
        grippers = [float(action[sl][-1]) for sl in env.arm_actions]
        np.testing.assert_allclose(env.target_poses_to_action(poses, grippers), action, atol=1e-9)
        for arm, (pose, sl) in enumerate(zip(poses, env.arm_actions, strict=True)):
            back = env.target_pose_to_action(pose, grippers[arm], arm=arm)
            np.testing.assert_allclose(back[sl], action[sl], atol=1e-9)
            others = np.delete(back, np.r_[sl])
            assert np.allclose(others.reshape(env.n_arms - 1, -1)[:, :6], 0.0, atol=1e-12)
    far = env.eef_pose()
    far[:3, 3] += 1.0
    assert np.all(env.target_pose_to_action(far, 3.0) <= 1.0)


@pytest.mark.parametrize("case", CASES)
def test_controller_tracks_the_commanded_delta(case: str) -> None:
    # The gripper moves through physics, so it should cover most of the commanded 5 cm per
    # step along x and 0.5 rad per step in yaw, without overshooting wildly.
    env = _make(case)
    env.reset(seed=0)
    start = env.eef_pose()
    opened = env.target_pose_to_action(start, -1.0)  # no motion, the gripper or hand open
    for _ in range(4):
        env.step(np.r_[1.0, 0, 0, 0, 0, 0, opened[6:]])
    moved = env.eef_pose()[:3, 3] - start[:3, 3]
    assert 0.15 < moved[0] < 0.22 and abs(moved[1]) < 0.005 and abs(moved[2]) < 0.005
    start = env.eef_pose()
    for _ in range(2):
        env.step(np.r_[0, 0, 0, 0, 0, 1.0, opened[6:]])
    turn = env.eef_pose()[:3, :3] @ start[:3, :3].T
    assert 0.7 < np.arctan2(turn[1, 0], turn[0, 0]) < 1.1


@pytest.mark.parametrize("case", CASES)
def test_env_args_rebuild_the_task(case: str) -> None:
    env = _make(case)
    args = env.env_args
    assert args["env_name"] == case.partition(":")[0] and args["env_type"] == "apprentice"
    rebuilt = make_task_from_env_args(args)
    assert rebuilt.env_args == args
    a, _ = env.reset(seed=5)
    b, _ = rebuilt.reset(seed=5)
    np.testing.assert_array_equal(a["object"], b["object"])


@pytest.mark.parametrize("case", CASES)
def test_oracle_succeeds(case: str) -> None:
    env = _make(case)
    successes = 0
    for seed in ORACLE_SEEDS:
        obs, _ = env.reset(seed=seed)
        oracle = env.oracle(np.random.default_rng(seed))
        oracle.reset()
        seen = {k: False for k in env.subtask_signals()}
        for _ in range(env.horizon):
            action = oracle.act(obs)
            assert action.shape == env.action_space.shape and np.all(np.abs(action) <= 1.0)
            obs, reward, _, _, info = env.step(action)
            seen = {k: seen[k] or v for k, v in env.subtask_signals().items()}
            if info["success"]:
                assert reward == 1.0 and env.is_success()
                break
        successes += info["success"]
        if info["success"]:
            assert all(seen.values()), seen
    assert successes == len(ORACLE_SEEDS)


def test_camera_observations() -> None:
    os.environ.setdefault("MUJOCO_GL", "egl")
    env = make_task("lift", camera=True)
    obs, _ = env.reset(seed=0)
    for key in ("agentview_image", "eye_in_hand_image"):
        image = obs[key]
        assert image.shape == (84, 84, 3) and image.dtype == np.uint8
        assert env.observation_space[key].contains(image)
        assert image.std() > 5.0, f"{key} looks blank"
    assert not np.array_equal(obs["agentview_image"], obs["eye_in_hand_image"])
    frame = env.render_frame("agentview", 160)
    assert frame.shape == (160, 160, 3) and frame.dtype == np.uint8
    with pytest.raises(ApprenticeError, match="unknown camera"):
        env.render_frame("ceiling")
    env.close()


@pytest.mark.parametrize("case", CASES)
def test_subtasks_name_real_objects_and_signals(case: str) -> None:
    env = _make(case)
    env.reset(seed=0)
    assert env.subtasks, "every built-in task can be generated from"
    for sub in env.subtasks:
        assert sub.object is None or sub.object in env.object_poses()
        assert sub.held is None or sub.held in env.object_poses()
    # A task with several arms lists each arm's stages, arm after arm (apprentice.envs.arms).
    n_arms = env.n_arms if isinstance(env, MultiArmTask) else 1
    for arm in range(n_arms):
        stages = [s for s in env.subtasks if getattr(s, "arm", 0) == arm]
        assert stages, f"arm {arm} has no subtasks"
        assert stages[-1].term_signal is None
        for sub in stages[:-1]:
            assert sub.term_signal in env.subtask_signals()
    if n_arms > 1:
        arm_stages = [s for s in env.subtasks if isinstance(s, ArmSubtask)]
        assert len(arm_stages) == len(env.subtasks)
        arms = [s.arm for s in arm_stages]
        assert arms == sorted(arms), "each arm's stages together, in arm order"
        # A coordination group has one stage per arm, all ending on the same signal.
        groups: dict[str, list[ArmSubtask]] = {}
        for sub in arm_stages:
            if sub.sync is not None:
                groups.setdefault(sub.sync, []).append(sub)
        assert groups, "the arms coordinate somewhere"
        for members in groups.values():
            assert sorted(m.arm for m in members) == list(range(n_arms))
            assert len({m.term_signal for m in members}) == 1


@pytest.mark.parametrize("name", TASKS)
def test_d1_variant_spreads_objects_wider(name: str) -> None:
    def spread(variant: str) -> float:
        env = make_task(name, variant=variant)
        xy = []
        for seed in range(40):
            env.reset(seed=seed)
            xy.append(env.object_poses()[env.object_names[0]][:2, 3])
        return float(np.ptp(np.asarray(xy), axis=0).max())

    d0, d1 = spread("D0"), spread("D1")
    assert d1 > 1.3 * d0
    assert make_task(name, variant="D1").env_args["env_kwargs"]["variant"] == "D1"


def test_unknown_variant_is_named() -> None:
    with pytest.raises(ApprenticeError, match=r"no variant 'D7'.*D0, D1"):
        make_task("lift", variant="D7")
