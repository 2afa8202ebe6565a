"""Camera frames with PyAV: choosing an encoder as LeRobot does, encoding a camera's episodes
into mp4 files (`VideoFiles`), decoding an mp4 or a data file's PNG/JPEG cells, and the cache of
decoded frames that reads slice.

Shapes: `F` frames of one mp4 (or rows of a dataset), `T` steps of one episode.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from apprentice.data.convert import ConversionNotes
from apprentice.data.lerobot.layout import VIDEO_PATH, next_file
from apprentice.errors import ApprenticeError

# ---- the decoded-frame cache --------------------------------------------------------------------


def frame_cache_dir(root: Path) -> Path:
    """Where the decoded frames of the dataset folder `root` are cached:
    $APPRENTICE_CACHE/lerobot/<hash> (default ~/.cache/apprentice), the hash of the folder's path
    and its info.json's mtime and size, so a rewritten dataset gets a fresh cache."""
    base = Path(os.environ.get("APPRENTICE_CACHE") or Path.home() / ".cache" / "apprentice")
    st = (root / "meta" / "info.json").stat()
    key = f"{root.resolve()}|{st.st_mtime_ns}|{st.st_size}"
    return base / "lerobot" / hashlib.sha256(key.encode()).hexdigest()[:16]


def cached_frames(
    cache_dir: Path,
    root: Path,
    feature: str,
    sources: list[str],
    shape: tuple[int, ...],
    fill: Callable[[np.ndarray], None],
) -> np.ndarray:
    """The frames `fill` writes into a (F, H, W, 3) uint8 array, memory-mapped from an .npy in
    `cache_dir` named from `feature`, `sources` (files of the folder `root`: their sizes and
    mtimes) and `shape`. It is written under a temporary name then renamed: a killed reader
    leaves no partial cache."""
    stamps = [(s, (root / s).stat()) for s in sources]
    stamp = "|".join(f"{s}:{st.st_size}:{st.st_mtime_ns}" for s, st in stamps)
    tag = hashlib.sha256(f"{stamp}|{shape}".encode()).hexdigest()[:16]
    cache = cache_dir / f"{feature}-{tag}.npy"
    if not cache.is_file():
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f".tmp-{os.getpid()}-{cache.name}")
        try:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
            fill(out)
            out.flush()
            del out
            os.replace(tmp, cache)
        finally:
            tmp.unlink(missing_ok=True)
    return np.load(cache, mmap_mode="r")


# ---- decoding -----------------------------------------------------------------------------------


def decode_video(path: Path, out: np.ndarray, fps: float) -> np.ndarray:
    """Decode the mp4 at `path` into `out` (F, H, W, 3) uint8: out[i] is the frame shown at i / fps
    seconds. Returns which of the F frames the video held, (F,) bool; frames past F are skipped.

    Raises ApprenticeError naming `path` when PyAV cannot open or decode it, or its frames are not
    H x W."""
    filled = np.zeros(len(out), dtype=bool)
    # One reformatter for all frames: frame.to_ndarray(format=...) builds a new swscale context
    # per frame, 30x slower at 84 x 84.
    to_rgb = VideoReformatter()
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for n, frame in enumerate(container.decode(stream)):
                i = n if frame.time is None else round(frame.time * fps)
                if not 0 <= i < len(out):
                    continue
                if (frame.height, frame.width) != out.shape[1:3]:
                    raise ApprenticeError(
                        f"{path}: frames are {frame.height}x{frame.width}, the feature says "
                        f"{out.shape[1]}x{out.shape[2]}"
                    )
                out[i] = to_rgb.reformat(frame, format="rgb24").to_ndarray()
                filled[i] = True
    except (av.FFmpegError, IndexError, ValueError) as e:
        raise ApprenticeError(
            f"{path}: cannot decode this video (corrupt, or a codec this PyAV lacks): {e}"
        ) from None
    return filled


