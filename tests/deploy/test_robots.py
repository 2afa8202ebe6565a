"""Shield configs of every body (the arm, the hand, two arms) and the checks `apprentice serve`
makes of a checkpoint against the robot it is served to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from apprentice.cli.main import main
from apprentice.deploy.client import Client
from apprentice.deploy.server import PolicyServer, ServeConfig
from apprentice.deploy.shield import KINDS, Shield, ShieldConfig, robot_config
from apprentice.envs import make_task
from apprentice.envs.base import task_names, task_spec
from apprentice.errors import ApprenticeError
from apprentice.policies import MLPConfig, save_checkpoint

ROBOTS = {"sim_gripper": 7, "sim_arm": 7, "sim_hand": 26, "sim_two_arm": 14}
TWO_ARM_TASKS = [n for n in ("handover", "bimanual_lift") if n in task_names()]


def only(counts: dict[str, int], **expected: int) -> bool:
    return counts == {k: expected.get(k, 0) for k in KINDS}


@pytest.mark.parametrize(("robot", "dim"), sorted(ROBOTS.items()))
def test_each_shipped_robot_names_its_action_size(robot: str, dim: int) -> None:
    config = robot_config(robot)
    assert config.robot == robot and config.action_dim == dim
    Shield(config, dim)
    with pytest.raises(ApprenticeError, match=f"values, the policy acts in {dim + 1} dim"):
        Shield(config, dim + 1)


def run_oracle(task: Any, shield: Shield, seed: int) -> bool:
    """An oracle episode through the shield: every action must pass unchanged."""
    obs, _ = task.reset(seed=seed)
    oracle = task.oracle(np.random.default_rng(seed))
    for _ in range(task.horizon):
        action = np.asarray(oracle.act(obs), np.float32)
        sent = shield.filter(action, obs)
        np.testing.assert_array_equal(sent, action)
        obs, _, _, truncated, info = task.step(sent)
        if info["success"] or truncated:
            return bool(info["success"])
    return False


@pytest.mark.parametrize(
    ("robot", "task_name", "kwargs"),
    [
        *[("sim_arm", t, {"body": "arm"}) for t in ("lift", "stack", "pick_place", "peg_insert")],
        ("sim_hand", "hand_grasp", {}),
        *[("sim_two_arm", t, {}) for t in TWO_ARM_TASKS],
    ],
)
def test_the_shipped_limits_leave_each_bodys_oracle_untouched(
    robot: str, task_name: str, kwargs: dict[str, Any]
) -> None:
    task = make_task(task_name, **kwargs)
    shield = Shield(robot_config(robot), int(task.action_space.shape[0]))
    assert run_oracle(task, shield, seed=3) and only(shield.counts)


def test_the_two_arm_config_fits_the_two_arm_tasks(fake_two_arm: Any) -> None:
    """Its keys are the two-arm tasks' observation keys (the fake task's are robosuite's too)."""
    for name in [*TWO_ARM_TASKS, "test_two_arm"]:
        spaces = make_task(name).observation_space.spaces
        assert {"robot0_eef_pos", "robot1_eef_pos"} <= set(spaces)
    config = robot_config("sim_two_arm")
    assert config.eef_pos_keys == ["robot0_eef_pos", "robot1_eef_pos"]


# --- several arms, a hand, joints ---------------------------------------------------------------


def two_arm_obs(left: list[float], right: list[float]) -> dict[str, np.ndarray]:
    home = [0.0, -0.2, 0.0, -2.5, 0.0, 2.3, 0.0]
    return {
        "robot0_eef_pos": np.array(left),
        "robot1_eef_pos": np.array(right),
        "robot0_joint_pos": np.array(home),
        "robot1_joint_pos": np.array(home),
    }


def test_two_arms_each_keep_their_own_workspace_speed_and_gripper() -> None:
    s = Shield(robot_config("sim_two_arm"), 14)
    obs = two_arm_obs([0.0, -0.2, 0.2], [0.0, 0.39, 0.2])
    # Left: too fast (norm 1.2 -> 0.8); right: 1 cm short of the workspace's +y edge.
    action = np.array([0, 0.8, -0.0, 0, 0, 0, 1, 0, 0.6, 0, 0, 0, 0, -1], np.float32)
    action[:3] = [0.0, 0.72, -0.96]
    sent = s.filter(action, obs)
    assert np.linalg.norm(sent[:3]) == pytest.approx(0.8, rel=1e-6)
    assert obs["robot1_eef_pos"][1] + 0.05 * sent[8] == pytest.approx(0.4, abs=1e-6)
    assert sent[6] == 1.0 and sent[13] == -1.0
    assert only(s.counts, velocity=1, workspace=1)
    # A NaN: both arms stop, each gripper as last sent.
    np.testing.assert_array_equal(
        s.filter(np.full(14, np.nan), obs), [0] * 6 + [1] + [0] * 6 + [-1]
    )


def test_a_hands_fingers_are_exempt_from_acceleration_and_held_when_safe() -> None:
    s = Shield(robot_config("sim_hand"), 26)
    eef = {"eef_pos": np.array([0.0, 0.0, 0.1])}
    closed = np.concatenate([np.zeros(6), np.ones(20)]).astype(np.float32)
    np.testing.assert_array_equal(s.filter(closed, eef), closed)  # fingers close at once
    assert only(s.counts)
    np.testing.assert_array_equal(s.filter(np.full(26, np.inf), eef), closed)  # and stay closed
    assert only(s.counts, nan=1)


