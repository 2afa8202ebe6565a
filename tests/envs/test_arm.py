"""The 7-DoF arm body (`body="arm"`) of the built-in parallel-jaw tasks.

The task contract (tests/envs/test_tasks.py) runs over the arm variant of every task too;
this file checks what is the arm's own: its model, observations, tracking, state, data files
and the perturbation axes on its scene.
"""

from __future__ import annotations

import os
from pathlib import Path

import mujoco
import numpy as np
import pytest

os.environ.setdefault("MUJOCO_GL", "egl")

from apprentice.collect.oracle import CollectConfig, collect_demos
from apprentice.collect.replay import ReplayConfig, replay
from apprentice.data import DemoFile
from apprentice.envs import make_task, make_task_from_env_args
from apprentice.envs.bodies import ARM_HOME, ARM_JOINTS, BODIES, body_class
from apprentice.envs.mujoco_base import MAX_DELTA_POS, MAX_DELTA_ROT
from apprentice.envs.mujoco_task import MujocoTask, topdown_rotation
from apprentice.errors import ApprenticeError
from apprentice.generate.run import GenerateConfig, run_generate

ARM_TASKS = ("lift", "stack", "pick_place", "peg_insert")


def _arm(name: str = "lift", **kwargs: object) -> MujocoTask:
    env = make_task(name, body="arm", **kwargs)
    assert isinstance(env, MujocoTask)
    return env


@pytest.mark.parametrize("name", ARM_TASKS)
def test_arm_model_loads_at_home(name: str) -> None:
    env = _arm(name)
    m = env.model
    joints = [m.joint(j) for j in ARM_JOINTS]  # KeyError if one is missing
    assert [j.type[0] for j in joints] == [mujoco.mjtJoint.mjJNT_HINGE] * 7
    assert all(j.limited[0] for j in joints)
    # A position servo on each joint, two on the fingers; both cameras.
    assert [m.actuator(i).name for i in range(m.nu)] == [*ARM_JOINTS, "finger_l", "finger_r"]
    assert {m.camera(i).name for i in range(m.ncam)} == {"agentview", "eye_in_hand"}
    env.reset(seed=0)
    # The eef starts where the floating gripper's does: 20 cm above the table centre,
    # pointing straight down with the fingers across y.
    eef = env.eef_pose()
    np.testing.assert_allclose(eef[:3, 3], [0.0, 0.0, 0.2], atol=5e-4)
    np.testing.assert_allclose(eef[:3, :3], topdown_rotation(0.0), atol=5e-4)
    # No part of the arm touches anything at rest.
    arm_geoms = set(np.flatnonzero(m.geom_contype == 2))
    contacts = {(c.geom1, c.geom2) for c in env.data.contact[: env.data.ncon]}
    assert not any(g in arm_geoms for pair in contacts for g in pair)


def test_observations_add_the_joints() -> None:
    env = _arm()
    obs, _ = env.reset(seed=0)
    for key in ("joint_pos", "joint_vel"):
        assert obs[key].shape == (7,) and obs[key].dtype == np.float32
        assert env.observation_space[key].shape == (7,)
    np.testing.assert_allclose(obs["joint_pos"], ARM_HOME, atol=1e-6)
    np.testing.assert_array_equal(obs["joint_vel"], np.zeros(7))
    obs = env.step(np.array([1.0, 0, 0, 0, 0, 0, -1]))[0]
    assert np.abs(obs["joint_vel"]).max() > 0.1
    assert env.observation_space.contains(obs)
    assert "joint_pos" not in make_task("lift").observation_space.spaces


@pytest.mark.parametrize("axis", range(3))
def test_a_translation_action_moves_the_eef_by_about_its_delta(axis: int) -> None:
    env = _arm()
    env.reset(seed=0)
    action = np.zeros(7)
    action[axis], action[6] = 1.0, -1.0
    positions = [env.eef_pose()[:3, 3]]
    for _ in range(4):
        env.step(action)
        positions.append(env.eef_pose()[:3, 3])
    steps = np.diff(np.asarray(positions), axis=0)  # (4, 3)
    # After the first step (accelerating from rest), each step covers most of MAX_DELTA_POS
    # along the axis, a few mm short (the servos' lag), and stays on it.
    along = steps[1:, axis]
    assert np.all(along > 0.8 * MAX_DELTA_POS) and np.all(along < 1.05 * MAX_DELTA_POS)
    across = np.delete(steps[1:], axis, axis=1)
    assert np.abs(across).max() < 0.002
    np.testing.assert_allclose(env.eef_pose()[:3, :3], topdown_rotation(0.0), atol=0.02)


def test_a_yaw_action_turns_the_eef_by_about_its_delta() -> None:
    env = _arm()
    env.reset(seed=0)
    start = env.eef_pose()
    for _ in range(3):
        env.step(np.array([0, 0, 0, 0, 0, 1.0, -1]))
    turn = env.eef_pose()[:3, :3] @ start[:3, :3].T
    yaw = np.arctan2(turn[1, 0], turn[0, 0])
    assert 2.4 * MAX_DELTA_ROT < yaw < 3.1 * MAX_DELTA_ROT
    np.testing.assert_allclose(env.eef_pose()[:3, 3], start[:3, 3], atol=0.003)


