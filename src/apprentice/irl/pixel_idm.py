"""The inverse-dynamics model on camera frames behind `apprentice label-actions --from-video`.

VPT (Baker et al. 2022, "Video PreTraining", Sec. 2) labels unlabelled video with an IDM
trained on a little data where the actions are known; here that data is the agent's own
interaction with the task, rendered with the camera the videos were recorded with
(`explore_frames`, the exploration of `apprentice.irl.idm`), plus optionally a few labelled
demos. Like VPT's, the model is non-causal: it sees the frames around a step and predicts
the action taken in it:

    frames t-P .. t+1+Q (uint8) -> [frames, differences of consecutive frames] (C channels)
      -> the policies' 3-layer conv trunk (`ConvTrunk`, stride 4) -> conv stride 2
      -> mean over the image -> MLP -> tanh -> a_t in [-1, 1]

Early fusion (frames stacked on channels) lets the first layer see the motion directly; the
differences make it explicit, since a step moves the gripper by about a pixel at 84x84.
The past frames (P = `past_frames`) show the motion already under way: a delta-pose
controller's servo carries velocity across steps, so frames t and t+1 alone leave part of
the action ambiguous; the future ones (Q = `future_frames`) show what a command starts late
(the fingers closing). The mean over the image pools local motion detectors wherever the
gripper is, whatever the frame size. On lift at 32x32 (3,000 exploration steps, 1,000
steps of 64) it labelled as well as flattening the maps (MAE 0.052 vs 0.055, mean of two
seeds) with 125k weights instead of 372k (2.1M at 84x84); with flattened maps, the window
(P, Q) = (1, 1) beat (0, 0) and (1, 0) (MAE 0.058 vs 0.070 and 0.062).

Shape legend: B batch, P past and Q future frames, F = P + 2 + Q frames per window, H, W
pixels, M frames stored, N transitions, A action.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import torch
from torch import Tensor, nn

from apprentice.envs.base import Task
from apprentice.errors import ApprenticeError
from apprentice.irl.idm import exploration_steps
from apprentice.policies.checkpoint import atomic_torch_save
from apprentice.policies.encoders import ConvTrunk, norm_layer

# ---- config and data ----------------------------------------------------------------------


@dataclass(frozen=True)
class PixelIDMConfig:
    """The inverse-dynamics network on frames and its training."""

    past_frames: int = 1
    """Frames before t the model also sees (the motion already under way)."""
    future_frames: int = 1
    """Frames after t + 1 the model also sees (where a command shows late: the fingers)."""
    hidden_dims: tuple[int, ...] = (256, 256)
    """Widths of the MLP's hidden layers after the conv trunk."""
    steps: int = 3000
    """Gradient steps per fit."""
    batch_size: int = 64
    """Transitions per gradient step."""
    lr: float = 1e-3
    """Adam learning rate."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_dims", tuple(int(h) for h in self.hidden_dims))
        if min(self.past_frames, self.future_frames) < 0 or min(self.steps, self.batch_size) < 1:
            raise ApprenticeError(
                "pixel IDM: past_frames and future_frames must be >= 0, steps and batch_size >= 1"
            )

    @property
    def window(self) -> int:
        """F: frames the model sees per step."""
        return self.past_frames + 2 + self.future_frames


@dataclass(frozen=True)
class FrameTransitions:
    """Whole episodes of frames one after another, and the steps between them.

    frames (M, H, W, 3) uint8; transition i goes from frames[at[i]] to frames[at[i] + 1]
    with actions[i] (N, A; A = 0 for unlabelled video); first[i] and last[i] are the first
    and last frames of its episode, where a window stops.
    """

    frames: np.ndarray
    at: np.ndarray
    first: np.ndarray
    last: np.ndarray
    actions: np.ndarray

    def __len__(self) -> int:
        return int(self.at.shape[0])

    @classmethod
    def from_episodes(cls, episodes: Iterable[tuple[np.ndarray, np.ndarray]]) -> FrameTransitions:
        """(frames (T + 1, H, W, 3), actions (T, A)) per episode -> one FrameTransitions."""
        frames, at, first, last, actions = [], [], [], [], []
        start = 0
        for f, a in episodes:
            t = len(f) - 1
            if t < 1 or len(a) != t:
                raise ApprenticeError(
                    f"pixel IDM: an episode of {len(f)} frames needs {max(t, 1)} actions, "
                    f"has {len(a)}"
                )
            frames.append(f)
            at.append(start + np.arange(t))
            first.append(np.full(t, start))
            last.append(np.full(t, start + t))
            actions.append(a)
            start += len(f)
        if not frames:
            raise ApprenticeError("pixel IDM: no episodes of frames")
        return cls(
            np.concatenate(frames),
            np.concatenate(at).astype(np.int64),
            np.concatenate(first).astype(np.int64),
            np.concatenate(last).astype(np.int64),
            np.concatenate(actions).astype(np.float32),
        )

    def __add__(self, other: FrameTransitions) -> FrameTransitions:
        m = len(self.frames)
        return FrameTransitions(
            np.concatenate([self.frames, other.frames]),
            np.concatenate([self.at, other.at + m]),
            np.concatenate([self.first, other.first + m]),
            np.concatenate([self.last, other.last + m]),
            np.concatenate([self.actions, other.actions]),
        )

    def windows(self, idx: np.ndarray, past: int, future: int) -> np.ndarray:
        """Frames t-P .. t+1+future of transitions `idx` (B,) -> (B, F, H, W, 3); a window
        reaching past its episode's first or last frame repeats that frame."""
        offsets = np.arange(-past, 2 + future)  # F
        which = np.clip(self.at[idx, None] + offsets, self.first[idx, None], self.last[idx, None])
        return self.frames[which]  # B,F,H,W,3


