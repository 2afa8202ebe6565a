"""robomimic's benchmark tasks on robosuite, through apprentice's Task protocol (optional extra).

The tasks are registered under robosuite's own env names ("Lift", "PickPlaceCan",
"NutAssemblySquare", "Stack", "TwoArmTransport"), so the env_args of a robomimic dataset name
an apprentice task and `make_task_from_env_args` rebuilds it. Registration imports nothing
from robosuite: the extra is optional, and robosuite 1.5 cannot even be imported beside the
newest mujoco, so the first `make_task("Lift")` checks the mujoco version, then imports
robosuite, and turns either failure into an `ApprenticeError` that says how to install the
extra.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from typing import Any

from apprentice.envs.base import Task, register_task
from apprentice.envs.perturb import AXES
from apprentice.errors import ApprenticeError

ROBOSUITE_TASKS: dict[str, str] = {
    "Lift": "robosuite Lift (Panda, OSC_POSE): lift the cube off the table.",
    "PickPlaceCan": "robosuite PickPlaceCan (Panda, OSC_POSE): put the can into its bin.",
    "NutAssemblySquare": "robosuite NutAssemblySquare (Panda, OSC_POSE): fit the nut on its peg.",
    "Stack": "robosuite Stack (Panda, OSC_POSE): stack the red cube on the green one.",
    "TwoArmTransport": "robosuite TwoArmTransport (robomimic's Transport; two Pandas, OSC_POSE): "
    "hand the hammer over into the target bin, the trash into the trash bin.",
}
"""robosuite env name -> description; the names robomimic's datasets store in env_args."""

MUJOCO_RANGE = ((3, 3, 7), (3, 10, 0))
"""The mujoco versions [low, high) robosuite 1.5 runs on: from 3.10 its bindings break it."""
INSTALL_HINT = (
    "install the extra in its own venv with `make robosuite` (or pip install -e '.[robosuite]')"
)


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for part in version.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit()) or "0"
        parts.append(int(digits))
    return tuple(parts)


def installed_mujoco_version() -> str:
    """The version of the installed mujoco package (a function so tests can swap it)."""
    import mujoco

    return str(mujoco.__version__)


def check_mujoco_version(version: str) -> None:
    """Raise if robosuite 1.5 cannot run on mujoco `version`.

    Checked before robosuite is imported: on mujoco >= 3.10 the import or the first step fails
    deep inside robosuite with a traceback that does not name the cause.
    """
    low, high = MUJOCO_RANGE
    if not low <= _version_tuple(version) < high:
        raise ApprenticeError(
            f"the robosuite tasks need mujoco>={'.'.join(map(str, low))},"
            f"<{'.'.join(map(str, high[:2]))} (robosuite 1.5), but mujoco {version} is installed; "
            f"{INSTALL_HINT}, which pins a mujoco robosuite can use"
        )


def robosuite_available() -> bool:
    """Whether the robosuite tasks can be built here, without importing robosuite."""
    try:
        check_mujoco_version(installed_mujoco_version())
        return importlib.util.find_spec("robosuite") is not None
    except (ApprenticeError, ImportError, ValueError):
        return False


def require_robosuite() -> None:
    """Check the mujoco version, then import robosuite; raise `ApprenticeError` saying why not."""
    check_mujoco_version(installed_mujoco_version())
    try:
        import robosuite  # noqa: F401
    except ImportError as e:
        raise ApprenticeError(
            f"the robosuite tasks ({', '.join(ROBOSUITE_TASKS)}) need robosuite 1.5, "
            f"which cannot be imported ({e}); {INSTALL_HINT}"
        ) from None
    # robosuite logs a line at INFO for every env it makes (its controller config file).
    logging.getLogger("robosuite_logs").setLevel(logging.WARNING)


PERTURBATION_AXES = tuple(a for a in AXES if a not in ("object_scale", "distractors"))
"""The axes of `envs.perturb` a robosuite task takes: what can change in a loaded model."""
UNSUPPORTED_AXES_REASON = "robosuite builds its objects when it loads the model, once per task here"


def _lazy_factory(env_name: str) -> Callable[..., Task]:
    def make(**kwargs: Any) -> Task:
        require_robosuite()
        from apprentice.envs.robosuite.tasks import TASK_CLASSES

        return TASK_CLASSES[env_name](**kwargs)

    make.__name__ = f"make_{env_name}"
    make.perturbation_axes = PERTURBATION_AXES  # type: ignore[attr-defined]
    return make


for _name, _description in ROBOSUITE_TASKS.items():
    register_task(_name, _description, robosuite_available, "robosuite")(_lazy_factory(_name))
