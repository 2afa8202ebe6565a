"""Per-demo quality scores: how much of a demonstration a policy should learn from.

Human demonstrations hold pauses, tremor, gripper chatter, dropped objects and re-grasps
that a scripted expert never shows, and behavioral cloning copies them (a policy trained on
demos with pauses can learn to stall). Each demo gets raw measurements and a combined score:

    idle_fraction   share of the steps before the first success whose motion action is
                    below `idle_action` while the eef moves less than `idle_speed` m/step
                    and the fingers are still
    jerk            RMS of the third difference of the eef position over the RMS of its
                    first difference (dimensionless; a smooth path scores near 0)
    path_ratio      eef path length to the first success over the task oracle's from the
                    same initial state (NaN where no oracle could be run; see
                    `apprentice.collect.replay.oracle_path_lengths`)
    chatter         gripper sign changes beyond the necessary: raw flips minus the flips
                    left once gripper segments shorter than `min_segment` steps are merged
    extra_grasps    grasp attempts (closed runs of at least `min_segment` steps) beyond
                    the dataset's median number
    failed_grasps   grasp attempts during which no object rose `lift_height` metres (NaN
                    without object poses)
    outlier         the largest robust z-score (median / MAD) of the demo's length,
                    path length, motion-action mean and spread, against the dataset

Every measurement is computed for all demos at once on flat (N, ...) arrays with an episode
index (bincount / reduceat), with no Python loop over demos or steps.

The combined score is a product of per-criterion factors, score = prod_k (1 - w_k p_k),
with each penalty p_k in [0, 1] (`QualityConfig` documents the ramps) and weights
w = idle 0.5, jerk 0.4, path 0.4, chatter 0.4, grasps 0.5, outlier 0.3: one severe defect
of any kind takes a demo to at most 0.5-0.7, two compound, a clean demo stays at 1.
Idle time and jerk are penalized above the dataset's median, not from zero: a task has
still phases (closing the hand) and curved paths of its own, which are no defect.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from apprentice.data.reader import DemoFile
from apprentice.data.source import DemoSource, open_source
from apprentice.errors import ApprenticeError

CRITERIA = ("idle", "jerk", "path", "chatter", "grasps", "outlier")
"""The criteria the combined score weighs, in the order of `QualityConfig.weights`."""
_EEF_KEYS = ("eef_pos", "robot0_eef_pos")
_FINGER_KEYS = ("gripper_qpos", "robot0_gripper_qpos", "hand_qpos")


@dataclass(frozen=True)
class QualityConfig:
    """Thresholds of the measurements, the penalty ramps and the weights of the score."""

    idle_speed: float = 0.002
    """Eef speed (m/step) below which a step counts as idle (0.04 m/s at 20 Hz)."""
    idle_action: float = 0.05
    """Motion-action norm (of the 6 pose dims in [-1, 1]) below which a step may be idle."""
    finger_speed: float = 0.0005
    """Finger motion (m/step) above which a step is not idle (closing the hand is work)."""
    min_segment: int = 4
    """Gripper command segments shorter than this (steps) are chatter, not a grasp or release."""
    lift_height: float = 0.01
    """A grasp attempt that raises no object this many metres failed."""
    idle_ramp: float = 0.25
    """Idle fraction above the dataset median at which the idle penalty reaches 1."""
    jerk_ramp: tuple[float, float] = (1.5, 3.0)
    """Jerk over the dataset median: penalty 0 at the first ratio, 1 at the second."""
    path_ramp: tuple[float, float] = (1.25, 2.0)
    """Path ratio against the oracle: penalty 0 at the first, 1 at the second."""
    chatter_ramp: float = 4.0
    """Extra gripper flips at which the chatter penalty reaches 1."""
    outlier_ramp: tuple[float, float] = (3.5, 7.0)
    """Robust z-score: penalty 0 at the first, 1 at the second."""
    weights: tuple[float, ...] = (0.5, 0.4, 0.4, 0.4, 0.5, 0.3)
    """Weights of idle, jerk, path, chatter, grasps and outlier (each in [0, 1])."""

    def __post_init__(self) -> None:
        if len(self.weights) != len(CRITERIA) or not all(0 <= w <= 1 for w in self.weights):
            raise ApprenticeError(
                f"quality weights: need {len(CRITERIA)} numbers in [0, 1] "
                f"({', '.join(CRITERIA)}), got {self.weights}"
            )
        if self.min_segment < 1:
            raise ApprenticeError(f"quality min_segment must be >= 1, got {self.min_segment}")


@dataclass(frozen=True)
class DemoArrays:
    """Every demo of a file as flat arrays with an episode index (N steps, E demos)."""

    names: list[str]
    lengths: np.ndarray
    """(E,) steps per demo."""
    actions: np.ndarray
    """(N, A) actions; the last dimension is the gripper (+1 close, -1 open)."""
    eef_pos: np.ndarray | None = None
    """(N, 3) eef position before each action, or None."""
    finger_pos: np.ndarray | None = None
    """(N, G) finger joint positions, or None."""
    object_z: np.ndarray | None = None
    """(N, K) height of each object, or None."""
    rewards: np.ndarray | None = None
    """(N,) rewards (positive once the task is done), or None."""

    def __post_init__(self) -> None:
        n = int(self.lengths.sum())
        for name in ("actions", "eef_pos", "finger_pos", "object_z", "rewards"):
            arr = getattr(self, name)
            if arr is not None and arr.shape[0] != n:
                raise ApprenticeError(f"quality input {name}: {arr.shape[0]} steps, expected {n}")
        if len(self.names) != len(self.lengths) or np.any(self.lengths < 1):
            raise ApprenticeError("quality input: one positive length per demo name")

    @property
    def episode(self) -> np.ndarray:
        """(N,) the demo index of every step."""
        return np.repeat(np.arange(len(self.lengths)), self.lengths)

    @property
    def starts(self) -> np.ndarray:
        """(E,) index of each demo's first step."""
        return np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)


