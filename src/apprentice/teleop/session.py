"""The teleop loop: device -> action -> task.step -> recorded demo, at the control rate.

One `TeleopSession` runs one operator with one device on one task. Each control step it
polls the device, handles the buttons, and while recording turns the command into the
task's action (`CommandMapping`: each arm's motion from the operator's frame to the world
frame, scaled, clipped to [-1, 1]; its grasp aperture through the task's own mapping, so one
command drives a gripper, a hand's grasp synergy or either arm of a two-arm task) and steps
the simulator, recording what `collect` records (observations, actions, simulator states and
MimicGen's datagen_info), so teleop demos feed `replay`, `generate` and `annotate` as oracle
demos do.

States: "waiting" (for the device) -> "idle" (a fresh scene, the simulator paused) ->
"recording" -> idle again after "stop" (the demo is written), "discard" or "reset" (it is
dropped). A demo that reaches `max_steps` goes "full" and waits for stop or discard; with
`stop_on_success` it is kept on its own a few steps after the task succeeds.

Only kept demos reach the file, each through `DemoWriter` (crash-safe: a killed session
loses at most the demo in progress), with attrs operator, device and success and source
"teleop:<device>". A device that goes away mid-demo (unplugged, the page closed) discards
that demo and nothing else; the session then waits `wait_s` for it to come back.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np

from apprentice.collect.record import DatagenRecorder
from apprentice.data.episode import Episode
from apprentice.data.store import DemoWriter
from apprentice.envs.base import Task
from apprentice.errors import ApprenticeError
from apprentice.teleop.arms import EEF_DIMS, arm_layout, hold_action
from apprentice.teleop.devices import (
    ArmCommand,
    Device,
    DeviceCommand,
    Feedback,
    TeleopStatus,
    bind_arms,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionOptions:
    """How the loop maps commands and when it ends a demo or the session."""

    rate_hz: float | None = None
    """Control steps per second (default: the task's control frequency)."""
    pos_scale: float = 0.5
    """Action per unit of device translation (1 = the task's full 5 cm per step)."""
    rot_scale: float = 0.5
    """Action per unit of device rotation."""
    view_yaw: float = 90.0
    """Degrees the operator's frame is turned about world z: 90 for the built-in tasks'
    agentview camera, which looks along -x (the operator's 'away' is world -x)."""
    max_steps: int | None = None
    """Steps per demo before recording stops to wait for keep or discard (default: 4 x the
    task's horizon)."""
    stop_on_success: bool = False
    """Keep a demo on its own `steps_after_success` steps after the task first succeeds."""
    steps_after_success: int = 10
    """Steps recorded past the first success before an automatic stop."""
    max_demos: int | None = None
    """End the session once this many demos are kept (None: until quit)."""
    wait_s: float = 600.0
    """Seconds to wait for the device to connect (or come back) before ending the session."""
    camera: str = "agentview"
    """Camera shown to devices that can show one (the browser page)."""
    frame_size: int = 256
    """Side (pixels) of the camera frames shown."""


@dataclass
class TeleopResult:
    """What a session did."""

    kept: list[str] = field(default_factory=list)
    """Names of the demos written (demo_<i>)."""
    discarded: int = 0
    """Demos dropped: discarded, reset, or lost to a device that went away."""
    lost_to_unplug: int = 0
    """Of those, demos dropped because the device went away."""
    steps: int = 0
    """Simulator steps taken while recording."""
    latencies_s: list[float] = field(default_factory=list)
    """Input event -> task.step delay of every stamped input that reached the simulator."""
    late_ticks: int = 0
    """Control ticks that started more than a tenth of a period late (a busy CPU)."""
    end_reason: str = ""


class EpisodeBuffer:
    """The demo in progress, step by step, in the layout `record_episode` writes."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.obs: list[dict[str, np.ndarray]] = []
        self.next_obs: list[dict[str, np.ndarray]] = []
        self.actions: list[np.ndarray] = []
        self.states: list[np.ndarray] = []
        self.rewards: list[float] = []
        self.datagen = DatagenRecorder()
        self.success = False

    def __len__(self) -> int:
        return len(self.actions)

    def before_step(self, task: Task, obs: dict[str, np.ndarray], action: np.ndarray) -> None:
        """Record obs_t, the simulator state and datagen_info before `action` is applied."""
        self.obs.append(obs)
        self.states.append(task.get_state())
        self.datagen.add(task, action)
        self.actions.append(action)

    def after_step(self, next_obs: dict[str, np.ndarray], reward: float, success: bool) -> None:
        self.next_obs.append(next_obs)
        self.rewards.append(reward)
        self.success = self.success or success

    def build(self, *, source: str, attrs: dict[str, str]) -> Episode:
        actions = np.stack(self.actions).astype(np.float32)
        dones = np.zeros(len(actions), dtype=np.float32)
        dones[-1] = 1.0
        return Episode(
            obs={k: np.stack([o[k] for o in self.obs]) for k in self.obs[0]},
            next_obs={k: np.stack([o[k] for o in self.next_obs]) for k in self.next_obs[0]},
            actions=actions,
            rewards=np.asarray(self.rewards, dtype=np.float32),
            dones=dones,
            states=np.stack(self.states),
            datagen_info=self.datagen.build(actions),
            seed=self.seed,
            success=self.success,
            source=source,
            attrs=attrs,
        )


def view_rotation(yaw_deg: float) -> np.ndarray:
    """(3, 3) operator frame -> world frame: a turn of `yaw_deg` about z."""
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def command_to_action(
    cmd: DeviceCommand | ArmCommand, view: np.ndarray, pos_scale: float, rot_scale: float
) -> np.ndarray:
    """One arm's action [delta pose 6, gripper] (7,) float32 in [-1, 1]: the command's
    world-frame deltas, scaled, and its gripper."""
    action = np.empty(7, dtype=np.float32)
    action[:3] = pos_scale * view @ np.asarray(cmd.delta_pos, dtype=np.float64)
    action[3:6] = rot_scale * view @ np.asarray(cmd.delta_rot, dtype=np.float64)
    action[6] = cmd.gripper
    return np.clip(action, -1.0, 1.0)


class CommandMapping:
    """Device commands -> a task's action (A,), arm by arm (`teleop.arms`): each arm's delta
    pose as `command_to_action` maps its motion, its grasp dims as the task maps its gripper
    command. Binds the device to the task's arms: a one-arm device is refused for a task of
    several."""

    def __init__(self, task: Task, device: Device, options: SessionOptions) -> None:
        self.task = task
        self.layout = arm_layout(task)
        bind_arms(device, self.layout.arms, task.name)
        self.view = view_rotation(options.view_yaw)
        self.pos_scale = options.pos_scale
        self.rot_scale = options.rot_scale

    def __call__(self, cmd: DeviceCommand) -> np.ndarray:
        """The task's action (A,) float32 in [-1, 1] for `cmd`."""
        arms = cmd.per_arm()
        if len(arms) != len(self.layout.arms):
            raise ApprenticeError(
                f"the device sent commands for {len(arms)} arm(s); task {self.task.name!r} "
                f"has {len(self.layout.arms)}"
            )
        per_arm = [command_to_action(a, self.view, self.pos_scale, self.rot_scale) for a in arms]
        action = hold_action(self.task, self.layout, [float(a[-1]) for a in per_arm])
        for i, a in enumerate(per_arm):
            action[self.layout.eef(i)] = a[:EEF_DIMS]
        return np.clip(action, -1.0, 1.0).astype(np.float32)


class TeleopSession:
    """One operator teleoperating one task through one device (module docstring)."""

    def __init__(
        self,
        task: Task,
        device: Device,
        writer: DemoWriter,
        seeds: Iterator[int],
        *,
        operator: str,
        options: SessionOptions | None = None,
        on_status: Callable[[TeleopStatus], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.task = task
        self.device = device
        self.writer = writer
        self.seeds = seeds
        self.operator = operator
        self.opts = opts = options or SessionOptions()
        rate = opts.rate_hz if opts.rate_hz is not None else task.control_freq
        if not rate > 0:
            raise ApprenticeError(f"--rate-hz must be positive, got {rate}")
        self.period = 1.0 / rate
        self.max_steps = opts.max_steps if opts.max_steps is not None else 4 * task.horizon
        if self.max_steps < 1:
            raise ApprenticeError(f"--max-steps must be >= 1, got {self.max_steps}")
        self.mapping = CommandMapping(task, device, opts)
        self.on_status = on_status
        self.clock = clock
        self.sleep = sleep
        self.feedback = device if isinstance(device, Feedback) else None
        self.result = TeleopResult()
        self.status = TeleopStatus("waiting")
        self._buffer: EpisodeBuffer | None = None
        self._obs: dict[str, np.ndarray] = {}
        self._seed = 0
        self._since_success = -1
        self._frame_due = True
        self._last_frame = -math.inf
        self._lost_at: float | None = None

    # ---- the loop --------------------------------------------------------------------------

    def run(self) -> TeleopResult:
        """Run until quit, `max_demos` kept, or the device is gone for `wait_s`."""
        self._new_scene("")
        self._set(state="waiting", message="waiting for the device")
        self._lost_at = self.clock()
        next_tick = self.clock()
        while not self.result.end_reason:
            if self.clock() - next_tick > 0.1 * self.period:
                self.result.late_ticks += 1
            self._tick()
            next_tick += self.period
            delay = next_tick - self.clock()
            if delay > 0:
                self.sleep(delay)
            else:  # fell behind (a slow render): keep the rate from now on, do not catch up
                next_tick = self.clock()
        if self._buffer is not None:  # quit or lost mid-demo: the demo in progress is dropped
            self._drop("session ended")
        self._show(render=False)
        return self.result

    def _tick(self) -> None:
        cmd = self.device.poll()
        if not self.device.connected:
            self._device_gone()
            return
        if self._lost_at is not None:
            self._lost_at = None
            self._frame_due = True
            self._set(state="idle", message="device connected: press start to record")
        self._buttons(cmd)
        if self.status.state == "recording" and not self.result.end_reason:
            self._step(cmd)
        done = self.opts.max_demos is not None and len(self.result.kept) >= self.opts.max_demos
        if done and not self.result.end_reason:
            self.result.end_reason = f"{self.opts.max_demos} demos kept"
        self._show()

    def _buttons(self, cmd: DeviceCommand) -> None:
        b = cmd.buttons
        state = self.status.state
        recording = state in ("recording", "full")
        if "quit" in b:
            self.result.end_reason = "quit"
        elif "discard" in b and recording:
            self._drop("discarded")
            self._new_scene("demo discarded")
        elif "reset" in b:
            if recording:
                self._drop("discarded by reset")
            self._new_scene("scene reset")
        elif ("stop" in b or "toggle" in b) and recording:
            self._keep()
        elif ("start" in b or "toggle" in b) and state == "idle":
            self._buffer = EpisodeBuffer(self._seed)
            self._since_success = -1
            self._set(state="recording", step=0, success=False, message="recording")

    def _step(self, cmd: DeviceCommand) -> None:
        assert self._buffer is not None
        action = self.mapping(cmd)
        self._buffer.before_step(self.task, self._obs, action)
        now = time.time()  # the clock the stamps are on
        self.result.latencies_s.extend(now - s for s in cmd.stamps)
        obs, reward, _, _, info = self.task.step(action)
        success = bool(info.get("success", False))
        self._buffer.after_step(obs, float(reward), success)
        self._obs = obs
        self.result.steps += 1
        self._frame_due = True
        n = len(self._buffer)
        if success and self._since_success < 0:
            self._since_success = 0
            self._set(success=True, message="success!")
        elif self._since_success >= 0:
            self._since_success += 1
        self._set(step=n, success=self._buffer.success)
        if self.opts.stop_on_success and 0 <= self.opts.steps_after_success <= self._since_success:
            self._keep()
        elif n >= self.max_steps:
            self._set(state="full", message=f"{n} steps: stop to keep, discard to drop")

    def _device_gone(self) -> None:
        now = self.clock()
        if self._lost_at is None:
            self._lost_at = now
            if self._buffer is not None:
                self.result.lost_to_unplug += 1
                self._drop("lost: the device went away")
                self._new_scene("")
            self._set(state="waiting", message="device disconnected; waiting for it")
            log.warning(
                "teleop: %s disconnected; the demo in progress was discarded", self.device.name
            )
        elif now - self._lost_at > self.opts.wait_s:
            self.result.end_reason = f"{self.device.name} gone for {self.opts.wait_s:g} s"

    # ---- demos -----------------------------------------------------------------------------

    def _keep(self) -> None:
        assert self._buffer is not None
        if len(self._buffer) == 0:
            self._buffer = None
            self._set(state="idle", message="nothing recorded yet")
            return
        episode = self._buffer.build(
            source=f"teleop:{self.device.name}",
            attrs={"operator": self.operator, "device": self.device.name},
        )
        self._buffer = None
        name = self.writer.append(episode)
        self.result.kept.append(name)
        self._set(kept=len(self.result.kept))
        outcome = "successful" if episode.success else "unsuccessful"
        self._new_scene(f"{name} kept ({episode.num_samples} steps, {outcome})")

    def _drop(self, why: str) -> None:
        self._buffer = None
        self.result.discarded += 1
        self._set(discarded=self.result.discarded, message=why)

    def _new_scene(self, message: str) -> None:
        self._seed = next(self.seeds)
        self._obs, _ = self.task.reset(seed=self._seed)
        self._frame_due = True
        state = "idle" if self.status.state != "waiting" else "waiting"
        self._set(state=state, step=0, success=False, seed=self._seed, message=message)

    # ---- what the operator sees ------------------------------------------------------------

    def _set(self, **changes: object) -> None:
        old, new = self.status, replace(self.status, **changes)  # type: ignore[arg-type]
        self.status = new
        # The operator's console hears of what happened, not of every step.
        changed = (new.state, new.message, new.kept) != (old.state, old.message, old.kept)
        if changed and self.on_status is not None:
            self.on_status(new)

    def _show(self, render: bool = True) -> None:
        fb = self.feedback
        if fb is None:
            return
        frame = None
        now = self.clock()
        # Render only when the scene changed (or once a second, for a page that just opened):
        # rendering is the most expensive part of a tick.
        if fb.wants_frames and (self._frame_due or now - self._last_frame > 1.0) and render:
            frame = self.task.render_frame(self.opts.camera, self.opts.frame_size)
            self._frame_due = False
            self._last_frame = now
        fb.show(self.status, frame)
