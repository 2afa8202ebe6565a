"""Self-supervised pretraining of a camera encoder on a dataset's own frames: the deep spatial
autoencoder (Finn et al. 2016, "Deep Spatial Autoencoders for Visuomotor Learning").

The encoder is the policy's own `VisualCore` (trunk -> spatial-softmax keypoints -> linear
to Df features). A linear decoder reconstructs a downsampled grayscale frame (S x S) from the
encoder's *features*, the output a policy reads, rather than from the keypoints: then every
weight a frozen policy encoder keeps (the linear layer too) is trained, and the features a
policy caches are exactly what the decoder learnt to read. A linear map of a linear map of
the keypoints is still a linear map of them (of rank <= min(Df, 2K)), so, as in the paper,
the frame must be told by where the keypoints are: they learn to sit on the things that move
from frame to frame, such as the object and the gripper, which a policy fitting its demos
alone never had to find.

Loss per batch (Finn et al., eq. 1 and g_slow):
    ||decode(features(aug(I_t))) - gray_S(I_t)||^2 (per-pixel mean, over the three frames)
  + smoothness * ||(k_{t+1} - k_t) - (k_t - k_{t-1})||^2 (mean over keypoint coordinates)
for frames t-1, t, t+1 of one demo (clamped at its ends). The augmentation is the policy's
own (`CameraConfig.random_shift`, `color_jitter`), on the encoder's input only, the same draw
for the three frames of a row, so augmentation moves no keypoint between them; the target
is the unaugmented frame. Deterministic given `seed` on the CPU.

With `target_key` the encoder learns a different target: a low-dim observation recorded
with the demos, such as an object's pose in simulation, is regressed from the encoder's
features through a linear head (MSE of the target standardized per dimension). The policy
still reads only the camera; the pose is needed at pretraining time alone. Where the object
must be placed precisely (Push-T's T), the autoencoder's keypoints may not localize it well
enough: a linear probe says how well (benchmarks/results/recipes.md).

Shape legend: B rows (frame triplets), N = 3B frames, H, W, C pixels, K keypoints,
Df features, S decoded size, Dt target dims.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from apprentice.errors import ApprenticeError
from apprentice.overrides import parse_overrides
from apprentice.policies.encoder_file import EncoderFile
from apprentice.policies.encoders import CameraConfig, VisualCore

_EVAL_FRAMES = 256
"""Frames of the fixed sample the reconstruction loss is reported on (start and end)."""


@dataclass(frozen=True)
class PretrainEncoderConfig:
    """`apprentice pretrain-encoder`: a camera encoder trained as a deep spatial autoencoder
    on one camera of a dataset, written to a file that a policy starts from
    (`--policy-args encoder_checkpoint=FILE freeze_encoder=true`)."""

    dataset: str
    """The HDF5 dataset whose camera frames to pretrain on."""
    image_key: str
    """The camera (image observation key) to pretrain an encoder for, e.g. agentview_image."""
    out: str
    """The encoder file to write (replaced atomically)."""
    camera_args: tuple[str, ...] = ()
    """The encoder's camera settings as key=value (encoder=conv num_keypoints=32 ...): those
    of the policy that will use it."""
    steps: int = 2000
    """Gradient steps."""
    batch_size: int = 32
    """Frame triplets (t-1, t, t+1) per step."""
    lr: float = 1e-3
    """Adam learning rate."""
    decoder_size: int = 32
    """Side S of the grayscale frame the decoder reconstructs (S x S)."""
    smoothness: float = 0.1
    """Weight of the keypoints' second difference over consecutive frames; 0 = off."""
    target_key: str | None = None
    """Regress this low-dim observation of the demos (e.g. an object's pose recorded in
    simulation) from the features instead of rebuilding the frame; None = the autoencoder."""
    seed: int = 0
    """Seed of the weights, the frames drawn and the augmentation."""
    threads: int | None = None
    """torch CPU threads (>= 1); None = one per core."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "camera_args", tuple(self.camera_args))
        checks = [
            (self.steps >= 1, f"--steps must be >= 1, got {self.steps}"),
            (self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}"),
            (self.lr > 0, f"--lr must be > 0, got {self.lr}"),
            (self.decoder_size >= 1, f"--decoder-size must be >= 1, got {self.decoder_size}"),
            (self.smoothness >= 0, f"--smoothness must be >= 0, got {self.smoothness}"),
            (
                self.threads is None or self.threads >= 1,
                f"--threads must be >= 1, got {self.threads}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ApprenticeError(f"pretrain-encoder: {message}")
        self.camera()  # a bad camera setting fails here, before any work

    def camera(self) -> CameraConfig:
        """The encoder's camera settings from `camera_args`."""
        args = parse_overrides(list(self.camera_args), "--camera-args entry")
        used_by_policies = sorted({"encoder_checkpoint", "freeze_encoder"} & set(args))
        if used_by_policies:
            raise ApprenticeError(
                f"pretrain-encoder: --camera-args {', '.join(used_by_policies)} are a policy's "
                "settings (how it uses an encoder file), not an encoder's"
            )
        try:
            return CameraConfig(**args)
        except TypeError as exc:
            known = ", ".join(CameraConfig.__dataclass_fields__)
            raise ApprenticeError(
                f"pretrain-encoder: --camera-args: {exc}; known: {known}"
            ) from None