def decode_images(cells: list[Any], rows: list[int], out: np.ndarray, where: str) -> None:
    """Decode the PNG/JPEG cells of an image feature ({"bytes": ...} each) into `out`
    (F, H, W, 3): out[row] is cells[rows[row]]. Raises ApprenticeError starting with `where`
    (the folder and feature) for a cell that is neither or not H x W."""
    to_rgb = VideoReformatter()
    for row, i in enumerate(rows):
        data = cells[i].get("bytes") if isinstance(cells[i], dict) else None
        codec = "png" if data is not None and data[:4] == b"\x89PNG" else "mjpeg"
        try:
            # A fresh decoder per image: a reused one may hand back the previous image.
            decoder: Any = av.CodecContext.create(codec, "r")
            (frame,) = decoder.decode(av.Packet(data))
        except (av.FFmpegError, TypeError, ValueError) as e:
            raise ApprenticeError(f"{where}: row {i} is no PNG or JPEG ({e})") from None
        if (frame.height, frame.width) != out.shape[1:3]:
            raise ApprenticeError(
                f"{where}: row {i} is {frame.height}x{frame.width}, not {out.shape[1:3]}"
            )
        out[row] = to_rgb.reformat(frame, format="rgb24").to_ndarray()


# ---- encoding -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Codec:
    """A PyAV encoder, its settings, and what LeRobot records of them in a feature's info."""

    encoder: str
    pix_fmt: str
    options: dict[str, str]
    info: dict[str, Any]


def _has_encoder(name: str) -> bool:
    try:
        av.Codec(name, "w")
    except (ValueError, av.FFmpegError):
        return False
    return True


def _codec(name: str, *, lossless: bool = False) -> Codec:
    """LeRobot's settings for `name` (GOP 2, crf 30, SVT-AV1 preset 12); qp 0 in RGB if
    lossless."""
    if lossless:
        return Codec(name, "rgb24", {"g": "2", "qp": "0"}, {"video.g": 2, "video.crf": 0})
    options = {"g": "2"}
    info: dict[str, Any] = {"video.g": 2}
    if name in ("libsvtav1", "libx264", "libx265", "libaom-av1"):
        options["crf"] = "30"
        info["video.crf"] = 30
    if name == "libsvtav1":
        options["preset"] = "12"
        info["video.preset"] = 12
    if name == "mpeg4":  # no crf: hold the quantizer low instead of its 200 kbit/s default
        options.update(qmin="1", qmax="4")
    return Codec(name, "yuv420p", options, info)


def pick_codec(vcodec: str | None, lossless: bool, notes: ConversionNotes) -> Codec:
    """The encoder asked for, else LeRobot's default (libsvtav1) or the first of libx264, mpeg4
    that this PyAV has."""
    if lossless:
        if vcodec not in (None, "libx264rgb"):
            raise ApprenticeError(
                f"video codec {vcodec!r}: lossless video is written with libx264rgb "
                "(H.264 in RGB at qp 0); leave vcodec out"
            )
        if not _has_encoder("libx264rgb"):
            raise ApprenticeError(
                "lossless video needs the libx264rgb encoder, which PyAV lacks here"
            )
        notes.note("video: lossless H.264 (libx264rgb, qp 0, RGB): frames read back bit-exact")
        return _codec("libx264rgb", lossless=True)
    if vcodec is not None and not _has_encoder(vcodec):
        raise ApprenticeError(
            f"video codec {vcodec!r}: PyAV has no such encoder here "
            "(try libsvtav1, libx264 or mpeg4)"
        )
    name = vcodec or next((c for c in ("libsvtav1", "libx264", "mpeg4") if _has_encoder(c)), None)
    if name is None:
        raise ApprenticeError("PyAV here has none of the encoders libsvtav1, libx264, mpeg4")
    if vcodec is None and name != "libsvtav1":
        notes.note(f"video: libsvtav1 (LeRobot's default) is missing from PyAV here; used {name}")
    codec = _codec(name)
    settings = ", ".join(f"{k} {v}" for k, v in codec.options.items())
    notes.note(f"video: {name} ({settings}), lossy; lossless=True keeps frames exact")
    return codec


