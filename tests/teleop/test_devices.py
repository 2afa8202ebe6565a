"""Each device through synthetic input: key presses, pygame events, HID reports."""

from __future__ import annotations

import io
import os
import pty
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from apprentice.errors import ApprenticeError
from apprentice.teleop.devices import (
    KeyboardDevice,
    KeyState,
    TerminalKeys,
    detect_devices,
    make_device,
    start_device,
)
from apprentice.teleop.spacemouse import SpaceMouseDevice, SpaceMouseState

# --- keyboard ----------------------------------------------------------------------------------


def test_key_sequence_gives_expected_commands() -> None:
    keys = KeyState(hold_s=0.25)
    keys.press("w", 0.0)
    keys.press("d", 0.0)
    cmd = keys.command(0.1)
    np.testing.assert_array_equal(cmd.delta_pos, [1, 1, 0])  # away and right at once
    assert cmd.gripper == -1.0 and cmd.buttons == frozenset() and cmd.stamps == (0.0, 0.0)
    keys.press("w", 0.2)  # auto-repeat keeps w held; d runs out at 0.25
    cmd = keys.command(0.3)
    np.testing.assert_array_equal(cmd.delta_pos, [0, 1, 0])
    assert cmd.stamps == (0.2,)  # each press is reported once
    np.testing.assert_array_equal(keys.command(0.5).delta_pos, [0, 0, 0])  # released
    keys.press("r", 1.0)
    keys.press("f", 1.0)  # up and down cancel
    keys.press("u", 1.0)
    cmd = keys.command(1.1)
    np.testing.assert_array_equal(cmd.delta_pos, [0, 0, 0])
    np.testing.assert_array_equal(cmd.delta_rot, [0, 0, 1])


def test_keys_toggle_gripper_and_press_buttons_once() -> None:
    keys = KeyState()
    keys.press(" ", 0.0)
    keys.press("b", 0.0)
    keys.press("Enter", 0.0)
    keys.press("%", 0.0)  # unmapped: ignored, not stamped
    cmd = keys.command(0.0)
    assert cmd.gripper == 1.0 and cmd.buttons == {"start", "toggle"} and len(cmd.stamps) == 3
    cmd = keys.command(0.1)
    assert cmd.gripper == 1.0 and cmd.buttons == frozenset()
    keys.press(" ", 0.2)
    keys.press("Q", 0.2)
    cmd = keys.command(0.2)
    assert cmd.gripper == -1.0 and cmd.buttons == {"quit"}


def test_release_ends_a_held_key_at_once() -> None:
    keys = KeyState(hold_s=10.0)
    keys.press("a", 0.0)
    np.testing.assert_array_equal(keys.command(0.1).delta_pos, [-1, 0, 0])
    keys.release("a", 0.2)
    np.testing.assert_array_equal(keys.command(0.3).delta_pos, [0, 0, 0])


def test_terminal_keys_from_a_pty() -> None:
    master, slave = pty.openpty()
    stream = os.fdopen(slave, "r")
    device = KeyboardDevice(TerminalKeys(stream))
    device.start()
    try:
        os.write(master, b"w b\r")
        deadline = time.monotonic() + 5.0
        cmd = device.poll()
        while not cmd.buttons and time.monotonic() < deadline:
            time.sleep(0.02)
            cmd = device.poll()
        assert cmd.buttons == {"start", "toggle"}
        assert cmd.gripper == 1.0 and cmd.delta_pos[1] == 1.0
        assert device.connected
        os.close(master)  # the terminal goes away
        deadline = time.monotonic() + 5.0
        while device.connected and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not device.connected
    finally:
        device.close()
        stream.close()


def test_keyboard_without_a_terminal_says_so() -> None:
    device = KeyboardDevice(TerminalKeys(io.StringIO()))
    with pytest.raises(ApprenticeError, match="not one; run `apprentice teleop` in a terminal"):
        device.start()


# --- gamepad (pygame's event queue) ------------------------------------------------------------


@pytest.fixture
def pygame() -> Any:
    import pygame  # the teleop extra, installed by `make dev`

    return pygame


def post(pygame: Any, kind: int, **fields: object) -> None:
    pygame.event.post(pygame.event.Event(kind, **fields))


def test_gamepad_events_give_expected_commands(pygame: Any) -> None:
    from apprentice.teleop.gamepad import GamepadDevice

    pad = GamepadDevice()
    pad.attach(instance_id=7)
    pygame.event.clear()
    post(pygame, pygame.JOYAXISMOTION, instance_id=7, axis=0, value=1.0)  # left stick right
    post(
        pygame, pygame.JOYAXISMOTION, instance_id=7, axis=1, value=-0.55
    )  # pushed away (SDL: up < 0)
    post(pygame, pygame.JOYAXISMOTION, instance_id=7, axis=4, value=0.05)  # in the deadzone
    post(pygame, pygame.JOYAXISMOTION, instance_id=8, axis=3, value=1.0)  # another pad: ignored
    post(pygame, pygame.JOYHATMOTION, instance_id=7, hat=0, value=(1, 0))
    post(pygame, pygame.JOYBUTTONDOWN, instance_id=7, button=0)  # A: gripper
    post(pygame, pygame.JOYBUTTONDOWN, instance_id=7, button=7)  # START: toggle recording
    cmd = pad.poll()
    np.testing.assert_allclose(cmd.delta_pos, [1.0, 0.5, 0.0])  # (0.55 - 0.1) / 0.9
    np.testing.assert_allclose(cmd.delta_rot, [0.0, 1.0, 0.0])
    assert cmd.gripper == 1.0 and cmd.buttons == {"toggle"}
    cmd = pad.poll()  # state persists, presses do not
    np.testing.assert_allclose(cmd.delta_pos, [1.0, 0.5, 0.0])
    assert cmd.buttons == frozenset() and pad.connected


