"""Imports every built-in task so that its `register_task` decorator runs."""

from apprentice.envs import hand_grasp, lift, peg_insert, pick_place, pusht, stack  # noqa: F401
