"""Generation for tasks with several arms: DexMimicGen's per-arm MimicGen (Jiang et al. 2024).

Each arm runs through its own list of stages (`envs.arms.ArmSubtask`) as a single-arm attempt
runs through its subtasks: pick a source segment of that arm (nearest by the stage's
reference object), move its target poses with the object, interpolate from the arm's last
target into it, and play it with the arm's own action noise and its own gripper actions. The
arms play at once, each from its own queue, and meet at sync groups (DexMimicGen's three
kinds of subtasks):

- parallel: stages outside sync groups run independently, each arm at its own pace;
- coordination: the stages of one sync group are cut from one source demo at the same steps
  and moved by one shared transform (of the group's object), and start on the same step, so
  the arms keep their motion relative to each other and play it in lockstep (a stage whose
  arm holds an object gets its grasp correction, so the object keeps that relation even when
  it has slipped in the hand);
- sequential: an arm that reaches a group first waits, holding its last target and gripper,
  until every other arm of the group has finished the stages before it. So in handover the
  receiving arm, staged above the table, closes on the bar only after the giving arm has
  brought it to the handover point (both stages end on `at_handover`).

A stage's terminating signal is checked when its arm moves on: at the end of its segment,
or, when the arm's next stage is in a sync group, when the group starts (a stage ahead of a
group may end on another arm's signal, as the receiving arm's staging does).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from apprentice.envs.arms import MultiArmTask
from apprentice.envs.base import Subtask
from apprentice.generate.arm_stages import ArmStage, SyncGroup, arm_plan
from apprentice.generate.attempt import (
    Failure,
    GenerationSettings,
    Segment,
    draw_term_offsets,
    select_segment,
    signal_summary,
    source_offset,
)
from apprentice.generate.poses import grasp_correction, interpolate_poses, transform_segment
from apprentice.generate.source import SourceDemo


class _ArmProgress:
    """One arm in an attempt: its stages, the next one to plan, and its queue of targets."""

    def __init__(self, stages: tuple[ArmStage, ...], gripper: float) -> None:
        self.stages = stages
        self.next = 0
        """Position (in `stages`) of the next stage to plan."""
        self.queue: list[tuple[np.ndarray, float]] = []
        """(target pose (4, 4), gripper level) per step still to play."""
        self.target: np.ndarray | None = None
        """The last commanded pose, which the arm holds while it waits; None before any."""
        self.gripper = gripper
        self.playing_sync: str | None = None
        """The sync group of the stage in the queue; None for a stage played alone."""

    @property
    def done(self) -> bool:
        return self.next == len(self.stages) and not self.queue


class MultiArmPlayer:
    """Plans and plays each arm's segments, meeting at sync groups; the actor of a generated
    episode of a multi-arm task (an `attempt.Player`)."""

    def __init__(
        self,
        task: MultiArmTask,
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
        self.plan = arm_plan(task, subtasks)
        drawn = draw_term_offsets(subtasks, rng)
        for group in self.plan.groups.values():  # a group's stages end together
            for stage in group.stages:
                drawn[stage.index] = drawn[group.stages[0].index]
        self.offsets = [[drawn[s.index] for s in stages[:-1]] for stages in self.plan.arms]
        """Per arm, the drawn offset of each of its stages' ends but the last."""
        self.arms = [
            _ArmProgress(stages, float(sources[0].arms[arm].info.gripper_action[0, 0]))
            for arm, stages in enumerate(self.plan.arms)
        ]
        self.chosen: dict[int, Segment] = {}
        """Per planned subtask number: the arm's view of the source demo, start, stop."""
        self.steps: dict[int, tuple[int, int]] = {}
        """Per planned subtask number: the [first, last + 1) episode steps its arm played it,
        from its first interpolated pose to the segment's end."""
        self.last_planned = 0
        self.step = 0
        self.failure: Failure | None = None

    @property
    def finished(self) -> bool:
        """Whether every arm has played all its segments (and none failed on the way)."""
        return self.failure is None and all(arm.done for arm in self.arms)

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        if not self._advance():  # only before the first step; later should_stop stops first
            raise RuntimeError("MultiArmPlayer.act called with nothing left to play")
        poses, grippers, playing = [], [], []
        for i, arm in enumerate(self.arms):
            if arm.queue:
                arm.target, arm.gripper = arm.queue.pop(0)
                playing.append(i)
            elif arm.target is None:
                arm.target = self.task.eef_pose(i)
            poses.append(arm.target)
            grippers.append(arm.gripper)
        action = np.array(self.task.target_poses_to_action(poses, grippers), dtype=np.float64)
        if self.settings.action_noise > 0:
            # One draw per arm playing alone, and one per sync group, shared by its arms and
            # on the position only: a shift common to all of them moves them as one rigid
            # body, keeping their motion relative to each other (independent draws, or each
            # eef turning about itself, stretch a tray held by both until it slips). A
            # waiting arm holds still.
            draws: dict[str | int, np.ndarray] = {}
            for i in playing:
                sync = self.arms[i].playing_sync
                key = i if sync is None else sync
                if key not in draws:
                    draws[key] = self.settings.action_noise * self.rng.standard_normal(6)
                    if sync is not None:
                        draws[key][3:] = 0.0
                arm_action = action[self.task.arm_actions[i]]  # (7,), a view
                arm_action[:6] += draws[key]
        self.step += 1
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def should_stop(self) -> bool:
        """Asked after each step: plan the next segments of the arms whose queue is spent."""
        return not self._advance()

    def failure_at_end(self) -> Failure:
        i = self.last_planned
        if not self.finished:
            return Failure(
                i,
                "horizon",
                f"the horizon of {self.task.horizon} steps ended the episode mid-subtask",
            )
        return Failure(
            i,
            "not_done",
            f"task not done after the last segments (signals then: {signal_summary(self.task)})",
            self._offset_from_source(i),
        )

    def provenance(self) -> tuple[str, ...]:
        return tuple(self.chosen[i][0].name for i in sorted(self.chosen))

    def episode_attrs(self) -> dict[str, Any]:
        """`subtask_steps` (n_subtasks, 2): the [first, last + 1) steps each subtask's arm
        played it, (-1, -1) for one never planned."""
        spans = [self.steps.get(i, (-1, -1)) for i in range(len(self.subtasks))]
        return {"subtask_steps": np.array(spans, dtype=np.int64)}

    def _advance(self) -> bool:
        """Plan what can be planned; False when nothing is left to play (done or failed)."""
        if self.failure is not None:
            return False
        for i, arm in enumerate(self.arms):
            if arm.queue or arm.next == len(arm.stages):
                continue
            stage = arm.stages[arm.next]
            if stage.subtask.sync is None:
                if not self._leave(i):
                    return False
                self._plan_alone(stage)
        for group in self.plan.groups.values():
            members = [(self.arms[s.arm], s) for s in group.stages]
            if all(not arm.queue and arm.next == s.position for arm, s in members):
                if not all(self._leave(s.arm) for _, s in members):
                    return False
                self._plan_group(group)
        return any(arm.queue for arm in self.arms)

    def _leave(self, arm: int) -> bool:
        """Check the terminating signal of the stage arm `arm` is moving on from."""
        progress = self.arms[arm]
        if progress.next == 0:
            return True
        stage = progress.stages[progress.next - 1]
        signal = stage.subtask.term_signal
        if signal is None or self.task.subtask_signals().get(signal, False):
            return True
        self.failure = Failure(
            stage.index,
            "signal_off",
            f"signal {signal!r} off when arm {arm} ended its segment",
            self._offset_from_source(stage.index),
        )
        return False

    def _offset_from_source(self, i: int) -> float:
        demo, _, stop = self.chosen[i]
        arm = next(s.arm for stages in self.plan.arms for s in stages if s.index == i)
        return source_offset(self.subtasks[i], self.task, self.task.eef_pose(arm), demo, stop - 1)

    def _object_now(self, name: str | None) -> np.ndarray:
        return np.eye(4) if name is None else self.task.object_poses()[name]

    def _plan_alone(self, stage: ArmStage) -> None:
        """Plan a stage outside sync groups, as a single-arm attempt plans a subtask."""
        sub, arm = stage.subtask, stage.arm
        obj_now = self._object_now(sub.object)
        candidates = [
            (d.arms[arm], *d.arms[arm].segments(self.offsets[arm])[stage.position])
            for d in self.sources
        ]
        demo, start, stop = select_segment(candidates, sub.object, obj_now, self.settings, self.rng)
        poses = transform_segment(
            demo.info.target_pose[start:stop], demo.object_pose(sub.object, start), obj_now
        )
        self._queue(stage, (demo, start, stop), self._hold_as_source(stage, demo, start, poses))

    def _plan_group(self, group: SyncGroup) -> None:
        """Plan a sync group's stages: one source demo, cut for every arm at the same steps
        (from the latest of the arms' previous ends), moved by one transform."""
        obj_now = self._object_now(group.object)
        candidates = []
        for d in self.sources:
            cuts = [d.arms[s.arm].segments(self.offsets[s.arm])[s.position] for s in group.stages]
            stop = min(c[1] for c in cuts)
            candidates.append((d, min(max(c[0] for c in cuts), stop - 1), stop))
        demo, start, stop = select_segment(
            candidates, group.object, obj_now, self.settings, self.rng
        )
        obj_src = demo.object_pose(group.object, start)
        for stage in group.stages:
            view = demo.arms[stage.arm]
            poses = transform_segment(view.info.target_pose[start:stop], obj_src, obj_now)
            self._queue(stage, (view, start, stop), self._hold_as_source(stage, view, start, poses))

    def _hold_as_source(
        self, stage: ArmStage, view: SourceDemo, start: int, poses: np.ndarray
    ) -> np.ndarray:
        """`poses` (T, 4, 4) with the grasp correction of the object the stage's arm holds,
        if it holds one: the held object, not the eef, then follows the source's path.

        In a sync group this keeps the arms' motion relative to each other in terms of the
        object: when the holding arm's grip has slipped since the source (handover's bar sits
        5-12 mm lower in the giving hand after the carry), its uncorrected eef path would
        carry the object that far away from where the other arm closes on it.
        """
        held = stage.subtask.held
        if held is None:
            return poses
        return poses @ grasp_correction(
            view.info.eef_pose[start],
            view.object_pose(held, start),
            self.task.eef_pose(stage.arm),
            self.task.object_poses()[held],
        )

    def _queue(self, stage: ArmStage, segment: Segment, poses: np.ndarray) -> None:
        """Queue the interpolation from the arm's last target into `poses` (T, 4, 4), then
        the segment itself with the source's gripper actions."""
        arm = self.arms[stage.arm]
        demo, start, stop = segment
        grippers = demo.info.gripper_action[start:stop, 0].astype(np.float64)
        begin = self.task.eef_pose(stage.arm) if arm.target is None else arm.target
        joins = interpolate_poses(begin, poses[0], self.settings.interp_steps)
        holds = [poses[0]] * self.settings.fixed_steps
        first = float(grippers[0])
        arm.queue = [(p, first) for p in [*joins, *holds]]
        arm.queue += [(p, float(g)) for p, g in zip(poses, grippers, strict=True)]
        arm.next += 1
        arm.playing_sync = stage.subtask.sync
        self.chosen[stage.index] = segment
        self.steps[stage.index] = (self.step, self.step + len(arm.queue))
        self.last_planned = stage.index
