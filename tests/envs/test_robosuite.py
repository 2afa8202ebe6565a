"""The robosuite tasks (optional extra `apprentice[robosuite]`).

The error tests run everywhere; the rest need robosuite 1.5 and a mujoco it runs on, i.e.
`make robosuite` then `.venv-robosuite/bin/pytest tests/envs`, and are skipped in the main venv
(whose mujoco robosuite cannot use).
"""

from __future__ import annotations

import json
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import apprentice.envs.robosuite as rs
from apprentice.collect.record import record_episode
from apprentice.data import DemoFile
from apprentice.data.store import DemoWriter
from apprentice.envs import Oracle, Task, make_task, make_task_from_env_args, task_names
from apprentice.envs.base import task_available
from apprentice.errors import ApprenticeError

NAMES = list(rs.ROBOSUITE_TASKS)
OBJECT_DIM = {
    "Lift": 10,
    "PickPlaceCan": 14,
    "NutAssemblySquare": 14,
    "Stack": 23,
    "TwoArmTransport": 41,
}
"""Size of robomimic's "object" observation in its low-dim datasets of each task."""
ARMS = {"TwoArmTransport": 2}
"""Arms of the tasks with more than one."""
LOW_DIM = {"eef_pos": (3,), "eef_quat": (4,), "gripper_qpos": (2,)}
"""Each arm's low-dim observations (robot{i}_KEY) in robomimic's datasets."""


def _low_dim(name: str) -> dict[str, tuple[int, ...]]:
    return {f"robot{i}_{k}": v for i in range(ARMS.get(name, 1)) for k, v in LOW_DIM.items()}


needs_robosuite = pytest.mark.skipif(
    not rs.robosuite_available(), reason="needs the robosuite extra: make robosuite"
)


# --- everywhere: registration and the errors a user meets ----------------------------------------


def test_tasks_are_registered_without_importing_robosuite() -> None:
    assert set(NAMES) <= set(task_names())
    code = (
        "import sys, apprentice.envs as e; names = e.task_names(); "
        "assert 'Lift' in names and 'robosuite' not in sys.modules, sys.modules.get('robosuite')"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert task_available("lift")
    assert task_available("Lift") == rs.robosuite_available()
    assert not task_available("nope")


def test_missing_extra_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rs, "installed_mujoco_version", lambda: "3.9.0")
    monkeypatch.setitem(sys.modules, "robosuite", None)  # `import robosuite` raises ImportError
    with pytest.raises(ApprenticeError, match=r"need robosuite 1\.5.*make robosuite") as e:
        make_task("Lift")
    assert "pip install -e '.[robosuite]'" in str(e.value)


@pytest.mark.skipif(rs.robosuite_available(), reason="robosuite is usable here")
def test_make_task_without_the_extra_raises_with_the_install_hint() -> None:
    # Unpatched: in the main venv either the mujoco version or the missing package stops it.
    with pytest.raises(ApprenticeError, match=r"make robosuite"):
        make_task("Lift")
    with pytest.raises(ApprenticeError, match=r"make robosuite"):
        make_task_from_env_args({"env_name": "Stack", "type": 1, "env_kwargs": {}})


def test_unsupported_mujoco_is_named_before_robosuite_is_imported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rs, "installed_mujoco_version", lambda: "3.10.0")
    # Were robosuite imported, this would raise ImportError instead of the version message.
    monkeypatch.setitem(sys.modules, "robosuite", None)
    with pytest.raises(ApprenticeError, match=r"mujoco>=3\.3\.7,<3\.10.*mujoco 3\.10\.0"):
        make_task("NutAssemblySquare")
    assert not rs.robosuite_available()


@pytest.mark.parametrize("version", ["3.3.6", "3.10.0", "3.12.1", "4.0.0"])
def test_version_check_rejects(version: str) -> None:
    with pytest.raises(ApprenticeError, match=f"mujoco {version} is installed"):
        rs.check_mujoco_version(version)


@pytest.mark.parametrize("version", ["3.3.7", "3.9.0", "3.9.1rc1"])
def test_version_check_accepts(version: str) -> None:
    rs.check_mujoco_version(version)


