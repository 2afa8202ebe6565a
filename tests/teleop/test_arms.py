"""Teleop beyond one gripper: the action layout arm by arm, hand_grasp driven by the grasp
aperture, and two-arm tasks from the keyboard and the browser page (and refused elsewhere)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from websockets.sync.client import connect

from apprentice.cli.main import main
from apprentice.data.store import DemoFile, DemoWriter
from apprentice.envs import make_task
from apprentice.envs.hand_grasp import grasp_synergy
from apprentice.errors import ApprenticeError
from apprentice.teleop.arms import arm_layout, hold_action
from apprentice.teleop.browser import HEADLESS_CHROMIUM_FLAGS, BrowserDevice, find_chromium
from apprentice.teleop.devices import ArmCommand, DeviceCommand, KeyboardDevice, KeyState
from apprentice.teleop.run import TeleopConfig, run_teleop
from apprentice.teleop.session import (
    CommandMapping,
    SessionOptions,
    TeleopSession,
    command_to_action,
    view_rotation,
)
from apprentice.teleop.spacemouse import SpaceMouseDevice

AS_IS = SessionOptions(view_yaw=0.0, pos_scale=1.0, rot_scale=1.0, wait_s=0.0)


class ScriptedKeys:
    """Key presses handed out one batch (a list of key names) per read, read i at time i;
    `clock` is the device's clock, half a tick after the last read."""

    def __init__(self, batches: list[list[str]]) -> None:
        self.batches = batches
        self.reads = 0

    def clock(self) -> float:
        return self.reads - 0.5

    def start(self) -> None:
        pass

    def read(self) -> list[tuple[str, float]]:
        keys = self.batches.pop(0) if self.batches else []
        self.reads += 1
        return [(k, float(self.reads - 1)) for k in keys]

    def close(self) -> None:
        pass

    @property
    def connected(self) -> bool:
        return True


# --- the layout -------------------------------------------------------------------------------


def test_layout_of_a_gripper_a_hand_and_two_arms(fake_two_arm: Any) -> None:
    lift = arm_layout(make_task("lift"))
    assert lift.arms == ("arm",) and lift.action_dim == 7 and lift.grasp_dims == (6,)
    hand = arm_layout(make_task("hand_grasp"))
    assert hand.action_dim == 26 and hand.eef_dims == tuple(range(6))
    assert hand.grasp_dims == tuple(range(6, 26)) and hand.level_index(0) == 25
    two = arm_layout(make_task("test_two_arm"))
    assert two.arms == ("robot0", "robot1") and two.action_dim == 14
    assert two.eef(1) == slice(7, 13) and two.grasp_dims == (6, 13)
    assert two.levels(np.arange(14.0)) == [6.0, 13.0]


def test_a_task_without_end_effector_actions_is_refused() -> None:
    with pytest.raises(ApprenticeError, match=r"task 'pusht' takes 2-D actions, not an end-eff"):
        arm_layout(make_task("pusht"))


def test_hold_action_keeps_the_pose_and_maps_the_grasp(fake_two_arm: Any) -> None:
    hand = make_task("hand_grasp")
    hand.reset(seed=0)
    held = hold_action(hand, arm_layout(hand), [0.3])
    np.testing.assert_array_equal(held[:6], 0.0)
    np.testing.assert_allclose(held[6:], grasp_synergy(0.3))
    two = make_task("test_two_arm")
    two.reset(seed=0)
    held = hold_action(two, arm_layout(two), [1.0, -0.5])
    np.testing.assert_array_equal(held, [0] * 6 + [1.0] + [0] * 6 + [-0.5])


# --- the mapping --------------------------------------------------------------------------------


def test_a_gripper_task_maps_exactly_as_command_to_action() -> None:
    task = make_task("lift")
    task.reset(seed=0)
    view = view_rotation(90.0)
    mapping = CommandMapping(task, KeyboardDevice(ScriptedKeys([])), SessionOptions())
    rng = np.random.default_rng(0)
    for _ in range(50):
        pos, rot = rng.uniform(-1, 1, 3), rng.uniform(-1, 1, 3)
        pos[rng.integers(3)] = 0.0  # exact zeros, as keys send: no round-off may appear
        cmd = DeviceCommand(pos, rot, float(rng.uniform(-1.2, 1.2)))
        np.testing.assert_array_equal(mapping(cmd), command_to_action(cmd, view, 0.5, 0.5))


