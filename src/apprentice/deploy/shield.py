"""A safety shield between a policy and a robot: every action passes `Shield.filter`.

A learned policy can output anything: NaN after a bad observation, a jump to the far end of
the action box, a motion that leaves the workspace. The shield enforces per-robot limits
that do not depend on the policy, in this order (a later limit wins over an earlier one,
so the hard position limits come last):

1. NaN guard: a non-finite action (or eef position) is replaced by the safe action.
2. Clipping to [action_low, action_high].
3. Acceleration: each motion dimension (all but the gripper) moves at most
   `max_acceleration` from the last action sent (the robot starts at rest: zeros).
4. Velocity: the position part's norm is scaled down to at most `max_velocity`.
5. Workspace: the eef position the action would reach (eef + scale * position part) is kept
   inside [workspace_low, workspace_high]; an eef already outside may stay or move back in,
   never further out.

A watchdog (`tick`) returns the safe action once no action has arrived for
`watchdog_timeout_s`. The safe action holds still (zero motion) with the gripper as last
commanded, unless the robot's config names another. Every intervention is counted by kind
and logged: at DEBUG per step, at WARNING the first time each kind occurs and then as a
summary of the counts at most every `log_interval_s`.
"""

from __future__ import annotations

import json
import logging
import math
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from apprentice.errors import ApprenticeError

logger = logging.getLogger(__name__)

KINDS = ("nan", "clip", "acceleration", "velocity", "workspace", "watchdog")
"""Intervention kinds, in the order `filter` applies them (the watchdog acts in `tick`)."""