def _first_key(keys: Sequence[str], wanted: Sequence[str]) -> str | None:
    return next((k for k in wanted if k in keys), None)


def _rewards(source: DemoSource, name: str) -> np.ndarray | None:
    """Demo `name`'s rewards (T,), None where the dataset records none."""
    if isinstance(source, DemoFile):  # no episode read just for them
        if "rewards" not in source.fields(name):
            return None
        return source.read_field(name, "rewards").astype(np.float64).reshape(-1)
    return source.read(name, obs_keys=[], with_images=False).rewards.astype(np.float64)


def load_demo_arrays(
    path: str | os.PathLike[str], demos: Sequence[str] | None = None
) -> DemoArrays:
    """Read what the scores need from a store (eef positions, fingers, object heights)."""
    with open_source(path) as f:
        names = list(demos) if demos is not None else f.demo_names
        if not names:
            raise ApprenticeError(f"{path}: holds no demos to score")
        eef_key = _first_key(f.obs_keys, _EEF_KEYS)
        finger_key = _first_key(f.obs_keys, _FINGER_KEYS)
        actions, eef, fingers, objects, rewards = [], [], [], [], []
        have_objects, have_rewards = True, True
        for name in names:
            actions.append(f.read_actions(name).astype(np.float64))
            info = f.read_datagen_info(name)
            if eef_key is not None:
                eef.append(f.read_obs(name, eef_key).astype(np.float64))
            elif info is not None:
                eef.append(info.eef_pose[:, :3, 3])
            if finger_key is not None:
                fingers.append(f.read_obs(name, finger_key).astype(np.float64))
            if info is not None and info.object_poses:
                # The objects' heights, in the order of their names.
                z = [info.object_poses[o][:, 2, 3] for o in sorted(info.object_poses)]
                objects.append(np.stack(z, axis=1))
            else:
                have_objects = False
            episode_rewards = _rewards(f, name)
            if episode_rewards is not None:
                rewards.append(episode_rewards)
            else:
                have_rewards = False
    lengths = np.array([len(a) for a in actions], dtype=np.int64)
    return DemoArrays(
        names=names,
        lengths=lengths,
        actions=np.concatenate(actions),
        eef_pos=np.concatenate(eef) if len(eef) == len(names) else None,
        finger_pos=np.concatenate(fingers) if len(fingers) == len(names) else None,
        object_z=np.concatenate(objects) if have_objects else None,
        rewards=np.concatenate(rewards) if have_rewards else None,
    )