def test_the_grasp_aperture_drives_the_hands_synergy() -> None:
    task = make_task("hand_grasp")
    task.reset(seed=0)
    mapping = CommandMapping(task, KeyboardDevice(ScriptedKeys([])), SessionOptions())
    for gripper in (-1.0, -0.2, 0.6, 1.0):
        cmd = DeviceCommand(np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 0.5]), gripper)
        action = mapping(cmd)
        assert action.shape == (26,) and action.dtype == np.float32
        np.testing.assert_array_equal(
            action[:6], command_to_action(cmd, mapping.view, 0.5, 0.5)[:6]
        )
        np.testing.assert_allclose(action[6:], grasp_synergy(gripper), atol=1e-7)
        assert action[-1] == pytest.approx(gripper)  # the level recording keeps


class OracleHand:
    """A device whose operator drives hand_grasp as its oracle: the oracle's wrist motion and
    its grasp level (the last action dim) as the command, nothing of its 20 finger targets."""

    name = "scripted"

    def __init__(self, task: Any, steps: int) -> None:
        self.task = task
        self.oracle = task.oracle(np.random.default_rng(0))
        self.polls = 0
        self.steps = steps
        self.done = False
        self.connected = True

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass

    def poll(self) -> DeviceCommand:
        self.polls += 1
        if self.polls == 1:
            return DeviceCommand(np.zeros(3), np.zeros(3), -1.0, frozenset({"start"}))
        if self.polls == 2:
            self.oracle.reset()
        if self.done:
            return DeviceCommand(np.zeros(3), np.zeros(3), 1.0, frozenset({"quit"}))
        if self.task.is_success() or self.polls > self.steps:
            self.done = True
            return DeviceCommand(np.zeros(3), np.zeros(3), 1.0, frozenset({"stop"}))
        a = self.oracle.act(self.task.get_observation())
        return DeviceCommand(a[:3].copy(), a[3:6].copy(), float(a[-1]))


def test_a_hand_driven_by_a_6dof_and_aperture_command_grasps_and_lifts(
    tmp_path: Path, fake_time: Any
) -> None:
    task = make_task("hand_grasp")
    device = OracleHand(task, steps=task.horizon)
    path = tmp_path / "hand.hdf5"
    with DemoWriter(path, env_args=task.env_args) as writer:
        session = TeleopSession(
            task,
            device,
            writer,
            iter(range(10)),
            operator="ada",
            options=AS_IS,
            clock=fake_time.clock,
            sleep=fake_time.sleep,
        )
        r = session.run()
    assert r.kept == ["demo_0"]
    with DemoFile(path) as f:
        assert bool(f.attrs("demo_0")["success"])
        actions = f.read_field("demo_0", "actions")
    assert actions.shape[1] == 26
    # Every finger follows the synergy of the commanded level; the hand closed at the end.
    for a in actions:
        np.testing.assert_allclose(a[6:], grasp_synergy(float(a[-1])), atol=1e-6)
    assert actions[0, -1] == -1.0 and actions[-1, -1] > 0.5


# --- two arms -----------------------------------------------------------------------------------


def test_keys_drive_the_arm_in_focus_and_tab_moves_it() -> None:
    keys = KeyState(hold_s=0.25, arms=2)
    keys.press("w", 0.0)
    keys.press(" ", 0.0)
    cmd = keys.command(0.1)
    left, right = cmd.per_arm()
    np.testing.assert_array_equal(left.delta_pos, [0, 1, 0])
    np.testing.assert_array_equal(right.delta_pos, [0, 0, 0])
    assert (left.gripper, right.gripper) == (1.0, -1.0) and cmd.moving
    keys.press("w", 0.15)
    keys.press("Tab", 0.15)  # the held "w" does not carry over to the other arm
    keys.press("d", 0.15)
    keys.press(" ", 0.15)
    left, right = keys.command(0.2).per_arm()
    np.testing.assert_array_equal(left.delta_pos, [0, 0, 0])
    np.testing.assert_array_equal(right.delta_pos, [1, 0, 0])
    assert (left.gripper, right.gripper) == (1.0, 1.0)
    keys.press("Tab", 0.3)  # back to the first arm
    assert keys.focus == 0 and not keys.command(0.9).moving
    one = KeyState()
    one.press("Tab", 0.0)  # one arm: Tab is no key of the map
    cmd = one.command(0.0)
    assert cmd.arms == () and cmd.stamps == ()