def test_the_joint_guard_stops_an_arm_outside_its_joint_limits() -> None:
    s = Shield(robot_config("sim_arm"), 7)
    home = np.array([0.0, 0.16, 0.0, -2.2, 0.0, 2.36, 0.0])
    obs = {"eef_pos": np.array([0.0, 0.0, 0.2]), "joint_pos": home}
    action = np.array([0.2, 0, 0, 0, 0, 0, 1.0], np.float32)
    np.testing.assert_array_equal(s.filter(action, obs), action)
    bent = {**obs, "joint_pos": home + np.array([0, 0, 0, 2.2, 0, 0, 0])}  # joint4 past -0.07
    np.testing.assert_array_equal(s.filter(action, bent), [0, 0, 0, 0, 0, 0, 1.0])
    assert only(s.counts, joint=1)
    with pytest.raises(ApprenticeError, match="joint guard needs observation key 'joint_pos'"):
        s.filter(action, {"eef_pos": obs["eef_pos"]})
    # Two arms: one set of bounds for every arm; a joint of the right arm out stops both.
    two = Shield(robot_config("sim_two_arm"), 14)
    obs2 = two_arm_obs([0.0, -0.2, 0.2], [0.0, 0.2, 0.2])
    obs2["robot1_joint_pos"] = obs2["robot1_joint_pos"] + np.array([0, 0, 0, 0, 0, -2.4, 0])
    np.testing.assert_array_equal(two.filter(np.full(14, 0.1), obs2), np.zeros(14))
    assert only(two.counts, joint=1)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"robot": "r", "action_dim": 14, "action_low": [-1] * 7, "action_high": [1] * 7},
            "shield config r: action_low has 7 values, its action_dim says the robot acts in 14",
        ),
        ({"action_dim": 7, "gripper_index": [6, 13]}, "gripper_index 13 is outside the 7-D"),
        ({"action_dim": 0}, "action_dim must be a positive integer"),
        (
            {"eef_pos_key": ["a", "b"], "position_indices": [0, 1, 2, 7, 8]},
            "position_indices has 5 values for 2 eef_pos_key",
        ),
        ({"gripper_index": "6"}, "gripper_index must be a list of integers"),
        ({"eef_pos_key": []}, "eef_pos_key must be an observation key or a list"),
        ({"joint_low": [0.0]}, "give both joint_low and joint_high"),
        ({"safe_action": [0.0] * 3, "action_low": [-1] * 7, "action_high": [1] * 7}, "safe_act"),
    ],
)
def test_limits_that_do_not_fit_the_action_size_are_refused(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(ApprenticeError, match=message):
        ShieldConfig.from_dict(fields)


def test_a_config_files_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad_robot.toml"
    path.write_text('robot = "bad"\naction_dim = 14\naction_low = [-1.0]\naction_high = [1.0]\n')
    with pytest.raises(ApprenticeError, match=r"shield config .*bad_robot\.toml bad: action_low"):
        ShieldConfig.from_file(path)


# --- serve: the checkpoint against the robot ----------------------------------------------------


def checkpoint(path: Path, task_name: str) -> Path:
    task = make_task(task_name)
    policy = MLPConfig.tiny().build(task_spec(task), {})
    save_checkpoint(path, policy, env_args=task.env_args)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("robots")
    return {name: checkpoint(folder / f"{name}.pt", name) for name in ("lift", "hand_grasp")}


def test_serve_refuses_a_7d_checkpoint_for_a_two_arm_robot_in_one_line(
    checkpoints: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = checkpoints["lift"]
    assert main(["serve", str(ckpt), "--port", "0", "--shield", "sim_two_arm"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("apprentice serve: error: ") and err.count("\n") == 1
    assert (
        f"checkpoint {ckpt} outputs 7-D actions (task 'lift') and robot sim_two_arm "
        "(--shield sim_two_arm) takes 14-D actions" in err
    )


def test_serve_refuses_a_shield_whose_limits_do_not_fit_the_checkpoint(
    checkpoints: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    robot = tmp_path / "five.toml"  # no action_dim: its limits alone say 5-D
    robot.write_text(
        'robot = "five"\naction_low = [-1.0, -1, -1, -1, -1]\naction_high = [1.0, 1, 1, 1, 1]\n'
    )
    ckpt = checkpoints["hand_grasp"]
    assert main(["serve", str(ckpt), "--port", "0", "--shield", str(robot)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("apprentice serve: error: ") and err.count("\n") == 1
    assert (
        f"--shield {robot} does not fit checkpoint {ckpt} (26-D actions (task 'hand_grasp'))" in err
    )
    assert "action_low has 5 values, the policy acts in 26 dimensions" in err
    bad = tmp_path / "bad.toml"  # its own limits do not fit its action_dim
    bad.write_text("action_dim = 14\naction_low = [-1.0]\naction_high = [1.0]\n")
    assert main(["serve", str(ckpt), "--port", "0", "--shield", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"shield config {bad}: action_low has 1 values" in err


def test_a_hand_policy_is_served_through_the_hands_shield(checkpoints: dict[str, Path]) -> None:
    cfg = ServeConfig(checkpoint=str(checkpoints["hand_grasp"]), port=0, shield="sim_hand")
    server = PolicyServer(cfg)
    port = server.start_background()
    try:
        task = make_task("hand_grasp")
        obs, _ = task.reset(seed=0)
        with Client(f"ws://127.0.0.1:{port}", timeout=10) as client:
            client.reset()
            action = client.act(obs)
        assert action.shape == (26,) and np.all(np.abs(action) <= 1.0)
        task.step(action)  # the task takes what the robot's shield let through
    finally:
        server.stop_background()
