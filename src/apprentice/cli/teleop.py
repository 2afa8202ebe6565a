"""`apprentice teleop`: record demos by teleoperation and print the session's summary."""

from __future__ import annotations

import argparse
from typing import Any

from apprentice.cli.args import dataclass_from_args
from apprentice.cli.command import Command
from apprentice.console import console, print_table
from apprentice.files import check_writable
from apprentice.teleop.devices import (
    BUTTON_KEYS,
    DEVICE_NAMES,
    FOCUS_KEY,
    Device,
    TeleopStatus,
)
from apprentice.teleop.run import TeleopConfig, run_teleop


def run(ns: argparse.Namespace) -> None:
    cfg = dataclass_from_args(TeleopConfig, ns)
    check_writable(cfg.out)

    def ready(device: Device) -> None:
        url = getattr(device, "url", None)
        if url is not None:
            console.print(f"open [bold]{url}[/bold] in a browser to teleoperate {cfg.task}")
        keys = ", ".join(f"{k!s}={v}" for k, v in BUTTON_KEYS.items())
        console.print(
            f"keys: w/s a/d r/f move, i/k j/l u/o rotate, space gripper, {FOCUS_KEY} switches "
            f"the arm (two-arm tasks); {keys}"
        )

    def status(s: TeleopStatus) -> None:
        console.print(f"[{s.state}] {s.message}  (kept {s.kept}, discarded {s.discarded})")

    r = run_teleop(cfg, on_status=status, on_ready=ready)
    rows: list[tuple[str, Any]] = [
        ("file", cfg.out),
        ("demos kept", len(r.kept)),
        ("demos discarded", f"{r.discarded} ({r.lost_to_unplug} lost to the device going away)"),
        ("steps recorded", r.steps),
        ("late control ticks", r.late_ticks),
        ("ended because", r.end_reason),
    ]
    if r.latencies_s:
        lat = sorted(r.latencies_s)
        p50, p99 = lat[len(lat) // 2], lat[min(len(lat) - 1, int(0.99 * len(lat)))]
        rows.append(("input -> step latency", f"p50 {p50 * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms"))
    print_table(f"teleop {cfg.task} with {cfg.device}", rows)


def command() -> Command:
    return Command(
        "teleop",
        "record demos by teleoperation: browser page (keys, touch, tilt, WebXR), keyboard, "
        "gamepad or SpaceMouse",
        TeleopConfig,
        run,
        {"choices": {"device": list(DEVICE_NAMES)}},
    )
