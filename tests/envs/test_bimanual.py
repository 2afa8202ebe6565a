"""The two-arm tasks (handover, bimanual_lift) and the per-arm protocol (`apprentice.envs.arms`).

The task contract (tests/envs/test_tasks.py) runs over both; this file checks what is their
own: 14-D actions, the two arms' observations and cameras, the per-arm poses and actions,
exact state, the oracles and the order of their subtask signals, and recording and replay
through the generic loops.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("MUJOCO_GL", "egl")

from apprentice.collect.oracle import CollectConfig, collect_demos
from apprentice.collect.record import record_episode
from apprentice.collect.replay import ReplayConfig, replay
from apprentice.data import DemoFile
from apprentice.envs import make_task
from apprentice.envs.arms import ArmSubtask, MultiArmTask
from apprentice.envs.bimanual_lift import BimanualLift
from apprentice.envs.handover import Handover
from apprentice.envs.seeds import held_out_seeds
from apprentice.envs.two_arm import ARM_NAMES, BASE_DISTANCE, TwoArmTask
from apprentice.errors import ApprenticeError

TASKS = ("handover", "bimanual_lift")
ARM_KEYS = ("eef_pos", "eef_quat", "gripper_qpos", "joint_pos", "joint_vel")
SIGNAL_ORDER = {
    "handover": ("left_grasp", "at_handover", "right_grasp", "handover", "on_target"),
    "bimanual_lift": ("left_grasp", "lift"),
}
"""Signals whose first rises an oracle episode passes through in this order (right_grasp
of bimanual_lift may come before or after left_grasp, but before lift)."""


def _task(name: str, **kwargs: object) -> TwoArmTask:
    env = make_task(name, **kwargs)
    assert isinstance(env, TwoArmTask) and isinstance(env, MultiArmTask)
    return env


def _oracle_episode(env: TwoArmTask, seed: int) -> tuple[bool, dict[str, int], list[np.ndarray]]:
    """(success, first step each signal is on, eef positions (2, 3) per step) of the oracle."""
    obs, _ = env.reset(seed=seed)
    oracle = env.oracle(np.random.default_rng(seed))
    oracle.reset()
    first: dict[str, int] = {}
    eefs = []
    success = False
    for t in range(env.horizon):
        obs, _, _, _, info = env.step(oracle.act(obs))
        eefs.append(np.stack([p[:3, 3] for p in env.eef_poses()]))
        for name, on in env.subtask_signals().items():
            if on:
                first.setdefault(name, t)
        if info["success"]:
            success = True
            break
    return success, first, eefs


@pytest.mark.parametrize("name", TASKS)
def test_actions_are_14_d_and_a_wrong_size_is_named(name: str) -> None:
    env = _task(name)
    assert env.action_space.shape == (14,)
    assert env.n_arms == 2 and env.arm_names == ARM_NAMES
    assert env.arm_actions == (slice(0, 7), slice(7, 14))
    env.reset(seed=0)
    for bad in (np.zeros(7), np.zeros(15)):
        with pytest.raises(ApprenticeError, match=r"action must be 14 finite numbers.*robot0"):
            env.step(bad)
    with pytest.raises(ApprenticeError, match="NaN or inf"):
        env.step(np.r_[np.zeros(13), np.inf])
    with pytest.raises(ApprenticeError, match="2 arms"):
        env.target_poses_to_action(env.eef_poses()[:1], [0.0])


@pytest.mark.parametrize("name", TASKS)
def test_observations_of_both_arms(name: str) -> None:
    env = _task(name)
    obs, _ = env.reset(seed=0)
    sizes = {"eef_pos": 3, "eef_quat": 4, "gripper_qpos": 2, "joint_pos": 7, "joint_vel": 7}
    assert set(obs) == {f"{a}_{k}" for a in ARM_NAMES for k in ARM_KEYS} | {"object"}
    for arm, pose in zip(ARM_NAMES, env.eef_poses(), strict=True):
        for key, size in sizes.items():
            assert obs[f"{arm}_{key}"].shape == (size,) and obs[f"{arm}_{key}"].dtype == np.float32
        np.testing.assert_allclose(obs[f"{arm}_eef_pos"], pose[:3, 3], atol=1e-6)
    # object: pos, quat, pos relative to robot0's eef, to robot1's.
    obj = obs["object"]
    pos = env.object_poses()[env.object_names[0]][:3, 3]
    np.testing.assert_allclose(obj[:3], pos, atol=1e-6)
    np.testing.assert_allclose(obj[7:10], pos - obs["robot0_eef_pos"], atol=1e-6)
    np.testing.assert_allclose(obj[10:13], pos - obs["robot1_eef_pos"], atol=1e-6)


@pytest.mark.parametrize("name", TASKS)
def test_arms_face_each_other_and_both_reach_the_middle(name: str) -> None:
    env = _task(name)
    env.reset(seed=0)
    m, d = env.model, env.data
    for arm, side in zip(ARM_NAMES, (-1.0, 1.0), strict=True):
        base = d.xpos[m.body(f"{arm}_arm_base").id]
        np.testing.assert_allclose(base, [0.0, side * BASE_DISTANCE, 0.0], atol=1e-12)
    start = env.eef_poses()
    np.testing.assert_allclose(start[0][:3, 3], [0.0, -0.2, 0.25], atol=2e-3)
    np.testing.assert_allclose(start[1][:3, 3], [0.0, 0.2, 0.25], atol=2e-3)
    # Both grippers point down at the start, and each can be driven to the table's centre
    # line, 5 cm short of the other, low and high.
    for z in (0.03, 0.2):
        goals = [np.array([0.0, -0.05, z]), np.array([0.0, 0.05, z])]
        for _ in range(30):
            targets = []
            for pose, goal in zip(env.eef_poses(), goals, strict=True):
                target = start[len(targets)].copy()
                target[:3, 3] = pose[:3, 3] + np.clip(goal - pose[:3, 3], -0.03, 0.03)
                targets.append(target)
            env.step(env.target_poses_to_action(targets, [-1.0, -1.0]))
        for pose, goal, home in zip(env.eef_poses(), goals, start, strict=True):
            np.testing.assert_allclose(pose[:3, 3], goal, atol=0.01)
            np.testing.assert_allclose(pose[:3, :3], home[:3, :3], atol=0.03)


def test_the_single_arm_methods_drive_one_arm_and_hold_the_other() -> None:
    env = _task("handover")
    env.reset(seed=0)
    env.step(np.r_[np.zeros(6), 1.0, np.zeros(6), -1.0])  # close robot0's gripper only
    assert env.gripper_command(0) == pytest.approx(1.0)
    assert env.gripper_command(1) == pytest.approx(-1.0)
    np.testing.assert_array_equal(env.eef_pose(), env.eef_poses()[0])
    before = env.eef_poses()
    goal = before[1].copy()
    goal[:3, 3] += [0.0, -0.05, -0.05]
    for _ in range(5):
        action = env.target_pose_to_action(goal, 0.5, arm=1)
        # robot0: no motion, its gripper as commanded; robot1 towards the goal, half closed.
        np.testing.assert_allclose(action[:7], [0, 0, 0, 0, 0, 0, 1.0], atol=1e-12)
        assert action[13] == 0.5
        env.step(action)
    after = env.eef_poses()
    assert np.linalg.norm(after[0][:3, 3] - before[0][:3, 3]) < 0.003
    np.testing.assert_allclose(after[1][:3, 3], goal[:3, 3], atol=0.005)


@pytest.mark.parametrize("name", TASKS)
def test_reset_is_reproducible_from_the_seed(name: str) -> None:
    env, other = _task(name), _task(name)
    a, _ = env.reset(seed=11)
    b, _ = other.reset(seed=11)
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].tobytes() == b[key].tobytes(), key
    assert env.get_state().tobytes() == other.get_state().tobytes()
    c, _ = other.reset(seed=12)
    assert not np.array_equal(a["object"], c["object"])


@pytest.mark.parametrize("name", TASKS)
def test_state_round_trip_is_exact_in_a_fresh_env(name: str) -> None:
    env = _task(name)
    obs, _ = env.reset(seed=4)
    oracle = env.oracle(np.random.default_rng(4))
    oracle.reset()
    states, actions, observations, signals = [], [], [], []
    for _ in range(40):  # into the grasps: contacts and a closing gripper in the state
        states.append(env.get_state())
        signals.append(env.subtask_signals())
        actions.append(oracle.act(obs))
        obs = env.step(actions[-1])[0]
        observations.append(obs)
    assert any(any(s.values()) for s in signals[:25]), "a grasp before the restored state"
    fresh = _task(name)
    fresh.reset(seed=99)
    fresh.set_state(states[25])
    np.testing.assert_array_equal(fresh.get_state(), states[25])
    assert fresh.steps == 25
    assert fresh.subtask_signals() == signals[25]
    for t in range(25, 40):
        replayed = fresh.step(actions[t])[0]
        for key, value in observations[t].items():
            assert replayed[key].tobytes() == value.tobytes(), (t, key)
    np.testing.assert_array_equal(fresh.get_state(), env.get_state())


@pytest.mark.parametrize("name", TASKS)
def test_oracle_succeeds_and_its_signals_rise_in_order(name: str) -> None:
    env = _task(name)
    for seed in held_out_seeds(3):
        success, first, _ = _oracle_episode(env, seed)
        assert success, (seed, first)
        assert set(first) == set(env.subtask_signals()), first
        rises = [first[s] for s in SIGNAL_ORDER[name]]
        assert rises == sorted(rises), first
        if name == "handover":
            assert first["right_grasp"] < first["handover"] <= first["right_grasp"] + 10
        else:
            assert first["right_grasp"] < first["lift"]


def test_the_lift_moves_both_arms_together_and_keeps_the_tray_level() -> None:
    env = _task("bimanual_lift")
    assert isinstance(env, BimanualLift)
    for seed in held_out_seeds(2):
        success, first, eefs = _oracle_episode(env, seed)
        assert success
        # From the step both hold to success: both eefs rise at the same rate.
        both = max(first["left_grasp"], first["right_grasp"])
        z = np.asarray(eefs)[both:, :, 2]  # T, 2
        rise = np.diff(z, axis=0)  # T-1, 2
        assert rise.sum(axis=0).min() > 0.08, "both arms lift the tray"
        assert np.abs(rise[:, 0] - rise[:, 1]).max() < 0.004, "in lockstep"
        assert env.tilt() < math.radians(3.0)


def test_subtasks_name_each_arm_and_the_coordinated_stages() -> None:
    handover = _task("handover").subtasks
    assert all(isinstance(s, ArmSubtask) for s in handover)
    syncs = [(s.arm, s.term_signal) for s in handover if isinstance(s, ArmSubtask) and s.sync]
    assert syncs == [(0, "handover"), (1, "handover")]
    lift = _task("bimanual_lift").subtasks
    together = [s for s in lift if isinstance(s, ArmSubtask) and s.sync == "lift"]
    assert [s.arm for s in together] == [0, 1] and all(s.object == "tray" for s in together)


@pytest.mark.parametrize("name", TASKS)
def test_camera_observations(name: str) -> None:
    env = _task(name, camera=True, image_size=64)
    obs, _ = env.reset(seed=0)
    keys = ("agentview_image", "robot0_eye_in_hand_image", "robot1_eye_in_hand_image")
    for key in keys:
        assert obs[key].shape == (64, 64, 3) and obs[key].dtype == np.uint8, key
        assert env.observation_space[key].contains(obs[key])
        assert obs[key].std() > 5.0, f"{key} looks blank"
    assert len({obs[k].tobytes() for k in keys}) == 3
    with pytest.raises(ApprenticeError, match="unknown camera 'eye_in_hand'"):
        env.render_frame("eye_in_hand")
    env.close()


def test_recording_keeps_14_d_actions_and_robot0_as_the_eef(tmp_path: Path) -> None:
    env = _task("handover")
    assert isinstance(env, Handover)
    oracle = env.oracle(np.random.default_rng(0))
    episode = record_episode(env, oracle.act, seed=0, source="oracle", on_reset=oracle.reset)
    assert episode.success and episode.actions.shape[1] == 14
    info = episode.datagen_info
    assert info is not None
    # Generic datagen_info follows the single-arm view: robot0's eef pose and target.
    np.testing.assert_allclose(info.eef_pose[:, :3, 3], episode.obs["robot0_eef_pos"], atol=1e-6)
    assert set(info.subtask_term_signals) == set(env.subtask_signals())

    out = tmp_path / "handover.hdf5"
    collect_demos(CollectConfig(task="handover", n=2, out=str(out), workers=1, progress=False))
    with DemoFile(out) as f:
        assert len(f.demo_names) == 2 and f.action_dim == 14
    result = replay(ReplayConfig(file=str(out), demo="0", mode="both"))
    assert result.max_state_error == 0.0
    assert result.stored_success and result.replayed_success


def test_generate_cli_runs_on_a_two_arm_task(tmp_path, capsys) -> None:
    from apprentice.cli.main import main

    src = tmp_path / "lift.hdf5"
    collect = ["collect", "--task", "bimanual_lift", "--n", "1", "--workers", "1"]
    assert main([*collect, "--out", str(src), "--no-progress"]) == 0
    out = tmp_path / "gen.hdf5"
    generate = ["generate", "--source", str(src), "--n", "1", "--out", str(out)]
    assert main([*generate, "--no-progress"]) == 0
    assert "data generation rate" in capsys.readouterr().out
    with DemoFile(out) as f:
        assert len(f.demo_names) == 1 and f.action_dim == 14
