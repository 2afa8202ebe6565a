"""Teleoperation devices: any input turned into a 6-DoF delta pose and a gripper command.

Every device speaks the same small contract (`Device`): `start()` opens it, `poll()` returns
the command of the current instant, `close()` releases it, and `connected` turns False when
it goes away (unplugged, the page closed), which the teleop session turns into "discard the
demo in progress". The session polls once per control step (20 Hz for the built-in tasks),
so a device keeps *state* (which keys are held, where the stick is), not a queue of motions.

Commands are in the operator's frame, the one the camera view shows: x to the right, y away
from the viewer, z up; rotations are axis-angle rates about the same axes. Every value is in
[-1, 1] (full deflection); the session scales them into the task's action. Discrete presses
travel as button names (`BUTTONS`), each reported once, on the poll after the press.

A two-arm task needs a device that drives several arms (`MultiArm`): the session tells it the
task's arms before it starts, and its commands then carry one `ArmCommand` per arm. The
keyboard drives one arm at a time (Tab moves the focus to the next arm, the others hold
still with their grippers as they are); the browser page does the same with its keys and
touch pads, and drives both arms at once from two WebXR controllers. The gamepad and the
SpaceMouse drive one arm.

This module holds the contract, the keyboard (a terminal, or any key source a test injects),
device discovery and the by-name factory; the gamepad, the SpaceMouse and the browser page
live beside it in their own modules.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import termios
import threading
import time
import tty
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TextIO, runtime_checkable

import numpy as np

from apprentice.errors import ApprenticeError

BUTTONS = ("start", "stop", "discard", "reset", "toggle", "quit")
"""What a device's discrete presses mean to the session: start recording, stop and keep the
demo, discard it, reset the scene (a new initial state), toggle (start when idle, stop and
keep while recording: for devices with few buttons), and quit the session."""

DEVICE_NAMES = ("browser", "keyboard", "gamepad", "spacemouse")

GRIPPER_OPEN = -1.0
GRIPPER_CLOSED = 1.0


class DeviceNotFound(ApprenticeError):
    """The device asked for is not present (nothing plugged in, no terminal, no driver)."""


@dataclass(frozen=True)
class ArmCommand:
    """One arm's share of a command, in the operator's frame."""

    delta_pos: np.ndarray
    """(3,) translation rate in [-1, 1]: right, away from the viewer, up."""
    delta_rot: np.ndarray
    """(3,) axis-angle rotation rate in [-1, 1] about the same axes."""
    gripper: float = GRIPPER_OPEN
    """-1 open, +1 closed (values between are partial closure)."""

    @property
    def moving(self) -> bool:
        return bool(np.any(self.delta_pos) or np.any(self.delta_rot))


@dataclass(frozen=True)
class DeviceCommand:
    """One poll's worth of operator input, in the operator's frame (module docstring)."""

    delta_pos: np.ndarray
    """(3,) translation rate in [-1, 1]: right, away from the viewer, up."""
    delta_rot: np.ndarray
    """(3,) axis-angle rotation rate in [-1, 1] about the same axes."""
    gripper: float = GRIPPER_OPEN
    """-1 open, +1 closed (values between are partial closure)."""
    buttons: frozenset[str] = frozenset()
    """Buttons pressed since the last poll (names from BUTTONS)."""
    stamps: tuple[float, ...] = ()
    """When the input events folded into this command happened (time.time() seconds), for
    devices that know it (the browser page stamps its events): the session measures
    input-to-step latency from them."""
    arms: tuple[ArmCommand, ...] = ()
    """Every arm's command, in the task's arm order, from a device driving several arms (a
    two-arm task); delta_pos, delta_rot and gripper then repeat one of them (the keys' arm in
    focus). Empty for one arm, whose command is delta_pos, delta_rot and gripper."""

    @classmethod
    def neutral(cls, gripper: float = GRIPPER_OPEN) -> DeviceCommand:
        """No motion, the gripper where it is."""
        return cls(np.zeros(3), np.zeros(3), gripper)

    def per_arm(self) -> tuple[ArmCommand, ...]:
        """One command per arm the device drives (one, unless it drives several)."""
        return self.arms or (ArmCommand(self.delta_pos, self.delta_rot, self.gripper),)

    @property
    def moving(self) -> bool:
        """Whether any arm is commanded to move."""
        return any(arm.moving for arm in self.per_arm())

    def stopped(self) -> DeviceCommand:
        """No motion on any arm, every gripper where it is, no buttons."""
        still = tuple(ArmCommand(np.zeros(3), np.zeros(3), a.gripper) for a in self.arms)
        return DeviceCommand(np.zeros(3), np.zeros(3), self.gripper, arms=still)


@runtime_checkable
class Device(Protocol):
    """An input device the teleop session polls at the control rate."""

    name: str
    """What recorded demos name as their device ("keyboard", "browser", ...)."""

    def start(self) -> None:
        """Open the device; raises ApprenticeError naming what was found when it is absent."""

    def poll(self) -> DeviceCommand:
        """The command of this instant; never blocks."""
        ...

    def close(self) -> None:
        """Release the device (idempotent)."""

    @property
    def connected(self) -> bool:
        """False once the device has gone away (unplugged, the page closed)."""
        ...


@runtime_checkable
class MultiArm(Protocol):
    """A device that can drive several arms (module docstring)."""

    def drive_arms(self, arms: tuple[str, ...]) -> None:
        """Drive these arms, named in the task's action order, from now on: every command
        then carries one `ArmCommand` per arm. Called before `start`."""


@dataclass(frozen=True)
class TeleopStatus:
    """What the operator should see: the session's state, shown by devices that can show it."""

    state: str
    """"waiting" (for the device), "idle" (scene reset, not recording), "recording", or
    "full" (max steps reached: keep or discard)."""
    success: bool = False
    """Whether the task has succeeded in the demo in progress."""
    step: int = 0
    """Steps recorded in the demo in progress."""
    kept: int = 0
    """Demos kept (written) this session."""
    discarded: int = 0
    """Demos discarded this session."""
    seed: int | None = None
    """Initial-state seed of the scene."""
    message: str = ""
    """The last thing that happened, in words ("demo_3 kept", "device unplugged: ...")."""


