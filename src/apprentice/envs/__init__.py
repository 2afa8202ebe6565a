"""Built-in MuJoCo tasks and the Task protocol."""

import os

from apprentice.envs.gl import default_gl_backend

# Before any task module imports mujoco: MuJoCo picks its GL backend once, on import.
default_gl_backend(os.environ)

from apprentice.envs.base import (  # noqa: E402  (after the GL backend is chosen)
    Oracle,
    Subtask,
    Task,
    make_task,
    make_task_from_env_args,
    register_task,
    task_names,
)

__all__ = [
    "Oracle",
    "Subtask",
    "Task",
    "make_task",
    "make_task_from_env_args",
    "register_task",
    "task_names",
]
