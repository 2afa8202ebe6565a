"""A safety shield between a policy and a robot: every action passes `Shield.filter`.

A learned policy can output anything: NaN after a bad observation, a jump to the far end of
the action box, a motion that leaves the workspace. The shield enforces per-robot limits
that do not depend on the policy, in this order (a later limit wins over an earlier one,
so the hard position limits come last):

1. NaN guard: a non-finite action (or eef position) is replaced by the safe action.
2. Joint guard: an observed joint position outside [joint_low, joint_high] stops the robot
   (the safe action, every step until the joints are back inside): a protective stop.
3. Clipping to [action_low, action_high].
4. Acceleration: each motion dimension (all but the grasp dims) moves at most
   `max_acceleration` from the last action sent (the robot starts at rest: zeros).
5. Velocity: each eef's position part's norm is scaled down to at most `max_velocity`.
6. Workspace: the position each eef would reach (eef + scale * its position part) is kept
   inside [workspace_low, workspace_high]; an eef already outside may stay or move back in,
   never further out.

A robot of several arms lists each arm's position dims in `position_indices` (3 per arm, in
the order of its `eef_pos_key` list), its grasp dims (the grippers, or a hand's finger
targets) in `gripper_index`, and may give one workspace for every eef or one per eef.
`action_dim` names the robot's action size: a config whose limits do not fit it is refused
when it is read, and `apprentice serve` refuses a checkpoint of another action size.

A watchdog (`tick`) returns the safe action once no action has arrived for
`watchdog_timeout_s`. The safe action holds still (zero motion) with the grasp dims as last
commanded, unless the robot's config names another. Every intervention is counted by kind
and logged: at DEBUG per step, at WARNING the first time each kind occurs and then as a
summary of the counts at most every `log_interval_s`. The limits are a `ShieldConfig`
(`shield_config.py`: its fields, their checks, and the shipped robots).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping

import numpy as np

from apprentice.deploy.shield_config import ShieldConfig, robot_config
from apprentice.errors import ApprenticeError

__all__ = ["KINDS", "Shield", "ShieldConfig", "robot_config"]

logger = logging.getLogger(__name__)

KINDS = ("nan", "joint", "clip", "acceleration", "velocity", "workspace", "watchdog")
"""Intervention kinds, in the order `filter` applies them (the watchdog acts in `tick`)."""


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
        c.check_fits(self.action_dim)
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
        eefs = len(c.eef_pos_keys)
        # (eefs, dims per eef): each eef's position dims, one row per eef
        self._pos = np.asarray(c.position_indices, dtype=np.int64).reshape(eefs, -1)
        self._grasp = np.asarray(c.grasp_dims, dtype=np.int64)
        self._motion = np.array(
            [i for i in range(self.action_dim) if i not in c.grasp_dims], dtype=np.int64
        )
        self._workspace = (
            None
            if c.workspace_low is None or c.workspace_high is None
            else (
                _per_row(c.workspace_low, self._pos.shape),
                _per_row(c.workspace_high, self._pos.shape),
            )
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
        """The configured safe action, or zero motion with the grasp as last commanded."""
        if self.config.safe_action is not None:
            return np.asarray(self.config.safe_action, dtype=np.float32)
        action = np.zeros(self.action_dim, dtype=np.float32)
        if self._last_sent is not None:
            action[self._grasp] = self._last_sent[self._grasp]
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
        outside = self._joints_outside(obs)
        if outside:
            self._intervene("joint", f"{outside}; sending the safe action (a protective stop)")
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
            for dims in self._pos:  # each eef's translation on its own
                speed = float(np.linalg.norm(a[dims]))
                if speed > c.max_velocity:
                    a[dims] *= c.max_velocity / speed
                    self._intervene(
                        "velocity", f"translation {speed:.3f} scaled to {c.max_velocity}"
                    )

        if self._workspace is not None:
            if eef is None:
                keys = " and ".join(repr(k) for k in c.eef_pos_keys)
                raise ApprenticeError(f"shield: the workspace limit needs observation key {keys}")
            low, high = self._workspace
            target = eef + c.position_scale * a[self._pos]  # (eefs, 3) where this action leads
            # An eef already outside may hold or come back, never go further out.
            inside = np.clip(target, np.minimum(low, eef), np.maximum(high, eef))
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
        """(eefs, 3) every eef's position, or None when the observation lacks one."""
        keys = self.config.eef_pos_keys
        if obs is None or not all(k in obs for k in keys):
            return None
        rows = []
        for key in keys:
            eef = np.asarray(obs[key], dtype=np.float64).reshape(-1)
            if eef.shape != (self._pos.shape[1],):
                raise ApprenticeError(
                    f"shield: observation {key!r} has shape {eef.shape}, "
                    f"expected ({self._pos.shape[1]},)"
                )
            rows.append(eef)
        return np.stack(rows)

    def _joints_outside(self, obs: Mapping[str, np.ndarray] | None) -> str:
        """What lies outside the joint bounds ('' if nothing, or no bounds or joints)."""
        c = self.config
        if c.joint_low is None or c.joint_high is None or obs is None:
            return ""
        keys = c.joint_pos_keys
        if not all(k in obs for k in keys):
            raise ApprenticeError(
                "shield: the joint guard needs observation key "
                + " and ".join(repr(k) for k in keys)
            )
        q = [np.asarray(obs[k], dtype=np.float64).reshape(-1) for k in keys]
        total = sum(len(x) for x in q)
        per_arm = len(c.joint_low) == total // len(keys) and len(keys) > 1
        if len(c.joint_low) != total and not per_arm:
            raise ApprenticeError(
                f"shield: {' + '.join(f'{k!r} ({len(x)})' for k, x in zip(keys, q, strict=True))} "
                f"hold {total} joint positions, joint bounds {len(c.joint_low)}"
            )
        joints = np.concatenate(q)
        low = np.tile(c.joint_low, total // len(c.joint_low))
        high = np.tile(c.joint_high, total // len(c.joint_high))
        if not np.all(np.isfinite(joints)):
            return "non-finite joint positions"
        bad = np.flatnonzero((joints < low) | (joints > high))
        if not len(bad):
            return ""
        return f"joints {bad.tolist()} at {_fmt(joints[bad])} outside their bounds"

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


def _per_row(bounds: list[float], shape: tuple[int, ...]) -> np.ndarray:
    """Bounds for every row (one row's worth) or each row's in turn, as an array of `shape`."""
    arr = np.asarray(bounds, dtype=np.float64)
    return np.broadcast_to(arr, shape) if arr.size == shape[1] else arr.reshape(shape)


def _fmt(a: np.ndarray) -> str:
    return np.array2string(np.asarray(a), precision=3, suppress_small=True)
