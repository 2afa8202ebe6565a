"""`apprentice retarget`: tracked wrist poses (motion capture) -> demos of a built-in task.

Per track: read (`tracks`), check for gaps, resample to the task's control rate (linear for
positions, slerp for rotations; `resample`), smooth (Savitzky-Golay; `smooth`), map into the
task's world frame (`--frame`, or estimated from the tracked objects; `align`), replay closed
loop from the scene of the track's seed (`replay`), and keep the replays that succeed, with
`steps_after_success` more steps as `collect` records. The kept demos are a normal HDF5 store
(states, obs, actions, datagen_info, mask/train and mask/valid) that `train` reads; a report
beside it (`<out stem>.report.json`) lists every track: kept, or dropped and why.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from apprentice.data.store import DemoWriter, split_train_valid
from apprentice.envs.base import Task, make_task, task_names
from apprentice.errors import ApprenticeError
from apprentice.files import write_text_atomic
from apprentice.retarget.align import (
    Frame,
    ObjectMatch,
    estimate_transforms,
    match_objects,
    object_residual,
    read_frame,
)
from apprentice.retarget.replay import ReplayLimits, RetargetedTrack, gripper_commands, replay
from apprentice.retarget.resample import control_times, poses_from, resample
from apprentice.retarget.smooth import check_filter, smooth_poses
from apprentice.retarget.tracks import Track, find_gap, read_track, track_files
from apprentice.splits import check_valid_fraction

ALIGNMENTS = ("pooled", "per-track")
_MAKE_TRACKS_FIELDS = ("make_tracks", "noise", "track_rate")
RETARGET_FAMILIES = ("builtin", "robosuite")
"""Task families with an end effector that `target_pose_to_action` drives in 6-DoF."""


@dataclass(frozen=True)
class RetargetConfig:
    """Map tracked wrist poses onto a task's actions, replay them, keep the demos that succeed
    (the track format: `tracks` below, and `apprentice.retarget.tracks`). With --make-tracks,
    write such tracks from oracle demos instead."""

    tracks: str = ""
    """A track file or a folder of them, one track (demo) each: an .npz with t (T,) s,
    wrist_pos (T,3) m, wrist_quat (T,4) w x y z, grip (T,) in [0,1] (0 open, 1 closed), and
    optionally seed (the task's scene) and object_pos (K,3) / object_quat (K,4) (the tracked
    objects in the first frame, to align the mocap frame); or a .csv with columns
    t,x,y,z,qw,qx,qy,qz,grip (seed and objects in a .json of the same stem)."""
    task: str = "lift"
    """Name of the built-in task the tracks demonstrate."""
    out: str = "retargeted.hdf5"
    """Output HDF5 of the kept demos (its report beside it: <stem>.report.json); with
    --make-tracks, the folder the tracks are written to."""
    frame: str = ""
    """JSON file with the 4x4 mocap->world transform (or {"mocap_to_world": 4x4,
    "wrist_to_eef": 4x4}); default: estimated from the tracks' object poses."""
    align: str = "pooled"
    """Without --frame: one transform fitted over all tracks' objects (pooled: one mocap
    session), or one per track (per-track)."""
    smooth_window: int = 7
    """Savitzky-Golay window in control steps (odd; 0 for no smoothing)."""
    smooth_order: int = 2
    """Savitzky-Golay polynomial order."""
    max_gap: float = 3.0
    """A track with two samples further apart than this many median intervals has a gap."""
    skip_bad: bool = False
    """Drop a malformed track (gap, NaN, bad timestamps or shapes) and list why in the report,
    rather than stop with an error."""
    seed: int = 0
    """Seed of the scene of a track that gives none: the i-th track file gets seed + i; also
    seeds the train/valid split (and the frame, noise and jitter of --make-tracks)."""
    steps_after_success: int = 10
    """Steps recorded after the task first succeeds (release, retreat), as collect records."""
    approach_steps: int = 20
    """At most this many steps bring the gripper from its start to the track's first pose
    before the track's clock starts."""
    workspace: tuple[float, ...] = (-0.4, 0.4, -0.4, 0.4, 0.0, 0.5)
    """x_lo x_hi y_lo y_hi z_lo z_hi (m, task world frame) the gripper reaches; a failed
    replay whose track leaves it is put down to that."""
    max_align_error: float = 0.02
    """Metres between the tracked objects and the task's (after alignment) past which a
    failed replay is put down to a scene that does not match."""
    unreachable: float = 0.03
    """Metres the gripper may lag the track for 5 steps before a failed replay is put down to
    an unreachable (or blocked) pose."""
    valid_fraction: float = 0.1
    """Fraction of kept demos put in mask/valid (the rest in mask/train)."""
    overwrite: bool = False
    """Replace --out if it exists."""
    progress: bool = True
    """Show a progress bar."""
    make_tracks: str = ""
    """Oracle demos (an HDF5 from collect) to turn into mocap-like tracks in the --out folder
    (another frame, --track-rate Hz with jittered timestamps, tracking noise) instead of
    retargeting."""
    noise: float = 1.0
    """With --make-tracks: scale of the tracking noise (1: 3 mm and 1.5 deg std; 0: none)."""
    track_rate: float = 30.0
    """With --make-tracks: the tracker's sampling rate (Hz)."""

    def __post_init__(self) -> None:
        check_filter(self.smooth_window, self.smooth_order)
        if self.align not in ALIGNMENTS:
            raise ApprenticeError(f"--align must be one of {', '.join(ALIGNMENTS)}")
        if len(self.workspace) != 6 or any(
            lo >= hi for lo, hi in zip(self.workspace[0::2], self.workspace[1::2], strict=True)
        ):
            raise ApprenticeError(
                f"--workspace takes six numbers x_lo x_hi y_lo y_hi z_lo z_hi, got {self.workspace}"
            )
        if self.max_gap <= 1:
            raise ApprenticeError(f"--max-gap must be > 1 (median intervals), got {self.max_gap}")
        for flag, value in (
            ("--steps-after-success", self.steps_after_success),
            ("--approach-steps", self.approach_steps),
            ("--seed", self.seed),
        ):
            if value < 0:
                raise ApprenticeError(f"{flag} must be >= 0, got {value}")
        if self.noise < 0:
            raise ApprenticeError(f"--noise must be >= 0, got {self.noise}")
        if self.track_rate <= 0:
            raise ApprenticeError(f"--track-rate must be > 0, got {self.track_rate}")

    def limits(self) -> ReplayLimits:
        return ReplayLimits(
            workspace=tuple(float(v) for v in self.workspace),
            max_align_error=self.max_align_error,
            unreachable=self.unreachable,
            approach_steps=self.approach_steps,
            hold_steps=self.steps_after_success,
            steps_after_success=self.steps_after_success,
        )


