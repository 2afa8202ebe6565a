"""Record one episode of any actor on a task, with everything replay and generation need."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from apprentice.data.episode import DatagenInfo, Episode
from apprentice.envs.base import Task
from apprentice.evaluate.rollout import PerObservation, Step, rollout_batch

ActFn = Callable[[dict[str, np.ndarray]], np.ndarray]


class DatagenRecorder:
    """MimicGen's datagen_info, gathered one step at a time from the task before the action.

    Shared by recording (live) and `apprentice annotate` (replaying stored states), so both
    write the same thing.
    """

    def __init__(self) -> None:
        self.eef_pose: list[np.ndarray] = []
        self.target_pose: list[np.ndarray] = []
        self.object_poses: dict[str, list[np.ndarray]] = {}
        self.signals: dict[str, list[bool]] = {}

    def add(self, task: Task, action: np.ndarray) -> None:
        """Record the task's current state and the target pose `action` commands from it."""
        self.eef_pose.append(task.eef_pose())
        self.target_pose.append(task.action_to_target_pose(action))
        for name, pose in task.object_poses().items():
            self.object_poses.setdefault(name, []).append(pose)
        for name, on in task.subtask_signals().items():
            self.signals.setdefault(name, []).append(on)

    def build(self, actions: np.ndarray) -> DatagenInfo:
        """The DatagenInfo of the recorded steps, whose actions (T, A) were `actions`."""
        return DatagenInfo(
            eef_pose=np.stack(self.eef_pose),
            target_pose=np.stack(self.target_pose),
            gripper_action=np.asarray(actions[:, -1:], dtype=np.float32),
            object_poses={k: np.stack(v) for k, v in self.object_poses.items()},
            subtask_term_signals={k: np.asarray(v, dtype=np.int8) for k, v in self.signals.items()},
        )


class _Recording:
    """The steps of one episode as `record_episode` keeps them (a `StepRecorder`)."""

    def __init__(
        self, task: Task, with_datagen: bool, should_stop: Callable[[], bool] | None
    ) -> None:
        self.task = task
        self.datagen = DatagenRecorder() if with_datagen else None
        self.should_stop = should_stop
        self.states: list[np.ndarray] = []
        self.steps: list[Step] = []
        self.dones: list[bool] = []

    def before_step(self, env: int, action: np.ndarray) -> None:
        self.states.append(self.task.get_state())
        if self.datagen is not None:
            self.datagen.add(self.task, action)

    def after_step(self, env: int, step: Step) -> bool:
        stop = not step.done and self.should_stop is not None and self.should_stop()
        self.steps.append(step)
        self.dones.append(step.done or stop)
        return stop

    def build(self, seed: int, success: bool, source: str) -> Episode:
        actions = np.stack([s.action for s in self.steps])
        return episode_from_steps(
            self.steps,
            actions=actions,
            dones=self.dones,
            states=self.states,
            datagen_info=self.datagen.build(actions) if self.datagen is not None else None,
            seed=seed,
            success=success,
            source=source,
        )


def episode_from_steps(
    steps: list[Step],
    *,
    actions: np.ndarray,
    dones: list[bool],
    states: list[np.ndarray],
    seed: int,
    success: bool,
    source: str,
    datagen_info: DatagenInfo | None = None,
    attrs: dict[str, Any] | None = None,
) -> Episode:
    """The Episode of recorded rollout steps: their obs, next_obs and rewards stacked, with
    the (T, A) `actions` to store (the executed ones, or an expert's labels), the dones and
    the simulator states taken before each action."""
    return Episode(
        obs={k: np.stack([s.obs[k] for s in steps]) for k in steps[0].obs},
        next_obs={k: np.stack([s.next_obs[k] for s in steps]) for k in steps[0].next_obs},
        actions=actions,
        rewards=np.asarray([s.reward for s in steps], dtype=np.float32),
        dones=np.asarray(dones, dtype=np.float32),
        states=np.stack(states),
        datagen_info=datagen_info,
        seed=seed,
        success=success,
        source=source,
        attrs=dict(attrs or {}),
    )


def record_episode(
    task: Task,
    act: ActFn,
    *,
    seed: int,
    source: str,
    stop_on_success: bool = True,
    steps_after_success: int = 0,
    on_reset: Callable[[], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    with_datagen: bool = True,
) -> Episode:
    """Run `act` from the initial state drawn by `seed` until success or the horizon, through
    the one rollout loop (`rollout_batch`) with a recorder of every step.

    With `steps_after_success` the recording goes on that many steps past the first success
    (within the horizon), so that what the expert does once the goal holds (let go, back
    away) is in the data as more than a single step; `stop_on_success=False` records to the
    horizon. `should_stop`, asked after each step that does not already end the episode,
    ends it early (an actor with nothing left to do). `on_reset` is called after the task's
    reset. Actions are clipped to [-1, 1] as float32. `with_datagen=False` records no
    datagen_info (a control task has no end effector or objects).

    Per step t the episode holds obs_t, action_t, next_obs_t, the simulator state before
    the action (so `set_state(states[t])` then `step(actions[t])` replays it), and the
    datagen_info of MimicGen: eef pose, commanded target pose, gripper action, object
    poses and subtask signals, all taken before the action.
    """

    def clipped(obs: dict[str, np.ndarray]) -> np.ndarray:
        return np.clip(np.asarray(act(obs), dtype=np.float32), -1.0, 1.0)

    recording = _Recording(task, with_datagen, should_stop)
    (result,) = rollout_batch(
        PerObservation(clipped, reset=on_reset),
        [task],
        [seed],
        steps_after_success=steps_after_success if stop_on_success else None,
        recorder=recording,
    )
    return recording.build(seed, result.success, source)