class TargetRegressor(nn.Module):
    """The encoder and a linear head: frames (N, H, W, C) uint8 -> (N, Dt), the standardized
    target observation."""

    def __init__(self, encoder: VisualCore, target_dim: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.linear.out_features, target_dim)

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.encoder(images))


class SpatialAutoencoder(nn.Module):
    """The encoder and its linear decoder: frames (N, H, W, C) uint8 -> (N, S*S) and the
    keypoints (N, K, 2) on the way."""

    def __init__(self, encoder: VisualCore, decoder_size: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = nn.Linear(encoder.linear.out_features, decoder_size * decoder_size)

    def forward(self, images: Tensor, group: int = 1) -> tuple[Tensor, Tensor]:
        keypoints = self.encoder.keypoints(images, group)  # (N, K, 2)
        features = self.encoder.linear(keypoints.flatten(1))  # (N, Df)
        return self.decoder(features), keypoints  # (N, S*S), (N, K, 2)


def grayscale_target(images: Tensor, size: int) -> Tensor:
    """Frames (N, H, W, C) uint8 -> (N, S*S) in [0, 1]: luma (RGB) or the channels' mean,
    area-averaged down to S x S."""
    x = images.permute(0, 3, 1, 2).float().div(255.0)  # (N, C, H, W)
    if x.shape[1] == 3:
        luma = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype).view(1, 3, 1, 1)
        gray = (x * luma).sum(1, keepdim=True)  # (N, 1, H, W)
    else:
        gray = x.mean(1, keepdim=True)
    return F.adaptive_avg_pool2d(gray, size).flatten(1)  # (N, S*S)


@dataclass
class PretrainResult:
    """What a pretraining run wrote and measured."""

    out: Path
    loss_start: float
    loss_end: float
    steps: int
    seconds: float


