"""hand_grasp: the hand's joints, the objects, exact state round trips, the oracle, the errors
and the cameras (the contract test, tests/envs/test_tasks.py, covers the rest)."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from apprentice.envs import make_task, make_task_from_env_args
from apprentice.envs.hand_grasp import FINGER_JOINTS, WRIST_JOINTS, HandGrasp, grasp_synergy
from apprentice.envs.hand_grasp_objects import HALF_EXTENT_RANGES, SHAPES
from apprentice.errors import ApprenticeError


def _task(**kwargs: object) -> HandGrasp:
    env = make_task("hand_grasp", **kwargs)
    assert isinstance(env, HandGrasp)
    return env


def _seed_per_shape(env: HandGrasp) -> dict[str, int]:
    seeds: dict[str, int] = {}
    for seed in range(100):
        env.reset(seed=seed)
        seeds.setdefault(env.shape, seed)
    return seeds


def test_the_hand_has_20_actuated_finger_joints_with_limits() -> None:
    env = _task()
    m = env.model
    wrist = {m.joint(j).id for j in WRIST_JOINTS}
    actuated = {int(m.actuator_trnid[a, 0]) for a in range(m.nu)}
    fingers = [j for j in actuated - wrist if m.jnt_type[j] == mujoco.mjtJoint.mjJNT_HINGE]
    assert len(fingers) == len(FINGER_JOINTS) == 20 >= 16
    assert {m.joint(j).name for j in fingers} == set(FINGER_JOINTS)
    for j in fingers:
        dof = m.jnt_dofadr[j]
        assert m.jnt_limited[j] and m.jnt_range[j, 0] < m.jnt_range[j, 1]
        assert m.dof_damping[dof] > 0 and m.dof_armature[dof] > 0
    assert env.action_space.shape == (6 + 20,)
    obs, _ = env.reset(seed=0)
    assert obs["hand_qpos"].shape == obs["hand_qvel"].shape == (20,)
    assert obs["object"].shape == (10,) and obs["object_shape"].shape == (len(SHAPES) + 3,)


def test_the_grasp_synergy_runs_the_last_action_dim_from_open_to_closed() -> None:
    # Recording keeps the last action dim as the gripper action; generation hands it back to
    # target_pose_to_action, which must then reproduce the whole hand.
    env = _task()
    env.reset(seed=0)
    for level in (-1.0, -0.3, 0.4, 1.0):
        action = env.target_pose_to_action(env.eef_pose(), level)
        assert action[-1] == pytest.approx(level, abs=1e-12)
        np.testing.assert_array_equal(action[6:], grasp_synergy(level))
    np.testing.assert_array_equal(
        env.target_pose_to_action(env.eef_pose(), 5.0)[6:], grasp_synergy(1.0)
    )


def test_reset_is_reproducible_and_shapes_and_sizes_vary() -> None:
    env = _task()
    env.reset(seed=3)
    first = env.get_state()
    env.reset(seed=4)
    env.reset(seed=3)
    assert env.get_state().tobytes() == first.tobytes()
    shapes, sizes = set(), []
    for seed in range(40):
        obs, _ = env.reset(seed=seed)
        shapes.add(env.shape)
        sizes.append(env.half_extents.copy())
        one_hot = obs["object_shape"][: len(SHAPES)]
        assert one_hot[SHAPES.index(env.shape)] == 1.0 and one_hot.sum() == 1.0
        lo = min(r[0] for r in HALF_EXTENT_RANGES[env.shape])
        assert env.half_extents.min() >= lo - 1e-9
    assert shapes == set(SHAPES)
    assert len({round(float(s[2]), 6) for s in sizes}) > 20


def test_the_object_starts_at_rest_on_the_table() -> None:
    env = _task()
    for shape, seed in _seed_per_shape(env).items():
        env.reset(seed=seed)
        start = env.object_poses()["object"]
        hold = env.target_pose_to_action(env.eef_pose(), -1.0)
        for _ in range(5):
            env.step(hold)
        moved = env.object_poses()["object"][:3, 3] - start[:3, 3]
        assert np.abs(moved).max() < 1e-3, shape


def test_set_state_restores_the_object_and_replays_exactly() -> None:
    env = _task()
    seeds = _seed_per_shape(env)
    obs, _ = env.reset(seed=seeds["capsule"])
    oracle = env.oracle(np.random.default_rng(0))
    oracle.reset()
    states, actions, observations = [], [], []
    for _ in range(40):
        states.append(env.get_state())
        action = oracle.act(obs)
        obs = env.step(action)[0]
        actions.append(action)
        observations.append(obs)
    other = _task()
    other.reset(seed=seeds["box"])  # another shape and size: set_state must bring both back
    other.set_state(states[20])
    assert other.shape == "capsule"
    assert other.get_state().tobytes() == states[20].tobytes()
    for t in range(20, 40):
        replayed = other.step(actions[t])[0]
        for key in observations[t]:
            assert replayed[key].tobytes() == observations[t][key].tobytes(), (t, key)
    with pytest.raises(ApprenticeError, match="must have"):
        other.set_state(states[0][:-2])


def test_the_oracle_grasps_and_lifts_every_shape() -> None:
    env = _task()
    for shape, seed in _seed_per_shape(env).items():
        obs, _ = env.reset(seed=seed)
        oracle = env.oracle(np.random.default_rng(seed))
        oracle.reset()
        grasped = False
        for _ in range(env.horizon):
            obs, reward, _, _, info = env.step(oracle.act(obs))
            grasped = grasped or env.subtask_signals()["grasp"]
            if info["success"]:
                break
        assert info["success"] and reward == 1.0, shape
        assert grasped and env.subtask_signals() == {"grasp": True, "lift": True}, shape
        assert {"thumb"} < env.touching_digits()


def test_bad_arguments_and_actions_are_named() -> None:
    with pytest.raises(ApprenticeError, match=r"unknown arguments \['fingers'\]"):
        make_task("hand_grasp", fingers=3)
    with pytest.raises(ApprenticeError, match="image_size"):
        make_task("hand_grasp", image_size=4)
    with pytest.raises(ApprenticeError, match=r"no variant 'D9'.*D0, D1"):
        make_task("hand_grasp", variant="D9")
    with pytest.raises(ApprenticeError, match="takes no perturbation axes"):
        make_task("hand_grasp", light=0.5)
    env = _task()
    env.reset(seed=0)
    for bad in (np.zeros(7), np.full(26, np.nan), np.zeros((2, 26))):
        with pytest.raises(ApprenticeError, match="must be 26 finite numbers"):
            env.step(bad)


def test_env_args_rebuild_the_variant() -> None:
    env = _task(variant="D1")
    rebuilt = make_task_from_env_args(env.env_args)
    assert isinstance(rebuilt, HandGrasp) and rebuilt.xy_range == env.xy_range > 0.05


def test_camera_observations() -> None:
    env = _task(camera=True, image_size=48)
    obs, _ = env.reset(seed=0)
    for key in ("agentview_image", "eye_in_hand_image"):
        image = obs[key]
        assert image.shape == (48, 48, 3) and image.dtype == np.uint8
        assert env.observation_space[key].contains(image)
        assert image.std() > 5.0, f"{key} looks blank"
    assert not np.array_equal(obs["agentview_image"], obs["eye_in_hand_image"])
    with pytest.raises(ApprenticeError, match="unknown camera"):
        env.render_frame("ceiling")
    env.close()
