"""A person as the interactive-imitation expert, through a teleoperation device.

`TeleopExpert` is an `Expert` whose label is the person's device command of this instant,
mapped to the task's action exactly as `apprentice teleop` maps it (`CommandMapping`: each
arm's motion from the operator frame to the world frame, scaled, clipped; its grasp aperture
through the task's mapping), so it labels any task teleop drives: a gripper, hand_grasp's
grasp synergy, both arms of a two-arm task. `HumanGate` is HG-DAgger's gate with the
person's hand on it (Kelly et al., 2019): the learner drives until the person takes over,
their commands then drive and are recorded as the labels, and they hand back when the robot
is safe again; each takeover counts as an intervention, as `ActionGapGate` counts those of
its scripted stand-in.

Takeover is a button press, not a held button: a `DeviceCommand` reports a press once, on
the poll after it, so "held" is not observable on every device. "start" takes the controls,
"stop" hands them back, "toggle" (Enter, or a device with few buttons) flips. With
`takeover_on_motion`, any motion input also takes over, and a takeover begun that way hands
back after `release_steps` steps without motion (letting go of the stick or SpaceMouse).
The device's gripper state drives from the first step of a takeover: match it to the
robot's hand (the camera view shows it) before taking over, or a held part is dropped.

With classic DAgger (`--method dagger`) the person drives in *shadow*: every step is
labelled with what they command while the mixture (mostly the learner) moves the robot.
Ross et al. assume an expert who can say what to do in any state; a person cannot steer a
robot that does not respond to them, and their commands lag the state they watch (Kelly et
al. and Laskey et al. report poor, inconsistent labels this way). Use it for short rounds or
slow tasks; HG-DAgger, where the person labels only while their commands drive, is the
practical way to put a person in the loop.

The loop runs at the task's control rate (each `label` waits for the next tick) so the
person sees real time, and a device that can show things (the browser page) gets the camera
view and who drives, the step, the interventions and success. The device going away, or the
"quit" button, ends the episode in progress: it raises `TeleopStopped`; what `apprentice
dagger` had already appended to its store stays there, and rerunning the command resumes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import mujoco
import numpy as np

from apprentice.envs.base import Task
from apprentice.errors import ApprenticeError
from apprentice.teleop.devices import (
    Device,
    DeviceCommand,
    Feedback,
    TeleopStatus,
    make_device,
    start_device,
)
from apprentice.teleop.session import CommandMapping, SessionOptions

log = logging.getLogger(__name__)


class TeleopStopped(ApprenticeError):
    """The person's device went away, or they pressed quit: the episode in progress ends."""


