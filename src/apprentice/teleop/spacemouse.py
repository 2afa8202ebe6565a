"""A 3Dconnexion SpaceMouse through hidapi: its HID reports parsed into a 6-DoF command.

The protocol, as robosuite's and pyspacemouse's drivers read it: every report starts with
its id. Report 1 carries the translation x, y, z as little-endian int16 (bytes 1-6); newer
devices (SpaceMouse Wireless, Compact, Pro Wireless) append the rotation rx, ry, rz
(bytes 7-12) to the same report, older ones (SpaceNavigator, SpaceMouse Pro) send it as
report 2 (bytes 1-6). Report 3 is the button bitmask (bit 0 left, bit 1 right). Axes read
about +-350 at full deflection. The device's frame has y towards the user and z down;
pyspacemouse's sign flips (y, z, roll, pitch negated) turn it into the operator frame
(x right, y away, z up) that every device here reports.

The left button toggles the gripper; the right one toggles recording (start, then stop and
keep). A read error means the device went away: `connected` turns False.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from apprentice.errors import ApprenticeError
from apprentice.teleop.devices import GRIPPER_CLOSED, GRIPPER_OPEN, DeviceCommand, DeviceNotFound

VENDOR_3DCONNEXION = 0x256F
"""Every product of this vendor id is a 3Dconnexion device."""
VENDOR_LOGITECH = 0x046D
LOGITECH_SPACEMICE = {
    0xC603: "SpaceMouse Plus XT",
    0xC626: "SpaceNavigator",
    0xC627: "SpaceExplorer",
    0xC628: "SpaceNavigator for Notebooks",
    0xC629: "SpacePilot Pro",
    0xC62B: "SpaceMouse Pro",
}
"""3Dconnexion devices sold under Logitech's vendor id before 2011."""
FULL_SCALE = 350.0
"""Raw axis value at full deflection."""
SIGNS = np.array([1.0, -1.0, -1.0, -1.0, -1.0, 1.0])
"""Device axes (x, y, z, rx, ry, rz) -> operator frame, as pyspacemouse maps them."""


class HidDevice(Protocol):
    """The part of hidapi's `hid.device` the SpaceMouse uses (tests pass a fake)."""

    def read(self, max_length: int) -> Sequence[int]: ...

    def close(self) -> None: ...


def _hid() -> Any:
    try:
        import hid
    except ImportError:
        raise DeviceNotFound(
            "the spacemouse device needs hidapi: pip install 'apprentice[teleop]'"
        ) from None
    return hid


def _is_spacemouse(info: dict[str, Any]) -> bool:
    vendor, product = info.get("vendor_id"), info.get("product_id")
    return vendor == VENDOR_3DCONNEXION or (
        vendor == VENDOR_LOGITECH and product in LOGITECH_SPACEMICE
    )


def list_spacemice() -> list[str]:
    """The 3Dconnexion devices hidapi sees now ([] when hidapi is not installed)."""
    try:
        hid = _hid()
    except DeviceNotFound:
        return []
    names = []
    for info in hid.enumerate():
        if _is_spacemouse(info):
            product = info.get("product_string") or LOGITECH_SPACEMICE.get(
                info["product_id"], "3Dconnexion device"
            )
            names.append(f"{product} ({info['vendor_id']:04x}:{info['product_id']:04x})")
    return sorted(set(names))


def _int16(lo: int, hi: int) -> int:
    value = lo | (hi << 8)
    return value - 65536 if value >= 32768 else value


class SpaceMouseState:
    """The 6 axes and buttons, updated report by report."""

    def __init__(self) -> None:
        self.axes = np.zeros(6)  # raw x, y, z, rx, ry, rz
        self.buttons = 0

    def feed(self, report: Sequence[int]) -> set[str]:
        """Apply one HID report; returns the buttons newly pressed ("left", "right")."""
        if len(report) < 2:
            return set()
        rid = report[0]
        if rid == 1 and len(report) >= 7:
            self.axes[:3] = [_int16(report[i], report[i + 1]) for i in (1, 3, 5)]
            if len(report) >= 13:
                self.axes[3:] = [_int16(report[i], report[i + 1]) for i in (7, 9, 11)]
        elif rid == 2 and len(report) >= 7:
            self.axes[3:] = [_int16(report[i], report[i + 1]) for i in (1, 3, 5)]
        elif rid == 3:
            pressed = report[1] & ~self.buttons
            self.buttons = report[1]
            return {name for bit, name in ((1, "left"), (2, "right")) if pressed & bit}
        return set()

    def motion(self, deadzone: float) -> np.ndarray:
        """(6,) operator-frame motion in [-1, 1]: translation then rotation."""
        m = np.clip(SIGNS * self.axes / FULL_SCALE, -1.0, 1.0)
        m[np.abs(m) < deadzone] = 0.0
        return m


class SpaceMouseDevice:
    """A SpaceMouse over hidapi (module docstring); `hid_device` injects a fake in tests."""

    name = "spacemouse"

    def __init__(self, hid_device: HidDevice | None = None, *, deadzone: float = 0.05) -> None:
        self._dev = hid_device
        self.deadzone = deadzone
        self._state = SpaceMouseState()
        self._buttons: set[str] = set()
        self._gripper = GRIPPER_OPEN
        self._lost = False

    def start(self) -> None:
        if self._dev is not None:
            return
        hid = _hid()
        infos = [i for i in hid.enumerate() if _is_spacemouse(i)]
        if not infos:
            raise DeviceNotFound(
                "no SpaceMouse found: hidapi sees no 3Dconnexion device (plug one in, and "
                "give your user read access to its /dev/hidraw node)"
            )
        dev = hid.device()
        try:
            dev.open_path(infos[0]["path"])
        except OSError as exc:
            raise DeviceNotFound(
                f"cannot open the SpaceMouse at {infos[0]['path']!r} ({exc}); check the "
                "permissions of its /dev/hidraw node"
            ) from None
        dev.set_nonblocking(1)
        self._dev = dev

    def poll(self) -> DeviceCommand:
        if self._dev is None:
            raise ApprenticeError("the SpaceMouse was polled before start()")
        while not self._lost:
            try:
                report = self._dev.read(64)
            except (OSError, ValueError):  # hidapi's "read error": the device is gone
                self._lost = True
                break
            if not report:
                break
            for pressed in self._state.feed(report):
                if pressed == "left":
                    self._gripper = GRIPPER_CLOSED if self._gripper < 0 else GRIPPER_OPEN
                else:
                    self._buttons.add("toggle")
        if self._lost:
            return DeviceCommand.neutral(self._gripper)
        m = self._state.motion(self.deadzone)
        cmd = DeviceCommand(m[:3], m[3:], self._gripper, frozenset(self._buttons))
        self._buttons.clear()
        return cmd

    def close(self) -> None:
        if self._dev is not None:
            self._dev.close()
            self._dev = None

    @property
    def connected(self) -> bool:
        return self._dev is not None and not self._lost