@dataclass
class QualityScores:
    """Per-demo measurements, penalties and the combined score (arrays of shape (E,))."""

    names: list[str]
    length: np.ndarray
    idle_fraction: np.ndarray
    jerk: np.ndarray
    """NaN where the eef position is unknown or the demo is shorter than 4 steps."""
    path_length: np.ndarray
    """Eef path length (m) to the first success; NaN without eef positions."""
    path_ratio: np.ndarray
    """NaN where no reference path was given."""
    chatter: np.ndarray
    grasp_attempts: np.ndarray
    extra_grasps: np.ndarray
    failed_grasps: np.ndarray
    """NaN without object poses."""
    outlier: np.ndarray
    penalties: dict[str, np.ndarray]
    """criterion -> (E,) penalty in [0, 1]."""
    score: np.ndarray
    notes: dict[str, str] = field(default_factory=dict)
    """Why a measurement is missing (e.g. "path": "the oracle failed on demo_3")."""

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise ApprenticeError(f"no scored demo {name!r}") from None

    def reasons(self, i: int, threshold: float = 0.0) -> list[str]:
        """The criteria whose penalty exceeds `threshold` for demo i, as 'idle 0.42' etc."""
        values = {
            "idle": f"idle {self.idle_fraction[i]:.2f}",
            "jerk": f"jerk {self.jerk[i]:.3g}",
            "path": f"path x{self.path_ratio[i]:.2f}",
            "chatter": f"chatter {int(self.chatter[i])}",
            "grasps": f"grasps +{int(self.extra_grasps[i])}"
            + (
                "" if np.isnan(self.failed_grasps[i]) else f" / {int(self.failed_grasps[i])} failed"
            ),
            "outlier": f"outlier z {self.outlier[i]:.1f}",
        }
        return [values[k] for k in CRITERIA if self.penalties[k][i] > threshold]

    def records(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per demo (None for a measurement that could not be made)."""

        def num(x: float) -> float | None:
            return None if math.isnan(x) else round(float(x), 6)

        out = []
        for i, name in enumerate(self.names):
            out.append(
                {
                    "demo": name,
                    "length": int(self.length[i]),
                    "score": num(self.score[i]),
                    "idle_fraction": num(self.idle_fraction[i]),
                    "jerk": num(self.jerk[i]),
                    "path_length": num(self.path_length[i]),
                    "path_ratio": num(self.path_ratio[i]),
                    "chatter": int(self.chatter[i]),
                    "grasp_attempts": int(self.grasp_attempts[i]),
                    "extra_grasps": int(self.extra_grasps[i]),
                    "failed_grasps": None
                    if np.isnan(self.failed_grasps[i])
                    else int(self.failed_grasps[i]),
                    "outlier": num(self.outlier[i]),
                    "penalties": {k: round(float(v[i]), 4) for k, v in self.penalties.items()},
                }
            )
        return out


def _per_episode_sum(ep: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(ep, weights=values, minlength=n)


def _success_cut(d: DemoArrays, ep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(local step (N,), cut (E,)): each step's index in its demo, and the demo's first
    rewarded step (its last step where nothing is rewarded or rewards are unknown)."""
    e = len(d.lengths)
    local = np.arange(len(ep)) - d.starts[ep]
    cut = d.lengths - 1
    if d.rewards is not None:
        hit = d.rewards > 0
        first = np.full(e, np.iinfo(np.int64).max)
        np.minimum.at(first, ep[hit], local[hit])
        cut = np.where(first < d.lengths, first, cut)
    return local, cut


def _idle(d: DemoArrays, cfg: QualityConfig, ep: np.ndarray, same: np.ndarray) -> np.ndarray:
    """(E,) fraction of idle steps up to the first success (holding still once the task is
    done is no defect); step t's motion is p[t+1] - p[t]."""
    n, e = len(ep), len(d.lengths)
    # A still hand that is commanded to turn, or to move against a contact, is working.
    idle = np.linalg.norm(d.actions[:, :-1], axis=1) < cfg.idle_action
    if d.eef_pos is not None:
        speed = np.zeros(n)
        speed[:-1][same] = np.linalg.norm(np.diff(d.eef_pos, axis=0)[same], axis=1)
        idle &= speed < cfg.idle_speed
        if d.finger_pos is not None:
            finger = np.zeros(n)
            finger[:-1][same] = np.abs(np.diff(d.finger_pos, axis=0)[same]).max(axis=1)
            idle &= finger < cfg.finger_speed
        # The last step of a demo has no next position: its action alone decides.
        last = d.starts + d.lengths - 1
        idle[last] = np.linalg.norm(d.actions[last, :-1], axis=1) < cfg.idle_action
    local, cut = _success_cut(d, ep)
    counted = local <= cut[ep]
    return _per_episode_sum(ep[counted], idle[counted].astype(np.float64), e) / (cut + 1)


def _jerk(d: DemoArrays, ep: np.ndarray, same: np.ndarray) -> np.ndarray:
    """(E,) RMS third difference over RMS first difference of the eef position."""
    e = len(d.lengths)
    if d.eef_pos is None:
        return np.full(e, np.nan)
    p = d.eef_pos
    v2 = np.square(np.diff(p, axis=0)).sum(axis=1)  # (N-1,)
    j = p[3:] - 3 * p[2:-1] + 3 * p[1:-2] - p[:-3]  # (N-3, 3)
    same3 = ep[:-3] == ep[3:]
    v_ms = _per_episode_sum(ep[:-1][same], v2[same], e) / np.maximum(d.lengths - 1, 1)
    j_ms = _per_episode_sum(ep[:-3][same3], np.square(j[same3]).sum(axis=1), e) / np.maximum(
        d.lengths - 3, 1
    )
    out = np.sqrt(j_ms / np.maximum(v_ms, 1e-12))
    out[d.lengths < 4] = np.nan
    return out


def _path_to_success(d: DemoArrays, ep: np.ndarray, same: np.ndarray) -> np.ndarray:
    """(E,) eef path length up to the first rewarded step (all of it if none)."""
    e = len(d.lengths)
    if d.eef_pos is None:
        return np.full(e, np.nan)
    local, cut = _success_cut(d, ep)
    step = np.linalg.norm(np.diff(d.eef_pos, axis=0), axis=1)  # (N-1,)
    keep = same & (local[1:] <= cut[ep[1:]])
    return _per_episode_sum(ep[:-1][keep], step[keep], e)


@dataclass(frozen=True)
class _Gripper:
    flips: np.ndarray
    chatter: np.ndarray
    attempts: np.ndarray
    failed: np.ndarray


def _gripper(d: DemoArrays, cfg: QualityConfig, ep: np.ndarray) -> _Gripper:
    """Gripper flips, chatter, grasp attempts and failed grasps, by run-length encoding."""
    e, n = len(d.lengths), len(ep)
    closed = d.actions[:, -1] > 0  # (N,)
    new_seg = np.ones(n, dtype=bool)
    new_seg[1:] = (closed[1:] != closed[:-1]) | (ep[1:] != ep[:-1])
    seg_start = np.flatnonzero(new_seg)  # (S,)
    seg_len = np.diff(np.append(seg_start, n))
    seg_ep, seg_closed = ep[seg_start], closed[seg_start]
    flips = np.bincount(seg_ep, minlength=e) - 1
    # Debounce: keep segments of at least min_segment steps; a run is a maximal sequence of
    # kept segments of one sign within a demo. Chatter is what the debounce removed.
    long = seg_len >= cfg.min_segment
    l_start, l_ep, l_closed = seg_start[long], seg_ep[long], seg_closed[long]
    run_head = np.ones(len(l_start), dtype=bool)
    run_head[1:] = (l_closed[1:] != l_closed[:-1]) | (l_ep[1:] != l_ep[:-1])
    runs_per_ep = np.bincount(l_ep[run_head], minlength=e)
    debounced_flips = np.maximum(runs_per_ep - 1, 0)
    chatter = flips - debounced_flips
    grasp_start = l_start[run_head & l_closed]  # (R,) first step of each grasp attempt
    grasp_ep = l_ep[run_head & l_closed]
    attempts = np.bincount(grasp_ep, minlength=e)
    failed = np.full(e, np.nan)
    if d.object_z is not None:
        # Each grasp lasts until the next run head or the demo's end: reduceat over the
        # boundaries (demo starts and run heads) gives each run's highest object heights.
        bounds = np.unique(np.concatenate([d.starts, l_start[run_head]]))
        peak = np.maximum.reduceat(d.object_z, bounds, axis=0)  # (B, K)
        rise = (peak - d.object_z[bounds]).max(axis=1)  # (B,)
        is_grasp = np.isin(bounds, grasp_start)
        no_lift = is_grasp & (rise < cfg.lift_height)
        failed = np.bincount(ep[bounds[no_lift]], minlength=e).astype(np.float64)
    return _Gripper(flips, chatter, attempts, failed)


def _robust_z(x: np.ndarray) -> np.ndarray:
    """(E, F) robust z-scores per column: (x - median) / (1.4826 MAD), MAD floored."""
    med = np.nanmedian(x, axis=0)
    mad = 1.4826 * np.nanmedian(np.abs(x - med), axis=0)
    floor = 0.05 * np.abs(med) + 1e-6  # a feature every demo shares exactly is no evidence
    return np.asarray((x - med) / np.maximum(mad, floor))


def _ramp(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """0 at or below lo, 1 at or above hi, linear between; NaN (unmeasured) gives 0."""
    return np.nan_to_num(np.clip((x - lo) / (hi - lo), 0.0, 1.0), nan=0.0)


def score_demos(
    d: DemoArrays,
    cfg: QualityConfig | None = None,
    *,
    reference_path: np.ndarray | None = None,
    notes: dict[str, str] | None = None,
) -> QualityScores:
    """Score every demo of `d`; `reference_path` (E,) is the oracle's path length (NaN: none)."""
    cfg = cfg or QualityConfig()
    e = len(d.lengths)
    ep = d.episode
    same = ep[1:] == ep[:-1]  # (N-1,) consecutive steps of one demo
    idle = _idle(d, cfg, ep, same)
    jerk = _jerk(d, ep, same)
    path = _path_to_success(d, ep, same)
    ratio = np.full(e, np.nan)
    if reference_path is not None:
        ref = np.asarray(reference_path, dtype=np.float64)
        if ref.shape != (e,):
            raise ApprenticeError(f"reference_path: expected shape ({e},), got {ref.shape}")
        ok = ref > 0
        ratio[ok] = path[ok] / ref[ok]
    g = _gripper(d, cfg, ep)
    usual_attempts = float(np.median(g.attempts))
    extra = np.maximum(g.attempts - round(usual_attempts), 0)

    motion = np.linalg.norm(d.actions[:, :-1], axis=1)
    mean_motion = _per_episode_sum(ep, motion, e) / d.lengths
    spread = np.sqrt(
        np.maximum(_per_episode_sum(ep, motion**2, e) / d.lengths - mean_motion**2, 0.0)
    )
    features = np.stack([np.log(d.lengths), mean_motion, spread, path], axis=1)  # (E, F)
    features = features[:, ~np.all(np.isnan(features), axis=0)]
    outlier = np.nanmax(np.abs(_robust_z(features)), axis=1) if e > 2 else np.zeros(e)

    jerk_base = float(np.nanmedian(jerk)) if np.any(~np.isnan(jerk)) else 1.0
    penalties = {
        "idle": _ramp(idle - float(np.median(idle)), 0.0, cfg.idle_ramp),
        "jerk": _ramp(jerk / max(jerk_base, 1e-12), *cfg.jerk_ramp),
        "path": _ramp(ratio, *cfg.path_ramp),
        "chatter": _ramp(g.chatter.astype(np.float64), 0.0, cfg.chatter_ramp),
        "grasps": np.clip(np.maximum(extra, np.nan_to_num(g.failed)), 0.0, 1.0),
        "outlier": _ramp(outlier, *cfg.outlier_ramp),
    }
    score = np.ones(e)
    for w, k in zip(cfg.weights, CRITERIA, strict=True):
        score *= 1.0 - w * penalties[k]
    return QualityScores(
        names=list(d.names),
        length=d.lengths.copy(),
        idle_fraction=idle,
        jerk=jerk,
        path_length=path,
        path_ratio=ratio,
        chatter=g.chatter,
        grasp_attempts=g.attempts,
        extra_grasps=extra,
        failed_grasps=g.failed,
        outlier=outlier,
        penalties=penalties,
        score=score,
        notes=dict(notes or {}),
    )


def format_scores(s: QualityScores, limit: int | None = None) -> str:
    """The per-demo quality table `apprentice inspect --scores` prints (first and last
    `limit // 2` rows past `limit` demos)."""
    from apprentice.data.inspect import _table

    header = ["demo", "score", "idle", "jerk", "path x", "chatter", "grasps", "failed", "outlier"]

    def f(x: float, fmt: str) -> str:
        return "-" if math.isnan(x) else format(x, fmt)

    rows = [
        [
            name,
            f"{s.score[i]:.2f}",
            f"{s.idle_fraction[i]:.2f}",
            f(s.jerk[i], ".3f"),
            f(s.path_ratio[i], ".2f"),
            str(int(s.chatter[i])),
            str(int(s.grasp_attempts[i])),
            f(s.failed_grasps[i], ".0f"),
            f"{s.outlier[i]:.1f}",
        ]
        for i, name in enumerate(s.names)
    ]
    if limit is not None and len(rows) > limit:
        half = limit // 2
        rows = [*rows[:half], [f"... {len(rows) - 2 * half} more", *[""] * 8], *rows[-half:]]
    return _table(header, rows)
