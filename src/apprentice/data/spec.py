"""Observation and action specs: what a policy consumes and produces."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from apprentice.errors import ApprenticeError


@dataclass(frozen=True)
class ObsActSpec:
    """obs_shapes: key -> per-step shape ((D,) low-dim, (H, W, 3) uint8 image); action_dim: A."""

    obs_shapes: dict[str, tuple[int, ...]]
    action_dim: int

    @property
    def low_dim_keys(self) -> list[str]:
        return [k for k, s in self.obs_shapes.items() if len(s) == 1]

    @property
    def image_keys(self) -> list[str]:
        return [k for k, s in self.obs_shapes.items() if len(s) == 3]

    def to_dict(self) -> dict[str, Any]:
        return {
            "obs_shapes": {k: list(v) for k, v in self.obs_shapes.items()},
            "action_dim": self.action_dim,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ObsActSpec:
        return cls({k: tuple(v) for k, v in d["obs_shapes"].items()}, int(d["action_dim"]))

    def check_compatible(self, other: ObsActSpec, *, what: str, against: str) -> None:
        """Raise if `other` (e.g. a task's spec) lacks a key or shape this spec needs."""
        for key, shape in self.obs_shapes.items():
            if key not in other.obs_shapes:
                raise ApprenticeError(
                    f"{what} needs observation key {key!r}, which {against} does not have "
                    f"(it has: {', '.join(sorted(other.obs_shapes))})"
                )
            if tuple(other.obs_shapes[key]) != tuple(shape):
                raise ApprenticeError(
                    f"{what} expects {key!r} of shape {tuple(shape)}, "
                    f"{against} gives {tuple(other.obs_shapes[key])}"
                )
        if other.action_dim != self.action_dim:
            raise ApprenticeError(
                f"{what} acts in {self.action_dim} dimensions, {against} in {other.action_dim}"
            )
