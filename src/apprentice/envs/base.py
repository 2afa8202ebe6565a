"""The Task protocol and the task registry.

Every task is a `gymnasium.Env` with a `Dict` observation space and a `Box` action space
in [-1, 1]. Manipulation tasks also offer what replay, generation and evaluation need:
success, full simulator state, end-effector and object poses, subtask signals, the map
between target poses and actions, and a scripted oracle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np

from apprentice.data.spec import ObsActSpec
from apprentice.errors import ApprenticeError
from apprentice.stepping import StepEnv


@dataclass(frozen=True)
class Subtask:
    """One object-centric stage of a task, as synthetic generation sees it (MimicGen's subtask).

    A task lists its stages in order in `Task.subtasks`; generation moves each stage's
    motion with the stage's reference object into a new scene.
    """

    object: str | None
    """The object the stage's motion is relative to (a key of `object_poses()`); None for
    the world frame (motion that does not depend on where things are)."""
    term_signal: str | None
    """The subtask signal whose first rise ends the stage; None for the last stage, which
    ends with the demo."""
    term_offset: tuple[int, int] = (0, 0)
    """Steps (lo, hi) added to the end of the stage, drawn per attempt, so that generated
    demos do not all switch stages at the same moment (MimicGen's subtask_term_offset_range)."""
    held: str | None = None
    """An object the gripper carries through the stage (a nut to insert). Given, generation
    moves the segment so that this object, not the eef, follows the source's path relative
    to `object`: a grasp a few millimetres off the source's then does not carry over into
    the placement."""


@runtime_checkable
class Oracle(Protocol):
    """A scripted expert bound to one env; it may read privileged simulator state."""

    def reset(self) -> None:
        """Forget any plan; called after every `env.reset`."""

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """The action (A,) for the current state of the env it is bound to."""
        ...


@runtime_checkable
class Task(StepEnv, Protocol):
    """What a manipulation task offers beyond `gymnasium.Env`."""

    name: str
    horizon: int
    """Steps before an episode is truncated."""
    control_freq: float
    """Actions per second (Hz)."""

    @property
    def subtasks(self) -> tuple[Subtask, ...]:
        """The object-centric stages, in order, that synthetic generation transforms; () when
        the task cannot be generated from."""
        ...

    observation_space: gym.spaces.Dict
    action_space: gym.spaces.Box

    def close(self) -> None: ...

    def is_success(self) -> bool: ...

    def get_state(self) -> np.ndarray:
        """The full simulator state (S,), enough to replay exactly."""
        ...

    def set_state(self, state: np.ndarray) -> None: ...

    def get_observation(self) -> dict[str, np.ndarray]:
        """The observation of the current state (after `set_state`, for example)."""
        ...

    def eef_pose(self) -> np.ndarray:
        """(4, 4) end-effector pose in the world frame."""
        ...

    def object_poses(self) -> dict[str, np.ndarray]:
        """Object name -> (4, 4) pose in the world frame."""
        ...

    def subtask_signals(self) -> dict[str, bool]:
        """Which stages of the task are done, e.g. {"grasp": True, "lift": False}."""
        ...

    def target_pose_to_action(self, pose: np.ndarray, gripper: float) -> np.ndarray:
        """The action (A,) that drives the eef from its current pose towards `pose` (4, 4)."""
        ...

    def action_to_target_pose(self, action: np.ndarray) -> np.ndarray:
        """The (4, 4) eef target pose that `action` commands from the current state."""
        ...

    def oracle(self, rng: np.random.Generator) -> Oracle: ...

    def render_frame(self, camera: str, size: int = 84) -> np.ndarray:
        """An (H, W, 3) uint8 image from a named camera."""
        ...

    @property
    def env_args(self) -> dict[str, Any]:
        """robomimic-style {"env_name", "env_type", "env_kwargs"}: enough to rebuild the env."""
        ...


def _always() -> bool:
    return True


@dataclass(frozen=True)
class TaskEntry:
    name: str
    factory: Callable[..., Task]
    description: str
    available: Callable[[], bool] = _always
    """Whether the task can be built here (an optional extra's task may not be), cheaply."""
    family: str = "builtin"
    """Where the task comes from: "builtin" (this package's MuJoCo scenes, with oracles and
    subtasks), "robosuite", "pusht" or "gym"."""


_REGISTRY: dict[str, TaskEntry] = {}


def register_task(
    name: str,
    description: str,
    available: Callable[[], bool] = _always,
    family: str = "builtin",
) -> Callable[[Callable[..., Task]], Callable[..., Task]]:
    """Class decorator: make a task constructible by name."""

    def wrap(factory: Callable[..., Task]) -> Callable[..., Task]:
        _REGISTRY[name] = TaskEntry(name, factory, description, available, family)
        return factory

    return wrap


def task_names(family: str | None = None) -> list[str]:
    """Registered task names, all or those of one `TaskEntry.family` (e.g. "builtin")."""
    _load_builtin_tasks()
    return sorted(n for n, e in _REGISTRY.items() if family in (None, e.family))


def task_available(name: str) -> bool:
    """Whether task `name` is registered and buildable here (its optional extra installed)."""
    _load_builtin_tasks()
    return name in _REGISTRY and _REGISTRY[name].available()


def make_task(name: str, **kwargs: Any) -> Task:
    """Build a registered task, e.g. `make_task("lift", camera=True)`, or a perturbed one
    (`make_task("lift", light=0.5)`; see `apprentice.envs.perturb`)."""
    _load_builtin_tasks()
    if name not in _REGISTRY:
        raise ApprenticeError(f"unknown task {name!r}; known tasks: {', '.join(sorted(_REGISTRY))}")
    if not task_axes(name):
        from apprentice.envs.perturb import AXES

        if not kwargs.get("perturb", True):
            kwargs.pop("perturb")  # no levels: the nominal task
        given = [
            k
            for k, v in kwargs.items()
            if k == "perturb" or (k in AXES and not (k == "camera" and isinstance(v, bool)))
        ]
        if given:
            with_axes = [n for n, e in _REGISTRY.items() if task_axes(n)]
            raise ApprenticeError(
                f"task {name!r} takes no perturbation axes (got {', '.join(given)}); the tasks "
                f"that vary their scene, physics and actuation are {', '.join(sorted(with_axes))}"
            )
    return _REGISTRY[name].factory(**kwargs)


def task_axes(name: str) -> tuple[str, ...]:
    """The perturbation axes task `name` takes (`apprentice.envs.perturb`); () if none."""
    _load_builtin_tasks()
    entry = _REGISTRY.get(name)
    return tuple(getattr(entry.factory, "perturbation_axes", ())) if entry else ()


def task_spec(task: Task) -> ObsActSpec:
    """The observation and action spec of a task, to check a dataset or policy against."""
    return ObsActSpec(
        {k: tuple(space.shape or ()) for k, space in task.observation_space.spaces.items()},
        int(task.action_space.shape[0]),
    )


def make_task_from_env_args(env_args: dict[str, Any], **overrides: Any) -> Task:
    """Rebuild the task named in a dataset's or checkpoint's env_args."""
    try:
        name = env_args["env_name"]
    except (KeyError, TypeError):
        raise ApprenticeError(f"env_args {env_args!r} has no 'env_name'") from None
    kwargs = dict(env_args.get("env_kwargs", {}))
    kwargs.update(overrides)
    return make_task(name, **kwargs)


def _load_builtin_tasks() -> None:
    # Importing the modules registers them; done lazily so `base` has no import cycle.
    # The robosuite tasks register lazy factories: robosuite is imported on first use only.
    # The gym/<id> tasks cost no more than gymnasium, which this module imports already: each
    # builds its gymnasium env (and imports the MuJoCo envs) on first use.
    from apprentice.envs import gym_tasks, robosuite, tasks  # noqa: F401
