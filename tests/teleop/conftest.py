"""Teleop test fixtures: offscreen rendering, and a scripted operator that plays the oracle."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Sequence

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

import numpy as np
import pytest

from apprentice.envs.base import Task
from apprentice.teleop.devices import GRIPPER_OPEN, DeviceCommand


class OracleOperator:
    """A `Device` whose "operator" follows a plan, driving with the task's scripted oracle.

    Plan steps, one per poll unless said otherwise:
      ("press", name, ...)  buttons pressed on this poll
      ("drive", n)          oracle commands until the task succeeds or n polls have passed
      ("idle", n)           n polls of no input
      ("unplug",)           the device goes away for good
    Commands are the oracle's actions as they are: run the session with view_yaw=0 and
    scales of 1, and the action reaching task.step is the oracle's.
    """

    name = "scripted"

    def __init__(self, task: Task, plan: Sequence[tuple[object, ...]], seed: int = 0) -> None:
        self.task = task
        self.plan: deque[tuple[object, ...]] = deque(plan)
        self.oracle = task.oracle(np.random.default_rng(seed))
        self._count = 0
        self._driving = False
        self._gone = False
        self.gripper = GRIPPER_OPEN

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass

    @property
    def connected(self) -> bool:
        return not self._gone

    def poll(self) -> DeviceCommand:
        while self.plan:
            step = self.plan[0]
            kind = step[0]
            if kind == "press":
                self.plan.popleft()
                names = frozenset(str(b) for b in step[1:])
                return DeviceCommand(np.zeros(3), np.zeros(3), self.gripper, names)
            if kind == "unplug":
                self.plan.popleft()
                self._gone = True
                return DeviceCommand.neutral(self.gripper)
            limit = int(step[1])  # type: ignore[call-overload]
            if kind == "idle":
                self._count += 1
                if self._count >= limit:
                    self.plan.popleft()
                    self._count = 0
                return DeviceCommand.neutral(self.gripper)
            assert kind == "drive", step
            if not self._driving:
                self.oracle.reset()
                self._driving = True
            if self.task.is_success() or self._count >= limit:
                self.plan.popleft()
                self._count = 0
                self._driving = False
                continue
            self._count += 1
            action = self.oracle.act(self.task.get_observation())
            self.gripper = float(action[6])
            return DeviceCommand(action[:3].copy(), action[3:6].copy(), self.gripper)
        return DeviceCommand.neutral(self.gripper)


@pytest.fixture
def operator_cls() -> type[OracleOperator]:
    return OracleOperator
