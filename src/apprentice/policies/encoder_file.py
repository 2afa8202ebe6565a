"""Pretrained camera encoder files: what `apprentice pretrain-encoder` writes and a policy's
`camera.encoder_checkpoint` starts from.

One file holds one camera's `VisualCore` weights, the `CameraConfig` it was built with, the
camera it was trained on (image key and (H, W, C) shape), the pretraining's target (the frame,
or a low-dim observation) and its loss at its start and end. It is a `torch.save`d dict of
tensors and plain values, read back with `weights_only=True`. A policy copies the weights into
its own encoders, so its checkpoints never need the file again.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from apprentice.errors import ApprenticeError
from apprentice.files import atomic_write
from apprentice.policies.encoders import CameraConfig, VisualCore

FORMAT = "apprentice-encoder"
FORMAT_VERSION = 1
ARCHITECTURE_FIELDS = ("encoder", "feature_dim", "num_keypoints", "encoder_norm")
"""The camera settings that shape an encoder's weights: a file loads only into a policy whose
camera has the same. Augmentation and freezing change training alone, not the weights."""


@dataclass(frozen=True)
class EncoderFile:
    """A pretrained camera encoder (see the module docstring)."""

    camera: CameraConfig
    """The camera settings the encoder was built with."""
    image_key: str
    """The camera (observation key) it was pretrained on."""
    image_shape: tuple[int, int, int]
    """(H, W, C) of that camera's frames."""
    state_dict: dict[str, Tensor]
    """The `VisualCore` weights."""
    loss_start: float
    """Pretraining loss on a fixed sample of frames before pretraining: the reconstruction's,
    or the standardized target's MSE."""
    loss_end: float
    """The same after pretraining."""
    steps: int
    """Pretraining steps taken."""
    target_key: str | None = None
    """The low-dim observation the encoder learnt to predict; None: the frame (autoencoder)."""

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the file atomically (a temporary name beside `path`, then a rename)."""
        payload: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            **asdict(self),
            "camera": asdict(self.camera),
            "image_shape": list(self.image_shape),
            "state_dict": {k: v.detach().to("cpu", copy=True) for k, v in self.state_dict.items()},
        }
        with atomic_write(path) as tmp:
            torch.save(payload, tmp)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> EncoderFile:
        """Read a file written by `save`; anything else is one ApprenticeError naming it."""
        p = Path(path)
        if not p.is_file():
            raise ApprenticeError(
                f"encoder_checkpoint {p} does not exist; write one with "
                "`apprentice pretrain-encoder`"
            )
        try:
            d = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for foreign or truncated files
            raise ApprenticeError(
                f"encoder_checkpoint {p} is not a readable encoder file ({type(exc).__name__}); "
                "write one with `apprentice pretrain-encoder`"
            ) from None
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ApprenticeError(
                f"encoder_checkpoint {p} is not an encoder file written by "
                "`apprentice pretrain-encoder` (a policy checkpoint is not one)"
            )
        shape = tuple(int(s) for s in d["image_shape"])
        return cls(
            camera=CameraConfig(**d["camera"]),
            image_key=str(d["image_key"]),
            image_shape=(shape[0], shape[1], shape[2]),
            state_dict=dict(d["state_dict"]),
            loss_start=float(d["loss_start"]),
            loss_end=float(d["loss_end"]),
            steps=int(d["steps"]),
            target_key=d.get("target_key"),
        )

    def load_into(self, core: VisualCore, camera: CameraConfig, *, what: str) -> None:
        """Copy the weights into `core`, the encoder `what` (a policy's camera) built with
        `camera`; refuse, naming the difference, one of another architecture or image size."""
        differ = [
            f"{name}={getattr(self.camera, name)!r} (the policy has {getattr(camera, name)!r})"
            for name in ARCHITECTURE_FIELDS
            if getattr(self.camera, name) != getattr(camera, name)
        ]
        if core.image_shape != self.image_shape:
            differ.append(f"images {self.image_shape} (the policy's {what} are {core.image_shape})")
        if differ:
            raise ApprenticeError(
                f"encoder_checkpoint for {what} was pretrained with {'; '.join(differ)}: "
                "pretrain it again with these camera settings, or set them to the file's"
            )
        core.load_state_dict(self.state_dict)