def test_a_keyboard_session_records_both_arms(tmp_path: Path, fake_two_arm: Any) -> None:
    # start; robot0 up (held 2 polls); Tab, robot1 away and its gripper closed; keep; quit
    keys = ScriptedKeys([["b"], ["r"], [], ["Tab", "w", " "], [], ["n"], ["Q"]])
    device = KeyboardDevice(keys, hold_s=1.5, clock=keys.clock)
    out = tmp_path / "two.hdf5"
    cfg = TeleopConfig(task="test_two_arm", device="keyboard", out=str(out), rate_hz=500.0)
    r = run_teleop(cfg, device)
    assert r.kept == ["demo_0"]
    with DemoFile(out) as f:
        actions = f.read_field("demo_0", "actions")
    # The operator's frame is turned 90 degrees about z: "away" is world -x.
    up, away = [0.0, 0, 0.5, 0, 0, 0], [-0.5, 0, 0, 0, 0, 0]
    still = [0.0] * 6
    want: list[list[float]] = [
        [*still, -1, *still, -1],  # the start steps at once, with no motion
        [*up, -1, *still, -1],
        [*up, -1, *still, -1],
        [*still, -1, *away, 1],
        [*still, -1, *away, 1],
    ]
    np.testing.assert_allclose(actions, want, atol=1e-6)


class OneArmDevice:
    name = "spacemouse"
    connected = True

    def start(self) -> None:
        raise AssertionError("a refused device is never started")

    def poll(self) -> DeviceCommand:
        return DeviceCommand.neutral()

    def close(self) -> None:
        pass


def test_a_one_arm_device_is_refused_for_two_arms(tmp_path: Path, fake_two_arm: Any) -> None:
    task = make_task("test_two_arm")
    with pytest.raises(ApprenticeError, match=r"spacemouse device drives one arm.*2 \(robot0"):
        CommandMapping(task, OneArmDevice(), SessionOptions())
    cfg = TeleopConfig(task="test_two_arm", out=str(tmp_path / "x.hdf5"))
    with pytest.raises(ApprenticeError, match="drives one arm"):
        run_teleop(cfg, SpaceMouseDevice())
    assert not (tmp_path / "x.hdf5").exists()


