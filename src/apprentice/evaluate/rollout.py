"""The one rollout loop: a policy stepped on a batch of envs, each from its own seed.

Evaluation (`apprentice eval`, the trainer's periodic rollouts, DAgger's and the IRL
algorithms' scores), DAgger's labelled episodes and oracle collection all run episodes
through `rollout_batch`; what differs between them is a parameter of the loop:

| use        | who acts (`policy`)            | steps past success | `recorder`                |
|------------|--------------------------------|--------------------|---------------------------|
| evaluation | the learner, batched over envs | 0 (ends at it)     | none                      |
| collection | the oracle, one env            | its setting        | obs, actions, states, ... |
| DAgger     | learner, expert or a mixture   | 10                 | the expert's labels       |
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, cast

import numpy as np

from apprentice.envs.base import Task
from apprentice.stepping import StepEnv

VIDEO_CAMERA = "agentview"
VIDEO_SIZE = 192


@dataclass(frozen=True)
class EpisodeResult:
    seed: int
    success: bool
    length: int
    """Steps taken, those kept past the first success included."""
    max_reward: float = 0.0
    """The highest step reward up to and including the first success (Push-T's score: its
    best coverage, normalized)."""
    episode_return: float = 0.0
    """The undiscounted sum of the step rewards up to and including the first success (all of
    them in an episode that never succeeds): what evaluation scores."""
    frames: np.ndarray | None = field(default=None, repr=False)
    """(T, H, W, 3) uint8 when recorded."""


class BatchPolicy(Protocol):
    """Who acts in a rollout: a (B, ...) batch of observations in, (B, A) actions out."""

    def reset(self) -> None: ...

    def act_batch(self, obs: dict[str, np.ndarray]) -> np.ndarray: ...


class RolloutEnv(StepEnv, Protocol):
    """What a rollout needs of an env: a task, or a wrapper of one (IRL's `IRLEnv`)."""

    @property
    def horizon(self) -> int: ...


class Step(NamedTuple):
    """One env step of a rollout, as its `StepRecorder` is handed it."""

    obs: dict[str, np.ndarray]
    """The observation the action was chosen on."""
    action: np.ndarray
    """(A,) the action stepped."""
    next_obs: dict[str, np.ndarray]
    reward: float
    done: bool
    """Whether the loop ends the episode with this step: success (and the steps kept past
    it), termination or truncation. The horizon alone does not set it."""


class StepRecorder(Protocol):
    """Who records a rollout step by step (demos, DAgger's labels)."""

    def before_step(self, env: int, action: np.ndarray) -> None:
        """Env `env` is about to step `action`; its task is still in the state the action is
        taken from."""

    def after_step(self, env: int, step: Step) -> bool:
        """Env `env` took `step`; True ends its episode with this step (a label budget
        spent, an actor with nothing left to do)."""


class PerObservation:
    """A policy that acts on one observation at a time (an SB3 model's `predict`, an oracle)
    as a `BatchPolicy`: each row of the batch gets its own call, so no batching changes a
    bit. `reset` is called where a rollout resets the policy."""

    def __init__(
        self,
        act: Callable[[dict[str, np.ndarray]], np.ndarray],
        reset: Callable[[], None] | None = None,
    ) -> None:
        self.act = act
        self._reset = reset

    def reset(self) -> None:
        if self._reset is not None:
            self._reset()

    def act_batch(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        n = len(next(iter(obs.values())))
        return np.stack([np.asarray(self.act({k: v[i] for k, v in obs.items()})) for i in range(n)])


def rollout_batch(
    policy: BatchPolicy,
    tasks: Sequence[RolloutEnv],
    seeds: Sequence[int],
    *,
    steps_after_success: int | None = 0,
    recorder: StepRecorder | None = None,
    record_video: int = 0,
) -> list[EpisodeResult]:
    """Roll `policy` out on len(tasks) envs in lockstep, one seed each.

    An episode ends `steps_after_success` steps after its first success (0: at it; None: the
    success does not end it), at termination or truncation, when `recorder` says so, or after
    the task's `horizon` steps, whichever comes first: success is what is scored, and a task
    whose measure is the return (the `gym/*` tasks never succeed) runs to its end, so its
    return is complete. The policy sees a (B, ...) batch per step, so its cost is paid once
    per step rather than once per env; finished envs keep their last observation and are no
    longer stepped. `recorder` is told of every step (see `StepRecorder`); `record_video` envs
    (the first ones) render a frame per step.
    """
    if len(tasks) != len(seeds):
        raise ValueError("one seed per task")
    obs = [t.reset(seed=s)[0] for t, s in zip(tasks, seeds, strict=True)]
    policy.reset()
    n = len(tasks)
    active = np.ones(n, dtype=bool)
    # Per env, as Python scalars (cheaper per step than numpy's):
    success = [False] * n
    since_success = [-1] * n  # steps since the first success
    length = [0] * n
    max_reward = [-math.inf] * n
    returns = [0.0] * n
    cameras = [cast(Task, t) for t in tasks[: min(record_video, n)]]
    frames: list[list[np.ndarray]] = [[t.render_frame(VIDEO_CAMERA, VIDEO_SIZE)] for t in cameras]
    horizon = max(t.horizon for t in tasks)
    for _ in range(horizon):
        batch = {k: np.stack([o[k] for o in obs]) for k in obs[0]}
        actions = policy.act_batch(batch)  # (B, A)
        for i in map(int, np.flatnonzero(active)):
            if recorder is not None:
                recorder.before_step(i, actions[i])
            next_obs, reward, terminated, truncated, info = tasks[i].step(actions[i])
            length[i] += 1
            if not success[i]:  # scored: the steps up to and including the first success
                max_reward[i] = max(max_reward[i], float(reward))
                returns[i] += float(reward)
            if i < len(frames):
                frames[i].append(cameras[i].render_frame(VIDEO_CAMERA, VIDEO_SIZE))
            if since_success[i] >= 0:
                since_success[i] += 1
            elif info.get("success", False):
                success[i], since_success[i] = True, 0
            kept = steps_after_success is not None and since_success[i] >= steps_after_success
            done = bool(terminated or truncated or kept)
            if recorder is not None:
                step = Step(obs[i], actions[i], next_obs, float(reward), done)
                done = recorder.after_step(i, step) or done
            obs[i] = next_obs
            if done or length[i] >= tasks[i].horizon:
                active[i] = False
        if not active.any():
            break
    return [
        EpisodeResult(
            seed=int(seeds[i]),
            success=success[i],
            length=length[i],
            max_reward=max_reward[i] if length[i] else 0.0,
            episode_return=returns[i],
            frames=np.stack(frames[i]) if i < len(frames) else None,
        )
        for i in range(n)
    ]
