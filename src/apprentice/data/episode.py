"""One demonstration, in memory, validated on construction."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from apprentice.errors import ApprenticeError


@dataclass(frozen=True)
class DatagenInfo:
    """What synthetic generation needs from a source demo (MimicGen's datagen_info).

    eef_pose: (T, 4, 4); target_pose: (T, 4, 4); gripper_action: (T, 1);
    object_poses: name -> (T, 4, 4); subtask_term_signals: name -> (T,) in {0, 1}.
    """

    eef_pose: np.ndarray
    target_pose: np.ndarray
    gripper_action: np.ndarray
    object_poses: dict[str, np.ndarray]
    subtask_term_signals: dict[str, np.ndarray]


@dataclass(frozen=True)
class Episode:
    """A demonstration of T steps.

    obs / next_obs: key -> (T, ...) (low-dim float32, images uint8 HWC);
    actions: (T, A) float32 in [-1, 1]; rewards, dones: (T,); states: (T, S);
    action_dict: name -> (T, ...) other representations of the same steps' actions
    (robomimic 0.4's `action_dict` group; e.g. "latent", the latent actions of
    `apprentice label-actions --from-video --latent`).
    """

    obs: dict[str, np.ndarray]
    next_obs: dict[str, np.ndarray]
    actions: np.ndarray
    rewards: np.ndarray
    dones: np.ndarray
    states: np.ndarray
    datagen_info: DatagenInfo | None = None
    seed: int | None = None
    success: bool = True
    source: str = "oracle"
    attrs: dict[str, Any] = field(default_factory=dict)
    """Extra per-demo attributes written to the demo group (e.g. the DAgger round)."""
    action_dict: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def num_samples(self) -> int:
        return int(self.actions.shape[0])

    def validate(self, where: str = "episode") -> None:
        """Raise ApprenticeError naming the field at fault."""
        if self.actions.ndim != 2:
            raise ApprenticeError(
                f"{where}/actions: expected (T, A), got shape {self.actions.shape}"
            )
        t = self.actions.shape[0]
        if t == 0:
            raise ApprenticeError(f"{where}/actions: empty episode")
        if not np.all(np.isfinite(self.actions)):
            bad = int(np.argwhere(~np.isfinite(self.actions))[0][0])
            raise ApprenticeError(f"{where}/actions: NaN or inf at step {bad}")
        arrays: dict[str, np.ndarray] = {
            "rewards": self.rewards,
            "dones": self.dones,
            "states": self.states,
        }
        arrays.update({f"obs/{k}": v for k, v in self.obs.items()})
        arrays.update({f"next_obs/{k}": v for k, v in self.next_obs.items()})
        arrays.update({f"action_dict/{k}": v for k, v in self.action_dict.items()})
        for name, arr in arrays.items():
            if arr.shape[0] != t:
                raise ApprenticeError(
                    f"{where}/{name}: has {arr.shape[0]} steps but actions has {t}"
                )
            if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
                bad = int(np.argwhere(~np.isfinite(arr))[0][0])
                raise ApprenticeError(f"{where}/{name}: NaN or inf at step {bad}")