# ---- the model ----------------------------------------------------------------------------


class FrameModel(nn.Module):
    """A network over one camera's frames whose checkpoint rebuilds it: the camera, the frame
    shape (H, W, C), the action size, the config and the task it was trained on, with the
    weights. A subclass names its format, its config class and what errors call it."""

    FORMAT: ClassVar[str]
    CONFIG: ClassVar[type[Any]]
    NAME: ClassVar[str]
    """What error messages call the model."""

    def __init__(
        self, camera: str, image_shape: tuple[int, ...], action_dim: int, cfg: Any
    ) -> None:
        super().__init__()
        h, w, c = (int(s) for s in image_shape)
        self.camera, self.image_shape, self.action_dim, self.cfg = (
            camera,
            (h, w, c),
            action_dim,
            cfg,
        )

    @classmethod
    def foreign(cls, path: str | Path, saved: object) -> str:
        """The error message for a file at `path` that holds `saved`, not this model."""
        raise NotImplementedError

    def save(self, path: Path, env_args: dict[str, Any]) -> None:
        """Self-describing: camera, frame shape, action size, config and the task."""
        atomic_torch_save(
            {
                "format": self.FORMAT,
                "camera": self.camera,
                "image_shape": list(self.image_shape),
                "action_dim": self.action_dim,
                "config": json.dumps(asdict(self.cfg)),
                "env_args": json.dumps(env_args),
                "state_dict": {k: v.cpu() for k, v in self.state_dict().items()},
            },
            path,
        )

    @classmethod
    def load(cls, path: str | Path) -> tuple[Self, dict[str, Any]]:
        """The model saved at `path` and the env_args of the task it was trained on."""
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for foreign or truncated files
            raise ApprenticeError(
                f"{cls.NAME} {path} cannot be read ({type(exc).__name__})"
            ) from None
        if not isinstance(d, dict) or d.get("format") != cls.FORMAT:
            raise ApprenticeError(cls.foreign(path, d))
        try:
            cfg = cls.CONFIG(**json.loads(d["config"]))
            model = cls(d["camera"], tuple(d["image_shape"]), int(d["action_dim"]), cfg)
            model.load_state_dict(d["state_dict"])
        except (KeyError, TypeError, RuntimeError) as exc:  # another version's layout
            reason = str(exc).strip().splitlines()[-1].strip()
            raise ApprenticeError(
                f"{cls.NAME} {path} does not fit this version ({reason})"
            ) from None
        return model.eval(), json.loads(d["env_args"])