# --- with robosuite ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tasks() -> Iterator[dict[str, Task]]:
    """One instance per task for the module: robosuite takes ~2 s to build an env."""
    made: dict[str, Task] = {}
    yield made
    for task in made.values():
        task.close()


def _task(tasks: dict[str, Task], name: str) -> Task:
    if name not in tasks:
        tasks[name] = make_task(name)
    return tasks[name]


def _run_oracle(task: Task, seed: int, steps: int) -> dict[str, np.ndarray]:
    obs, _ = task.reset(seed=seed)
    oracle = task.oracle(np.random.default_rng(seed))
    oracle.reset()
    for _ in range(steps):
        action = oracle.act(obs)
        assert action.shape == task.action_space.shape and np.all(np.abs(action) <= 1.0)
        obs, _, terminated, truncated, info = task.step(action)
        assert isinstance(info["success"], bool) and not terminated and not truncated
    return obs


@needs_robosuite
@pytest.mark.parametrize("name", NAMES)
def test_observations_are_robomimic_low_dim_keys(tasks: dict[str, Task], name: str) -> None:
    task = _task(tasks, name)
    assert task.name == name and task.control_freq == 20.0
    assert task.action_space.shape == (7 * ARMS.get(name, 1),)
    obs, info = task.reset(seed=0)
    shapes = {**_low_dim(name), "object": (OBJECT_DIM[name],)}
    assert {k: v.shape for k, v in obs.items()} == shapes
    assert set(task.observation_space.spaces) == set(shapes)
    for key, space in task.observation_space.spaces.items():
        assert obs[key].dtype == space.dtype == np.float32, key
    # The very values robosuite reports (robomimic's "object" is robosuite's "object-state").
    raw = task.env._get_observations(force_update=True)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(obs["object"], raw["object-state"].astype(np.float32))
    np.testing.assert_array_equal(obs["robot0_eef_pos"], raw["robot0_eef_pos"].astype(np.float32))
    assert info == {"success": False}


@needs_robosuite
@pytest.mark.parametrize("name", NAMES)
def test_task_and_oracle_step(tasks: dict[str, Task], name: str) -> None:
    task = _task(tasks, name)
    assert isinstance(task, Task) and isinstance(task.oracle(np.random.default_rng(0)), Oracle)
    obs = _run_oracle(task, seed=1, steps=12)
    assert np.all(np.isfinite(obs["object"]))
    eef = task.eef_pose()
    assert eef.shape == (4, 4)
    np.testing.assert_allclose(eef[:3, :3] @ eef[:3, :3].T, np.eye(3), atol=1e-9)
    np.testing.assert_allclose(eef[:3, 3], obs["robot0_eef_pos"], atol=1e-6)
    poses = task.object_poses()
    signals = task.subtask_signals()
    for sub in task.subtasks:
        assert sub.object is None or sub.object in poses
        assert sub.term_signal is None or sub.term_signal in signals
    assert all(p.shape == (4, 4) for p in poses.values())
    assert all(isinstance(v, bool) for v in signals.values())