@runtime_checkable
class Feedback(Protocol):
    """A device that can show the operator the session's status and the camera view."""

    @property
    def wants_frames(self) -> bool:
        """Whether anyone would see a camera frame now (skip rendering when not)."""
        ...

    def show(self, status: TeleopStatus, frame: np.ndarray | None) -> None:
        """Show `status` and, if given, the camera image (H, W, 3) uint8."""


# --- keyboard ---------------------------------------------------------------------------------

MOTION_KEYS: dict[str, tuple[str, int, float]] = {
    "d": ("pos", 0, 1.0),
    "a": ("pos", 0, -1.0),
    "w": ("pos", 1, 1.0),
    "s": ("pos", 1, -1.0),
    "r": ("pos", 2, 1.0),
    "f": ("pos", 2, -1.0),
    "i": ("rot", 0, 1.0),
    "k": ("rot", 0, -1.0),
    "l": ("rot", 1, 1.0),
    "j": ("rot", 1, -1.0),
    "u": ("rot", 2, 1.0),
    "o": ("rot", 2, -1.0),
}
"""Key -> (pos | rot, axis, sign) in the operator's frame: w/s away/towards, a/d left/right,
r/f up/down; i/k, j/l, u/o rotate about x, y, z. The browser page gets this map in its hello
message, so the terminal and the page drive the same way."""
BUTTON_KEYS: dict[str, str] = {
    "b": "start",
    "n": "stop",
    "x": "discard",
    "z": "reset",
    "Enter": "toggle",
    "Q": "quit",
}
"""Key -> button (names as the browser's KeyboardEvent.key spells them)."""
GRIPPER_KEY = " "
"""Space toggles the gripper (of the arm in focus) between open and closed."""
FOCUS_KEY = "Tab"
"""Moves the keys' focus to the next arm, for a two-arm task (a no-op with one arm)."""


