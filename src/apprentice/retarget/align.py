"""The rigid transform from the motion-capture frame to the task's world frame.

Given (`--frame FILE`): a JSON 4x4 matrix, row-major, that maps mocap coordinates to world
coordinates (p_world = M p_mocap), or an object {"mocap_to_world": 4x4, "wrist_to_eef": 4x4}
where the second, optional, is the eef's pose in the tracked wrist's frame (the marker on the
back of a hand is not the point between the fingers; identity by default).

Estimated (no `--frame`): each track that gives its objects' first-frame poses is matched with
the task's scene after a reset with the track's seed. Every object pose contributes four
points, its origin and the tips of its three axes at MARKER_SIZE, so that one object fixes
both position and rotation; the rotation and translation that best map the mocap points onto
the world points in the least-squares sense come from Kabsch's SVD (Kabsch 1976; Umeyama 1991
without the scale). Pooled over every track (one mocap frame for a session, noise averaged
over all of them, refitted once without the tracks it leaves far off) by default, or per
track.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from apprentice.errors import ApprenticeError
from apprentice.retarget.resample import poses_from

MARKER_SIZE = 0.05
"""Metres from an object's origin to the three axis points that stand for its rotation: a
rotation error of theta radians moves them MARKER_SIZE * theta, weighing it against the
position error in the fit."""


def kabsch(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The rigid transform (4, 4) T minimizing sum |R src_i + p - dst_i|^2 over points
    src, dst (N, 3); a proper rotation (det +1), never a reflection."""
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 3 or len(src) < 3:
        raise ValueError(f"kabsch needs two (N>=3, 3) point sets, got {src.shape}, {dst.shape}")
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    cov = (dst - mu_d).T @ (src - mu_s)  # 3,3
    u, _, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(u @ vt)) or 1.0
    rot = u @ np.diag([1.0, 1.0, d]) @ vt
    out = np.eye(4)
    out[:3, :3] = rot
    out[:3, 3] = mu_d - rot @ mu_s
    return out


def pose_markers(poses: np.ndarray, size: float = MARKER_SIZE) -> np.ndarray:
    """Points (4K, 3) standing for poses (K, 4, 4): each origin and its axes' tips at `size`."""
    origin = poses[:, :3, 3]  # K,3
    tips = origin[:, None, :] + size * np.transpose(poses[:, :3, :3], (0, 2, 1))  # K,3,3
    return np.concatenate([origin[:, None, :], tips], axis=1).reshape(-1, 3)


def apply(transform: np.ndarray, poses: np.ndarray) -> np.ndarray:
    """`transform` (4, 4) applied to poses (N, 4, 4)."""
    return np.einsum("ij,njk->nik", transform, poses)


@dataclass(frozen=True)
class Frame:
    """mocap -> world, and the eef in the tracked wrist's frame."""

    mocap_to_world: np.ndarray
    """(4, 4)."""
    wrist_to_eef: np.ndarray
    """(4, 4); identity when the tracked point is the eef itself."""

    def to_world(self, poses: np.ndarray) -> np.ndarray:
        """Tracked wrist poses (N, 4, 4) in the mocap frame -> eef poses in the world frame."""
        return apply(self.mocap_to_world, poses) @ self.wrist_to_eef

    def to_json(self) -> dict[str, list[list[float]]]:
        return {
            "mocap_to_world": np.round(self.mocap_to_world, 9).tolist(),
            "wrist_to_eef": np.round(self.wrist_to_eef, 9).tolist(),
        }


def _rigid(path: Path, key: str, value: object) -> np.ndarray:
    try:
        m = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        m = np.zeros(0)
    if m.shape != (4, 4) or not np.all(np.isfinite(m)):
        raise ApprenticeError(f"{path}: {key} must be a 4x4 matrix of numbers (a list of 4 rows)")
    rot = m[:3, :3]
    if (
        not np.allclose(m[3], [0, 0, 0, 1], atol=1e-6)
        or not np.allclose(rot.T @ rot, np.eye(3), atol=1e-3)
        or np.linalg.det(rot) < 0
    ):
        raise ApprenticeError(
            f"{path}: {key} is not a rigid transform (an orthonormal rotation with det +1, "
            "last row 0 0 0 1)"
        )
    return m


def read_frame(path: str | Path) -> Frame:
    """The frame of a `--frame` JSON file (see the module docstring)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except OSError as e:
        raise ApprenticeError(f"--frame {p}: cannot read ({e.strerror or e})") from None
    except json.JSONDecodeError as e:
        raise ApprenticeError(f"--frame {p}: not JSON ({e})") from None
    if isinstance(data, dict):
        if "mocap_to_world" not in data:
            raise ApprenticeError(f"{p}: no 'mocap_to_world' (a 4x4 matrix)")
        m = _rigid(p, "mocap_to_world", data["mocap_to_world"])
        w = _rigid(p, "wrist_to_eef", data.get("wrist_to_eef", np.eye(4).tolist()))
        return Frame(m, w)
    return Frame(_rigid(p, "the matrix", data), np.eye(4))


@dataclass(frozen=True)
class ObjectMatch:
    """One track's tracked objects and the same objects in the task's scene."""

    tracked: np.ndarray
    """(K, 4, 4) first-frame object poses in the mocap frame."""
    scene: np.ndarray
    """(K, 4, 4) the task's object poses after reset with the track's seed (world frame)."""


def match_objects(
    pos: np.ndarray,
    quat: np.ndarray,
    names: tuple[str, ...],
    scene: dict[str, np.ndarray],
    where: str,
) -> ObjectMatch:
    """Pair a track's object poses pos (K, 3), quat (K, 4) with the task's `scene` poses by
    `names` (or in the task's order when none are given)."""
    known = list(scene)
    if not names:
        if len(pos) > len(known):
            raise ApprenticeError(
                f"{where}: tracks {len(pos)} objects; the task has {len(known)} "
                f"({', '.join(known)})"
            )
        names = tuple(known[: len(pos)])
    unknown = [n for n in names if n not in scene]
    if unknown:
        raise ApprenticeError(
            f"{where}: object_names {', '.join(unknown)} are not the task's "
            f"(it has {', '.join(known)})"
        )
    return ObjectMatch(poses_from(pos, quat), np.stack([scene[n] for n in names]))


def estimate_transforms(
    matches: list[ObjectMatch], pooled: bool, outlier: float = np.inf
) -> list[np.ndarray]:
    """mocap -> world (4, 4) per match: one Kabsch fit over all of them (`pooled`), or one
    per match. A pooled fit is refitted once without the matches whose objects it leaves
    more than `outlier` metres from the scene (a scene moved before the recording started
    must not tilt every other track), if any are left."""
    if not pooled:
        return [kabsch(pose_markers(m.tracked), pose_markers(m.scene)) for m in matches]

    def fit(chosen: list[ObjectMatch]) -> np.ndarray:
        src = np.concatenate([pose_markers(m.tracked) for m in chosen])
        dst = np.concatenate([pose_markers(m.scene) for m in chosen])
        return kabsch(src, dst)

    transform = fit(matches)
    inliers = [m for m in matches if object_residual(transform, m) <= outlier]
    if 0 < len(inliers) < len(matches):
        transform = fit(inliers)
    return [transform] * len(matches)


def object_residual(transform: np.ndarray, match: ObjectMatch) -> float:
    """Metres between the tracked objects' origins mapped by `transform` and the scene's (the
    largest over the objects): how far the scene the person saw is from the task's."""
    mapped = apply(transform, match.tracked)[:, :3, 3]
    return float(np.linalg.norm(mapped - match.scene[:, :3, 3], axis=1).max())
