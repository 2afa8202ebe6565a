"""Perturbation axes: the scene, the objects, the physics and the actuation, varied per episode.

A task built with, say, `light=0.5` or `camera=[0, 1]` draws, at every reset, a scene that
differs from its nominal one along those axes. A value is a *level* in [0, 1], from nominal
(0) to the hardest setting the task defines (1), or a range [lo, hi] that each episode draws
its level from (uniformly). At a fixed level the episode still draws the direction of the
change (brighter or dimmer, heavier or lighter, which way the camera moves); the level sets its
size. The draws come from the episode's seed, one stream per axis, apart from the stream that
places the objects: a seed gives the same scene everywhere, and turning one axis on changes
what that axis names and nothing else.

| axis          | at level L (the task's hardest setting at L = 1)                           |
|---------------|-----------------------------------------------------------------------------|
| light         | intensity x (1 +- 0.6 L), direction tilted 60 L degrees, colour tinted      |
| colors        | object and table colours moved L of the way to random ones; the table's    |
|               | texture swapped for another with probability L                             |
| camera        | every camera moved 5 L cm (the wrist one 1 L cm) and turned 8 L degrees   |
| object_scale  | the objects' size x (1 +- 0.25 L) (mass and inertia follow)                |
| object_mass   | the objects' mass x 5^(+-L)                                                |
| friction      | the sliding friction of every contact x 4^(+-L)                            |
| action_noise  | Gaussian noise of std 0.2 L on each executed motion action (not recorded)  |
| latency       | each action takes effect round(3 L) steps late (150 ms at L = 1)           |
| distractors   | round(4 L) extra fixed objects on the table, away from the task's objects  |

`apprentice eval --sweep AXIS=LEVELS` measures success along an axis; `--task-args AXIS=LO:HI`
on collect, generate and dagger records randomized data, the levels kept in the file's
env_args (env_kwargs["perturb"]).
"""

from __future__ import annotations

import collections
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from apprentice.errors import ApprenticeError

AXES = (
    "light",
    "colors",
    "camera",
    "object_scale",
    "object_mass",
    "friction",
    "action_noise",
    "latency",
    "distractors",
)
"""Every perturbation axis, in the order their streams are numbered (keep it: seeds replay)."""

ACTUATION_AXES = ("action_noise", "latency")
"""Axes that act on the action alone, so any task with a step function can take them."""

MAX_LATENCY = 3
"""Steps of control delay at latency level 1."""
ACTION_NOISE_STD = 0.2
"""Std of the executed-action noise at action_noise level 1 (actions lie in [-1, 1])."""

Level = float | tuple[float, float]
"""A fixed level in [0, 1], or a range (lo, hi) each episode draws its level from."""


def parse_level(axis: str, value: Any) -> Level:
    """A level from a task argument: 0.5, [0, 1] (JSON) or "0:1" (the command line's form)."""
    if isinstance(value, str) and ":" in value:
        lo_text, _, hi_text = value.partition(":")
        try:
            value = [float(lo_text), float(hi_text)]
        except ValueError:
            pass
    if isinstance(value, list | tuple) and len(value) == 2:
        lo, hi = (_level_number(axis, v) for v in value)
        if lo > hi:
            raise ApprenticeError(f"{axis}: range {lo}:{hi} must run from low to high")
        return float(lo) if lo == hi else (lo, hi)
    return _level_number(axis, value)