class KeyState:
    """Held keys -> a command. Shared by the terminal keyboard and the browser page's keys.

    A terminal reports presses only (held keys auto-repeat), never releases, so a key counts
    as held for `hold_s` after its last press; a source with releases (the browser) passes
    `release` and holds exactly as long as the key is down.
    """

    def __init__(self, hold_s: float = 0.25, arms: int = 1) -> None:
        self.hold_s = hold_s
        self._until: dict[str, float] = {}  # motion key -> time it stops counting as held
        self._buttons: set[str] = set()
        self._stamps: list[float] = []
        self.grippers = [GRIPPER_OPEN] * arms
        """Each arm's gripper command; the keys drive the arm at `focus`."""
        self.focus = 0

    @property
    def gripper(self) -> float:
        """The gripper command of the arm in focus."""
        return self.grippers[self.focus]

    def drive_arms(self, arms: int) -> None:
        """Drive `arms` arms, each starting open, the first in focus (the same number again
        changes nothing)."""
        if arms != len(self.grippers):
            self.grippers = [GRIPPER_OPEN] * arms
            self.focus = 0

    def press(self, key: str, t: float) -> None:
        if key in MOTION_KEYS:
            self._until[key] = t + self.hold_s
        elif key in BUTTON_KEYS:
            self._buttons.add(BUTTON_KEYS[key])
        elif key == GRIPPER_KEY:
            self.grippers[self.focus] = GRIPPER_CLOSED if self.gripper < 0 else GRIPPER_OPEN
        elif key == FOCUS_KEY and len(self.grippers) > 1:
            self.focus = (self.focus + 1) % len(self.grippers)
            self._until.clear()  # a key held for one arm does not move the next
        else:
            return
        self._stamps.append(t)

    def release(self, key: str, t: float) -> None:
        if self._until.pop(key, None) is not None:
            self._stamps.append(t)

    def command(self, now: float) -> DeviceCommand:
        """The command at time `now`; clears the buttons and stamps it reports."""
        pos, rot = np.zeros(3), np.zeros(3)
        for key, until in list(self._until.items()):
            if until < now:
                del self._until[key]
                continue
            kind, axis, sign = MOTION_KEYS[key]
            (pos if kind == "pos" else rot)[axis] += sign
        pos, rot = np.clip(pos, -1.0, 1.0), np.clip(rot, -1.0, 1.0)
        arms: tuple[ArmCommand, ...] = ()
        if len(self.grippers) > 1:  # the arm in focus moves, the others hold still
            still = np.zeros(3)
            arms = tuple(
                ArmCommand(pos, rot, g) if i == self.focus else ArmCommand(still, still, g)
                for i, g in enumerate(self.grippers)
            )
        cmd = DeviceCommand(
            pos, rot, self.gripper, frozenset(self._buttons), tuple(self._stamps), arms
        )
        self._buttons.clear()
        self._stamps.clear()
        return cmd


class KeySource(Protocol):
    """Where key presses come from: a terminal, or a scripted list in tests."""

    def start(self) -> None: ...

    def read(self) -> list[tuple[str, float]]:
        """(key, time.time()) of every press since the last read, oldest first."""
        ...

    def close(self) -> None: ...

    @property
    def connected(self) -> bool: ...


_TERMINAL_NAMES = {"\r": "Enter", "\n": "Enter", "\t": "Tab"}