@dataclass(frozen=True)
class TrackReport:
    """One track's line of the report."""

    track: str
    kept: bool
    reason: str = ""
    """Why it was dropped; empty when kept."""
    seed: int | None = None
    demo: str = ""
    """The demo it became in the output (demo_<i>), when kept."""
    steps: int = 0
    """Steps of its replay."""
    duration_s: float = 0.0
    """The track's length in seconds."""
    align_error_mm: float | None = None
    """Millimetres between its tracked objects and the task's, after alignment."""


@dataclass(frozen=True)
class RetargetResult:
    path: Path
    report_path: Path
    tracks: list[TrackReport]
    frame: dict[str, Any] = field(default_factory=dict)
    """How the mocap frame was found: method, and the transform(s) used."""

    @property
    def kept(self) -> int:
        return sum(r.kept for r in self.tracks)


def report_path(out: str | Path) -> Path:
    """Where the report of `--out` goes: <stem>.report.json beside it."""
    p = Path(out)
    return p.with_name(p.stem + ".report.json")


def _check_task(name: str) -> Task:
    allowed = [n for f in RETARGET_FAMILIES for n in task_names(f)]
    task = make_task(name)  # an unknown name is refused here, with the known ones
    if name not in allowed:
        task.close()
        raise ApprenticeError(
            f"task {name!r} has no 6-DoF end effector to retarget a wrist onto; retarget "
            f"replays onto {', '.join(sorted(allowed))}"
        )
    return task


def _read(cfg: RetargetConfig) -> tuple[list[Track], list[TrackReport]]:
    """The well-formed tracks with their seeds set, and a report line per track dropped as
    malformed (with --skip-bad; otherwise the first malformed one raises)."""
    if not cfg.tracks:
        raise ApprenticeError("give the tracks to retarget: a .npz, a .csv or a folder of them")
    tracks, dropped = [], []
    for i, path in enumerate(track_files(cfg.tracks)):
        try:
            track = read_track(path)
            gap = find_gap(track, cfg.max_gap)
        except ApprenticeError as e:
            if not cfg.skip_bad:
                raise
            reason = str(e).removeprefix(f"{path}: ")
            dropped.append(TrackReport(str(path), False, f"bad track: {reason}"))
            continue
        if gap is not None:
            if not cfg.skip_bad:
                raise ApprenticeError(
                    f"{path}: {gap}; fix the track, raise --max-gap, or pass --skip-bad to drop it"
                )
            dropped.append(TrackReport(str(path), False, f"bad track: {gap}"))
            continue
        seed = track.seed if track.seed is not None else cfg.seed + i
        tracks.append(replace(track, seed=seed))
    return tracks, dropped


