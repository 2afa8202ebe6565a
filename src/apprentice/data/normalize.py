"""Normalization statistics, fit once from a dataset and saved in checkpoints (numpy only)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from apprentice.data.dataset import DemoDataset
from apprentice.data.spec import ObsActSpec
from apprentice.errors import ApprenticeError

MIN_STD = 1e-2
"""Floor on std. Dimensions that barely move in the demos (a cube's roll and pitch, the w of
a top-down gripper's quaternion) would otherwise be divided by ~1e-4, so that simulation
noise of the same size at rollout time becomes an input of order 1-100 the policy never
saw in training. 1e-2 is small against the spread of anything that does move (cm, rad)."""


def floored_mean_std(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) over axis 0 in float64 (sums don't drift), std floored at MIN_STD."""
    x64 = x.astype(np.float64)
    return x64.mean(axis=0), np.maximum(x64.std(axis=0), MIN_STD)


@dataclass(frozen=True)
class _Stats:
    mean: np.ndarray  # (D,) float32
    std: np.ndarray  # (D,) float32, >= MIN_STD

    @classmethod
    def fit(cls, x: np.ndarray) -> _Stats:
        mean, std = floored_mean_std(x.reshape(x.shape[0], -1))  # N,D -> D, D
        return cls(mean.astype(np.float32), std.astype(np.float32))


class Normalizer:
    """Per-key mean/std for low-dim observations and for actions.

    Images are not normalized here: the observation encoder owns their scaling.
    """

    def __init__(self, obs: dict[str, _Stats], actions: _Stats) -> None:
        self._obs = obs
        self._actions = actions

    @classmethod
    def fit(cls, dataset: DemoDataset) -> Normalizer:
        low_dim = dataset.spec.low_dim_keys
        return cls({k: _Stats.fit(dataset.obs[k]) for k in low_dim}, _Stats.fit(dataset.actions))

    @classmethod
    def identity(cls, spec: ObsActSpec) -> Normalizer:
        """Mean 0 and std 1 everywhere: for untrained policies (benchmarks, tests)."""

        def unit(dim: int) -> _Stats:
            return _Stats(np.zeros(dim, np.float32), np.ones(dim, np.float32))

        return cls(
            {k: unit(int(np.prod(spec.obs_shapes[k]))) for k in spec.low_dim_keys},
            unit(spec.action_dim),
        )

    @property
    def obs_keys(self) -> list[str]:
        return sorted(self._obs)

    def _stats(self, key: str) -> _Stats:
        if key not in self._obs:
            raise ApprenticeError(
                f"no normalization stats for observation key {key!r} "
                f"(have: {', '.join(self.obs_keys) or 'none'})"
            )
        return self._obs[key]

    def obs_stats(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        s = self._stats(key)
        return s.mean, s.std

    @property
    def action_stats(self) -> tuple[np.ndarray, np.ndarray]:
        return self._actions.mean, self._actions.std

    def normalize_obs(self, key: str, x: np.ndarray) -> np.ndarray:
        """x: (..., D) -> (x - mean) / std, float32."""
        s = self._stats(key)
        return ((x - s.mean) / s.std).astype(np.float32)

    def unnormalize_obs(self, key: str, x: np.ndarray) -> np.ndarray:
        s = self._stats(key)
        return (x * s.std + s.mean).astype(np.float32)

    def normalize_action(self, a: np.ndarray) -> np.ndarray:
        """a: (..., A) -> (a - mean) / std, float32."""
        return ((a - self._actions.mean) / self._actions.std).astype(np.float32)

    def unnormalize_action(self, a: np.ndarray) -> np.ndarray:
        return (a * self._actions.std + self._actions.mean).astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        """JSON-able: {"obs": {key: {"mean": [...], "std": [...]}}, "actions": {...}}."""
        return {
            "obs": {
                k: {"mean": s.mean.tolist(), "std": s.std.tolist()} for k, s in self._obs.items()
            },
            "actions": {"mean": self._actions.mean.tolist(), "std": self._actions.std.tolist()},
        }

    @classmethod
    def from_state_dict(cls, d: dict[str, Any]) -> Normalizer:
        def stats(entry: dict[str, Any], what: str) -> _Stats:
            try:
                mean = np.asarray(entry["mean"], dtype=np.float32)
                std = np.asarray(entry["std"], dtype=np.float32)
            except (KeyError, TypeError, ValueError) as e:
                raise ApprenticeError(f"normalizer state {what}: malformed ({e})") from None
            if mean.shape != std.shape:
                raise ApprenticeError(
                    f"normalizer state {what}: mean {mean.shape} and std {std.shape} differ"
                )
            return _Stats(mean, std)

        if "obs" not in d or "actions" not in d:
            raise ApprenticeError("normalizer state needs 'obs' and 'actions' entries")
        return cls(
            {k: stats(v, f"obs/{k}") for k, v in d["obs"].items()}, stats(d["actions"], "actions")
        )
