"""Built-in MuJoCo tasks and the Task protocol."""

from apprentice.envs.base import (
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
