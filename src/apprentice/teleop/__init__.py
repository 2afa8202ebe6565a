"""Teleoperation: devices (browser page, keyboard, gamepad, SpaceMouse) and the recording loop.

`apprentice teleop --task stack --device browser --out demos.hdf5` records demos by hand;
`TeleopSession` is the loop, `Device` the contract every input device meets (`MultiArm`,
the devices that drive a two-arm task), `CommandMapping` the map from a command to the
task's action.
"""

from apprentice.teleop.devices import (
    BUTTONS,
    ArmCommand,
    Device,
    DeviceCommand,
    MultiArm,
    TeleopStatus,
    detect_devices,
    make_device,
)
from apprentice.teleop.session import CommandMapping, SessionOptions, TeleopResult, TeleopSession

__all__ = [
    "BUTTONS",
    "ArmCommand",
    "CommandMapping",
    "Device",
    "DeviceCommand",
    "MultiArm",
    "SessionOptions",
    "TeleopResult",
    "TeleopSession",
    "TeleopStatus",
    "detect_devices",
    "make_device",
]
