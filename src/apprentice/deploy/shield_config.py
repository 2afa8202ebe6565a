"""A robot's shield limits (`ShieldConfig`), read from TOML or JSON, and the shipped robots.

Every limit is optional; `apprentice.deploy.shield` describes what each does. A config is
checked when it is made: bounds finite and paired, each arm's position dims and workspace
consistent, and, where `action_dim` names the robot's action size, every per-dimension
limit and index fitting it. `check_fits` checks it against a policy's action size.

Shipped robots (`deploy/robots/<name>.toml`, `robot_config(name)`): sim_gripper, sim_arm,
sim_hand and sim_two_arm, one per body of the built-in tasks.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from apprentice.errors import ApprenticeError


@dataclass(frozen=True)
class ShieldConfig:
    """One robot's limits; every limit left as None is off."""

    robot: str = ""
    """Name of the robot (or simulator) these limits are for."""
    action_dim: int | None = None
    """The robot's action size; the limits must fit it, and a policy must act in it (None:
    any size the limits fit)."""
    action_low: list[float] | None = None
    """Per-dimension lower bound of the action (clipping)."""
    action_high: list[float] | None = None
    """Per-dimension upper bound of the action (clipping)."""
    workspace_low: list[float] | None = None
    """Lowest eef position (x, y, z, metres) an action may lead to: for every eef, or each
    eef's in turn."""
    workspace_high: list[float] | None = None
    """Highest eef position (x, y, z, metres) an action may lead to: for every eef, or each
    eef's in turn."""
    eef_pos_key: str | list[str] = "eef_pos"
    """Observation key of the eef position, needed by the workspace limit; one per arm for a
    robot of several."""
    position_indices: list[int] = field(default_factory=lambda: [0, 1, 2])
    """Action dimensions of the translational delta (x, y, z), each arm's in turn."""
    position_scale: float = 0.05
    """Metres the eef moves per unit of the position action in one step."""
    gripper_index: int | list[int] | None = None
    """Action dimension(s) of the grasp (a gripper, each arm's gripper, or a hand's finger
    targets): exempt from the acceleration limit, kept by the default safe action."""
    joint_low: list[float] | None = None
    """Lowest observed joint positions (rad) the robot may act from: for every arm, or each
    arm's in turn (the joint guard)."""
    joint_high: list[float] | None = None
    """Highest observed joint positions (rad) the robot may act from."""
    joint_pos_key: str | list[str] = "joint_pos"
    """Observation key of the joint positions, needed by the joint guard; one per arm for a
    robot of several."""
    max_velocity: float | None = None
    """Largest norm of one eef's position part of an action (action units per step)."""
    max_acceleration: float | None = None
    """Largest change of any motion dimension between consecutive actions (action units)."""
    watchdog_timeout_s: float | None = None
    """Seconds without a fresh action after which `tick` commands the safe action."""
    safe_action: list[float] | None = None
    """Action sent on NaN, a joint out of bounds or watchdog expiry; None: zero motion, the
    grasp dims as last commanded."""
    log_interval_s: float = 5.0
    """Least seconds between two WARNING summaries of the intervention counts."""

    def __post_init__(self) -> None:
        bounds = (
            "action_low",
            "action_high",
            "workspace_low",
            "workspace_high",
            "joint_low",
            "joint_high",
            "safe_action",
        )
        for name in bounds:
            value = getattr(self, name)
            if value is not None:
                arr = _floats(value, name)
                if not np.all(np.isfinite(arr)):
                    raise ApprenticeError(f"shield config: {name} must be finite, got {value}")
                object.__setattr__(self, name, arr.tolist())
        object.__setattr__(
            self, "position_indices", _ints(self.position_indices, "position_indices")
        )
        if self.gripper_index is not None and not isinstance(self.gripper_index, int):
            object.__setattr__(self, "gripper_index", _ints(self.gripper_index, "gripper_index"))
        for name in ("eef_pos_key", "joint_pos_key"):
            keys = getattr(self, name)
            if not (isinstance(keys, str) or (keys and all(isinstance(k, str) for k in keys))):
                raise ApprenticeError(
                    f"shield config: {name} must be an observation key or a list of them, "
                    f"got {keys!r}"
                )
        _pair(self.action_low, self.action_high, "action")
        _pair(self.workspace_low, self.workspace_high, "workspace")
        _pair(self.joint_low, self.joint_high, "joint")
        eefs = len(self.eef_pos_keys)
        if len(self.position_indices) % eefs:
            raise ApprenticeError(
                f"shield config: position_indices has {len(self.position_indices)} values for "
                f"{eefs} eef_pos_key(s): give each eef the same number of position dims"
            )
        per_eef = len(self.position_indices) // eefs
        if self.workspace_low is not None and len(self.workspace_low) not in (
            per_eef,
            len(self.position_indices),
        ):
            raise ApprenticeError(
                f"shield config: workspace bounds have {len(self.workspace_low)} values, "
                f"position_indices {len(self.position_indices)}"
                + (
                    f" for {eefs} eefs (give {per_eef} for every eef or one set each)"
                    if eefs > 1
                    else ""
                )
            )
        if self.action_dim is not None:
            if not isinstance(self.action_dim, int) or self.action_dim < 1:
                raise ApprenticeError(
                    f"shield config{_of(self.robot)}: action_dim must be a positive integer, "
                    f"got {self.action_dim!r}"
                )
            self.check_fits(self.action_dim, "its action_dim says the robot acts")
        elif (
            self.safe_action is not None
            and self.action_low is not None
            and len(self.safe_action) != len(self.action_low)
        ):
            raise ApprenticeError(
                f"shield config{_of(self.robot)}: safe_action has {len(self.safe_action)} "
                f"values, action_low {len(self.action_low)}"
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
        except ApprenticeError as exc:  # "shield config[ robot]: what" -> "<source>[ robot]: what"
            message = str(exc)
            if message.startswith("shield config") and source != "shield config":
                raise ApprenticeError(source + message.removeprefix("shield config")) from None
            raise

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

    @property
    def eef_pos_keys(self) -> list[str]:
        """The eef position keys, one per arm."""
        return [self.eef_pos_key] if isinstance(self.eef_pos_key, str) else list(self.eef_pos_key)

    @property
    def joint_pos_keys(self) -> list[str]:
        """The joint position keys, one per arm."""
        keys = self.joint_pos_key
        return [keys] if isinstance(keys, str) else list(keys)

    @property
    def grasp_dims(self) -> list[int]:
        """The action dims of the grasp (`gripper_index` as a list)."""
        g = self.gripper_index
        return [] if g is None else [g] if isinstance(g, int) else list(g)

    def check_fits(self, action_dim: int, actor: str = "the policy acts") -> None:
        """Raise an ApprenticeError naming the limit that does not fit `action_dim`-D actions
        (those `actor` takes: the policy's, or the robot's own `action_dim`)."""
        of = _of(self.robot)
        for name in ("action_low", "action_high", "safe_action"):
            value = getattr(self, name)
            if value is not None and len(value) != action_dim:
                raise ApprenticeError(
                    f"shield config{of}: {name} has {len(value)} values, {actor} in "
                    f"{action_dim} dimensions"
                )
        indices = [("position_indices", i) for i in self.position_indices]
        indices += [("gripper_index", i) for i in self.grasp_dims]
        for name, index in indices:
            if not 0 <= index < action_dim:
                raise ApprenticeError(
                    f"shield config{of}: {name} {index} is outside the {action_dim}-D action"
                )
        if self.action_dim is not None and self.action_dim != action_dim:
            raise ApprenticeError(
                f"robot{of} acts in {self.action_dim} dimensions (its shield config's "
                f"action_dim), {actor} in {action_dim}"
            )


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


def _ints(value: Any, name: str) -> list[int]:
    if isinstance(value, int | str) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in value
    ):
        raise ApprenticeError(f"shield config: {name} must be a list of integers, got {value!r}")
    return [int(i) for i in value]


def _of(robot: str) -> str:
    return f" {robot}" if robot else ""


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