def _level_number(axis: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ApprenticeError(
            f"{axis}={value!r}: a level is a number in [0, 1] or a range LO:HI within it"
        )
    v = float(value)
    if not 0.0 <= v <= 1.0:  # NaN fails this too
        raise ApprenticeError(f"{axis}={value!r}: a level must lie in [0, 1] (0 is nominal)")
    return v


def level_json(level: Level) -> float | list[float]:
    return [level[0], level[1]] if isinstance(level, tuple) else level


@dataclass(frozen=True)
class Perturbations:
    """The levels a task was built with, by axis (axes at a constant 0 are left out)."""

    levels: Mapping[str, Level]

    @classmethod
    def build(
        cls,
        task: str,
        supported: tuple[str, ...],
        perturb: Mapping[str, Any] | None,
        axis_kwargs: Mapping[str, Any],
        unsupported_reason: str = "",
    ) -> Perturbations:
        """Levels from a `perturb` dict (env_kwargs' form) overridden by axis keyword arguments
        (`light=0.5`, the form of --task-args); each checked against the task's axes."""
        if perturb is not None and not isinstance(perturb, Mapping):
            raise ApprenticeError(f"task {task!r}: perturb must be a dict of axis -> level")
        given = {**(perturb or {}), **axis_kwargs}
        levels: dict[str, Level] = {}
        for axis, value in given.items():
            if axis not in AXES:
                raise ApprenticeError(
                    f"task {task!r} has no perturbation axis {axis!r}; "
                    f"its axes are {', '.join(supported) or 'none'}"
                )
            if axis not in supported:
                reason = f" ({unsupported_reason})" if unsupported_reason else ""
                raise ApprenticeError(
                    f"task {task!r} does not support the perturbation axis {axis!r}{reason}; "
                    f"its axes are {', '.join(supported) or 'none'}"
                )
            level = parse_level(axis, value)
            if level != 0.0:
                levels[axis] = level
        return cls({a: levels[a] for a in AXES if a in levels})

    def __bool__(self) -> bool:
        return bool(self.levels)

    def to_json(self) -> dict[str, float | list[float]]:
        return {axis: level_json(level) for axis, level in self.levels.items()}

    def rngs(self, episode_key: int) -> dict[str, np.random.Generator]:
        """One generator per configured axis, from the episode's key and the axis' number."""
        return {
            axis: np.random.default_rng([episode_key, AXES.index(axis), 0x9E37])
            for axis in self.levels
        }

    def draw(self, axis: str, rng: np.random.Generator) -> float:
        """This episode's level on `axis` (0 where the axis is off)."""
        level = self.levels.get(axis, 0.0)
        if isinstance(level, tuple):
            return float(rng.uniform(level[0], level[1]))
        return float(level)


def signed(rng: np.random.Generator) -> float:
    """+1 or -1, evenly."""
    return 1.0 if rng.random() < 0.5 else -1.0


def random_unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return np.asarray(v / max(float(np.linalg.norm(v)), 1e-12))


def rotate(vector: np.ndarray, axis: np.ndarray, angle: float) -> np.ndarray:
    """`vector` turned `angle` (rad) about the unit `axis` (Rodrigues)."""
    c, s = math.cos(angle), math.sin(angle)
    return np.asarray(
        vector * c + np.cross(axis, vector) * s + axis * float(axis @ vector) * (1.0 - c)
    )


class Actuation:
    """action_noise and latency: what the task executes, from what the policy commands.

    The noise is drawn from the episode's stream; the delay line is part of the task's state
    (`state` / `set_state`), so a state restored mid-episode resumes with its pending actions.
    """

    def __init__(self, perturbations: Perturbations, hold: np.ndarray) -> None:
        self.perturbations = perturbations
        self.hold = np.asarray(hold, dtype=np.float64)
        """The action executed while the delay line fills (no motion, gripper as at reset);
        its 7-D blocks, one per arm, also say where the noise goes: on each arm's delta
        pose, not on its gripper."""
        blocks = np.arange(self.hold.size).reshape(-1, 7) if self.hold.size % 7 == 0 else None
        self._motion = (
            blocks[:, :6].reshape(-1) if blocks is not None else np.arange(self.hold.size - 1)
        )
        self.active = any(a in perturbations.levels for a in ACTUATION_AXES)
        self.has_delay = "latency" in perturbations.levels
        self.delay = 0
        self.noise_std = 0.0
        self._rng = np.random.default_rng(0)
        self._pending: collections.deque[np.ndarray] = collections.deque()

    def reset(self, rngs: Mapping[str, np.random.Generator]) -> None:
        p = self.perturbations
        if "latency" in rngs:
            self.delay = round(MAX_LATENCY * p.draw("latency", rngs["latency"]))
        if "action_noise" in rngs:
            self._rng = rngs["action_noise"]
            self.noise_std = ACTION_NOISE_STD * p.draw("action_noise", self._rng)
        self._pending.clear()

    def __call__(self, action: np.ndarray) -> np.ndarray:
        """The action to execute this step, given the (clipped) one commanded."""
        a = np.asarray(action, dtype=np.float64)
        if self.noise_std > 0.0:
            a, m = a.copy(), self._motion
            a[m] = np.clip(a[m] + self._rng.normal(0.0, self.noise_std, m.size), -1, 1)
        if self.delay == 0:
            return a
        self._pending.append(a)
        if len(self._pending) <= self.delay:
            return self.hold.copy()
        return self._pending.popleft()

    @property
    def state_size(self) -> int:
        """Values `state` adds to the task's state: the delay, the pending count and a full
        delay line."""
        return 2 + MAX_LATENCY * self.hold.size if self.has_delay else 0

    def state(self) -> np.ndarray:
        if not self.has_delay:
            return np.empty(0)
        line = np.zeros((MAX_LATENCY, self.hold.size))
        for i, a in enumerate(self._pending):
            line[i] = a
        return np.concatenate([[self.delay, len(self._pending)], line.reshape(-1)])

    def set_state(self, values: np.ndarray) -> None:
        if not self.has_delay:
            return
        self.delay, pending = int(values[0]), int(values[1])
        line = values[2:].reshape(MAX_LATENCY, self.hold.size)
        self._pending = collections.deque(row.copy() for row in line[:pending])


def merge_task_args(base: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """Task arguments `given` (parsed --task-args) over `base` (e.g. a checkpoint's
    env_kwargs), with the perturbation axes gathered under "perturb".

    An axis given by name (`light=0.5`, `camera=0:1`) joins base's levels; `perturb={...}`
    given whole replaces them. `camera` given true or false is the camera-observation switch,
    any other value the camera axis."""
    out = {k: v for k, v in base.items()}
    perturb = dict(given["perturb"]) if "perturb" in given else dict(base.get("perturb") or {})
    for key, value in given.items():
        if key == "perturb":
            continue
        if key in AXES and not (key == "camera" and isinstance(value, bool)):
            perturb[key] = value
        else:
            out[key] = value
    out.pop("perturb", None)
    if perturb:
        out["perturb"] = perturb
    return out
