"""Record one episode of any actor on a task, with everything replay and generation need."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from apprentice.data.episode import DatagenInfo, Episode
from apprentice.envs.base import Task

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
    """Run `act` from the initial state drawn by `seed` until success or the horizon.

    With `steps_after_success` the recording goes on that many steps past the first success
    (within the horizon), so that what the expert does once the goal holds (let go, back
    away) is in the data as more than a single step. `should_stop`, asked after each step,
    ends the episode early (an actor with nothing left to do). `with_datagen=False` records no
    datagen_info (a control task has no end effector or objects).

    Per step t the episode holds obs_t, action_t, next_obs_t, the simulator state before
    the action (so `set_state(states[t])` then `step(actions[t])` replays it), and the
    datagen_info of MimicGen: eef pose, commanded target pose, gripper action, object
    poses and subtask signals, all taken before the action.
    """
    obs, _ = task.reset(seed=seed)
    if on_reset is not None:
        on_reset()
    steps: dict[str, list[np.ndarray]] = {"actions": [], "states": []}
    datagen = DatagenRecorder()
    rewards: list[float] = []
    dones: list[bool] = []
    obs_seq: list[dict[str, np.ndarray]] = []
    next_obs_seq: list[dict[str, np.ndarray]] = []
    success = False
    since_success = -1
    for _ in range(task.horizon):
        action = np.clip(np.asarray(act(obs), dtype=np.float32), -1.0, 1.0)
        steps["states"].append(task.get_state())
        if with_datagen:
            datagen.add(task, action)
        next_obs, reward, terminated, truncated, info = task.step(action)
        if since_success >= 0:
            since_success += 1
        elif info.get("success", False):
            success, since_success = True, 0
        done_after_success = stop_on_success and since_success >= steps_after_success
        end = terminated or truncated or done_after_success
        end = end or (should_stop is not None and should_stop())
        steps["actions"].append(action)
        rewards.append(float(reward))
        dones.append(end)
        obs_seq.append(obs)
        next_obs_seq.append(next_obs)
        obs = next_obs
        if end:
            break
    actions = np.stack(steps["actions"])
    return Episode(
        obs={k: np.stack([o[k] for o in obs_seq]) for k in obs_seq[0]},
        next_obs={k: np.stack([o[k] for o in next_obs_seq]) for k in next_obs_seq[0]},
        actions=actions,
        rewards=np.asarray(rewards, dtype=np.float32),
        dones=np.asarray(dones, dtype=np.float32),
        states=np.stack(steps["states"]),
        datagen_info=datagen.build(actions) if with_datagen else None,
        seed=seed,
        success=success,
        source=source,
    )
