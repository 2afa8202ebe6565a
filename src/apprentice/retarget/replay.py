"""Replay a retargeted track on a task, closed loop, and say why a replay that fails failed.

Each step the action takes the eef from where it is now to the track's next pose
(`Task.target_pose_to_action`), so drift from contacts, lag or a noisy pose is corrected at
the next step instead of adding up, as it would if the track's deltas were replayed open loop.
The grip aperture becomes the gripper command through a hysteresis band, so tracker noise
around the threshold does not make the fingers chatter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from apprentice.collect.record import record_episode
from apprentice.data.episode import Episode
from apprentice.envs.base import Task

CLOSE_ABOVE = 0.6
"""A grip above this closes the gripper ..."""
OPEN_BELOW = 0.4
"""... and one below this opens it; in between the last command holds."""
APPROACH_TOLERANCE = (0.01, 0.1)
"""Metres and radians within which the eef counts as at the track's first pose."""
STUCK_STEPS = 5
"""Steps the eef must stay away from the track before the pose counts as unreachable."""
NEAR_OBJECT = 0.04
"""Metres from an object's origin within which a closing grip counts as a grasp attempt."""


def gripper_commands(grip: np.ndarray) -> np.ndarray:
    """Gripper commands (K,) in {-1 open, +1 closed} of grip apertures (K,) in [0, 1]: closed
    above CLOSE_ABOVE, open below OPEN_BELOW, the previous command in between (open first)."""
    out = np.empty(len(grip))
    closed = False
    for k, g in enumerate(grip):
        if g > CLOSE_ABOVE:
            closed = True
        elif g < OPEN_BELOW:
            closed = False
        out[k] = 1.0 if closed else -1.0
    return out


@dataclass(frozen=True)
class RetargetedTrack:
    """A track mapped onto a task: eef poses and gripper commands at the control rate."""

    name: str
    seed: int
    poses: np.ndarray
    """(K, 4, 4) eef poses in the task's world frame, one per control step."""
    gripper: np.ndarray
    """(K,) gripper commands, -1 open .. +1 closed."""
    times: np.ndarray
    """(K,) the track's timestamps (s) of the poses."""
    align_error: float | None = None
    """Metres between the tracked objects (mapped to the world) and the task's, if tracked."""


@dataclass(frozen=True)
class ReplayLimits:
    """When a failed replay is put down to what (the order of `diagnose`)."""

    workspace: tuple[float, ...]
    """x_lo, x_hi, y_lo, y_hi, z_lo, z_hi (m, world frame) the eef can reach."""
    max_align_error: float
    """Metres of object alignment error past which the scene does not match the track."""
    unreachable: float
    """Metres the eef may stay from the track (STUCK_STEPS steps) before it is unreachable."""
    approach_steps: int
    """Steps allowed to bring the eef to the track's first pose before its clock starts."""
    hold_steps: int
    """Steps the last pose is held after the track ends, for the task to finish."""
    steps_after_success: int
    """Steps recorded past the first success (release, retreat), as `collect` records."""


@dataclass
class _Follower:
    """The actor that follows a track: an approach to its first pose, then a pose per step."""

    task: Task
    track: RetargetedTrack
    approach_steps: int
    hold_steps: int
    step: int = 0
    """Steps since reset."""
    start: int = -1
    """The step at which the track's clock started (-1: still approaching)."""
    target: np.ndarray | None = None
    """The pose the last action aimed at."""
    errors: list[float] = field(default_factory=list)
    """Per step after the start, metres between the eef and the pose the step before aimed at."""

    def reset(self) -> None:
        self.step, self.start, self.target, self.errors = 0, -1, None, []

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        poses, gripper = self.track.poses, self.track.gripper
        eef = self.task.eef_pose()
        if self.start >= 0 and self.target is not None:
            self.errors.append(float(np.linalg.norm(self.target[:3, 3] - eef[:3, 3])))
        if self.start < 0:
            pos_tol, rot_tol = APPROACH_TOLERANCE
            off = float(np.linalg.norm(poses[0][:3, 3] - eef[:3, 3]))
            cos = (np.trace(eef[:3, :3].T @ poses[0][:3, :3]) - 1.0) / 2.0
            turn = float(np.arccos(np.clip(cos, -1.0, 1.0)))
            if (off <= pos_tol and turn <= rot_tol) or self.step >= self.approach_steps:
                self.start = self.step
        if self.start < 0:
            target, grip = poses[0], gripper[0]
        else:
            k = self.step - self.start
            target = poses[min(k + 1, len(poses) - 1)]
            grip = gripper[min(k, len(gripper) - 1)]
        self.target = target
        self.step += 1
        return self.task.target_pose_to_action(target, float(grip))

    def done(self) -> bool:
        """Whether the track and its hold after it are over."""
        return self.start >= 0 and self.step - self.start >= len(self.track.poses) + self.hold_steps


