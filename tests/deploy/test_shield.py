"""The safety shield: each intervention kind, the watchdog, configs, and the oracles untouched."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from apprentice.deploy.shield import KINDS, Shield, ShieldConfig, robot_config
from apprentice.envs import make_task
from apprentice.errors import ApprenticeError

A = 7
EEF = {"eef_pos": np.array([0.0, 0.0, 0.1], np.float32)}


class FakeClock:
    """Injected time for the watchdog: tests move it by hand, never sleep."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def shield(clock: FakeClock | None = None, **limits: Any) -> Shield:
    config = ShieldConfig(gripper_index=6, **limits)
    return Shield(config, A, clock=clock or FakeClock())


def only(counts: dict[str, int], **expected: int) -> bool:
    return counts == {k: expected.get(k, 0) for k in KINDS}


def test_an_action_within_every_limit_passes_unchanged() -> None:
    s = Shield(robot_config("sim_gripper"), A)
    action = np.array([0.2, -0.1, 0.3, 0.1, 0.0, -0.2, 1.0], np.float32)
    np.testing.assert_array_equal(s.filter(action, EEF), action)
    assert only(s.counts)


def test_nan_gives_the_safe_action_holding_the_gripper() -> None:
    s = shield()
    s.filter(np.array([0.1, 0, 0, 0, 0, 0, 1.0]))
    out = s.filter(np.array([np.nan, 0, 0, 0, 0, 0, 1.0]))
    np.testing.assert_array_equal(out, [0, 0, 0, 0, 0, 0, 1.0])
    # A non-finite eef position is just as unsafe to act on.
    out = s.filter(np.full(A, 0.1), {"eef_pos": np.array([0.0, np.inf, 0.1])})
    np.testing.assert_array_equal(out, [0, 0, 0, 0, 0, 0, 1.0])
    assert only(s.counts, nan=2)


def test_configured_safe_action_is_used() -> None:
    s = shield(safe_action=[0, 0, 0.2, 0, 0, 0, -1])
    np.testing.assert_allclose(s.filter(np.full(A, np.inf)), [0, 0, 0.2, 0, 0, 0, -1], atol=1e-7)


def test_clipping_to_the_action_box() -> None:
    s = shield(action_low=[-0.5] * A, action_high=[0.5] * 6 + [1.0])
    out = s.filter(np.array([0.9, -0.9, 0.2, 0, 0, 0, 1.0]))
    np.testing.assert_array_equal(out, np.array([0.5, -0.5, 0.2, 0, 0, 0, 1.0], np.float32))
    assert only(s.counts, clip=1)


def test_velocity_scales_the_translation_keeping_its_direction() -> None:
    s = shield(max_velocity=0.5)
    out = s.filter(np.array([0.6, 0.8, 0.0, 0.3, 0, 0, -1.0]))
    np.testing.assert_allclose(out[:3], [0.3, 0.4, 0.0], atol=1e-7)
    np.testing.assert_allclose(out[3:], [0.3, 0, 0, -1.0], atol=1e-7)  # rotation and gripper kept
    assert only(s.counts, velocity=1)


def test_acceleration_limits_the_change_but_not_the_gripper() -> None:
    s = shield(max_acceleration=0.25)
    # From rest: each motion dimension moves at most 0.25; the gripper closes at once.
    out = s.filter(np.array([0.8, -0.1, 0, 0, 0, -0.6, 1.0]))
    np.testing.assert_allclose(out, [0.25, -0.1, 0, 0, 0, -0.25, 1.0], atol=1e-7)
    out = s.filter(np.array([0.8, -0.1, 0, 0, 0, -0.6, -1.0]))
    np.testing.assert_allclose(out, [0.5, -0.1, 0, 0, 0, -0.5, -1.0], atol=1e-7)
    assert only(s.counts, acceleration=2)
    s.reset()  # a new episode starts at rest again
    np.testing.assert_allclose(s.filter(np.full(A, 0.8))[:6], 0.25, atol=1e-7)