class TerminalKeys:
    """Key presses from the controlling terminal, read by a thread in cbreak mode.

    cbreak (not raw) keeps Ctrl-C a signal, so interrupting the CLI works as everywhere else;
    the terminal's settings are restored on close. End of input (the terminal went away)
    turns `connected` False.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stdin
        self._pending: deque[tuple[str, float]] = deque(maxlen=256)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._eof = False
        self._saved: list[Any] | None = None
        self._thread: threading.Thread | None = None
        self._fd = -1

    def start(self) -> None:
        isatty = getattr(self._stream, "isatty", None)
        if isatty is None or not isatty():
            raise DeviceNotFound(
                "the keyboard device reads keys from a terminal, and stdin is not one; "
                "run `apprentice teleop` in a terminal or use --device browser"
            )
        self._fd = self._stream.fileno()
        self._saved = termios.tcgetattr(self._fd)
        tty.setcbreak(self._fd)
        self._thread = threading.Thread(target=self._read_loop, name="teleop-keys", daemon=True)
        self._thread.start()

    def _read_loop(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._fd], [], [], 0.05)
                data = os.read(self._fd, 64) if ready else None
            except OSError:  # the terminal is gone (a pty whose other end closed reads EIO)
                data = b""
            if data is None:
                continue
            if not data:
                self._eof = True
                return
            now = time.time()
            with self._lock:
                for ch in data.decode("utf-8", errors="ignore"):
                    self._pending.append((_TERMINAL_NAMES.get(ch, ch), now))

    def read(self) -> list[tuple[str, float]]:
        with self._lock:
            keys = list(self._pending)
            self._pending.clear()
        return keys

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            self._thread = None
        if self._saved is not None:
            with contextlib.suppress(termios.error):  # the terminal may be gone already
                termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
            self._saved = None

    @property
    def connected(self) -> bool:
        return not self._eof


class KeyboardDevice:
    """Keys of a terminal (or an injected `KeySource`) driving the robot: see MOTION_KEYS.
    With several arms, FOCUS_KEY switches the arm the keys drive."""

    name = "keyboard"

    def __init__(
        self,
        keys: KeySource | None = None,
        *,
        hold_s: float = 0.25,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys: KeySource = keys if keys is not None else TerminalKeys()
        self._state = KeyState(hold_s)
        self._clock = clock

    def drive_arms(self, arms: tuple[str, ...]) -> None:
        self._state.drive_arms(len(arms))

    def start(self) -> None:
        self._keys.start()

    def poll(self) -> DeviceCommand:
        for key, t in self._keys.read():
            self._state.press(key, t)
        return self._state.command(self._clock())

    def close(self) -> None:
        self._keys.close()

    @property
    def connected(self) -> bool:
        return self._keys.connected


# --- discovery --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FoundDevice:
    """A device `detect_devices` found: its kind (a DEVICE_NAMES entry) and what it is."""

    kind: str
    detail: str


def detect_devices() -> list[FoundDevice]:
    """Every input device present now; used to say what *was* found when one is missing."""
    from apprentice.teleop.gamepad import list_gamepads
    from apprentice.teleop.spacemouse import list_spacemice

    found = [FoundDevice("browser", "a web page this command serves, always available")]
    if sys.stdin is not None and sys.stdin.isatty():
        found.append(FoundDevice("keyboard", f"terminal {os.ttyname(sys.stdin.fileno())}"))
    found += [FoundDevice("gamepad", name) for name in list_gamepads()]
    found += [FoundDevice("spacemouse", name) for name in list_spacemice()]
    return found


def describe_found(found: list[FoundDevice]) -> str:
    """The found devices in one line, for error messages."""
    return "; ".join(f"{d.kind} ({d.detail})" for d in found) or "none"


def make_device(name: str, *, host: str = "127.0.0.1", port: int = 8780) -> Device:
    """A device by kind name, not yet started (`host` and `port`: the browser page's server)."""
    if name == "keyboard":
        return KeyboardDevice()
    if name == "gamepad":
        from apprentice.teleop.gamepad import GamepadDevice

        return GamepadDevice()
    if name == "spacemouse":
        from apprentice.teleop.spacemouse import SpaceMouseDevice

        return SpaceMouseDevice()
    if name == "browser":
        from apprentice.teleop.browser import BrowserDevice

        return BrowserDevice(host=host, port=port)
    raise ApprenticeError(f"unknown device {name!r}; devices: {', '.join(DEVICE_NAMES)}")


def bind_arms(device: Device, arms: tuple[str, ...], task: str) -> None:
    """Tell `device` which arms it drives; a device that drives one arm cannot take a task
    of several (ApprenticeError naming the devices that can)."""
    if isinstance(device, MultiArm):
        device.drive_arms(arms)
    elif len(arms) > 1:
        raise ApprenticeError(
            f"the {device.name} device drives one arm and task {task!r} has {len(arms)} "
            f"({', '.join(arms)}); use --device browser (two WebXR controllers, or keys and "
            f"touch pads with {FOCUS_KEY} to switch arms) or --device keyboard ({FOCUS_KEY} "
            "switches arms)"
        )


def start_device(device: Device) -> None:
    """Start `device`; when it is absent, the error lists every device that *is* present."""
    try:
        device.start()
    except DeviceNotFound as exc:
        raise DeviceNotFound(f"{exc}; devices found: {describe_found(detect_devices())}") from None
