"""LeRobot's feature stats (meta/stats.json and the episodes table's stats/ columns): min, max,
mean, std, count and quantiles q01 ... q99, per episode and aggregated over the dataset as
LeRobot computes them.

Shapes: `T` steps of one episode, `D` values of a feature per step.
"""

from __future__ import annotations

import numpy as np

_QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}


def episode_stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """LeRobot's stats of one episode's (T, D) or (T,) values over T: min, max, mean, std,
    quantiles (D,) (or (1,)), count (1,)."""
    x = values.reshape(len(values), -1).astype(np.float64)  # T, D
    out = {"min": x.min(0), "max": x.max(0), "mean": x.mean(0), "std": x.std(0)}
    out["count"] = np.array([len(x)])
    out.update(zip(_QUANTILES, np.quantile(x, list(_QUANTILES.values()), axis=0), strict=True))
    return out


def image_stats(frames: np.ndarray) -> dict[str, np.ndarray]:
    """LeRobot's stats of one episode's frames (T, H, W, 3) uint8 per channel, in [0, 1], each
    (3, 1, 1); from 256-bin histograms, so quantiles are exact and cost one pass."""
    hist = np.stack(
        [np.bincount(frames[..., c].ravel(), minlength=256) for c in range(3)]
    )  # 3, 256
    level = np.arange(256) / 255.0
    n = hist.sum(1)
    mean = hist @ level / n
    cdf = np.cumsum(hist, 1)
    out = {
        "min": level[np.argmax(hist > 0, 1)],
        "max": level[255 - np.argmax(hist[:, ::-1] > 0, 1)],
        "mean": mean,
        "std": np.sqrt(np.maximum(hist @ level**2 / n - mean**2, 0.0)),
    }
    for name, q in _QUANTILES.items():
        out[name] = level[np.argmax(cdf >= q * n[:, None], 1)]
    out = {k: v.reshape(3, 1, 1) for k, v in out.items()}
    out["count"] = np.array([len(frames)])
    return out


def aggregate_stats(per_episode: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Dataset stats from episode stats as LeRobot aggregates them: exact min, max, mean, std;
    quantiles averaged weighted by count."""
    counts = np.array([s["count"][0] for s in per_episode], dtype=np.float64)
    w = (counts / counts.sum()).reshape(-1, *[1] * per_episode[0]["mean"].ndim)
    stack = {k: np.stack([s[k] for s in per_episode]) for k in per_episode[0] if k != "count"}
    mean = (w * stack["mean"]).sum(0)
    var = (w * (stack["std"] ** 2 + (stack["mean"] - mean) ** 2)).sum(0)
    out = {
        "min": stack["min"].min(0),
        "max": stack["max"].max(0),
        "mean": mean,
        "std": np.sqrt(var),
    }
    out["count"] = np.array([int(counts.sum())])
    out.update({q: (w * stack[q]).sum(0) for q in _QUANTILES})
    return out