def test_workspace_keeps_the_next_eef_position_in_the_box() -> None:
    s = shield(workspace_low=[-0.1, -0.1, 0.05], workspace_high=[0.1, 0.1, 0.3])
    # From z = 0.1 an action of -1 in z leads to 0.05 (allowed), -2 would not; x 0.08 + 0.05.
    eef = {"eef_pos": np.array([0.08, 0.0, 0.06])}
    out = s.filter(np.array([1.0, 0.5, -1.0, 0, 0, 0, 1.0]), eef)
    reached = eef["eef_pos"] + 0.05 * out[:3]
    np.testing.assert_allclose(reached, [0.1, 0.025, 0.05], atol=1e-6)
    assert only(s.counts, workspace=1)


def test_workspace_never_pushes_an_outside_eef_further_out() -> None:
    s = shield(workspace_low=[-0.1, -0.1, 0.05], workspace_high=[0.1, 0.1, 0.3])
    eef = {"eef_pos": np.array([0.2, 0.0, 0.1])}  # already 10 cm outside in x
    out = s.filter(np.array([0.5, 0.0, 0.0, 0, 0, 0, 0]), eef)
    assert out[0] == 0.0  # held, not pushed out
    out = s.filter(np.array([-0.5, 0.0, 0.0, 0, 0, 0, 0]), eef)
    assert out[0] == pytest.approx(-0.5)  # moving back in is allowed
    assert only(s.counts, workspace=1)


def test_workspace_needs_the_eef_position() -> None:
    s = shield(workspace_low=[-1, -1, 0], workspace_high=[1, 1, 1])
    with pytest.raises(ApprenticeError, match="needs observation key 'eef_pos'"):
        s.filter(np.zeros(A), {"object": np.zeros(10)})
    with pytest.raises(ApprenticeError, match=r"'eef_pos' has shape \(2,\)"):
        s.filter(np.zeros(A), {"eef_pos": np.zeros(2)})


def test_watchdog_commands_a_safe_stop_once_per_expiry() -> None:
    clock = FakeClock()
    s = shield(clock, watchdog_timeout_s=0.05)
    s.filter(np.array([0.3, 0, 0, 0, 0, 0, 1.0]))
    clock.now += 0.04
    assert s.tick() is None
    clock.now += 0.02
    np.testing.assert_array_equal(s.tick(), [0, 0, 0, 0, 0, 0, 1.0])
    np.testing.assert_array_equal(s.tick(clock.now + 1.0), [0, 0, 0, 0, 0, 0, 1.0])
    assert only(s.counts, watchdog=1)
    s.filter(np.zeros(A))  # a fresh action ends the expiry
    assert s.tick() is None
    clock.now += 0.1
    assert s.tick() is not None and only(s.counts, watchdog=2)


def test_watchdog_runs_from_reset_and_is_off_without_a_timeout() -> None:
    clock = FakeClock()
    s = shield(clock, watchdog_timeout_s=0.05)
    clock.now += 0.06  # no action at all since reset
    assert s.tick() is not None
    off = shield(clock)
    clock.now += 100.0
    assert off.tick() is None


def test_watchdog_with_the_real_clock() -> None:
    s = Shield(ShieldConfig(watchdog_timeout_s=0.01), A)
    s.filter(np.zeros(A))
    assert s.tick() is None
    import time

    time.sleep(0.02)
    assert s.tick() is not None


def test_interventions_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    s = shield(clock, max_velocity=0.1, log_interval_s=5.0)
    with caplog.at_level(logging.DEBUG, logger="apprentice.deploy.shield"):
        for _ in range(3):
            s.filter(np.array([1.0, 0, 0, 0, 0, 0, 0]))
        clock.now += 6.0
        s.filter(np.array([1.0, 0, 0, 0, 0, 0, 0]))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(debug) == 4 and len(warnings) == 2
    assert "first intervention" in warnings[0] and "velocity 4" in warnings[1]


