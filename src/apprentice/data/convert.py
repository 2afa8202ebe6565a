"""Converting demos between robomimic's HDF5 layout, LeRobot's dataset folders and Isaac Lab's
HDF5 files (`apprentice convert`).

Every reader is a `DemoSource` (`open_source` picks it by what the path is), and every writer
takes a `DemoSource`, so any format converts to any other. A writer builds its output beside
the destination and moves it into place only when complete: a failed or interrupted conversion
leaves nothing half written. What the target format cannot hold is listed in the returned
`ConversionNotes`, and said, never dropped silently.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from apprentice.data.episode import Episode
from apprentice.errors import ApprenticeError

if TYPE_CHECKING:
    from apprentice.data.source import DemoSource

FORMATS = ("robomimic", "lerobot", "isaaclab")
"""The formats apprentice reads and writes."""


@dataclass
class ConversionNotes:
    """What a conversion wrote, and what the target format could not hold."""

    demos: int = 0
    frames: int = 0
    dropped: list[str] = field(default_factory=list)
    """One line per thing left out, naming it and why (e.g. 'states: LeRobot has no field for
    simulator states')."""
    info: list[str] = field(default_factory=list)
    """Other facts worth saying (a codec's loss, a mapping applied)."""

    def drop(self, what: str) -> None:
        if what not in self.dropped:
            self.dropped.append(what)

    def note(self, what: str) -> None:
        if what not in self.info:
            self.info.append(what)


def target_format(dst: Path, to: str | None) -> str:
    """The format to write: `to` where given, else by `dst`: a path ending in .hdf5/.h5 is
    robomimic's layout, anything else a LeRobot folder."""
    if to is not None:
        if to not in FORMATS:
            raise ApprenticeError(f"--to {to!r}: not a format; one of {', '.join(FORMATS)}")
        return to
    return "robomimic" if dst.suffix in (".hdf5", ".h5") else "lerobot"


def control_rate(env_args: dict[str, Any]) -> float:
    """The control rate (Hz) of the task in `env_args`: its env_kwargs' control_freq where
    recorded, else the rate of the task rebuilt from them.

    Raises ApprenticeError, saying to give --fps, when neither gives one.
    """
    kwargs = env_args.get("env_kwargs") or {}
    if "control_freq" in kwargs:
        return float(kwargs["control_freq"])
    from apprentice.envs.base import make_task_from_env_args

    try:
        task = make_task_from_env_args(env_args)
    except ApprenticeError as e:
        raise ApprenticeError(f"cannot tell the control rate ({e}); give --fps") from None
    try:
        return float(task.control_freq)
    finally:
        task.close()


def write_robomimic(source: DemoSource, dst: Path, *, overwrite: bool = False) -> ConversionNotes:
    """Write every demo of `source` to `dst` in robomimic's HDF5 layout (apprentice's own):
    observations, actions, rewards, dones, states where the source has them, datagen_info,
    demo attributes and masks. Built in a temporary file beside `dst`, moved into place when
    complete."""
    from apprentice.data.store import DemoWriter

    notes = ConversionNotes()
    masks = source.masks
    with staged_path(dst, overwrite) as tmp:
        with DemoWriter(tmp, env_args=source.env_args, overwrite=True, durable=False) as w:
            for name in source.demo_names:
                ep = source.read(name)
                if ep.states.shape[1] == 0:
                    notes.drop(f"states: {source.path} holds no simulator states to replay")
                info = source.read_datagen_info(name)
                if info is not None and ep.datagen_info is None:
                    ep = _with(ep, datagen_info=info)
                in_masks = [m for m, demos in masks.items() if name in demos]
                w.append(ep, masks=in_masks)
                notes.demos += 1
                notes.frames += ep.num_samples
    return notes


def _with(ep: Episode, **changes: Any) -> Episode:
    from dataclasses import replace

    return replace(ep, **changes)


@contextmanager
def staged_path(dst: Path, overwrite: bool) -> Iterator[Path]:
    """A temporary path beside `dst` that is moved onto `dst` when the block ends without error
    and removed otherwise (with any sidecar files named after it).

    Raises ApprenticeError, before the block runs, when `dst` exists and not `overwrite`.
    """
    if dst.exists() and not overwrite:
        raise ApprenticeError(f"{dst}: exists; give --overwrite to replace it")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".{dst.name}.tmp-{os.getpid()}"
    _remove(tmp)
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        for sidecar in tmp.parent.glob(f"{tmp.name}*"):
            _remove(sidecar)
        raise
    os.replace(tmp, dst)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def convert(
    src: DemoSource,
    dst: Path,
    *,
    to: str | None = None,
    fps: float | None = None,
    lossless: bool = False,
    mapping: dict[str, Any] | None = None,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> tuple[str, ConversionNotes]:
    """Write `src` to `dst` in format `to` (by `dst`'s name where None): (format, notes)."""
    fmt = target_format(dst, to)
    if fmt == "robomimic":
        return fmt, write_robomimic(src, dst, overwrite=overwrite)
    if fmt == "isaaclab":
        from apprentice.data.isaaclab import write_isaaclab

        return fmt, write_isaaclab(src, dst, overwrite=overwrite)
    from apprentice.data.lerobot import write_lerobot

    rate = fps if fps is not None else getattr(src, "fps", None) or control_rate(src.env_args)
    return fmt, write_lerobot(
        src, dst, fps=rate, lossless=lossless, mapping=mapping, overwrite=overwrite
    )


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio (dB) between two uint8 image arrays; inf where equal."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * float(np.log10(255.0**2 / mse))


__all__ = [
    "FORMATS",
    "ConversionNotes",
    "control_rate",
    "convert",
    "psnr",
    "staged_path",
    "target_format",
    "write_robomimic",
]
