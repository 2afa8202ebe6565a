"""A gamepad through SDL (pygame): sticks move the gripper, buttons drive the session.

The device reads pygame's event queue rather than sampling the joystick, so that a press
shorter than a control step is never missed and an unplug arrives as an event
(JOYDEVICEREMOVED) the session can act on. pygame needs no window for joysticks: the video
driver is set to SDL's "dummy" before pygame starts.

Default layout (`GamepadMapping`, SDL's numbering of an Xbox-style pad): left stick moves in
the table plane, right stick up/down and yaw, the d-pad tilts (roll, pitch), A toggles the
gripper, START toggles recording, B discards, X resets the scene, BACK quits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from apprentice.errors import ApprenticeError
from apprentice.teleop.devices import GRIPPER_CLOSED, GRIPPER_OPEN, DeviceCommand, DeviceNotFound


def _pygame() -> Any:
    """pygame with SDL's dummy video driver and no banner; DeviceNotFound if not installed."""
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    try:
        import pygame
    except ImportError:
        raise DeviceNotFound(
            "the gamepad device needs pygame: pip install 'apprentice[teleop]'"
        ) from None
    if not pygame.display.get_init():
        pygame.display.init()  # the event queue lives in SDL's video subsystem
    if not pygame.joystick.get_init():
        pygame.joystick.init()
    return pygame


def list_gamepads() -> list[str]:
    """Names of the joysticks SDL sees now ([] when pygame is not installed)."""
    try:
        pg = _pygame()
    except DeviceNotFound:
        return []
    return [pg.joystick.Joystick(i).get_name() for i in range(pg.joystick.get_count())]


@dataclass(frozen=True)
class GamepadMapping:
    """Which axis or button does what; the defaults are SDL's numbering of an Xbox pad."""

    move_x: int = 0
    """Axis moving right (+) / left: the left stick's horizontal."""
    move_y: int = 1
    """Axis moving away from the viewer: the left stick's vertical (up is negative in SDL)."""
    move_z: int = 4
    """Axis moving up: the right stick's vertical."""
    yaw: int = 3
    """Axis turning about z: the right stick's horizontal."""
    gripper: int = 0
    """Button toggling the gripper (A)."""
    buttons: tuple[tuple[int, str], ...] = (
        (7, "toggle"),
        (1, "discard"),
        (2, "reset"),
        (6, "quit"),
    )
    """Button index -> session button: START, B, X, BACK."""
    deadzone: float = 0.1
    """Stick deflection below which an axis reads zero (sticks rarely rest at exactly 0)."""


class GamepadDevice:
    """A joystick SDL knows, read through pygame's event queue (module docstring)."""

    name = "gamepad"

    def __init__(self, index: int = 0, mapping: GamepadMapping | None = None) -> None:
        self.index = index
        self.mapping = mapping or GamepadMapping()
        self._pg: Any = None
        self._joystick: Any = None
        self._instance_id: int | None = None
        self._axes: dict[int, float] = {}
        self._hat = (0, 0)
        self._buttons: set[str] = set()
        self._gripper = GRIPPER_OPEN
        self._removed = False

    def start(self) -> None:
        pg = _pygame()
        count = pg.joystick.get_count()
        if self.index >= count:
            raise DeviceNotFound(
                f"no gamepad at index {self.index}: SDL sees {count} joystick(s); "
                "plug one in (and check its permissions under /dev/input)"
            )
        self._pg = pg
        self._joystick = pg.joystick.Joystick(self.index)
        self.attach(self._joystick.get_instance_id())
        for axis in range(self._joystick.get_numaxes()):
            self._axes[axis] = float(self._joystick.get_axis(axis))

    def attach(self, instance_id: int) -> None:
        """Read the events of joystick `instance_id` (start() does this for the real one)."""
        self._pg = self._pg or _pygame()
        self._instance_id = instance_id

    def poll(self) -> DeviceCommand:
        pg = self._pg
        if pg is None or self._instance_id is None:
            raise ApprenticeError("the gamepad was polled before start()")
        m = self.mapping
        kinds = [pg.JOYAXISMOTION, pg.JOYBUTTONDOWN, pg.JOYHATMOTION, pg.JOYDEVICEREMOVED]
        for event in pg.event.get(kinds):
            if getattr(event, "instance_id", None) != self._instance_id:
                continue
            if event.type == pg.JOYDEVICEREMOVED:
                self._removed = True
            elif event.type == pg.JOYAXISMOTION:
                self._axes[event.axis] = float(event.value)
            elif event.type == pg.JOYHATMOTION:
                self._hat = tuple(event.value)
            elif event.button == m.gripper:
                self._gripper = GRIPPER_CLOSED if self._gripper < 0 else GRIPPER_OPEN
            else:
                self._buttons.update(name for b, name in m.buttons if b == event.button)
        if self._removed:
            return DeviceCommand.neutral(self._gripper)
        # SDL's stick y axes grow downwards: pushing a stick away reads negative.
        pos = np.array([self._axis(m.move_x), -self._axis(m.move_y), -self._axis(m.move_z)])
        rot = np.array([float(self._hat[1]), float(self._hat[0]), -self._axis(m.yaw)])
        cmd = DeviceCommand(pos, rot, self._gripper, frozenset(self._buttons))
        self._buttons.clear()
        return cmd

    def _axis(self, axis: int) -> float:
        value = self._axes.get(axis, 0.0)
        dz = self.mapping.deadzone
        if abs(value) < dz:
            return 0.0
        # Rescale past the deadzone so a stick still reaches +-1 at full deflection.
        return float(np.clip(np.sign(value) * (abs(value) - dz) / (1.0 - dz), -1.0, 1.0))

    def close(self) -> None:
        if self._joystick is not None:
            self._joystick.quit()
            self._joystick = None

    @property
    def connected(self) -> bool:
        return self._instance_id is not None and not self._removed
