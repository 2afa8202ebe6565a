"""A teleop session as configured: record demonstrations by hand, from a browser, keyboard,
gamepad or SpaceMouse, into the same crash-safe HDF5 store that `collect` writes."""

from __future__ import annotations

import getpass
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from apprentice.data.reader import DemoFile
from apprentice.data.store import DemoWriter, split_train_valid
from apprentice.envs.base import make_task
from apprentice.envs.seeds import HELD_OUT_SEED_BASE
from apprentice.errors import ApprenticeError
from apprentice.overrides import parse_overrides
from apprentice.splits import check_valid_fraction
from apprentice.teleop.arms import arm_layout
from apprentice.teleop.devices import (
    DEVICE_NAMES,
    Device,
    Feedback,
    TeleopStatus,
    bind_arms,
    make_device,
    start_device,
)
from apprentice.teleop.session import SessionOptions, TeleopResult, TeleopSession

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TeleopConfig:
    """Teleoperate a task and record the demos you keep."""

    task: str = "lift"
    """Name of a registered task."""
    device: str = "browser"
    """Input device: browser (a local web page: keys, touch, tilt, WebXR), keyboard (this
    terminal), gamepad (SDL), spacemouse (3Dconnexion, via hidapi). A two-arm task takes
    browser (two WebXR controllers, or Tab switching the arm the keys drive) or keyboard."""
    out: str = "demos.hdf5"
    """Output HDF5 file; an existing file of the same task is appended to."""
    operator: str | None = None
    """Who is teleoperating, stored with every demo (default: your login name)."""
    task_args: tuple[str, ...] = ()
    """Task constructor arguments as key=value (e.g. variant=D1 camera=true)."""
    seed: int = 0
    """First initial-state seed; seeds already in the file are skipped."""
    rate_hz: float | None = None
    """Control steps per second (default: the task's control frequency, 20 Hz built in)."""
    max_steps: int | None = None
    """Steps per demo before recording pauses for keep or discard (default: 4 x horizon)."""
    max_demos: int | None = None
    """End the session after this many demos are kept (default: run until quit)."""
    stop_on_success: bool = False
    """Keep a demo on its own a few steps after the task succeeds."""
    steps_after_success: int = 10
    """With --stop-on-success: steps recorded past the first success."""
    pos_scale: float = 0.5
    """Action per unit of device translation (1 = the task's full speed, 1 m/s built in)."""
    rot_scale: float = 0.5
    """Action per unit of device rotation."""
    host: str = "127.0.0.1"
    """Interface the browser page is served on (0.0.0.0 lets a phone on your network in)."""
    port: int = 8780
    """TCP port of the browser page (0 = any free port)."""
    camera: str = "agentview"
    """Camera shown on the browser page."""
    frame_size: int = 256
    """Side in pixels of the camera frames shown on the page."""
    wait_s: float = 600.0
    """Seconds to wait for the device to connect, or to come back after it went away."""
    valid_fraction: float = 0.1
    """Fraction of the file's demos put in mask/valid at the end (the rest in mask/train)."""


def _seed_stream(path: Path, first: int) -> Iterator[int]:
    """Initial-state seeds from `first` on, skipping those the file already holds.

    The file is read now, before the writer opens it (it locks the file while it writes).
    """
    done: set[int] = set()
    if path.exists():
        with DemoFile(path) as f:
            done = {int(s) for n in f.demo_names if (s := f.attrs(n).get("seed")) is not None}

    def stream() -> Iterator[int]:
        s = first
        while s < HELD_OUT_SEED_BASE:
            if s not in done:
                yield s
            s += 1
        raise ApprenticeError(f"no collection seeds left from --seed {first}")

    return stream()


def run_teleop(
    cfg: TeleopConfig,
    device: Device | None = None,
    *,
    on_status: Callable[[TeleopStatus], None] | None = None,
    on_ready: Callable[[Device], None] | None = None,
) -> TeleopResult:
    """Run a teleop session as configured; `device` overrides `cfg.device` (tests, scripts).

    `on_ready` is called once the device is started (the browser's URL is known then).
    """
    check_valid_fraction(cfg.valid_fraction, "--valid-fraction")
    if device is None and cfg.device not in DEVICE_NAMES:
        raise ApprenticeError(f"unknown device {cfg.device!r}; devices: {', '.join(DEVICE_NAMES)}")
    if cfg.seed < 0 or cfg.seed >= HELD_OUT_SEED_BASE:
        raise ApprenticeError(
            f"--seed must lie in [0, {HELD_OUT_SEED_BASE}): higher seeds are held out"
        )
    task = make_task(cfg.task, **parse_overrides(cfg.task_args, "--task-args"))
    path = Path(cfg.out)
    seeds = _seed_stream(path, cfg.seed)
    options = SessionOptions(
        rate_hz=cfg.rate_hz,
        pos_scale=cfg.pos_scale,
        rot_scale=cfg.rot_scale,
        max_steps=cfg.max_steps,
        stop_on_success=cfg.stop_on_success,
        steps_after_success=cfg.steps_after_success,
        max_demos=cfg.max_demos,
        wait_s=cfg.wait_s,
        camera=cfg.camera,
        frame_size=cfg.frame_size,
    )
    if device is None:
        device = make_device(cfg.device, host=cfg.host, port=cfg.port)
    try:  # a task teleop cannot drive, or a one-arm device for two arms, fails here, early
        bind_arms(device, arm_layout(task).arms, task.name)
    except ApprenticeError:
        task.close()
        raise
    if isinstance(device, Feedback):
        task.render_frame(cfg.camera, cfg.frame_size)  # a bad camera or size fails here, early
    try:
        start_device(device)
        if on_ready is not None:
            on_ready(device)
        with DemoWriter(path, env_args=task.env_args) as writer:
            session = TeleopSession(
                task,
                device,
                writer,
                seeds,
                operator=cfg.operator or getpass.getuser(),
                options=options,
                on_status=on_status,
            )
            result = session.run()
    finally:
        device.close()
        task.close()
    if result.kept:
        split_train_valid(path, cfg.valid_fraction)
    return result