@needs_robosuite
@pytest.mark.parametrize("name", NAMES)
def test_state_replays_exactly_after_another_reset(tasks: dict[str, Task], name: str) -> None:
    task = _task(tasks, name)
    _run_oracle(task, seed=3, steps=15)  # mid-grasp: gripper command and contacts matter
    state = task.get_state()
    actions = np.random.default_rng(0).uniform(-1, 1, size=(6, *task.action_space.shape))
    first = [task.step(a)[0] for a in actions]
    end = task.get_state()
    task.reset(seed=99)  # another initial state: different objects and nullspace posture
    task.set_state(state)
    again = [task.step(a)[0] for a in actions]
    for a, b in zip(first, again, strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    np.testing.assert_array_equal(task.get_state(), end)


@needs_robosuite
@pytest.mark.parametrize("name", NAMES)
def test_seed_fixes_the_initial_state(tasks: dict[str, Task], name: str) -> None:
    task = _task(tasks, name)
    a, _ = task.reset(seed=5)
    b, _ = task.reset(seed=5)
    c, _ = task.reset(seed=6)
    np.testing.assert_array_equal(a["object"], b["object"])
    assert not np.array_equal(a["object"], c["object"])


@needs_robosuite
def test_robomimic_state_prefix_and_bad_sizes(tasks: dict[str, Task]) -> None:
    task = _task(tasks, "Lift")
    task.reset(seed=0)
    state = task.get_state()
    sim = task.env.sim  # type: ignore[attr-defined]
    flat = np.asarray(sim.get_state().flatten())
    np.testing.assert_array_equal(state[: flat.size], flat)  # robomimic's "states" come first
    task.reset(seed=1)
    task.set_state(flat)  # a robomimic dataset's state: positions and velocities restored
    np.testing.assert_array_equal(np.asarray(sim.get_state().flatten()), flat)
    with pytest.raises(ApprenticeError, match="another task or robosuite version"):
        task.set_state(state[:-3])


@needs_robosuite
@pytest.mark.parametrize("name", ["Lift", "NutAssemblySquare"])
def test_target_pose_and_action_are_inverse(tasks: dict[str, Task], name: str) -> None:
    task = _task(tasks, name)
    task.reset(seed=2)
    rng = np.random.default_rng(0)
    for _ in range(5):
        action = rng.uniform(-0.9, 0.9, size=7)
        target = task.action_to_target_pose(action)
        np.testing.assert_allclose(task.target_pose_to_action(target, action[6]), action, atol=1e-9)
    # The OSC moves the eef towards the commanded target (it lags: not all the way).
    before = task.eef_pose()[:3, 3]
    target = task.action_to_target_pose(np.array([0.0, 0.6, 0.0, 0, 0, 0, -1]))
    for _ in range(3):
        task.step(task.target_pose_to_action(target, -1.0))
    moved = task.eef_pose()[:3, 3] - before
    assert moved[1] > 0.01 and moved[1] / np.linalg.norm(moved) > 0.98, moved


@needs_robosuite
@pytest.mark.parametrize("name", NAMES)
def test_env_args_round_trip(tasks: dict[str, Task], name: str) -> None:
    task = _task(tasks, name)
    args = json.loads(json.dumps(task.env_args))  # as a file stores them
    assert args["env_name"] == name and args["type"] == 1
    assert args["env_kwargs"]["controller_configs"]["body_parts"]["right"]["type"] == "OSC_POSE"
    assert len(args["env_kwargs"]["robots"]) == ARMS.get(name, 1)
    again = make_task_from_env_args(args)
    try:
        assert again.name == name and again.env_args == args
        np.testing.assert_array_equal(
            again.reset(seed=4)[0]["object"], task.reset(seed=4)[0]["object"]
        )
    finally:
        again.close()


@needs_robosuite
def test_env_args_of_a_robomimic_dataset_build_the_task() -> None:
    # env_args as robomimic's published Lift datasets store them (robosuite 1.4 era: a part
    # controller config, camera settings for image extraction).
    args = {
        "env_name": "Lift",
        "type": 1,
        "env_version": "1.4.1",
        "env_kwargs": {
            "has_renderer": False,
            "has_offscreen_renderer": True,
            "ignore_done": True,
            "use_object_obs": True,
            "use_camera_obs": False,
            "control_freq": 20,
            "controller_configs": {
                "type": "OSC_POSE",
                "input_max": 1,
                "input_min": -1,
                "output_max": [0.05, 0.05, 0.05, 0.5, 0.5, 0.5],
                "output_min": [-0.05, -0.05, -0.05, -0.5, -0.5, -0.5],
                "kp": 150,
                "damping": 1,
                "impedance_mode": "fixed",
                "kp_limits": [0, 300],
                "damping_limits": [0, 10],
                "position_limits": None,
                "orientation_limits": None,
                "uncouple_pos_ori": True,
                "control_delta": True,
                "interpolation": None,
                "ramp_ratio": 0.2,
            },
            "robots": ["Panda"],
            "camera_depths": False,
            "camera_heights": 84,
            "camera_widths": 84,
            "reward_shaping": False,
        },
    }
    task = make_task_from_env_args(args)
    try:
        obs, _ = task.reset(seed=0)
        assert obs["object"].shape == (10,) and task.action_space.shape == (7,)
        start = task.eef_pose()[:3, 3]
        task.step(np.array([0.0, 0.0, 1.0, 0, 0, 0, -1]))
        assert task.eef_pose()[2, 3] > start[2] + 0.003  # OSC_POSE delta: up
    finally:
        task.close()


@needs_robosuite
def test_bad_env_kwargs_raise() -> None:
    with pytest.raises(ApprenticeError, match="could not make 'Lift'"):
        make_task("Lift", colour="red")
    with pytest.raises(ApprenticeError, match="control_freq 20"):
        make_task("Lift", control_freq=10)
    with pytest.raises(ApprenticeError, match="image_size"):
        make_task("Lift", image_size=0)


@needs_robosuite
def test_camera_observations(tmp_path: Path) -> None:
    task = make_task("Lift", camera=True, image_size=32)
    try:
        obs, _ = task.reset(seed=0)
        for key in ("agentview_image", "robot0_eye_in_hand_image"):
            assert obs[key].shape == (32, 32, 3) and obs[key].dtype == np.uint8
            assert obs[key].std() > 0  # a scene, not a blank frame
        assert task.env_args["env_kwargs"]["use_camera_obs"] is True
        with pytest.raises(ApprenticeError, match="unknown camera"):
            task.render_frame("nope")
    finally:
        task.close()


@needs_robosuite
def test_recorded_file_names_its_task(tasks: dict[str, Task], tmp_path: Path) -> None:
    task = _task(tasks, "Lift")
    oracle = task.oracle(np.random.default_rng(0))
    ep = record_episode(task, oracle.act, seed=0, source="oracle", on_reset=oracle.reset)
    assert ep.success and ep.datagen_info is not None
    assert set(ep.datagen_info.subtask_term_signals) == {"grasp", "lift"}
    assert ep.datagen_info.subtask_term_signals["grasp"].any()
    path = tmp_path / "lift.hdf5"
    with DemoWriter(path, env_args=task.env_args) as w:
        w.append(ep)
    with DemoFile(path) as f:
        env_args = f.env_args
        stored = f.read(f.demo_names[0])
    again = make_task_from_env_args(env_args)
    try:
        again.reset(seed=stored.seed)
        again.set_state(stored.states[0])
        for t in range(stored.num_samples):
            np.testing.assert_array_equal(again.get_state(), stored.states[t], err_msg=str(t))
            obs, *_ = again.step(stored.actions[t])
        np.testing.assert_array_equal(obs["object"], stored.next_obs["object"][-1])
        assert again.is_success()
    finally:
        again.close()


def _robomimic_env_utils(monkeypatch: pytest.MonkeyPatch) -> Any:
    pytest.importorskip("robomimic")
    # robomimic 0.3.0's robosuite wrapper imports mujoco_py only for an exception type.
    stub = types.ModuleType("mujoco_py")
    stub.builder = types.SimpleNamespace(MujocoException=RuntimeError)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mujoco_py", stub)
    from robomimic.utils import env_utils, obs_utils

    obs_utils.initialize_obs_modality_mapping_from_dict(
        {
            "low_dim": [*_low_dim("TwoArmTransport"), "object"],
            "rgb": ["agentview_image", "robot0_eye_in_hand_image"],
        }
    )
    return env_utils


@needs_robosuite
@pytest.mark.parametrize("name", NAMES)
def test_robomimic_builds_the_env_from_our_env_args(
    tasks: dict[str, Task], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_utils = _robomimic_env_utils(monkeypatch)
    task = _task(tasks, name)
    _run_oracle(task, seed=0, steps=8)
    env = env_utils.create_env_from_metadata(env_meta=json.loads(json.dumps(task.env_args)))
    try:
        assert env.name == name and env.action_dimension == task.action_space.shape[0]
        env.reset()
        # Our state (robosuite's flat state first) loads into robomimic's env as a dataset's.
        env.reset_to({"states": task.get_state()})
        # Asked twice: robosuite's eef-relative object observables read the previous pass.
        theirs = env.get_observation()
        ours = task.get_observation()
        for key, value in ours.items():
            np.testing.assert_allclose(theirs[key], value, rtol=0, atol=1e-6, err_msg=key)
        assert env.is_success()["task"] == task.is_success()
    finally:
        env.env.close()


# --- perturbation axes ---------------------------------------------------------------------------


def test_robosuite_tasks_name_the_axes_they_take_without_importing_robosuite() -> None:
    from apprentice.envs.base import task_axes

    assert task_axes("Lift") == rs.PERTURBATION_AXES
    assert "object_scale" not in rs.PERTURBATION_AXES and "distractors" not in rs.PERTURBATION_AXES


@needs_robosuite
def test_robosuite_axes_change_the_model_replay_and_refuse_what_robosuite_cannot() -> None:
    nominal = make_task("Lift")
    task = make_task("Lift", light=1.0, object_mass=1.0, friction=1.0, latency=1.0)
    nominal.reset(seed=3)
    task.reset(seed=3)
    m0, m1 = nominal._model, task._model  # type: ignore[attr-defined]
    assert not np.array_equal(m0.light_dir, m1.light_dir)
    assert not np.array_equal(m0.body_mass, m1.body_mass)
    assert not np.array_equal(m0.geom_friction, m1.geom_friction)
    np.testing.assert_array_equal(m0.cam_pos, m1.cam_pos)  # camera axis off: cameras nominal
    args = task.env_args
    assert args["env_kwargs"]["perturb"]["latency"] == 1.0
    again = make_task_from_env_args(args)
    again.reset(seed=3)
    np.testing.assert_array_equal(again._model.body_mass, m1.body_mass)  # type: ignore[attr-defined]
    actions = np.random.default_rng(0).uniform(-1, 1, (5, 7))
    task.step(actions[0])
    state = task.get_state()
    first = [task.step(a)[0]["robot0_eef_pos"] for a in actions[1:]]
    task.set_state(state)
    second = [task.step(a)[0]["robot0_eef_pos"] for a in actions[1:]]
    np.testing.assert_array_equal(np.array(first), np.array(second))
    with pytest.raises(ApprenticeError, match="robosuite builds its objects"):
        make_task("Lift", object_scale=0.5)


# --- TwoArmTransport -----------------------------------------------------------------------------


@needs_robosuite
def test_transport_is_a_two_arm_task(tasks: dict[str, Task]) -> None:
    from apprentice.envs.arms import MultiArmTask
    from apprentice.teleop.arms import arm_layout

    task = _task(tasks, "TwoArmTransport")
    assert isinstance(task, MultiArmTask) and task.horizon == 1100
    assert not isinstance(_task(tasks, "Lift"), MultiArmTask)  # single-arm tasks stay single
    assert arm_layout(task).blocks == (slice(0, 7), slice(7, 14))
    kwargs = task.env_args["env_kwargs"]
    assert kwargs["env_configuration"] == "single-arm-opposed"
    assert kwargs["controller_configs"]["body_parts"]["right"]["input_ref_frame"] == "world"
    task.reset(seed=0)
    # Arm 1's target, arm 0 held: arm 0's delta is zero and each arm's own mapping inverts.
    target = task.eef_pose(1)
    target[:3, 3] += [0.02, -0.01, 0.03]
    action = task.target_pose_to_action(target, 1.0, arm=1)
    assert action.shape == (14,)
    np.testing.assert_allclose(action[:6], 0.0, atol=1e-9)
    np.testing.assert_allclose(task.action_to_target_pose(action, arm=1), target, atol=1e-9)
    # The deltas act in the world frame: +y moves both arms towards +y, though they face
    # each other.
    before = [task.eef_pose(i)[:3, 3] for i in range(2)]
    for _ in range(3):
        task.step(np.array([0, 0.6, 0, 0, 0, 0, -1] * 2))
    moved = [task.eef_pose(i)[:3, 3] - before[i] for i in range(2)]
    assert all(m[1] > 0.01 and m[1] / np.linalg.norm(m) > 0.95 for m in moved), moved


@needs_robosuite
@pytest.mark.parametrize("seed", [0, 2])
def test_transport_oracle_succeeds(tasks: dict[str, Task], seed: int) -> None:
    task = _task(tasks, "TwoArmTransport")
    oracle = task.oracle(np.random.default_rng(seed))
    ep = record_episode(task, oracle.act, seed=seed, source="oracle", on_reset=oracle.reset)
    assert ep.success and len(ep.actions) < task.horizon
    signals = task.subtask_signals()
    assert signals["trash"] and signals["lid_off"] and signals["place"]
