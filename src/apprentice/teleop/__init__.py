"""Teleoperation: devices (browser page, keyboard, gamepad, SpaceMouse) and the recording loop.

`apprentice teleop --task stack --device browser --out demos.hdf5` records demos by hand;
`TeleopSession` is the loop, `Device` the contract every input device meets.
"""

from apprentice.teleop.devices import (
    BUTTONS,
    Device,
    DeviceCommand,
    TeleopStatus,
    detect_devices,
    make_device,
)
from apprentice.teleop.session import SessionOptions, TeleopResult, TeleopSession

__all__ = [
    "BUTTONS",
    "Device",
    "DeviceCommand",
    "SessionOptions",
    "TeleopResult",
    "TeleopSession",
    "TeleopStatus",
    "detect_devices",
    "make_device",
]