class PixelIDM(FrameModel):
    """Frames t-P .. t+1+Q -> a_t in [-1, 1] (see the module docstring)."""

    FORMAT = "apprentice-pixel-idm"
    CONFIG = PixelIDMConfig
    NAME = "IDM"
    cfg: PixelIDMConfig

    def __init__(
        self, camera: str, image_shape: tuple[int, ...], action_dim: int, cfg: PixelIDMConfig
    ) -> None:
        super().__init__(camera, image_shape, action_dim, cfg)
        h, w, c = self.image_shape
        n = cfg.window
        channels = (2 * n - 1) * c  # n frames and n - 1 differences
        self.trunk = nn.Sequential(
            ConvTrunk(channels, "group"),  # B,32,H/4,W/4
            nn.Conv2d(32, 64, 3, stride=2, padding=1),  # B,64,H/8,W/8
            norm_layer("group", 64),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),  # B,64,1,1
            nn.Flatten(),  # B,64
        )
        with torch.no_grad():
            width = self.trunk(torch.zeros(1, channels, h, w)).shape[1]
        layers: list[nn.Module] = []
        for hidden in cfg.hidden_dims:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, action_dim))
        self.head = nn.Sequential(*layers)

    def forward(self, windows: Tensor) -> Tensor:
        """windows (B, F, H, W, C) uint8 -> actions (B, A) in [-1, 1]."""
        b, f, h, w, c = windows.shape
        x = windows.permute(0, 1, 4, 2, 3).float().div(255.0)  # B,F,C,H,W in [0, 1]
        diff = x[:, 1:] - x[:, :-1]  # B,F-1,C,H,W
        x = torch.cat([x - 0.5, diff], dim=1).reshape(b, (2 * f - 1) * c, h, w)
        return self.head(self.trunk(x)).tanh()  # B,A

    def label(self, data: FrameTransitions, batch_size: int = 256) -> np.ndarray:
        """The action of every transition of `data` (N, A) float32."""
        self.eval()
        device = next(self.parameters()).device
        out = []
        with torch.no_grad():
            for start in range(0, len(data), batch_size):
                idx = np.arange(start, min(start + batch_size, len(data)))
                x = data.windows(idx, self.cfg.past_frames, self.cfg.future_frames)
                out.append(self(torch.as_tensor(x, device=device)).cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    @classmethod
    def foreign(cls, path: str | Path, saved: object) -> str:
        """The error message for a file at `path` that holds `saved`, not this model."""
        what = "a state IDM (label-actions --demos)" if isinstance(saved, dict) else "no IDM"
        return f"{path} is {what}, not an IDM on camera frames"


def fit_batches(
    params: Iterable[nn.Parameter],
    batch_loss: Callable[[np.ndarray], Tensor],
    *,
    n: int,
    steps: int,
    batch_size: int,
    lr: float,
    rng: np.random.Generator,
) -> float:
    """Adam on `params` for `steps` steps, each on the loss `batch_loss(idx)` of `batch_size`
    indices idx (B,) drawn from 0 .. n - 1 with replacement by `rng`; returns the mean loss of
    the last 10% of the steps."""
    opt = torch.optim.Adam(params, lr=lr)
    tail: list[float] = []
    for step in range(steps):
        loss = batch_loss(rng.integers(0, n, size=batch_size))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step >= steps * 0.9:
            tail.append(float(loss.detach()))
    return float(np.mean(tail)) if tail else float("nan")


def fit_pixel_idm(
    data: FrameTransitions,
    camera: str,
    cfg: PixelIDMConfig,
    *,
    seed: int,
    device: str = "cpu",
) -> tuple[PixelIDM, float]:
    """Train a PixelIDM on `data` by L2 regression; returns it (on the CPU) and the mean loss
    of the last 10% of the steps."""
    if len(data) == 0:
        raise ApprenticeError("pixel IDM: no transitions to learn from")
    torch.manual_seed(seed)
    model = PixelIDM(camera, data.frames.shape[1:], data.actions.shape[1], cfg).to(device)
    actions = torch.as_tensor(data.actions, device=device)  # N,A

    def batch_loss(idx: np.ndarray) -> Tensor:
        x = data.windows(idx, cfg.past_frames, cfg.future_frames)  # B,F,H,W,C
        predicted = model(torch.as_tensor(x, device=device))  # B,A
        return (predicted - actions[torch.as_tensor(idx, device=device)]).pow(2).mean()

    model.train()
    loss = fit_batches(
        model.parameters(),
        batch_loss,
        n=len(data),
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        rng=np.random.default_rng([seed, 12]),
    )
    return model.cpu().eval(), loss


# ---- exploration --------------------------------------------------------------------------


def explore_frames(
    task: Task,
    steps: int,
    *,
    camera: str,
    size: int,
    mode: str,
    noise: float,
    seed: int,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> FrameTransitions:
    """`steps` steps of the task's exploration (`apprentice.irl.idm.exploration_steps`) as
    frames of `camera` at `size` x `size`, rendered after each reset and step, and the
    actions executed between them; `transform` maps each episode's frames (T + 1, H, W, 3)
    (e.g. through a video codec)."""
    key = f"_{camera}_frame"

    def observe(obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {**obs, key: task.render_frame(camera, size)}

    episodes: list[tuple[np.ndarray, np.ndarray]] = []
    frames: list[np.ndarray] = []
    actions: list[np.ndarray] = []

    def finish() -> None:
        stacked = np.stack(frames)  # T+1,H,W,3
        episodes.append((stacked if transform is None else transform(stacked), np.stack(actions)))

    for step in exploration_steps(task, steps, mode=mode, noise=noise, seed=seed, observe=observe):
        if step.first and actions:
            finish()
            frames, actions = [], []
        if step.first:
            frames.append(step.obs[key])
        frames.append(step.next_obs[key])
        actions.append(step.action)
    if actions:
        finish()
    return FrameTransitions.from_episodes(episodes)
