"""The teleop loop: what reaches the file for start/stop/discard/reset/unplug, and the CLI run."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from apprentice.data.store import DemoFile, DemoWriter
from apprentice.envs import make_task
from apprentice.errors import ApprenticeError
from apprentice.teleop.devices import DeviceCommand, KeyboardDevice
from apprentice.teleop.run import TeleopConfig, run_teleop
from apprentice.teleop.session import (
    SessionOptions,
    TeleopResult,
    TeleopSession,
    command_to_action,
    view_rotation,
)

# The scripted operator's commands are the oracle's actions: no frame turn, no scaling.
AS_IS = {"view_yaw": 0.0, "pos_scale": 1.0, "rot_scale": 1.0, "wait_s": 0.0}


def run_session(
    path: Path,
    operator_cls: Any,
    fake_time: Any,
    plan: list[tuple[object, ...]],
    **options: Any,
) -> TeleopResult:
    task = make_task("lift")
    device = operator_cls(task, plan)
    with DemoWriter(path, env_args=task.env_args) as writer:
        session = TeleopSession(
            task,
            device,
            writer,
            iter(range(100)),
            operator="ada",
            options=SessionOptions(**{**AS_IS, **options}),
            clock=fake_time.clock,
            sleep=fake_time.sleep,
        )
        return session.run()


def test_oracle_demo_is_kept_with_operator_device_and_replayable_states(
    tmp_path: Path, operator_cls: Any, fake_time: Any
) -> None:
    path = tmp_path / "demos.hdf5"
    plan = [("press", "start"), ("drive", 300), ("press", "stop"), ("press", "quit")]
    r = run_session(path, operator_cls, fake_time, plan)
    assert r.kept == ["demo_0"] and r.discarded == 0 and r.end_reason == "quit"
    with DemoFile(path) as f:
        assert f.demo_names == ["demo_0"]
        attrs = f.attrs("demo_0")
        assert attrs["operator"] == "ada" and attrs["device"] == "scripted"
        assert attrs["source"] == "teleop:scripted" and bool(attrs["success"])
        assert attrs["seed"] == 0
        states = f.read_field("demo_0", "states")
        actions = f.read_field("demo_0", "actions")
        assert f.read_datagen_info("demo_0") is not None
        assert actions.shape[0] == f.num_samples("demo_0") == r.steps
    # The recorded states and actions replay exactly, as the stored demos of `collect` do.
    task = make_task("lift")
    task.reset(seed=0)
    task.set_state(states[0])
    for t in range(5):
        task.step(actions[t])
        np.testing.assert_array_equal(task.get_state(), states[t + 1])


def test_discard_and_reset_leave_no_demo(tmp_path: Path, operator_cls: Any, fake_time: Any) -> None:
    path = tmp_path / "demos.hdf5"
    plan = [
        ("press", "start"),
        ("drive", 5),
        ("press", "discard"),
        ("press", "start"),
        ("drive", 3),
        ("press", "reset"),
        ("press", "quit"),
    ]
    r = run_session(path, operator_cls, fake_time, plan)
    # A start steps at once (with no motion), then 5 and 3 oracle steps.
    assert r.kept == [] and r.discarded == 2 and r.steps == (1 + 5) + (1 + 3)
    with DemoFile(path) as f:
        assert f.demo_names == []


def test_unplug_mid_demo_discards_only_that_demo(
    tmp_path: Path, operator_cls: Any, fake_time: Any
) -> None:
    path = tmp_path / "demos.hdf5"
    plan = [
        ("press", "start"),
        ("drive", 300),
        ("press", "stop"),
        ("press", "start"),
        ("drive", 10),
        ("unplug",),
    ]
    r = run_session(path, operator_cls, fake_time, plan)
    assert r.kept == ["demo_0"] and r.lost_to_unplug == 1 and r.discarded == 1
    assert "gone" in r.end_reason
    with DemoFile(path) as f:  # opens and validates: the file is intact
        assert f.demo_names == ["demo_0"] and bool(f.attrs("demo_0")["success"])


def test_stop_on_success_keeps_on_its_own_and_max_demos_ends(
    tmp_path: Path, operator_cls: Any, fake_time: Any
) -> None:
    path = tmp_path / "demos.hdf5"
    plan = [("press", "toggle"), ("drive", 300), ("idle", 1000)]
    r = run_session(
        path,
        operator_cls,
        fake_time,
        plan,
        stop_on_success=True,
        steps_after_success=3,
        max_demos=1,
    )
    assert r.kept == ["demo_0"] and r.end_reason == "1 demos kept"
    with DemoFile(path) as f:
        rewards = f.read_field("demo_0", "rewards")
    # Recording went on for exactly 3 steps past the first successful one.
    first = int(np.argmax(rewards > 0))
    assert len(rewards) == first + 1 + 3


def test_full_demo_waits_for_keep(tmp_path: Path, operator_cls: Any, fake_time: Any) -> None:
    path = tmp_path / "demos.hdf5"
    plan = [("press", "start"), ("drive", 20), ("press", "stop"), ("press", "quit")]
    r = run_session(path, operator_cls, fake_time, plan, max_steps=5)
    assert r.steps == 5  # the motion after the fifth step was not applied
    with DemoFile(path) as f:
        assert f.num_samples("demo_0") == 5 and not bool(f.attrs("demo_0")["success"])


def test_session_keeps_the_control_rate(tmp_path: Path, operator_cls: Any, fake_time: Any) -> None:
    path = tmp_path / "demos.hdf5"
    plan = [("press", "start"), ("idle", 40), ("press", "quit")]
    r = run_session(path, operator_cls, fake_time, plan, rate_hz=20.0)
    assert r.steps == 41
    assert fake_time.now == pytest.approx(42 / 20.0)  # one tick per poll, 50 ms apart


def test_command_maps_operator_frame_to_world_scaled_and_clipped() -> None:
    view = view_rotation(90.0)  # the agentview camera looks along -x
    away = DeviceCommand(np.array([0.0, 1.0, 0.0]), np.zeros(3), 1.0)
    np.testing.assert_allclose(
        command_to_action(away, view, 0.5, 0.5), [-0.5, 0, 0, 0, 0, 0, 1], atol=1e-6
    )
    right = DeviceCommand(np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0]), -1.0)
    np.testing.assert_allclose(
        command_to_action(right, view, 3.0, 0.25), [0, 1, 0, 0, 0, 0.25, -1], atol=1e-6
    )


class ScriptedKeys:
    """Key presses handed out one batch per read, whatever the time."""

    def __init__(self, batches: list[str]) -> None:
        self.batches = batches

    def start(self) -> None:
        pass

    def read(self) -> list[tuple[str, float]]:
        keys = self.batches.pop(0) if self.batches else ""
        return [(k if k != "\n" else "Enter", time.time()) for k in keys]

    def close(self) -> None:
        pass

    @property
    def connected(self) -> bool:
        return True


def test_run_teleop_with_keyboard_writes_demo_and_split(tmp_path: Path) -> None:
    out = tmp_path / "new" / "kb.hdf5"  # the missing folder is created
    keys = ["b", "r", "", "", "", "n", "", "Q"]  # start, up (held), stop & keep, quit
    device = KeyboardDevice(ScriptedKeys(keys), hold_s=60.0)
    cfg = TeleopConfig(task="lift", out=str(out), operator="bob", rate_hz=500.0)
    r = run_teleop(cfg, device)
    assert r.kept == ["demo_0"] and r.end_reason == "quit"
    assert len(r.latencies_s) >= 2  # the "b" and "r" presses reached task.step
    with DemoFile(out) as f:
        assert f.attrs("demo_0")["operator"] == "bob"
        assert f.attrs("demo_0")["device"] == "keyboard"
        actions = f.read_field("demo_0", "actions")
        assert set(f.masks) >= {"train", "valid"}
    assert actions.shape == (5, 7)
    # "r" is up: z at pos_scale from the second step on, nothing else moving, gripper open.
    np.testing.assert_allclose(actions[1:, :6], np.tile([0, 0, 0.5, 0, 0, 0], (4, 1)))
    assert np.all(actions[:, 6] == -1.0)


def test_missing_device_error_lists_what_was_found(tmp_path: Path) -> None:
    cfg = TeleopConfig(task="lift", out=str(tmp_path / "x.hdf5"), device="spacemouse")
    with pytest.raises(ApprenticeError, match=r"devices found: browser \(") as err:
        run_teleop(cfg)
    assert "SpaceMouse" in str(err.value) or "hidapi" in str(err.value)
    assert not (tmp_path / "x.hdf5").exists()


def test_bad_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ApprenticeError, match="unknown device 'joystick'"):
        run_teleop(TeleopConfig(out=str(tmp_path / "x.hdf5"), device="joystick"))
    with pytest.raises(ApprenticeError, match="--seed"):
        run_teleop(TeleopConfig(out=str(tmp_path / "x.hdf5"), seed=-1))


def test_cli_reports_a_missing_device_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from apprentice.cli.main import main

    rc = main(["teleop", "--device", "spacemouse", "--out", str(tmp_path / "x.hdf5")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("apprentice teleop: error: ")
    assert "devices found: browser (" in err and err.count("\n") == 1


KILLED_MID_DEMO = """
import os, signal, sys, time
from apprentice.teleop.run import TeleopConfig, run_teleop
from apprentice.teleop.devices import KeyboardDevice

class Keys:
    # keep one demo, start a second, and die (SIGKILL) while it is being recorded
    batches = ["b", "r", "", "n", "b", "r", "", "", "KILL"]
    connected = True
    def start(self): pass
    def close(self): pass
    def read(self):
        keys = self.batches.pop(0)
        if keys == "KILL":
            os.kill(os.getpid(), signal.SIGKILL)
        return [(k, time.time()) for k in keys]

run_teleop(TeleopConfig(out=sys.argv[1], rate_hz=500.0), KeyboardDevice(Keys(), hold_s=60.0))
"""


def test_a_killed_session_loses_only_the_demo_in_progress(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    out = tmp_path / "killed.hdf5"
    r = subprocess.run(
        [sys.executable, "-c", KILLED_MID_DEMO, str(out)], capture_output=True, timeout=300
    )
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    with DemoFile(out) as f:  # opens and validates after the kill
        assert f.demo_names == ["demo_0"] and f.num_samples("demo_0") == 3