@pytest.mark.parametrize("device", ["spacemouse", "gamepad"])
def test_cli_refuses_a_one_arm_device_for_two_arms_in_one_line(
    device: str, tmp_path: Path, fake_two_arm: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x.hdf5"
    rc = main(["teleop", "--task", "test_two_arm", "--device", device, "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("apprentice teleop: error: the ") and err.count("\n") == 1
    assert f"{device} device drives one arm and task 'test_two_arm' has 2" in err
    assert "--device browser" in err and "--device keyboard" in err


def test_the_browser_device_takes_one_command_per_arm(fake_two_arm: Any) -> None:
    dev = BrowserDevice(port=0)
    CommandMapping(make_task("test_two_arm"), dev, SessionOptions())  # binds the two arms
    dev.start()
    try:
        ws = connect(f"ws://127.0.0.1:{dev.port}/ws", open_timeout=10, legacy=True)
        hello = json.loads(ws.recv(timeout=10))
        assert hello["arms"] == ["robot0", "robot1"] and hello["focus_key"] == "Tab"
        arms = [
            {"pos": [0, 1, 0], "rot": [0, 0, 0], "gripper": 1},
            {"pos": [0, 0, 0], "rot": [0, 0, -1], "gripper": -1},
        ]
        ws.send(json.dumps({"type": "command", "seq": 0, "arms": arms, "buttons": ["start"]}))
        for bad in ({"pos": [1, 0, 0]}, {"arms": arms[:1]}, {"arms": [arms[0], 3]}):
            ws.send(json.dumps({"type": "command", "seq": 1, **bad}))
            reply = json.loads(ws.recv(timeout=10))
            assert reply["kind"] == "bad_field" and "arms" in reply["message"]
        deadline = time.monotonic() + 10
        while dev.received["command"] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        cmd = dev.poll()
        left, right = cmd.per_arm()
        np.testing.assert_array_equal(left.delta_pos, [0, 1, 0])
        np.testing.assert_array_equal(right.delta_rot, [0, 0, -1])
        assert (left.gripper, right.gripper) == (1.0, -1.0) and cmd.buttons == {"start"}
        assert dev.rejected["bad_field"] == 3
        ws.close()
        deadline = time.monotonic() + 10
        while dev.connected and time.monotonic() < deadline:
            time.sleep(0.01)
        # No page: no motion on either arm, each gripper as it was.
        rest = dev.poll().per_arm()
        assert not any(a.moving for a in rest) and [a.gripper for a in rest] == [1.0, -1.0]
    finally:
        dev.close()


def test_a_command_for_the_wrong_number_of_arms_is_an_error(fake_two_arm: Any) -> None:
    mapping = CommandMapping(make_task("test_two_arm"), KeyboardDevice(), SessionOptions())
    one = DeviceCommand(np.zeros(3), np.zeros(3), arms=(ArmCommand(np.zeros(3), np.zeros(3)),))
    with pytest.raises(
        ApprenticeError, match=r"commands for 1 arm\(s\); task 'test_two_arm' has 2"
    ):
        mapping(one)


def test_page_in_headless_chromium_drives_two_arms(tmp_path: Path, fake_two_arm: Any) -> None:
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no chromium on PATH (apt-get install chromium; .ci/run does)")
    from playwright import sync_api  # the dev extra

    out = tmp_path / "two.hdf5"
    cfg = TeleopConfig(task="test_two_arm", out=str(out), max_demos=1, frame_size=32, wait_s=60)
    ready = threading.Event()
    urls: list[str] = []
    result: list[Any] = []

    def on_ready(device: Any) -> None:
        urls.append(device.url)
        ready.set()

    def session() -> None:
        try:
            result.append(run_teleop(cfg, BrowserDevice(port=0), on_ready=on_ready))
        except BaseException as exc:
            result.append(exc)
            ready.set()

    thread = threading.Thread(target=session, daemon=True)
    thread.start()
    assert ready.wait(60) and urls, result
    step = "Number(document.getElementById('step').textContent)"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=list(HEADLESS_CHROMIUM_FLAGS))
        try:
            page = browser.new_page()
            page.goto(urls[0])
            page.wait_for_function("document.getElementById('conn').textContent === 'connected'")
            page.wait_for_function("document.getElementById('arm').textContent === 'Arm: robot0'")
            page.keyboard.press("b")
            page.wait_for_function("document.getElementById('state').textContent === 'recording'")
            page.keyboard.down("r")  # robot0 up
            page.wait_for_function(f"{step} >= 6")
            page.keyboard.up("r")
            page.keyboard.press("Tab")  # the keys now drive robot1
            page.wait_for_function("document.getElementById('arm').textContent === 'Arm: robot1'")
            page.keyboard.down("f")  # robot1 down
            page.wait_for_function(f"{step} >= 12")
            page.keyboard.up("f")
            page.click("#gripper")  # robot1's gripper closes
            page.wait_for_function(f"{step} >= 16")
            page.click("#stop")
            thread.join(60)
        finally:
            browser.close()
    assert not thread.is_alive()
    r = result[0]
    assert not isinstance(r, BaseException), r
    assert r.kept == ["demo_0"]
    with DemoFile(out) as f:
        actions = f.read_field("demo_0", "actions")
    assert actions.shape[1] == 14
    # Loose bounds: under load the page samples a held key part-way.
    assert np.any(actions[:, 2] > 0.2) and np.all(actions[:, 9] <= 0.0)  # robot0 rose, not 1
    assert np.any(actions[:, 9] < -0.2)  # robot1 went down
    assert np.all(actions[:, 6] == -1.0)  # robot0's gripper stayed open
    assert actions[0, 13] == -1.0 and actions[-1, 13] == 1.0  # robot1's closed from the page


@pytest.mark.parametrize("name", ["handover", "bimanual_lift"])
def test_each_arm_of_a_built_in_two_arm_task_maps_as_one_arm(name: str) -> None:
    task = make_task(name)
    task.reset(seed=0)
    mapping = CommandMapping(task, KeyboardDevice(ScriptedKeys([])), SessionOptions())
    assert mapping.layout.arms == ("robot0", "robot1")
    rng = np.random.default_rng(0)
    for _ in range(10):
        arms = tuple(
            ArmCommand(rng.uniform(-1, 1, 3), rng.uniform(-1, 1, 3), float(rng.uniform(-1, 1)))
            for _ in range(2)
        )
        action = mapping(DeviceCommand(arms[0].delta_pos, arms[0].delta_rot, arms=arms))
        want = [command_to_action(a, mapping.view, 0.5, 0.5) for a in arms]
        np.testing.assert_array_equal(action, np.concatenate(want))
        task.step(action)