def test_joint_targets_stay_inside_the_limits() -> None:
    env = _arm()
    env.reset(seed=0)
    low, high = env.model.jnt_range[[env.model.joint(j).id for j in ARM_JOINTS]].T
    for action in np.random.default_rng(0).uniform(-1, 1, size=(60, 7)):
        obs = env.step(action)[0]
        assert np.all(env.data.ctrl[:7] >= low) and np.all(env.data.ctrl[:7] <= high)
        assert np.all(obs["joint_pos"] >= low - 0.015) and np.all(obs["joint_pos"] <= high + 0.015)
        assert np.all(np.isfinite(env.get_state()))


def test_state_round_trips_and_replays_exactly() -> None:
    env = _arm("stack")
    obs, _ = env.reset(seed=4)
    oracle = env.oracle(np.random.default_rng(4))
    oracle.reset()
    states, actions, observations = [], [], []
    for _ in range(40):
        states.append(env.get_state())
        actions.append(oracle.act(obs))
        obs = env.step(actions[-1])[0]
        observations.append(obs)
    env.reset(seed=9)
    env.set_state(states[20])
    np.testing.assert_array_equal(env.get_state(), states[20])
    for t in range(20, 40):
        replayed = env.step(actions[t])[0]
        for key, value in observations[t].items():
            assert replayed[key].tobytes() == value.tobytes(), (t, key)
    with pytest.raises(ApprenticeError, match="must have"):
        env.set_state(make_task("stack").get_state())  # a floating gripper's state


@pytest.mark.parametrize("name", ARM_TASKS)
def test_oracle_succeeds_with_the_arm(name: str) -> None:
    env = _arm(name)
    for seed in range(3):
        obs, _ = env.reset(seed=seed)
        oracle = env.oracle(np.random.default_rng(seed))
        oracle.reset()
        for _ in range(env.horizon):
            obs, _, _, _, info = env.step(oracle.act(obs))
            if info["success"]:
                break
        assert info["success"], (name, seed)


def test_env_args_record_the_arm_and_only_the_arm() -> None:
    env = _arm("pick_place", variant="D1")
    args = env.env_args
    assert args["env_kwargs"] == {
        "camera": False,
        "image_size": 84,
        "variant": "D1",
        "body": "arm",
    }
    rebuilt = make_task_from_env_args(args)
    assert isinstance(rebuilt, MujocoTask) and rebuilt.body.name == "arm"
    assert rebuilt.env_args == args
    # The default body leaves env_args exactly as files recorded before bodies existed.
    assert make_task("pick_place").env_args["env_kwargs"] == {
        "camera": False,
        "image_size": 84,
        "variant": "D0",
    }
    assert make_task("pick_place", body="gripper").env_args == make_task("pick_place").env_args


def test_unknown_body_is_named() -> None:
    with pytest.raises(ApprenticeError, match=r"'lift' has no body 'tentacle'; .*gripper, arm"):
        make_task("lift", body="tentacle")
    with pytest.raises(ApprenticeError, match="no body 3"):
        body_class(3, "lift")
    assert set(BODIES) == {"gripper", "arm"}


def _frame(env: MujocoTask, seed: int, camera: str = "agentview") -> np.ndarray:
    env.reset(seed=seed)
    return env.render_frame(camera, 64)


def test_perturbation_axes_work_with_the_arm() -> None:
    nominal = _arm("stack", camera=False)
    moved = _arm("stack", camera=1.0)
    # The camera axis moves both cameras, the wrist one on the arm's hand included.
    for camera in ("agentview", "eye_in_hand"):
        assert not np.array_equal(_frame(nominal, 2, camera), _frame(moved, 2, camera))
    lit = _arm("stack", light=1.0)
    assert not np.array_equal(_frame(nominal, 2), _frame(lit, 2))
    # Extra assets (textures, distractors) build on the arm's scene and leave the objects'
    # and the arm's start alone.
    busy = _arm("stack", colors=1.0, distractors=1.0)
    assert busy.model.nbody == nominal.model.nbody + 4
    busy.reset(seed=2)
    nominal.reset(seed=2)
    n = nominal.model.nq
    np.testing.assert_array_equal(busy.data.qpos[:n], nominal.data.qpos)
    assert not np.array_equal(_frame(nominal, 2), _frame(busy, 2))
    for env in (nominal, moved, lit, busy):
        env.close()


@pytest.fixture(scope="module")
def arm_demos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("arm") / "stack_arm.hdf5"
    collect_demos(
        CollectConfig(
            task="stack", n=2, out=str(out), workers=1, progress=False, task_args=("body=arm",)
        )
    )
    return out


def test_collected_arm_demos_replay_exactly(arm_demos: Path) -> None:
    with DemoFile(arm_demos) as f:
        assert f.env_args["env_kwargs"]["body"] == "arm"
        assert f.read_field(f.demo_names[0], "obs/joint_pos").shape[1:] == (7,)
    r = replay(ReplayConfig(file=str(arm_demos), demo="0", mode="both"))
    assert r.max_state_error == 0.0
    assert r.eef_error is not None and r.eef_error.max() < 1e-9
    assert r.stored_success and r.replayed_success


def test_generation_from_arm_demos(arm_demos: Path, tmp_path: Path) -> None:
    out = tmp_path / "generated.hdf5"
    cfg = GenerateConfig(source=str(arm_demos), n=2, out=str(out), workers=1, progress=False)
    r = run_generate(cfg)
    assert r.successes == 2
    with DemoFile(out) as f:
        assert f.env_args["env_kwargs"]["body"] == "arm"
    assert replay(ReplayConfig(file=str(out), demo="1", mode="states")).max_state_error == 0.0
