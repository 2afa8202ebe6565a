"""A track's poses at the task's control rate: linear interpolation for positions and the grip,
slerp for rotations, on quaternions w x y z.

A tracker samples at its own rate (30, 100, 120 Hz), often with jittered timestamps; the task
steps at `control_freq` (20 Hz for the built-in tasks). The control grid starts at the track's
first sample and ends at or before its last, so nothing is extrapolated.
"""

from __future__ import annotations

import numpy as np


def quat_continuous(quat: np.ndarray) -> np.ndarray:
    """`quat` (T, 4) with signs flipped so that each row lies in the hemisphere of the one
    before (q and -q are the same rotation; interpolation and filtering need one of them)."""
    out = np.array(quat, dtype=np.float64)
    for i in range(1, len(out)):
        if np.dot(out[i], out[i - 1]) < 0:
            out[i] = -out[i]
    return out


def slerp(q0: np.ndarray, q1: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Spherical linear interpolation (Shoemake 1985) from q0 (N, 4) to q1 (N, 4) at fractions
    u (N,) in [0, 1], along the shorter arc; unit quaternions in and out."""
    q1 = np.where((np.sum(q0 * q1, axis=1) < 0)[:, None], -q1, q1)
    dot = np.clip(np.sum(q0 * q1, axis=1), -1.0, 1.0)  # N
    theta = np.arccos(dot)  # N: half the rotation angle between them
    sin = np.sin(theta)
    near = sin < 1e-6  # (almost) the same rotation: the lerp is exact to rounding
    safe = np.where(near, 1.0, sin)
    w0 = np.where(near, 1.0 - u, np.sin((1.0 - u) * theta) / safe)  # N
    w1 = np.where(near, u, np.sin(u * theta) / safe)  # N
    out = w0[:, None] * q0 + w1[:, None] * q1  # N,4
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def control_times(t: np.ndarray, freq: float) -> np.ndarray:
    """The control grid (K,) over a track's timestamps t (T,): t[0] + k / freq, k = 0..K-1,
    up to t[-1] (with a microsecond of slack for rounding)."""
    k = int(np.floor((t[-1] - t[0]) * freq + 1e-6)) + 1
    return np.asarray(t[0] + np.arange(k) / freq, dtype=np.float64)


def resample(
    t: np.ndarray, pos: np.ndarray, quat: np.ndarray, grip: np.ndarray, times: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The track t (T,), pos (T, 3), quat (T, 4), grip (T,) at `times` (K,) inside [t[0], t[-1]]:
    pos (K, 3) and grip (K,) linearly interpolated, quat (K, 4) slerped between the samples
    that bracket each time."""
    i = np.clip(np.searchsorted(t, times, side="right") - 1, 0, len(t) - 2)  # K: left sample
    u = np.clip((times - t[i]) / (t[i + 1] - t[i]), 0.0, 1.0)  # K
    pos_k = pos[i] + u[:, None] * (pos[i + 1] - pos[i])  # K,3
    grip_k = grip[i] + u * (grip[i + 1] - grip[i])  # K
    quat_k = slerp(quat[i], quat[i + 1], u)  # K,4
    return pos_k, quat_continuous(quat_k), grip_k


def quat_to_matrix(quat: np.ndarray) -> np.ndarray:
    """Rotation matrices (N, 3, 3) of unit quaternions (N, 4), w x y z."""
    q = quat / np.linalg.norm(quat, axis=-1, keepdims=True)
    w, x, y, z = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=1,
    )


def matrix_to_quat(mat: np.ndarray) -> np.ndarray:
    """Unit quaternions (N, 4), w x y z with w >= 0, of rotation matrices (N, 3, 3): from the
    largest of the four diagonal combinations, which keeps the division well conditioned."""
    m = np.asarray(mat, dtype=np.float64)
    out = np.empty((len(m), 4))
    for n, r in enumerate(m):
        tr = r[0, 0] + r[1, 1] + r[2, 2]
        k = int(np.argmax([tr, r[0, 0], r[1, 1], r[2, 2]]))
        if k == 0:
            s = 2.0 * np.sqrt(1.0 + tr)
            q = [s / 4, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
        elif k == 1:
            s = 2.0 * np.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2])
            q = [(r[2, 1] - r[1, 2]) / s, s / 4, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s]
        elif k == 2:
            s = 2.0 * np.sqrt(1.0 - r[0, 0] + r[1, 1] - r[2, 2])
            q = [(r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, s / 4, (r[1, 2] + r[2, 1]) / s]
        else:
            s = 2.0 * np.sqrt(1.0 - r[0, 0] - r[1, 1] + r[2, 2])
            q = [(r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, s / 4]
        out[n] = q
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return np.where(out[:, :1] < 0, -out, out)


def poses_from(pos: np.ndarray, quat: np.ndarray) -> np.ndarray:
    """Homogeneous poses (N, 4, 4) of positions (N, 3) and quaternions (N, 4)."""
    out = np.tile(np.eye(4), (len(pos), 1, 1))
    out[:, :3, :3] = quat_to_matrix(quat)
    out[:, :3, 3] = pos
    return out
