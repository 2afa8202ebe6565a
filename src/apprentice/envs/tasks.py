"""Imports every built-in task so that its `register_task` decorator runs."""

from apprentice.envs import (  # noqa: F401
    bimanual_lift,
    hand_grasp,
    handover,
    lift,
    peg_insert,
    pick_place,
    pusht,
    stack,
)
