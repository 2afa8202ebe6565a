"""Camera recordings to label (`apprentice label-actions --from-video`), one demo each.

Three forms come in: video files (an .mp4, or a folder of them, one demo per file, in the
order of their names), a LeRobot dataset folder, or an HDF5 demo file with camera images
(robomimic or Isaac Lab layout; states, low-dim observations and actions may be there or
not). The folder and files are read through `apprentice.data.source.open_source`; video
files through imageio's ffmpeg, a core dependency.

A recording of T + 1 frames holds T steps: frames[t] -> frames[t + 1]. A demo file's
obs/<camera>_image gives T frames, and its next_obs/<camera>_image the last one where it
is stored. Where the input has true actions they come along, only to measure the labels.

Lossy video changes a frame by more than a step of the robot does (h264 at imageio's
default quality: a mean 3 levels of 255 per pixel at 32x32, against 1.2 for a step), so
`VideoCodec` records how the videos were encoded and `through_codec` puts other frames
(the IDM's exploration) through the same encoder at the same bits per pixel.

Shape legend: T steps of one demo, H, W pixels, A action.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from apprentice.data.source import DemoSource, open_source
from apprentice.errors import ApprenticeError

VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm")
"""Files a folder of videos is read for (anything ffmpeg decodes; one demo each)."""

ENCODERS = {"h264": "libx264", "hevc": "libx265", "mpeg4": "mpeg4", "vp9": "libvpx-vp9",
            "av1": "libaom-av1"}  # fmt: skip
"""Decoder name (what a file says it holds) -> the ffmpeg encoder that writes it."""


@dataclass(frozen=True)
class VideoDemo:
    """One recording: frames (T + 1, H, W, 3) uint8, and what else the input knows."""

    name: str
    frames: np.ndarray
    actions: np.ndarray | None = None
    """True actions (T, A) where the input has them; only to measure the labels."""
    seed: int | None = None
    success: bool = True
    source: str = "video"


@dataclass(frozen=True)
class VideoCodec:
    """How video files were encoded (decoder name, pixel format, bits per pixel per frame,
    frame rate), and the encoder and pixel format that write it again here."""

    codec: str
    pix_fmt: str
    bits_per_pixel: float
    fps: float
    encoder: str = "libx264"
    encoder_pix_fmt: str = "yuv420p"

    def describe(self) -> str:
        again = f" (written with {self.encoder} {self.encoder_pix_fmt})"
        same = (ENCODERS.get(self.codec), self.pix_fmt) == (self.encoder, self.encoder_pix_fmt)
        return f"{self.codec} {self.pix_fmt}, {self.bits_per_pixel:.2f} bits/pixel" + (
            "" if same else again
        )


# ---- video files --------------------------------------------------------------------------


def _natural(path: Path) -> list[Any]:
    """demo_2 before demo_10."""
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", path.name)]


def read_video(path: Path) -> np.ndarray:
    """Every frame of the video at `path`, (F, H, W, 3) uint8."""
    import imageio.v2 as imageio

    try:
        reader = imageio.get_reader(str(path), format="FFMPEG")
        with reader:
            frames = [np.asarray(f, dtype=np.uint8) for f in reader.iter_data()]
    except (OSError, RuntimeError, ValueError) as e:
        reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise ApprenticeError(f"{path}: cannot decode this video ({reason})") from None
    if len(frames) < 2:
        raise ApprenticeError(f"{path}: holds {len(frames)} frame(s); a step needs two")
    return np.stack(frames)


def probe_video(path: Path) -> tuple[tuple[int, int, int], VideoCodec]:
    """(H, W, 3) and the encoding of the video at `path`, from its header."""
    import imageio.v2 as imageio

    try:
        reader: Any = imageio.get_reader(str(path), format="FFMPEG")
        with reader:
            meta = reader.get_meta_data()
    except (OSError, RuntimeError, ValueError) as e:
        reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise ApprenticeError(f"{path}: cannot open this video ({reason})") from None
    w, h = (int(s) for s in meta["size"])
    fps = float(meta.get("fps") or 20.0)
    duration = float(meta.get("duration") or 0.0)
    bits = 8 * path.stat().st_size / max(duration * fps, 1.0) / (w * h)
    pix_fmt = str(meta.get("pix_fmt", "yuv420p")).split("(")[0]
    return (h, w, 3), VideoCodec(str(meta.get("codec", "h264")), pix_fmt, bits, fps)


def _encode(path: Path, frames: np.ndarray, codec: VideoCodec, encoder: str, pix_fmt: str) -> None:
    import imageio.v2 as imageio

    h, w = frames.shape[1:3]
    bitrate = max(int(codec.bits_per_pixel * w * h * codec.fps), 1000)
    imageio.mimwrite(
        path,
        list(frames),
        fps=codec.fps,
        codec=encoder,
        pixelformat=pix_fmt,
        bitrate=bitrate,
        macro_block_size=1,
    )


def with_encoder(codec: VideoCodec) -> VideoCodec:
    """`codec` with the first encoder (and pixel format) this ffmpeg has that writes it:
    H.264 in RGB for RGB video, the codec's own, H.264, else H.264 in yuv420p."""
    rgb = codec.pix_fmt.startswith(("gbr", "rgb", "bgr"))
    tries = [
        ("libx264rgb" if rgb else "", codec.pix_fmt),
        (ENCODERS.get(codec.codec, ""), codec.pix_fmt),
        ("libx264", codec.pix_fmt),
        ("libx264", "yuv420p"),
    ]
    with tempfile.TemporaryDirectory(prefix="apprentice-codec-") as tmp:
        for encoder, pix_fmt in [t for t in tries if t[0]]:
            try:
                probe = np.zeros((2, 16, 16, 3), np.uint8)
                _encode(Path(tmp) / "probe.mp4", probe, codec, encoder, pix_fmt)
            except (OSError, RuntimeError, ValueError):
                continue
            return replace(codec, encoder=encoder, encoder_pix_fmt=pix_fmt)
    raise ApprenticeError(
        f"this ffmpeg (imageio-ffmpeg) cannot encode {codec.codec} or H.264 video, which "
        "exploration frames go through to look like the recordings"
    )