def test_config_round_trips_through_toml_and_json(tmp_path: Path) -> None:
    config = robot_config("sim_gripper")
    assert config.robot == "sim_gripper" and config.gripper_index == 6
    path = tmp_path / "robot.json"
    path.write_text(json.dumps(config.to_dict()))
    assert ShieldConfig.from_file(path) == config
    toml = tmp_path / "robot.toml"
    toml.write_text(
        'robot = "arm"\nmax_velocity = 0.3\naction_low = [-1, -1]\n'
        "action_high = [1, 1]\nposition_indices = [0]\nworkspace_low = [0]\n"
        "workspace_high = [1]\n"
    )
    loaded = ShieldConfig.from_file(toml)
    assert loaded.max_velocity == 0.3 and loaded.action_low == [-1.0, -1.0]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"max_speed": 1.0}, "unknown field.*max_speed"),
        ({"action_low": [-1.0] * A}, "give both action_low and action_high"),
        ({"action_low": [1.0] * A, "action_high": [0.0] * A}, "action_low exceeds action_high"),
        ({"max_velocity": -0.1}, "max_velocity must be > 0"),
        ({"watchdog_timeout_s": 0}, "watchdog_timeout_s must be > 0"),
        ({"workspace_low": [0, 0], "workspace_high": [1, 1]}, "workspace bounds have 2 values"),
        ({"safe_action": [np.nan] * A}, "safe_action must be finite"),
        ({"action_low": "low", "action_high": "high"}, "action_low must be a list of numbers"),
    ],
)
def test_bad_configs_are_clear_errors(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ApprenticeError, match=message):
        ShieldConfig.from_dict(fields)


def test_config_that_does_not_fit_the_action_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ApprenticeError, match="action_low has 7 values, the policy acts in 4"):
        Shield(robot_config("sim_gripper"), 4)
    with pytest.raises(ApprenticeError, match="gripper_index 9 is outside the 7-D action"):
        Shield(ShieldConfig(gripper_index=9), A)
    with pytest.raises(ApprenticeError, match=r"no shipped shield config 'ur5'.*sim_gripper"):
        robot_config("ur5")
    bad = tmp_path / "bad.toml"
    bad.write_text("max_velocity = [")
    with pytest.raises(ApprenticeError, match=r"bad\.toml does not parse"):
        ShieldConfig.from_file(bad)
    with pytest.raises(ApprenticeError, match="does not exist"):
        ShieldConfig.from_file(tmp_path / "none.toml")


@pytest.mark.parametrize("task_name", ["lift", "stack", "pick_place", "peg_insert"])
def test_the_shipped_limits_leave_the_oracle_untouched(task_name: str) -> None:
    """An oracle episode through the shield: every action passes unchanged, success kept."""
    task = make_task(task_name)
    s = Shield(robot_config("sim_gripper"), A)
    obs, _ = task.reset(seed=3)
    oracle = task.oracle(np.random.default_rng(3))
    success = False
    for _ in range(task.horizon):
        action = np.asarray(oracle.act(obs), np.float32)
        sent = s.filter(action, obs)
        np.testing.assert_array_equal(sent, action)
        obs, _, _, truncated, info = task.step(sent)
        success = bool(info["success"])
        if success or truncated:
            break
    assert success and only(s.counts)


def test_the_shipped_limits_stop_bad_actions_near_the_table() -> None:
    """The lift scene: a policy driving the gripper into the table and going NaN."""
    task = make_task("lift")
    s = Shield(robot_config("sim_gripper"), A)
    obs, _ = task.reset(seed=0)
    for _ in range(40):
        obs, *_ = task.step(s.filter(np.array([0, 0, -1.0, 0, 0, 0, -1.0]), obs))
    low = robot_config("sim_gripper").workspace_low
    assert low is not None and obs["eef_pos"][2] >= low[2] - 0.005
    assert s.counts["workspace"] > 0
    sent = s.filter(np.array([np.nan] * A), obs)
    np.testing.assert_array_equal(sent, [0, 0, 0, 0, 0, 0, -1.0])
    task.step(sent)  # the env accepts the safe action
    assert s.counts["nan"] == 1
