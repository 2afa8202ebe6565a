"""Experts that label the states a learner visits: the built-in oracles and SB3 models (a
person at a teleop device is `human.TeleopExpert`).

An interactive-imitation expert is asked, every step, what it would do in the state the env
is in now, whoever drives. Its contract is `Expert`: `reset()` per episode, `label(obs)`
for the current state of the env it is bound to, and the action dimensions that noise may
perturb (DART leaves a gripper alone).

The built-in oracles are phase machines (reach, descend, close, carry, ...) that replan from
the privileged simulator state each step. Run in *shadow* while the learner drives, an
oracle is stepped on every state of the episode, so its phase advances on the states that
actually occur, and most of its transitions are re-checked against the state each step
(a part that slips out sends it back to "reach"). One is not: a learner can close the
gripper on the part while the oracle is still approaching it ("reach"/"descend"), where the
oracle's label would be to open the hand. `OracleExpert` re-derives that phase from the
task's grasp signal before labelling: holding the part means the oracle is in "close" (it
keeps squeezing for its usual count, then carries).

The second is the approach's hysteresis: the oracle starts to descend only once centred
within 5 mm over the part, and keeps descending while within 15 mm. A learner descending
8 mm off centre is in a state the oracle's demos label "descend", but an oracle that never
saw it centred is still in "reach" and labels "go back up": two labels for one state, which
a learner averages into hovering (on lift, DAgger fell from 95% to 71% over two rounds of
such labels). So an oracle in "reach" whose eef is already below its hover height and
within the descend tolerance is moved to "descend", the phase its own demos are in there.
Every other phase checks its own exit conditions against the state.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from apprentice.envs.base import Task
from apprentice.envs.gym_tasks import SB3Expert
from apprentice.envs.mujoco_task import GRASP_MIN_Z, eef_yaw, nearest_symmetric_yaw, wrap_angle
from apprentice.errors import ApprenticeError

_PICK_PHASES = ("reach", "descend")
"""Oracle phases in which holding the part means the learner grasped it for the oracle."""


@runtime_checkable
class Expert(Protocol):
    """A labeller bound to one task instance; it may read that task's simulator state."""

    name: str
    """What recorded demos name as their source ("oracle", "sb3")."""
    noise_free_dims: tuple[int, ...]
    """Action dimensions that injected noise must leave alone (a gripper's open/close)."""

    def reset(self) -> None:
        """Called after every `task.reset` (a new episode)."""

    def label(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """The expert's action (A,) in [-1, 1] for the task's current state (`obs` is it)."""
        ...


class OracleExpert:
    """A built-in task's scripted oracle, labelling in shadow (see the module docstring)."""

    name = "oracle"

    def __init__(self, task: Task, rng: np.random.Generator) -> None:
        # The task raises ApprenticeError naming itself when it has no oracle.
        self.task = task
        self.oracle = task.oracle(rng)
        pick = getattr(self.oracle, "pick", None)
        if pick is not None:
            # Every built-in oracle approaches a part through ScriptedOracle.pick: re-derive
            # its approach phase there, where the part's pose is known (module docstring).
            setattr(self.oracle, "pick", _DescendWhenLow(self.oracle, pick, task))  # noqa: B010
        dim = int(task.action_space.shape[0])
        # The built-in tasks' last action dimension is the gripper (-1 open, +1 close).
        self.noise_free_dims: tuple[int, ...] = (dim - 1,)

    def reset(self) -> None:
        self.oracle.reset()

    def label(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        phase = getattr(self.oracle, "phase", None)
        if phase in _PICK_PHASES and self._holding():
            self.oracle.goto("close")  # type: ignore[attr-defined]
        return np.clip(np.asarray(self.oracle.act(obs), dtype=np.float32), -1.0, 1.0)

    def _holding(self) -> bool:
        signals = self.task.subtask_signals()
        return any(on for name, on in signals.items() if name.startswith("grasp"))


class _DescendWhenLow:
    """Wraps a scripted oracle's `pick`: from "reach", go to "descend" when the eef is below
    the hover height and within the descend phase's own tolerances (15 mm, 0.15 rad)."""

    def __init__(self, oracle: Any, pick: Any, task: Task) -> None:
        self.oracle = oracle
        self.pick = pick
        self.task = task

    def __call__(self, part_pos: np.ndarray, part_yaw: float, period: float) -> Any:
        if self.oracle.phase == "reach":
            eef = self.task.eef_pose()
            yaw = nearest_symmetric_yaw(part_yaw, eef_yaw(eef[:3, :3]), period)
            grasp_z = max(float(part_pos[2]), GRASP_MIN_Z)
            xy_err = float(np.linalg.norm(np.asarray(part_pos[:2]) - eef[:2, 3]))
            yaw_err = abs(wrap_angle(eef_yaw(eef[:3, :3]) - yaw))
            low = eef[2, 3] < grasp_z + self.oracle.hover - 0.01
            if low and xy_err <= 0.015 and yaw_err <= 0.15:
                self.oracle.goto("descend")
        return self.pick(part_pos, part_yaw, period)


def make_expert(
    spec: str,
    task: Task,
    rng: np.random.Generator,
    *,
    device: str = "browser",
    host: str = "127.0.0.1",
    port: int = 8780,
) -> Expert:
    """`spec` is "oracle" (the task's scripted oracle), "teleop" (a person at the input
    `device`, started here; `host`/`port` serve the browser page) or the path of an SB3 .zip."""
    if spec == "oracle":
        return OracleExpert(task, rng)
    if spec == "teleop":
        from apprentice.interactive.human import TeleopExpert

        return TeleopExpert.open(task, device, host=host, port=port)
    if spec.endswith(".zip"):
        return SB3Expert.load(spec, task)
    raise ApprenticeError(
        f"--expert {spec!r}: expected 'oracle', 'teleop' or the path of a stable-baselines3 "
        "model .zip"
    )
