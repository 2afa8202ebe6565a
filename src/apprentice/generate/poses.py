"""Pose math of object-centric generation, on (4, 4) homogeneous transforms in the world frame."""

from __future__ import annotations

import numpy as np

from apprentice.envs.mujoco_base import matrix_from_rotvec, rotvec_from_matrix


def pose_inv(pose: np.ndarray) -> np.ndarray:
    """The inverse of a rigid transform, without a general matrix inverse."""
    rot, pos = pose[:3, :3], pose[:3, 3]
    out = np.eye(4)
    out[:3, :3] = rot.T
    out[:3, 3] = -rot.T @ pos
    return out


def transform_segment(
    eef_poses: np.ndarray, src_object: np.ndarray, new_object: np.ndarray
) -> np.ndarray:
    """Move a segment of eef poses (T, 4, 4) with its reference object into a new scene.

    Each pose keeps its place relative to the object: T_new = T_obj_new inv(T_obj_src) T_src,
    where the object poses are taken at the segment's start.
    """
    shift = new_object @ pose_inv(src_object)
    return np.einsum("ij,tjk->tik", shift, eef_poses)


def grasp_correction(
    eef_src: np.ndarray, held_src: np.ndarray, eef_now: np.ndarray, held_now: np.ndarray
) -> np.ndarray:
    """The held object's pose in the hand in the source times its inverse now: right-multiplied
    into a segment's eef poses, it makes the held object (not the eef) retrace the source's
    path relative to the segment's reference object."""
    in_hand_src = pose_inv(eef_src) @ held_src
    in_hand_now = pose_inv(eef_now) @ held_now
    return in_hand_src @ pose_inv(in_hand_now)


def interpolate_poses(start: np.ndarray, end: np.ndarray, steps: int) -> np.ndarray:
    """`steps` poses (steps, 4, 4) strictly between `start` and `end`, evenly spaced.

    Positions move on the straight line; rotations turn about one fixed axis (slerp), so the
    path is the shortest one and its speed is constant.
    """
    out = np.tile(np.eye(4), (steps, 1, 1))
    turn = rotvec_from_matrix(end[:3, :3] @ start[:3, :3].T)
    for k in range(steps):
        frac = (k + 1) / (steps + 1)
        out[k, :3, 3] = start[:3, 3] + frac * (end[:3, 3] - start[:3, 3])
        out[k, :3, :3] = matrix_from_rotvec(frac * turn) @ start[:3, :3]
    return out


def pose_distance(a: np.ndarray, b: np.ndarray, rot_weight: float = 1.0) -> float:
    """Metres between the origins plus `rot_weight` times the angle (rad) between the frames."""
    cos = (np.trace(a[:3, :3].T @ b[:3, :3]) - 1.0) / 2.0
    angle = float(np.arccos(np.clip(cos, -1.0, 1.0)))
    return float(np.linalg.norm(a[:3, 3] - b[:3, 3])) + rot_weight * angle