def test_gamepad_unplug_turns_disconnected(pygame: Any) -> None:
    from apprentice.teleop.gamepad import GamepadDevice

    pad = GamepadDevice()
    pad.attach(instance_id=3)
    pygame.event.clear()
    post(pygame, pygame.JOYAXISMOTION, instance_id=3, axis=0, value=1.0)
    post(pygame, pygame.JOYDEVICEREMOVED, instance_id=3)
    cmd = pad.poll()
    assert not pad.connected
    np.testing.assert_array_equal(cmd.delta_pos, [0, 0, 0])  # a lost pad commands no motion


def test_gamepad_absent_is_an_error_naming_what_sdl_sees(pygame: Any) -> None:
    from apprentice.teleop.gamepad import GamepadDevice

    with pytest.raises(ApprenticeError, match=r"no gamepad at index 99: SDL sees \d+ joystick"):
        GamepadDevice(index=99).start()


# --- SpaceMouse (HID reports) ------------------------------------------------------------------


def le16(*values: int) -> list[int]:
    out: list[int] = []
    for v in values:
        out += list((v & 0xFFFF).to_bytes(2, "little"))
    return out


class FakeHid:
    """hidapi's device: hands out queued reports, then [] (non-blocking, nothing new)."""

    def __init__(self, reports: Sequence[Sequence[int]]) -> None:
        self.reports = [list(r) for r in reports]
        self.unplugged = False
        self.closed = False

    def read(self, max_length: int) -> list[int]:
        if self.unplugged:
            raise OSError("read error")
        return self.reports.pop(0)[:max_length] if self.reports else []

    def close(self) -> None:
        self.closed = True


def test_spacemouse_combined_report_gives_deltas() -> None:
    # SpaceMouse Wireless style: translation and rotation in one report 1.
    hid = FakeHid([[1, *le16(350, -350, -175, 0, 175, -700)]])
    mouse = SpaceMouseDevice(hid)
    mouse.start()
    cmd = mouse.poll()
    # Device y is towards the user and z down: pyspacemouse's sign flips give the operator frame.
    np.testing.assert_allclose(cmd.delta_pos, [1.0, 1.0, 0.5])
    np.testing.assert_allclose(cmd.delta_rot, [0.0, -0.5, -1.0])  # clipped at full scale


def test_spacemouse_split_reports_buttons_and_deadzone() -> None:
    reports = [
        [1, *le16(10, 0, 0)],  # SpaceNavigator style: translation alone, inside the deadzone
        [2, *le16(-350, 0, 0)],  # rotation alone
        [3, 1, 0],  # left button down: gripper
        [3, 1, 0],  # still held: no new press
        [3, 3, 0],  # right button down too: toggle recording
    ]
    mouse = SpaceMouseDevice(FakeHid(reports))
    mouse.start()
    cmd = mouse.poll()
    np.testing.assert_allclose(cmd.delta_pos, [0, 0, 0])
    np.testing.assert_allclose(cmd.delta_rot, [1.0, 0, 0])
    assert cmd.gripper == 1.0 and cmd.buttons == {"toggle"}
    assert mouse.poll().buttons == frozenset()


def test_spacemouse_read_error_is_an_unplug() -> None:
    hid = FakeHid([[1, *le16(350, 0, 0, 0, 0, 0)]])
    mouse = SpaceMouseDevice(hid)
    mouse.start()
    assert mouse.poll().delta_pos[0] == 1.0 and mouse.connected
    hid.unplugged = True
    np.testing.assert_array_equal(mouse.poll().delta_pos, [0, 0, 0])
    assert not mouse.connected
    mouse.close()
    assert hid.closed


def test_spacemouse_state_ignores_short_and_unknown_reports() -> None:
    state = SpaceMouseState()
    assert (
        state.feed([]) == set() and state.feed([1, 5]) == set() and state.feed([9, 1, 2]) == set()
    )
    np.testing.assert_array_equal(state.axes, np.zeros(6))


# --- discovery and the factory -----------------------------------------------------------------


def test_detect_devices_always_lists_the_browser() -> None:
    kinds = [d.kind for d in detect_devices()]
    assert kinds[0] == "browser"


def test_unknown_device_and_absent_device_errors() -> None:
    with pytest.raises(ApprenticeError, match="unknown device 'wiimote'"):
        make_device("wiimote")
    # This machine (and CI's) has no SpaceMouse: the error lists what it does have.
    with pytest.raises(ApprenticeError, match=r"(?i)spacemouse.*; devices found: browser \("):
        start_device(SpaceMouseDevice())
