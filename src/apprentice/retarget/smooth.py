"""Smoothing of tracked poses against tracking noise: a Savitzky-Golay filter (Savitzky and Golay
1964), a least-squares polynomial fitted in a sliding window.

Unlike a moving average it keeps the peaks and corners of the motion (a grasp's stop, a lift's
start) up to its polynomial order, so the retargeted path does not cut corners, while the
millimetres of jitter a mocap system adds average out. At the ends the polynomial fitted to the
first (last) window gives the first (last) half window, so the ends are neither padded nor
shifted. Rotations are filtered as hemisphere-aligned quaternions and renormalized, which for
the degree or two of tracking noise is the same as filtering on the rotation manifold.
"""

from __future__ import annotations

import numpy as np

from apprentice.errors import ApprenticeError
from apprentice.retarget.resample import quat_continuous


def savgol_matrix(window: int, order: int) -> np.ndarray:
    """(window, window) H: row j holds the weights that give the fitted polynomial's value at
    offset j - window // 2 from the window's samples."""
    half = window // 2
    x = np.arange(-half, half + 1, dtype=np.float64)
    vander = x[:, None] ** np.arange(order + 1)  # window,order+1
    return np.asarray(vander @ np.linalg.pinv(vander))


def check_filter(window: int, order: int) -> None:
    """Refuse a window and order that do not make a smoothing filter (with the flag names)."""
    if window in (0, 1):
        return
    if window < 0 or window % 2 == 0:
        raise ApprenticeError(f"--smooth-window must be odd (or 0 for no smoothing), got {window}")
    if not 0 <= order < window - 1:
        raise ApprenticeError(
            f"--smooth-order must be in [0, {window - 2}] for --smooth-window {window}, got {order}"
        )


def savgol(x: np.ndarray, window: int, order: int) -> np.ndarray:
    """`x` (T, D) smoothed along T by a Savitzky-Golay filter of odd `window` and `order`; a
    window of 0 or 1 returns it unchanged, and a track shorter than the window is fitted with
    the largest odd window it holds (or left as it is, when that is no longer than the order)."""
    t = x.shape[0]
    window = min(window, t if t % 2 else t - 1)
    if window <= 1 or window <= order + 1:
        return np.array(x, dtype=np.float64)
    h = savgol_matrix(window, order)
    half = window // 2
    out = np.empty_like(x, dtype=np.float64)
    # Interior: the window's centre row, as a correlation over every full window.
    windows = np.lib.stride_tricks.sliding_window_view(x, window, axis=0)  # T-window+1,D,window
    out[half : t - half] = np.einsum("ndw,w->nd", windows, h[half])
    # Ends: the first and last windows' polynomials evaluated at their outer half.
    out[:half] = h[:half] @ x[:window]
    out[t - half :] = h[half + 1 :] @ x[t - window :]
    return out


def smooth_poses(
    pos: np.ndarray, quat: np.ndarray, window: int, order: int
) -> tuple[np.ndarray, np.ndarray]:
    """pos (T, 3) and quat (T, 4) smoothed (see the module docstring)."""
    q = savgol(quat_continuous(quat), window, order)  # T,4
    return savgol(pos, window, order), q / np.linalg.norm(q, axis=1, keepdims=True)