def load_frames(
    dataset: str, image_key: str, target_key: str | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """(frames (N, H, W, C) uint8, each frame's first and last index in its demo, (N,) each,
    the low-dim observation `target_key` (N, Dt) or None) of camera `image_key`; a dataset
    without the camera or the key is one ApprenticeError naming what it has."""
    from apprentice.data.dataset import DemoDataset
    from apprentice.data.source import open_source

    path = Path(dataset)
    if not path.exists():
        raise ApprenticeError(f"dataset {path} does not exist")
    with open_source(path) as source:
        images = source.image_keys
        if not images:
            raise ApprenticeError(
                f"dataset {path} has no camera images (its observations: "
                f"{', '.join(source.obs_keys)}); record cameras with `apprentice collect --camera`"
            )
        if image_key not in images:
            raise ApprenticeError(
                f"dataset {path} has no image key {image_key!r}; its image keys: "
                f"{', '.join(images)}"
            )
        if target_key is not None and target_key not in source.obs_keys:
            raise ApprenticeError(
                f"dataset {path} has no low-dim observation {target_key!r} to pretrain on; "
                f"its low-dim observations: {', '.join(source.obs_keys) or 'none'}"
            )
        keys = [image_key] + ([target_key] if target_key is not None else [])
        data = DemoDataset.from_source(source, obs_keys=keys, with_images=True)
    lengths = data.episode_lengths
    first = np.repeat(data.episode_starts, lengths)  # (N,)
    target = None
    if target_key is not None:
        target = np.asarray(data.obs[target_key], np.float32).reshape(len(first), -1)
    return data.obs[image_key], first, first + np.repeat(lengths, lengths) - 1, target


def pretrain_encoder(config: PretrainEncoderConfig) -> PretrainResult:
    """Train an encoder on `config.image_key`'s frames and write its `EncoderFile`."""
    t0 = time.perf_counter()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    camera = config.camera()
    frames, first, last, target = load_frames(config.dataset, config.image_key, config.target_key)
    image_shape = (int(frames.shape[1]), int(frames.shape[2]), int(frames.shape[3]))
    torch.manual_seed(config.seed)
    encoder = camera.build(image_shape)
    if camera.pretrained_path is not None:
        encoder.load_pretrained(camera.pretrained_path)
    rng = np.random.default_rng(config.seed)
    all_frames = torch.from_numpy(frames)  # (N_all, H, W, C) uint8
    sample = np.sort(rng.choice(len(frames), size=min(_EVAL_FRAMES, len(frames)), replace=False))
    if target is None:
        autoencoder = SpatialAutoencoder(encoder, config.decoder_size)
        loss_start = reconstruction_loss(autoencoder, all_frames[sample], config.decoder_size)
        _train_autoencoder(autoencoder, all_frames, first, last, config, rng)
        loss_end = reconstruction_loss(autoencoder, all_frames[sample], config.decoder_size)
    else:
        mean, std = target.mean(0), target.std(0) + 1e-6
        z = torch.from_numpy((target - mean) / std)  # (N_all, Dt), standardized
        regressor = TargetRegressor(encoder, z.shape[1])
        loss_start = target_loss(regressor, all_frames[sample], z[sample])
        _train_regressor(regressor, all_frames, z, config, rng)
        loss_end = target_loss(regressor, all_frames[sample], z[sample])
    EncoderFile(
        camera=camera,
        image_key=config.image_key,
        image_shape=image_shape,
        state_dict=encoder.state_dict(),
        loss_start=loss_start,
        loss_end=loss_end,
        steps=config.steps,
        target_key=config.target_key,
    ).save(config.out)
    return PretrainResult(
        Path(config.out), loss_start, loss_end, config.steps, time.perf_counter() - t0
    )


def _train_autoencoder(
    model: SpatialAutoencoder,
    all_frames: Tensor,
    first: np.ndarray,
    last: np.ndarray,
    config: PretrainEncoderConfig,
    rng: np.random.Generator,
) -> None:
    def loss() -> Tensor:
        t = rng.integers(0, len(all_frames), size=config.batch_size)  # (B,)
        rows = np.stack([np.maximum(t - 1, first[t]), t, np.minimum(t + 1, last[t])], 1)
        images = all_frames[rows.ravel()]  # (N = 3B, H, W, C): t-1, t, t+1 per row
        recon, keypoints = model(images, group=3)  # (N, S*S), (N, K, 2)
        value = F.mse_loss(recon, grayscale_target(images, config.decoder_size))
        if config.smoothness > 0:
            k = keypoints.view(-1, 3, *keypoints.shape[1:])  # (B, 3, K, 2)
            accel = k[:, 2] - 2 * k[:, 1] + k[:, 0]  # (B, K, 2)
            value = value + config.smoothness * accel.pow(2).mean()
        return value

    _fit(model, loss, config)


def _train_regressor(
    model: TargetRegressor,
    all_frames: Tensor,
    z: Tensor,
    config: PretrainEncoderConfig,
    rng: np.random.Generator,
) -> None:
    def loss() -> Tensor:
        t = torch.from_numpy(rng.integers(0, len(all_frames), size=config.batch_size))  # (B,)
        return F.mse_loss(model(all_frames[t]), z[t])

    _fit(model, loss, config)


def _fit(model: nn.Module, loss: Callable[[], Tensor], config: PretrainEncoderConfig) -> None:
    """`config.steps` Adam steps on `loss()`, which draws its own batch."""
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    model.train()
    for _ in range(config.steps):
        value = loss()
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()


@torch.no_grad()
def target_loss(model: nn.Module, frames: Tensor, z: Tensor) -> float:
    """MSE of the standardized target (N, Dt) predicted from frames (N, H, W, C) uint8."""
    model.eval()
    return float(F.mse_loss(model(frames), z))


@torch.no_grad()
def reconstruction_loss(model: SpatialAutoencoder, frames: Tensor, size: int) -> float:
    """Per-pixel MSE of the decoded frames (N, H, W, C) uint8, unaugmented (eval mode)."""
    model.eval()
    recon, _ = model(frames)  # (N, S*S)
    return float(F.mse_loss(recon, grayscale_target(frames, size)))