class TeleopExpert:
    """Labels with a person's device command (module docstring); bound to one task."""

    def __init__(
        self,
        task: Task,
        device: Device,
        *,
        options: SessionOptions | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.opts = opts = options or SessionOptions()
        try:
            self.mapping = CommandMapping(task, device, opts)
        except ApprenticeError as exc:
            raise ApprenticeError(f"--expert teleop: {exc}") from None
        self.noise_free_dims: tuple[int, ...] = self.mapping.layout.grasp_dims
        """The grippers (or a hand's fingers): DART's noise must not open a hand the person
        keeps closed."""
        self.task = task
        self.device = device
        self.name = f"teleop:{device.name}"
        rate = opts.rate_hz if opts.rate_hz is not None else task.control_freq
        if not rate > 0:
            raise ApprenticeError(f"teleop rate must be positive, got {rate}")
        self.period = 1.0 / rate
        self.clock = clock
        self.sleep = sleep
        self.feedback = device if isinstance(device, Feedback) else None
        self.command = DeviceCommand.neutral()
        """The command polled by the last `label` (the gate reads its buttons and motion)."""
        self.human_drives = False
        """Set by the gate: whether the person's command moves the robot this step."""
        self.gated = False
        """Whether a gate decides who drives (HG-DAgger); else the person labels in shadow."""
        self.interventions = 0
        self.steps = 0
        self._next_tick = 0.0

    @classmethod
    def open(
        cls,
        task: Task,
        device: str,
        *,
        host: str = "127.0.0.1",
        port: int = 8780,
        options: SessionOptions | None = None,
    ) -> TeleopExpert:
        """Make and start the device named `device`; a missing one raises `DeviceNotFound`
        listing the devices that are present."""
        dev = make_device(device, host=host, port=port)
        expert = cls(task, dev, options=options)
        if expert.feedback is not None:
            opts = expert.opts
            try:  # a bad camera, or no offscreen GL, fails here, before any work
                task.render_frame(opts.camera, opts.frame_size)
            except mujoco.FatalError as exc:
                raise ApprenticeError(
                    f"cannot render the camera view for the {device} device ({exc}); set "
                    "MUJOCO_GL=egl (or osmesa) for offscreen rendering"
                ) from None
        start_device(dev)
        url = getattr(dev, "url", None)
        if url is not None:
            # WARNING so that it shows without any logging set up: the person must act on it.
            log.warning("open %s in a browser to be the expert", url)
        return expert

    # ---- the Expert contract -----------------------------------------------------------------

    def reset(self) -> None:
        """A new episode: wait (up to `wait_s`) for the device, then start the clock."""
        self.command = self.command.stopped()
        self.human_drives = self.gated = False  # a gate's reset, next, sets gated
        self.steps = 0
        start = self.clock()
        while not self.device.connected:
            self.device.poll()
            if self.clock() - start > self.opts.wait_s:
                raise TeleopStopped(
                    f"no {self.device.name} device connected within {self.opts.wait_s:g} s"
                )
            self.sleep(self.period)
        self._next_tick = self.clock()

    def label(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """The person's command of this control tick as the task's action (A,) in [-1, 1]."""
        delay = self._next_tick - self.clock()
        if delay > 0:
            self.sleep(delay)
        # A slow step (rendering, a learner's forward pass) shifts the clock, never bunches up.
        self._next_tick = max(self._next_tick, self.clock()) + self.period
        cmd = self.device.poll()
        if not self.device.connected:
            raise TeleopStopped(
                f"the {self.device.name} device went away mid-episode: that episode is "
                "dropped, the episodes already collected are kept; rerun to resume"
            )
        if "quit" in cmd.buttons:
            raise TeleopStopped(
                "the operator pressed quit: the episode in progress is dropped, the "
                "episodes already collected are kept; rerun to resume"
            )
        self.command = cmd
        self.show()
        self.steps += 1
        return self.mapping(cmd)

    def close(self) -> None:
        self.device.close()

    # ---- what the person sees ----------------------------------------------------------------

    def show(self, message: str | None = None) -> None:
        """Send the camera view and who drives to a device that can show them."""
        fb = self.feedback
        if fb is None:
            return
        recorded = self.human_drives or not self.gated
        if message is None:
            if not self.gated:
                message = "your commands are recorded as labels"
            elif self.human_drives:
                message = "you drive and are recorded; stop or toggle hands back"
            else:
                message = "the learner drives; start or toggle takes over"
            message += f" (interventions: {self.interventions})"
        status = TeleopStatus(
            "recording" if recorded else "idle",
            success=self.task.is_success(),
            step=self.steps,
            message=message,
        )
        frame = None
        if fb.wants_frames:
            frame = self.task.render_frame(self.opts.camera, self.opts.frame_size)
        fb.show(status, frame)


@dataclass
class HumanGate:
    """HG-DAgger's gate worked by the person at `human`'s device (module docstring)."""

    human: TeleopExpert
    takeover_on_motion: bool = False
    """Any motion input takes over too (not only the start/toggle button)."""
    release_steps: int = 10
    """A takeover begun by motion hands back after this many steps without motion."""
    interventions: int = 0
    _driving: bool = False
    _by_motion: bool = False
    _still: int = 0

    def reset(self) -> None:
        """Called after `human.reset()` in each episode: this episode is gated."""
        self._driving = self._by_motion = False
        self._still = 0
        self.human.human_drives = False
        self.human.gated = True

    def expert_drives(self, learner_action: np.ndarray, expert_action: np.ndarray) -> bool:
        """Read the command `human.label` polled this step (the proposals are not used: the
        person judges by what they see)."""
        cmd = self.human.command
        moving = cmd.moving
        was = self._driving
        if "toggle" in cmd.buttons:
            self._driving, self._by_motion = not was, False
        elif "start" in cmd.buttons:
            self._driving, self._by_motion = True, False
        elif "stop" in cmd.buttons:
            self._driving = False
        elif self.takeover_on_motion and moving and not was:
            self._driving, self._by_motion = True, True
        if self._driving and self._by_motion:
            self._still = 0 if moving else self._still + 1
            if self._still >= self.release_steps:
                self._driving = False
        if self._driving and not was:
            self.interventions += 1
            self._still = 0
        self.human.human_drives = self._driving
        self.human.interventions = self.interventions
        return self._driving