@dataclass(frozen=True)
class ReplayOutcome:
    """One track's replay: the episode, whether it succeeded, and if not, why."""

    episode: Episode
    success: bool
    reason: str
    """Empty when kept; else why the replay failed (see `diagnose`)."""


def replay(task: Task, track: RetargetedTrack, limits: ReplayLimits) -> ReplayOutcome:
    """Run `track` on `task` from the scene of its seed, through the one recording loop."""
    follower = _Follower(task, track, limits.approach_steps, limits.hold_steps)
    episode = record_episode(
        task,
        follower.act,
        seed=track.seed,
        source="mocap",
        steps_after_success=limits.steps_after_success,
        on_reset=follower.reset,
        should_stop=follower.done,
    )
    if episode.success:
        return ReplayOutcome(episode, True, "")
    reason = diagnose(task, track, episode, np.asarray(follower.errors), follower.start, limits)
    return ReplayOutcome(episode, False, reason)


def diagnose(
    task: Task,
    track: RetargetedTrack,
    episode: Episode,
    errors: np.ndarray,
    start: int,
    limits: ReplayLimits,
) -> str:
    """Why a replay that never succeeded failed: the first that holds of a scene that does not
    match the tracked objects, a track that leaves the workspace, a pose the eef could not
    reach, a grip that never closed (near an object), a track longer than the horizon, and
    otherwise the subtask signals that never rose."""
    if track.align_error is not None and track.align_error > limits.max_align_error:
        return (
            f"misaligned: the tracked objects lie {1000 * track.align_error:.0f} mm from the "
            f"task's after alignment (limit {1000 * limits.max_align_error:.0f} mm)"
        )
    lo, hi = np.asarray(limits.workspace[0::2]), np.asarray(limits.workspace[1::2])
    pos = track.poses[:, :3, 3]  # K,3
    outside = np.any((pos < lo) | (pos > hi), axis=1)
    if outside.any():
        k = int(np.argmax(outside))
        where = ", ".join(f"{v:.2f}" for v in pos[k])
        t = track.times[k] - track.times[0]
        return f"left the workspace: wrist at ({where}) m at t={t:.2f} s"
    far = errors > limits.unreachable
    run = np.convolve(far.astype(int), np.ones(STUCK_STEPS, dtype=int), mode="valid")
    if run.size and run.max() >= STUCK_STEPS:
        k = int(np.argmax(run >= STUCK_STEPS))
        return (
            f"unreachable pose: the gripper stayed over {100 * limits.unreachable:.0f} cm from "
            f"the track for {STUCK_STEPS} steps from t={k / task.control_freq:.2f} s (blocked, "
            "or out of reach)"
        )
    info = episode.datagen_info
    closing = track.gripper > 0
    if not closing.any():
        return "grip never closed"
    if info is not None and info.object_poses:
        closed = info.gripper_action[:, 0] > 0  # T
        eef = info.eef_pose[:, :3, 3]  # T,3
        dist = np.full(len(eef), np.inf)
        for poses in info.object_poses.values():
            dist = np.minimum(dist, np.linalg.norm(poses[:, :3, 3] - eef, axis=1))
        if closed.any() and dist[closed].min() > NEAR_OBJECT:
            return (
                f"grip never closed near an object (closest {100 * dist[closed].min():.1f} cm "
                "while closed)"
            )
    steps = max(start, 0) + len(track.poses)
    if steps > task.horizon:
        return (
            f"ran out of time: the track takes {steps} steps, the task's horizon is {task.horizon}"
        )
    missing = []
    if info is not None:
        missing = [k for k, v in info.subtask_term_signals.items() if not np.any(v)]
    if missing:
        return f"never succeeded (never reached: {', '.join(missing)})"
    return "never succeeded"
