"""One generation attempt: a new scene, one transformed source segment per subtask, then judge.

This is the MimicGen recipe. For each subtask in turn, in the scene as it is when the subtask
starts: pick a source segment (the nearest by reference-object pose, or at random), move its
target eef poses with the object (T_new = T_obj_new inv(T_obj_src) T_src), interpolate from
the last commanded pose to the first moved one, and play the poses through the task's
controller with a little action noise, copying the source's gripper actions. A subtask whose
terminating signal is off when its segment ends fails the attempt there; the attempt succeeds
if the task is done when the last segment ends.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np

from apprentice.collect.record import record_episode
from apprentice.data.episode import Episode
from apprentice.envs.arms import MultiArmTask
from apprentice.envs.base import Subtask, Task
from apprentice.envs.pool import worker_task
from apprentice.envs.seeds import HELD_OUT_SEED_BASE
from apprentice.generate.poses import (
    grasp_correction,
    interpolate_poses,
    pose_distance,
    pose_inv,
    transform_segment,
)
from apprentice.generate.source import SourceDemo, Sources, check_subtasks, load_sources

SELECTIONS = ("nearest", "random")


@dataclass(frozen=True)
class GenerationSettings:
    """How segments are chosen, joined and played (MimicGen's defaults)."""

    selection: str = "nearest"
    """Source segment per subtask: "nearest" (reference-object pose closest to the new
    scene's, one of the `nearest_k` closest at random) or "random"."""
    nearest_k: int = 3
    interp_steps: int = 5
    """Poses interpolated from the last commanded pose to a segment's first pose."""
    fixed_steps: int = 0
    """Steps to hold a segment's first pose before playing it."""
    action_noise: float = 0.05
    """Std of Gaussian noise added to the arm's normalized actions (not the gripper's)."""


@dataclass(frozen=True)
class Failure:
    """Why an attempt failed: in which subtask, what went wrong, and by how much."""

    subtask: int
    kind: str
    """"signal_off" (the subtask's signal was off when its segment ended), "not_done" (the
    task was not done after the last segment) or "horizon" (time ran out mid-subtask)."""
    detail: str
    offset_m: float = float("nan")
    """How far (m) the eef (the held object, for a subtask that carries one) ended from where
    the source had it, relative to the subtask's reference object."""


@dataclass(frozen=True)
class Attempt:
    index: int
    scene_seed: int
    episode: Episode
    sources: tuple[str, ...]
    """The source demo each subtask's segment came from (provenance)."""
    failure: Failure | None

    @property
    def success(self) -> bool:
        return self.failure is None


class Player(Protocol):
    """The actor of a generated episode: it plays transformed source segments until it has
    none left or one fails, and says which source demos it used and why it failed."""

    failure: Failure | None
    """The failure seen while playing (a subtask's signal off when it ended), if any."""

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray: ...

    def should_stop(self) -> bool:
        """Asked after each step: whether nothing is left to play (all done, or failed)."""
        ...

    def failure_at_end(self) -> Failure:
        """Why the attempt failed, when the episode ended with no failure seen yet and the
        task not done."""
        ...

    def provenance(self) -> tuple[str, ...]:
        """The source demo of each subtask whose segment was planned, by subtask number."""
        ...

    def episode_attrs(self) -> dict[str, Any]:
        """Attributes of the generated demo beyond its provenance (may be empty)."""
        ...


class SegmentPlayer:
    """Plans and plays one subtask's segment at a time; the actor of a generated episode."""

    def __init__(
        self,
        task: Task,
        sources: Sequence[SourceDemo],
        subtasks: Sequence[Subtask],
        settings: GenerationSettings,
        rng: np.random.Generator,
    ) -> None:
        self.task = task
        self.sources = sources
        self.subtasks = subtasks
        self.settings = settings
        self.rng = rng
        self.offsets = draw_term_offsets(subtasks, rng)
        self.queue: list[tuple[np.ndarray, float]] = []
        self.next_subtask = 0
        self.chosen: list[tuple[SourceDemo, int, int]] = []
        """(source demo, segment start, stop) per planned subtask."""
        self.last_target: np.ndarray | None = None
        self.failure: Failure | None = None

    @property
    def finished(self) -> bool:
        """Whether every segment has been played (and none failed on the way)."""
        return self.failure is None and not self.queue and self.next_subtask == len(self.subtasks)

    def should_stop(self) -> bool:
        """Asked after each step: plan the next segment if the current one is spent."""
        return not self._advance()

    def failure_at_end(self) -> Failure:
        if not self.finished:
            return Failure(
                max(self.next_subtask - 1, 0),
                "horizon",
                f"the horizon of {self.task.horizon} steps ended the episode mid-subtask",
            )
        last = len(self.subtasks) - 1
        demo, _, stop = self.chosen[last]
        return Failure(
            last,
            "not_done",
            f"task not done after the last segment (signals then: {signal_summary(self.task)})",
            self.offset_from_source(last, demo, stop - 1),
        )

    def provenance(self) -> tuple[str, ...]:
        return tuple(demo.name for demo, _, _ in self.chosen)

    def episode_attrs(self) -> dict[str, Any]:
        return {}

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        if not self._advance():  # only before the first step; later should_stop stops first
            raise RuntimeError("SegmentPlayer.act called with nothing left to play")
        pose, gripper = self.queue.pop(0)
        self.last_target = pose
        action = np.array(self.task.target_pose_to_action(pose, gripper), dtype=np.float64)
        if self.settings.action_noise > 0:
            action[:-1] += self.settings.action_noise * self.rng.standard_normal(action.size - 1)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def _advance(self) -> bool:
        """Make sure a pose is queued; False when there is nothing left (done or failed)."""
        if self.queue:
            return True
        if self.failure is not None:
            return False
        if self.next_subtask > 0 and not self._check_subtask(self.next_subtask - 1):
            return False
        if self.next_subtask == len(self.subtasks):
            return False
        self._plan(self.next_subtask)
        self.next_subtask += 1
        return True

    def _check_subtask(self, i: int) -> bool:
        sub = self.subtasks[i]
        if sub.term_signal is None or self.task.subtask_signals().get(sub.term_signal, False):
            return True
        demo, _, stop = self.chosen[i]
        self.failure = Failure(
            i,
            "signal_off",
            f"signal {sub.term_signal!r} off when its segment ended",
            self.offset_from_source(i, demo, stop - 1),
        )
        return False

    def offset_from_source(self, i: int, demo: SourceDemo, step: int) -> float:
        """Distance (m) between the eef (or the held object) now and in the source at `step`,
        both taken relative to subtask i's reference object."""
        return source_offset(self.subtasks[i], self.task, self.task.eef_pose(), demo, step)

    def _plan(self, i: int) -> None:
        sub = self.subtasks[i]
        obj_now = np.eye(4) if sub.object is None else self.task.object_poses()[sub.object]
        demo, start, stop = self._select(i, sub.object, obj_now)
        self.chosen.append((demo, start, stop))
        poses = transform_segment(
            demo.info.target_pose[start:stop], demo.object_pose(sub.object, start), obj_now
        )
        if sub.held is not None:
            poses = poses @ self._grasp_correction(sub.held, demo, start)
        grippers = demo.info.gripper_action[start:stop, 0].astype(np.float64)
        begin = self.task.eef_pose() if self.last_target is None else self.last_target
        joins = interpolate_poses(begin, poses[0], self.settings.interp_steps)
        holds = [poses[0]] * self.settings.fixed_steps
        first = float(grippers[0])
        self.queue = [(p, first) for p in [*joins, *holds]]
        self.queue += [(p, float(g)) for p, g in zip(poses, grippers, strict=True)]

    def _grasp_correction(self, held: str, demo: SourceDemo, start: int) -> np.ndarray:
        """inv(eef) held pose in the source times its inverse now: right-multiplied into
        the eef poses, it makes the held object (not the eef) retrace the source's path."""
        return grasp_correction(
            demo.info.eef_pose[start],
            demo.object_pose(held, start),
            self.task.eef_pose(),
            self.task.object_poses()[held],
        )

    def _select(self, i: int, obj: str | None, obj_now: np.ndarray) -> tuple[SourceDemo, int, int]:
        candidates = [(d, *d.segments(self.offsets[:-1])[i]) for d in self.sources]
        return select_segment(candidates, obj, obj_now, self.settings, self.rng)


Segment = tuple[SourceDemo, int, int]
"""A source demo and the [start, stop) steps of one of its segments."""


def draw_term_offsets(subtasks: Sequence[Subtask], rng: np.random.Generator) -> list[int]:
    """Per subtask, where its segment ends relative to its terminating signal, drawn from its
    `term_offset` range (both ends included), one draw each in subtask order."""
    return [int(rng.integers(s.term_offset[0], s.term_offset[1] + 1)) for s in subtasks]


def select_segment(
    candidates: Sequence[Segment],
    obj: str | None,
    obj_now: np.ndarray,
    settings: GenerationSettings,
    rng: np.random.Generator,
) -> Segment:
    """One of the candidate segments, by `settings.selection`: with "nearest", one of the
    `nearest_k` whose reference object `obj` started closest to its pose now, `obj_now`."""
    if settings.selection == "random" or obj is None:
        return candidates[int(rng.integers(len(candidates)))]
    dists = [pose_distance(d.object_pose(obj, start), obj_now) for d, start, _ in candidates]
    k = min(settings.nearest_k, len(candidates))
    nearest = np.argsort(dists, kind="stable")[:k]
    return candidates[int(nearest[int(rng.integers(k))])]


def source_offset(
    sub: Subtask, task: Task, eef_now: np.ndarray, demo: SourceDemo, step: int
) -> float:
    """Distance (m) between the eef `eef_now` (or the held object) now and in the source
    `demo` at `step`, both taken relative to the subtask's reference object."""
    poses = task.object_poses()
    obj_now = np.eye(4) if sub.object is None else poses[sub.object]
    # A held object measured relative to itself would always be 0 m off: take the eef then.
    if sub.held is None or sub.held == sub.object:
        now, src = eef_now, demo.info.eef_pose[step]
    else:
        now, src = poses[sub.held], demo.object_pose(sub.held, step)
    rel_now = pose_inv(obj_now) @ now
    rel_src = pose_inv(demo.object_pose(sub.object, step)) @ src
    return float(np.linalg.norm(rel_now[:3, 3] - rel_src[:3, 3]))


def signal_summary(task: Task) -> str:
    """The task's subtask signals now, as "name=0/1 ..."."""
    return " ".join(f"{k}={int(v)}" for k, v in task.subtask_signals().items())


def make_player(
    task: Task,
    sources: Sequence[SourceDemo],
    subtasks: Sequence[Subtask],
    settings: GenerationSettings,
    rng: np.random.Generator,
) -> Player:
    """A `SegmentPlayer`, or for a task with several arms a `multi_arm.MultiArmPlayer`."""
    if int(getattr(task, "n_arms", 1)) == 1:
        return SegmentPlayer(task, sources, subtasks, settings, rng)
    # Imported here: multi_arm builds on this module (Failure, the settings, the selection).
    from apprentice.generate.multi_arm import MultiArmPlayer

    return MultiArmPlayer(cast(MultiArmTask, task), sources, subtasks, settings, rng)


def run_attempt(
    task: Task, sources: Sources, settings: GenerationSettings, seed: int, index: int
) -> Attempt:
    """Attempt number `index` of a generation run seeded `seed`: a pure function of both."""
    subtasks = check_subtasks(task)
    rng = np.random.default_rng([seed, index])
    scene_seed = int(rng.integers(HELD_OUT_SEED_BASE))
    player = make_player(task, sources.demos, subtasks, settings, rng)
    episode = record_episode(
        task,
        player.act,
        seed=scene_seed,
        source="generated",
        stop_on_success=False,
        should_stop=player.should_stop,
    )
    failure = player.failure
    if failure is None and not task.is_success():
        failure = player.failure_at_end()
    provenance = player.provenance()
    attrs = {"attempt": index, "src_demos": list(provenance), "src_file": str(sources.path)}
    episode = dataclasses.replace(
        episode, success=failure is None, attrs={**attrs, **player.episode_attrs()}
    )
    return Attempt(index, scene_seed, episode, provenance, failure)


@dataclass(frozen=True)
class AttemptJob:
    """A batch of attempts for one worker; everything in it pickles."""

    task_name: str
    task_kwargs: tuple[tuple[str, Any], ...]
    source: str
    settings: GenerationSettings
    seed: int
    indices: tuple[int, ...]


def run_job(job: AttemptJob) -> list[Attempt]:
    """Run a batch of attempts (in a pool or Ray worker, or in this process)."""
    task = worker_task(job.task_name, job.task_kwargs)
    key = (job.source, os.stat(job.source).st_mtime_ns, job.task_name, repr(job.task_kwargs))
    sources = _sources.get(key)
    if sources is None:  # read once per worker (and again if the file is rewritten)
        sources = _sources[key] = load_sources(Path(job.source), task)
    return [run_attempt(task, sources, job.settings, job.seed, i) for i in job.indices]


_sources: dict[tuple[str, int, str, str], Sources] = {}
"""This process's source demos, by (path, mtime, task name, task kwargs)."""