@dataclass(frozen=True)
class ShieldConfig:
    """One robot's limits; every limit left as None is off."""

    robot: str = ""
    """Name of the robot (or simulator) these limits are for."""
    action_low: list[float] | None = None
    """Per-dimension lower bound of the action (clipping)."""
    action_high: list[float] | None = None
    """Per-dimension upper bound of the action (clipping)."""
    workspace_low: list[float] | None = None
    """Lowest eef position (x, y, z, metres) an action may lead to."""
    workspace_high: list[float] | None = None
    """Highest eef position (x, y, z, metres) an action may lead to."""
    eef_pos_key: str = "eef_pos"
    """Observation key of the eef position, needed by the workspace limit."""
    position_indices: list[int] = field(default_factory=lambda: [0, 1, 2])
    """Action dimensions of the translational delta (x, y, z)."""
    position_scale: float = 0.05
    """Metres the eef moves per unit of the position action in one step."""
    gripper_index: int | None = None
    """Action dimension of the gripper: exempt from the acceleration limit, kept by the
    default safe action."""
    max_velocity: float | None = None
    """Largest norm of the position part of one action (action units per step)."""
    max_acceleration: float | None = None
    """Largest change of any motion dimension between consecutive actions (action units)."""
    watchdog_timeout_s: float | None = None
    """Seconds without a fresh action after which `tick` commands the safe action."""
    safe_action: list[float] | None = None
    """Action sent on NaN or watchdog expiry; None: zeros, the gripper as last commanded."""
    log_interval_s: float = 5.0
    """Least seconds between two WARNING summaries of the intervention counts."""

    def __post_init__(self) -> None:
        for name in ("action_low", "action_high", "workspace_low", "workspace_high", "safe_action"):
            value = getattr(self, name)
            if value is not None:
                arr = _floats(value, name)
                if not np.all(np.isfinite(arr)):
                    raise ApprenticeError(f"shield config: {name} must be finite, got {value}")
                object.__setattr__(self, name, arr.tolist())
        object.__setattr__(self, "position_indices", [int(i) for i in self.position_indices])
        _pair(self.action_low, self.action_high, "action")
        _pair(self.workspace_low, self.workspace_high, "workspace")
        if self.workspace_low is not None and len(self.workspace_low) != len(self.position_indices):
            raise ApprenticeError(
                f"shield config: workspace bounds have {len(self.workspace_low)} values, "
                f"position_indices {len(self.position_indices)}"
            )
        for name in ("position_scale", "max_velocity", "max_acceleration", "watchdog_timeout_s"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int | float) and value > 0):
                raise ApprenticeError(f"shield config: {name} must be > 0, got {value!r}")
        if self.log_interval_s < 0:
            raise ApprenticeError(
                f"shield config: log_interval_s must be >= 0, got {self.log_interval_s}"
            )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, source: str = "shield config") -> ShieldConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ApprenticeError(
                f"{source}: unknown field(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        try:
            return cls(**dict(d))
        except TypeError as exc:
            raise ApprenticeError(f"{source}: {exc}") from None

    @classmethod
    def from_file(cls, path: str | Path) -> ShieldConfig:
        """Read a robot's limits from TOML (.toml) or JSON (anything else)."""
        path = Path(path)
        if not path.is_file():
            raise ApprenticeError(f"shield config {path} does not exist (or is not a file)")
        try:
            if path.suffix == ".toml":
                data: Any = tomllib.loads(path.read_text())
            else:
                data = json.loads(path.read_text())
        except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApprenticeError(f"shield config {path} does not parse ({exc})") from None
        if not isinstance(data, dict):
            raise ApprenticeError(f"shield config {path} must hold a table of fields")
        return cls.from_dict(data, source=f"shield config {path}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def robot_config(name: str) -> ShieldConfig:
    """A shield config shipped with apprentice (`deploy/robots/<name>.toml`)."""
    robots = resources.files("apprentice.deploy") / "robots"
    known = sorted(
        p.name.removesuffix(".toml") for p in robots.iterdir() if p.name.endswith(".toml")
    )
    if name not in known:
        raise ApprenticeError(f"no shipped shield config {name!r}; shipped: {', '.join(known)}")
    with resources.as_file(robots / f"{name}.toml") as path:
        return ShieldConfig.from_file(path)


class Shield:
    """Filters every action to a robot by the limits of a `ShieldConfig`; see the module doc.

    `clock` (seconds, monotonic) is injectable so tests control the watchdog's time.
    """

    def __init__(
        self,
        config: ShieldConfig,
        action_dim: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.action_dim = int(action_dim)
        self._clock = clock
        c = config
        for name in ("action_low", "action_high", "safe_action"):
            value = getattr(c, name)
            if value is not None and len(value) != self.action_dim:
                raise ApprenticeError(
                    f"shield config {c.robot or '(unnamed robot)'}: {name} has "
                    f"{len(value)} values, the policy acts in {self.action_dim} dimensions"
                )
        for name, index in [("position_indices", i) for i in c.position_indices] + [
            ("gripper_index", c.gripper_index)
        ]:
            if index is not None and not 0 <= index < self.action_dim:
                raise ApprenticeError(
                    f"shield config: {name} {index} is outside the {self.action_dim}-D action"
                )
        self._low = np.asarray(c.action_low if c.action_low is not None else [-np.inf] * action_dim)
        self._high = np.asarray(
            c.action_high if c.action_high is not None else [np.inf] * action_dim
        )
        if c.safe_action is not None and (
            np.any(np.asarray(c.safe_action) < self._low)
            or np.any(np.asarray(c.safe_action) > self._high)
        ):
            raise ApprenticeError(
                "shield config: safe_action lies outside [action_low, action_high]"
            )
        self._pos = np.asarray(c.position_indices, dtype=np.int64)
        self._motion = np.array(
            [i for i in range(self.action_dim) if i != c.gripper_index], dtype=np.int64
        )
        self._counts = dict.fromkeys(KINDS, 0)
        self._last_log = -math.inf
        self._warned: set[str] = set()
        self.reset()

    def reset(self) -> None:
        """A new episode: the robot is at rest, the watchdog starts counting now.

        Intervention counts are kept across episodes (they describe the deployment).
        """
        self._last_sent: np.ndarray | None = None
        self._last_fresh = self._clock()
        self._expired = False

    @property
    def counts(self) -> dict[str, int]:
        """Interventions so far, by kind."""
        return dict(self._counts)

    def safe_action(self) -> np.ndarray:
        """The configured safe action, or zero motion with the gripper as last commanded."""
        if self.config.safe_action is not None:
            return np.asarray(self.config.safe_action, dtype=np.float32)
        action = np.zeros(self.action_dim, dtype=np.float32)
        g = self.config.gripper_index
        if g is not None and self._last_sent is not None:
            action[g] = self._last_sent[g]
        return action

    def filter(self, action: np.ndarray, obs: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """The action (A,) float32 to send in place of `action`; feeds the watchdog."""
        c = self.config
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (self.action_dim,):
            raise ApprenticeError(
                f"shield: action has shape {np.shape(action)}, expected ({self.action_dim},)"
            )
        self._last_fresh = self._clock()
        self._expired = False
        eef = self._eef_pos(obs)
        if not np.all(np.isfinite(a)) or (eef is not None and not np.all(np.isfinite(eef))):
            self._intervene("nan", "non-finite action or eef position; sending the safe action")
            return self._send(self.safe_action().astype(np.float64))

        clipped = np.clip(a, self._low, self._high)
        if not np.array_equal(clipped, a):
            self._intervene("clip", f"action {_fmt(a)} clipped to {_fmt(clipped)}")
        a = clipped

        if c.max_acceleration is not None:
            prev = self._last_sent if self._last_sent is not None else np.zeros(self.action_dim)
            m = self._motion
            limited = a.copy()
            limited[m] = np.clip(a[m], prev[m] - c.max_acceleration, prev[m] + c.max_acceleration)
            if not np.array_equal(limited, a):
                self._intervene("acceleration", f"change from {_fmt(prev)} limited")
            a = limited

        if c.max_velocity is not None:
            speed = float(np.linalg.norm(a[self._pos]))
            if speed > c.max_velocity:
                a[self._pos] *= c.max_velocity / speed
                self._intervene("velocity", f"translation {speed:.3f} scaled to {c.max_velocity}")

        if c.workspace_low is not None and c.workspace_high is not None:
            if eef is None:
                raise ApprenticeError(
                    f"shield: the workspace limit needs observation key {c.eef_pos_key!r}"
                )
            target = eef + c.position_scale * a[self._pos]  # (3,) where this action leads
            # An eef already outside may hold or come back, never go further out.
            lo = np.minimum(c.workspace_low, eef)
            hi = np.maximum(c.workspace_high, eef)
            inside = np.clip(target, lo, hi)
            if not np.array_equal(inside, target):
                a[self._pos] = (inside - eef) / c.position_scale
                self._intervene("workspace", f"target {_fmt(target)} kept in the workspace")
        return self._send(a)

    def tick(self, now: float | None = None) -> np.ndarray | None:
        """The safe action if no action arrived for `watchdog_timeout_s`, else None.

        Call it from the control loop between actions; one expiry counts once however often
        it is ticked, and the next `filter` ends it.
        """
        timeout = self.config.watchdog_timeout_s
        if timeout is None:
            return None
        now = self._clock() if now is None else now
        if now - self._last_fresh < timeout:
            return None
        if not self._expired:
            self._expired = True
            self._intervene(
                "watchdog", f"no action for {now - self._last_fresh:.3f} s; commanding a safe stop"
            )
        return self._send(self.safe_action().astype(np.float64))

    def _eef_pos(self, obs: Mapping[str, np.ndarray] | None) -> np.ndarray | None:
        if obs is None or self.config.eef_pos_key not in obs:
            return None
        eef = np.asarray(obs[self.config.eef_pos_key], dtype=np.float64).reshape(-1)
        if eef.shape != (len(self._pos),):
            raise ApprenticeError(
                f"shield: observation {self.config.eef_pos_key!r} has shape {eef.shape}, "
                f"expected ({len(self._pos)},)"
            )
        return eef

    def _send(self, action: np.ndarray) -> np.ndarray:
        self._last_sent = action.copy()
        return action.astype(np.float32)

    def _intervene(self, kind: str, detail: str) -> None:
        self._counts[kind] += 1
        logger.debug("shield %s: %s", kind, detail)
        now = self._clock()
        if kind not in self._warned:
            self._warned.add(kind)
            logger.warning("shield %s: first intervention of this kind: %s", kind, detail)
        elif now - self._last_log >= self.config.log_interval_s:
            busy = ", ".join(f"{k} {n}" for k, n in self._counts.items() if n)
            logger.warning("shield interventions so far: %s", busy)
        else:
            return
        self._last_log = now


def _floats(value: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ApprenticeError(
            f"shield config: {name} must be a list of numbers, got {value!r}"
        ) from None
    if arr.ndim != 1:
        raise ApprenticeError(
            f"shield config: {name} must be a flat list of numbers, got {value!r}"
        )
    return arr


def _pair(low: list[float] | None, high: list[float] | None, what: str) -> None:
    if (low is None) != (high is None):
        raise ApprenticeError(f"shield config: give both {what}_low and {what}_high, or neither")
    if low is not None and high is not None:
        if len(low) != len(high):
            raise ApprenticeError(
                f"shield config: {what}_low has {len(low)} values, {what}_high {len(high)}"
            )
        if np.any(np.asarray(low) > np.asarray(high)):
            raise ApprenticeError(f"shield config: {what}_low exceeds {what}_high somewhere")


def _fmt(a: np.ndarray) -> str:
    return np.array2string(np.asarray(a), precision=3, suppress_small=True)