class VideoFiles:
    """One camera's mp4 files: episodes encoded one after another into a file, a new file once it
    is past `file_mb` megabytes, `chunks_size` files to a chunk folder. Frame i of a file is shown
    at i / fps seconds."""

    def __init__(
        self,
        root: Path,
        feature: str,
        codec: Codec,
        fps: int,
        shape: tuple[int, ...],
        *,
        chunks_size: int,
        file_mb: float,
    ):
        self._root, self._feature, self._codec, self._fps = root, feature, codec, fps
        self._height, self._width = shape[0], shape[1]
        self._chunks_size, self._max_bytes = chunks_size, file_mb * 2**20
        self._chunk, self._file = 0, -1
        self._stack = ExitStack()
        self._container: Any = None
        self._stream: Any = None
        self._frames = 0  # frames in the current file
        self._bytes = 0  # encoded bytes in the current file

    @property
    def _path(self) -> Path:
        rel = VIDEO_PATH.format(
            video_key=self._feature, chunk_index=self._chunk, file_index=self._file
        )
        return self._root / rel

    def _open_next(self) -> None:
        self.close()
        self._chunk, self._file = next_file(self._chunk, self._file, self._chunks_size)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        codec = self._codec
        container = self._stack.enter_context(av.open(str(self._path), "w"))
        try:
            stream: Any = container.add_stream(codec.encoder, rate=self._fps, options=codec.options)
            stream.width, stream.height, stream.pix_fmt = self._width, self._height, codec.pix_fmt
            stream.time_base = Fraction(1, self._fps)
            stream.codec_context.open()
        except (av.FFmpegError, ValueError) as e:
            raise ApprenticeError(
                f"{self._feature}: {codec.encoder} cannot encode {self._height}x{self._width} "
                f"frames ({e}); try lossless=True or vcodec='libx264'"
            ) from None
        self._container, self._stream = container, stream
        self._frames = self._bytes = 0

    def append(self, frames: np.ndarray) -> dict[str, Any]:
        """Encode one episode's frames (T, H, W, 3) uint8; its columns of the episodes table."""
        if self._container is None or self._bytes >= self._max_bytes:
            self._open_next()
        first = self._frames
        for image in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts, frame.time_base = self._frames, Fraction(1, self._fps)
            packets = self._stream.encode(frame)
            self._container.mux(packets)
            self._bytes += sum(p.size for p in packets)
            self._frames += 1
        key = f"videos/{self._feature}"
        return {
            f"{key}/chunk_index": self._chunk,
            f"{key}/file_index": self._file,
            f"{key}/from_timestamp": first / self._fps,
            f"{key}/to_timestamp": self._frames / self._fps,
        }

    def close(self) -> None:
        """Flush the encoder and close the current file."""
        if self._container is not None:
            self._container.mux(self._stream.encode(None))
            self._container = self._stream = None
        self._stack.close()

    def info(self) -> dict[str, Any]:
        """The feature's info as LeRobot records it, read from the first file."""
        first = self._root / VIDEO_PATH.format(video_key=self._feature, chunk_index=0, file_index=0)
        with av.open(str(first)) as container:
            stream = container.streams.video[0]
            pix_fmt = str(stream.pix_fmt)
            info = {
                "video.height": stream.height,
                "video.width": stream.width,
                "video.codec": stream.codec.canonical_name,
                "video.pix_fmt": pix_fmt,
                "video.fps": self._fps,
                "video.channels": len(av.VideoFormat(pix_fmt).components),
                "has_audio": False,
            }
        extra = {"video.fast_decode": 0, "video.video_backend": "pyav", "video.extra_options": {}}
        return {**info, **self._codec.info, **extra, "is_depth_map": False}