def through_codec(frames: np.ndarray, codec: VideoCodec) -> np.ndarray:
    """`frames` (F, H, W, 3) encoded as `codec` says and decoded again."""
    with tempfile.TemporaryDirectory(prefix="apprentice-codec-") as tmp:
        path = Path(tmp) / "episode.mp4"
        _encode(path, frames, codec, codec.encoder, codec.encoder_pix_fmt)
        out = read_video(path)
    # An encoder may hold back or repeat the last frame; the steps are the frames given.
    if len(out) < len(frames):
        out = np.concatenate([out, np.repeat(out[-1:], len(frames) - len(out), axis=0)])
    return out[: len(frames)]


# ---- the recordings, opened ---------------------------------------------------------------


class Videos:
    """Recordings to label, opened and checked: names, frame shape, the task they name (if
    any), masks, and the dimension of their true actions (0 where none). A context manager."""

    def __init__(self, path: str | os.PathLike[str], camera: str) -> None:
        self.path = Path(path)
        self.camera = camera
        self.key = f"{camera}_image"
        self.form = ""
        """video files, LeRobot dataset, or demo file."""
        self.frame_shape: tuple[int, ...] = ()
        """(H, W, 3) of every frame."""
        self.env_args: dict[str, Any] = {}
        self.masks: dict[str, list[str]] = {}
        self.action_dim = 0
        self.codec: VideoCodec | None = None
        """How the frames were encoded, where they come from video files."""
        self._source: DemoSource | None = None
        self._files: dict[str, Path] = {}
        if not self.path.exists():
            raise ApprenticeError(f"{self.path}: no such file or folder")
        if self.path.is_dir() and not (self.path / "meta" / "info.json").is_file():
            self._open_files(sorted(self._video_files(), key=_natural))
        elif self.path.suffix.lower() in VIDEO_SUFFIXES:
            self._open_files([self.path])
        else:
            self._open_source()

    def _video_files(self) -> list[Path]:
        files = [p for p in self.path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES]
        if not files:
            raise ApprenticeError(
                f"{self.path}: a folder with no videos ({', '.join(VIDEO_SUFFIXES)}) and no "
                "meta/info.json (a LeRobot dataset); give videos, one per demo"
            )
        return files

    def _open_files(self, files: list[Path]) -> None:
        self.form = "video files"
        self._files = {p.name: p for p in files}
        shapes = {}
        for p in files:
            shapes[p.name], codec = probe_video(p)
            self.codec = self.codec or with_encoder(codec)
        self.frame_shape = shapes[files[0].name]
        odd = next((n for n, s in shapes.items() if s != self.frame_shape), None)
        if odd is not None:
            raise ApprenticeError(
                f"{self._files[odd]}: frames are {_size(shapes[odd])}, "
                f"{files[0].name}'s are {_size(self.frame_shape)}; one camera records one size"
            )

    def _open_source(self) -> None:
        source = open_source(self.path)
        self._source = source
        self.form = "LeRobot dataset" if self.path.is_dir() else "demo file"
        if not source.image_keys:
            raise ApprenticeError(
                f"{self.path}: holds no camera images (observations: "
                f"{', '.join(source.obs_keys) or 'none'}); --from-video needs frames of a "
                "camera; a file with states is labelled with --demos"
            )
        if self.key not in source.image_keys:
            cams = ", ".join(k.removesuffix("_image") for k in source.image_keys)
            raise ApprenticeError(
                f"{self.path}: has no frames of camera {self.camera!r} (obs/{self.key}); its "
                f"cameras: {cams}; pass --camera"
            )
        if not source.demo_names:
            raise ApprenticeError(f"{self.path}: holds no demos")
        self.frame_shape = tuple(source.obs_shapes[self.key])
        self.env_args = source.env_args
        self.masks = source.masks
        self.action_dim = source.action_dim
        if self.path.is_dir():
            self.codec = self._lerobot_codec()

    def _lerobot_codec(self) -> VideoCodec | None:
        """The encoding of the camera's first video file in a LeRobot folder (None where it
        keeps images as PNG/JPEG cells)."""
        feature = f"observation.images.{self.camera}"
        videos = self.path / "videos"
        mine = sorted(p for p in videos.rglob("*.mp4") if feature in p.parts)
        return with_encoder(probe_video(mine[0])[1]) if mine else None

    @property
    def names(self) -> list[str]:
        """One per recording: file names, or the demo names of the file or folder."""
        return list(self._files) if self._source is None else self._source.demo_names

    def read(self, name: str) -> VideoDemo:
        """Recording `name`'s frames (and true actions, seed, success where known)."""
        if self._source is None:
            return VideoDemo(name, read_video(self._files[name]))
        ep = self._source.read(name, obs_keys=[self.key])
        frames = ep.obs[self.key]
        if self.key in ep.next_obs:
            frames = np.concatenate([frames, ep.next_obs[self.key][-1:]])
        if len(frames) < 2:
            raise ApprenticeError(f"{self.path}: {name} holds 1 frame; a step needs two")
        actions = ep.actions[: len(frames) - 1] if ep.actions.shape[1] else None
        return VideoDemo(name, frames, actions, ep.seed, ep.success, ep.source)

    def close(self) -> None:
        if self._source is not None:
            self._source.close()

    def __enter__(self) -> Videos:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _size(shape: tuple[int, ...]) -> str:
    return f"{shape[0]}x{shape[1]}"


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """(F, H, W, 3) uint8 -> (F, size, size, 3) uint8, antialiased bilinear."""
    import torch
    import torch.nn.functional as F

    x = torch.as_tensor(frames).permute(0, 3, 1, 2).float()  # F,3,H,W
    y = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return y.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
