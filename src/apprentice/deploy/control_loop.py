"""A fixed-rate control loop that gets its actions from a policy server.

The robot side of a deployment: observe, ask the server for an action (with a deadline),
pass it through the safety shield, apply it, sleep to the next period. It runs any env with
gymnasium's `reset`/`step` (a built-in task standing in for a robot, or a robot driver
written to that interface), so it imports no simulator and no torch.

A reply that misses its deadline does not stall the robot: the robot keeps its last command,
and once the shield's watchdog expires (no fresh action for `watchdog_timeout_s`) it sends the
shield's safe action instead. Without a shield, the last command is held. The session stays
open and the late reply is discarded when it arrives (see `Client`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from apprentice.deploy.client import ReplyTimeout
from apprentice.deploy.shield import Shield
from apprentice.errors import ApprenticeError
from apprentice.stepping import StepEnv


class ActionSource(Protocol):
    """Where actions come from: a `Client` (or an in-process stand-in with the same calls)."""

    action_dim: int

    def reset(self) -> None: ...

    def act(self, obs: Mapping[str, np.ndarray], *, timeout: float | None = None) -> np.ndarray: ...


@dataclass(frozen=True)
class LoopConfig:
    """Timing of the control loop."""

    rate_hz: float = 20.0
    """Control rate: one observation and one action per period."""
    reply_timeout: float | None = None
    """Seconds to wait for an action (default: one period, less the time spent observing)."""
    max_steps: int = 100
    """Steps after which an episode ends (the task's horizon)."""
    stop_on_success: bool = True
    """End the episode at the first step whose info reports success (as evaluation does)."""
    realtime: bool = True
    """Sleep to each period's end; False runs as fast as replies come (tests, simulation)."""

    def __post_init__(self) -> None:
        if self.rate_hz <= 0:
            raise ApprenticeError(f"control rate must be > 0 Hz, got {self.rate_hz}")
        if self.max_steps < 1:
            raise ApprenticeError(f"max_steps must be >= 1, got {self.max_steps}")

    @property
    def period(self) -> float:
        return 1.0 / self.rate_hz


@dataclass
class EpisodeLog:
    """What happened in one episode: outcome, timing, and the actions actually sent."""

    seed: int
    success: bool = False
    length: int = 0
    deadline_misses: int = 0
    """Steps that ended after their period was over (the loop could not keep its rate)."""
    late_replies: int = 0
    """Steps whose action did not arrive within the reply timeout."""
    safe_actions: int = 0
    """Steps that sent the shield's safe action because its watchdog expired."""
    latencies_ms: list[float] = field(default_factory=list)
    """Round-trip time of each answered request."""
    actions: list[np.ndarray] = field(default_factory=list)
    """(A,) action applied at each step, after the shield."""


def run_episode(
    source: ActionSource,
    env: StepEnv,
    seed: int,
    cfg: LoopConfig,
    *,
    shield: Shield | None = None,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
) -> EpisodeLog:
    """One episode from `env.reset(seed=seed)`, one action per period, until done."""
    log = EpisodeLog(seed=seed)
    obs, _ = env.reset(seed=seed)
    source.reset()
    if shield is not None:
        shield.reset()
    held: np.ndarray | None = None  # the last command sent, kept when a reply is late
    deadline = clock() + cfg.period
    for _ in range(cfg.max_steps):
        start = clock()
        timeout = cfg.reply_timeout
        if timeout is None:
            timeout = max(deadline - start, 1e-3) if cfg.realtime else cfg.period
        try:
            action = source.act(obs, timeout=timeout)
            log.latencies_ms.append((clock() - start) * 1e3)
            if shield is not None:
                action = shield.filter(action, obs)
        except ReplyTimeout:
            log.late_replies += 1
            safe = shield.tick() if shield is not None else None
            if safe is not None:
                log.safe_actions += 1
                action = safe
            elif held is not None:
                action = held
            elif shield is not None:  # no command yet: the shield's way of standing still
                action = shield.safe_action()
            else:
                action = np.zeros(source.action_dim, dtype=np.float32)
        held = np.asarray(action, dtype=np.float32)
        obs, _, terminated, truncated, info = env.step(held)
        log.actions.append(held)
        log.length += 1
        if info.get("success", False):
            log.success = True
        if (log.success and cfg.stop_on_success) or terminated or truncated:
            break
        if cfg.realtime:
            now = clock()
            if now > deadline:
                log.deadline_misses += 1
                deadline = now  # start the next period now rather than chase a backlog
            else:
                sleep(deadline - now)
            deadline += cfg.period
    return log