def _frames(
    cfg: RetargetConfig, task: Task, tracks: list[Track]
) -> tuple[list[Frame], list[float | None], dict[str, Any]]:
    """mocap -> world per track, the tracked objects' error after it, and the record."""
    if cfg.frame:
        frame = read_frame(cfg.frame)
        errors: list[float | None] = []
        for track in tracks:
            match = _match(task, track) if track.has_objects else None
            errors.append(None if match is None else object_residual(frame.mocap_to_world, match))
        return [frame] * len(tracks), errors, {"method": f"given ({cfg.frame})", **frame.to_json()}
    lacking = [t.name for t in tracks if not t.has_objects]
    if lacking:
        raise ApprenticeError(
            f"{lacking[0]}: gives no object_pos/object_quat to align the mocap frame with; "
            "pass --frame FILE (a 4x4 mocap->world JSON)"
        )
    if not tracks:
        return [], [], {"method": "none (no well-formed track)"}
    matches = [_match(task, t) for t in tracks]
    transforms = estimate_transforms(
        matches, pooled=cfg.align == "pooled", outlier=cfg.max_align_error
    )
    frames = [Frame(m, np.eye(4)) for m in transforms]
    errors = [object_residual(m, match) for m, match in zip(transforms, matches, strict=True)]
    record: dict[str, Any] = {"method": f"estimated from the tracked objects ({cfg.align})"}
    if cfg.align == "pooled":
        record.update(frames[0].to_json())
    return frames, errors, record


def _match(task: Task, track: Track) -> ObjectMatch:
    assert track.object_pos is not None and track.object_quat is not None
    task.reset(seed=track.seed)
    return match_objects(
        track.object_pos, track.object_quat, track.object_names, task.object_poses(), track.name
    )


def retargeted(track: Track, frame: Frame, freq: float, window: int, order: int) -> RetargetedTrack:
    """`track` at the control rate `freq`, smoothed, in the world frame, with its gripper
    commands (`track.seed` must be set)."""
    assert track.seed is not None
    times = control_times(track.t, freq)  # K
    pos, quat, grip = resample(track.t, track.pos, track.quat, track.grip, times)
    pos, quat = smooth_poses(pos, quat, window, order)
    poses = frame.to_world(poses_from(pos, quat))  # K,4,4
    return RetargetedTrack(track.name, track.seed, poses, gripper_commands(grip), times)


def retarget_tracks(cfg: RetargetConfig) -> RetargetResult:
    """Retarget every track of `cfg.tracks` onto `cfg.task` (see the module docstring)."""
    check_valid_fraction(cfg.valid_fraction, "--valid-fraction")
    out = Path(cfg.out)
    if out.exists() and not cfg.overwrite:
        raise ApprenticeError(f"--out {out} exists; choose another, or pass --overwrite")
    task = _check_task(cfg.task)
    try:
        tracks, reports = _read(cfg)
        frames, errors, frame_record = _frames(cfg, task, tracks)
        limits = cfg.limits()
        out.parent.mkdir(parents=True, exist_ok=True)
        bar = tqdm(tracks, desc=f"retarget {cfg.task}", disable=not cfg.progress)
        with DemoWriter(out, env_args=task.env_args, overwrite=True) as writer:
            for track, frame, error in zip(bar, frames, errors, strict=True):
                plan = retargeted(
                    track, frame, task.control_freq, cfg.smooth_window, cfg.smooth_order
                )
                outcome = replay(task, replace(plan, align_error=error), limits)
                demo = ""
                if outcome.success:
                    episode = outcome.episode
                    attrs = {**episode.attrs, "track": Path(track.name).name}
                    demo = writer.append(replace(episode, attrs=attrs), masks=("success",))
                reports.append(
                    TrackReport(
                        track=track.name,
                        kept=outcome.success,
                        reason=outcome.reason,
                        seed=track.seed,
                        demo=demo,
                        steps=outcome.episode.num_samples,
                        duration_s=round(track.duration, 3),
                        align_error_mm=None if error is None else round(1000 * error, 2),
                    )
                )
                bar.set_postfix(kept=f"{sum(r.kept for r in reports)}/{len(reports)}")
        bar.close()
    finally:
        task.close()
    if any(r.kept for r in reports):
        split_train_valid(out, cfg.valid_fraction, cfg.seed)
    order = {str(p): i for i, p in enumerate(track_files(cfg.tracks))}
    reports.sort(key=lambda r: order.get(r.track, len(order)))
    result = RetargetResult(out, report_path(out), reports, frame_record)
    write_report(result, cfg)
    return result


def write_report(result: RetargetResult, cfg: RetargetConfig) -> None:
    """The report JSON: the settings, how the frame was found, and a line per track."""
    dropped: dict[str, int] = {}
    for r in result.tracks:
        if not r.kept:
            kind = r.reason.split(":")[0].split(" (")[0]
            dropped[kind] = dropped.get(kind, 0) + 1
    body = {
        "task": cfg.task,
        "tracks": str(cfg.tracks),
        "out": str(result.path),
        "kept": result.kept,
        "total": len(result.tracks),
        "dropped_by_reason": dropped,
        "frame": result.frame,
        "config": {k: v for k, v in asdict(cfg).items() if k not in _MAKE_TRACKS_FIELDS},
        "per_track": [asdict(r) for r in result.tracks],
    }
    write_text_atomic(result.report_path, json.dumps(body, indent=2) + "\n")
