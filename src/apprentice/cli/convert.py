"""`apprentice convert SRC DST [--to robomimic|lerobot|isaaclab]`: demos from one dataset format
to another (robomimic's HDF5 layout, LeRobot's dataset folders, Isaac Lab's HDF5 files).

The source format is detected; the target is `--to`, else by DST's name (`.hdf5` / `.h5`:
robomimic's layout, anything else: a LeRobot folder). `--hub REPO_ID` converts a dataset of
the Hugging Face Hub instead of SRC. What the target format cannot hold is said, one line each.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apprentice.cli.args import dataclass_from_args
from apprentice.cli.command import Command
from apprentice.console import console, print_table
from apprentice.data.convert import FORMATS, convert
from apprentice.data.source import open_source, source_format
from apprentice.errors import ApprenticeError


@dataclass(frozen=True)
class ConvertConfig:
    """Convert a dataset from one format to another."""

    src: str = ""
    """The dataset to convert: an HDF5 file (robomimic or Isaac Lab) or a LeRobot folder."""
    dst: str = ""
    """Where to write it: a file (robomimic, Isaac Lab) or a folder (LeRobot)."""
    to: str | None = None
    """The format to write (default: by DST's name: .hdf5 is robomimic, else LeRobot)."""
    hub: str | None = None
    """Convert this Hugging Face Hub dataset (OWNER/NAME) instead of SRC; then give DST only."""
    fps: float | None = None
    """Frames per second of a LeRobot dataset written (default: the task's control rate)."""
    lossless: bool = False
    """Encode camera frames to LeRobot videos losslessly (larger files, exact frames)."""
    mapping: str | None = None
    """A JSON file naming which observation keys make up LeRobot's observation.state and
    observation.environment_state (and in what order): written that way, and read back by it."""
    overwrite: bool = False
    """Replace DST where it exists."""


def run(ns: argparse.Namespace) -> None:
    cfg = dataclass_from_args(ConvertConfig, ns)
    src, dst = cfg.src, cfg.dst
    if cfg.hub:
        if dst:
            raise ApprenticeError(f"--hub {cfg.hub} replaces SRC: give DST only")
        from apprentice.data.hub import fetch_hub

        src, dst = str(fetch_hub(cfg.hub)), cfg.src
    if not src or not dst:
        raise ApprenticeError("give SRC and DST (or --hub REPO_ID and DST)")
    mapping = _load_mapping(cfg.mapping) if cfg.mapping else None
    start = time.perf_counter()
    with _open(src, mapping) as source:
        src_format = source_format(source)
        # What reading converted, or could not map onto apprentice's demos (Isaac Lab files).
        read_notes = list(getattr(source, "notes", []))
        unmapped = list(getattr(source, "unmapped", []))
        fmt, notes = convert(
            source,
            Path(dst),
            to=cfg.to,
            fps=cfg.fps,
            lossless=cfg.lossless,
            mapping=mapping,
            overwrite=cfg.overwrite,
        )
    dropped = [f"{field}: not read from {src}" for field in unmapped] + notes.dropped
    for line in dropped:
        console.print(f"not kept: {line}", markup=False, highlight=False, soft_wrap=True)
    rows: list[tuple[str, Any]] = [
        ("from", f"{src} ({src_format})"),
        ("to", f"{dst} ({fmt})"),
        ("demos", notes.demos),
        ("frames", notes.frames),
        ("seconds", round(time.perf_counter() - start, 1)),
    ]
    rows += [("note", line) for line in read_notes + notes.info]
    print_table(f"converted {notes.demos} demos", rows)


def _load_mapping(path: str) -> dict[str, Any]:
    from apprentice.data.lerobot import load_mapping

    return load_mapping(Path(path))


def _open(src: str, mapping: dict[str, Any] | None) -> Any:
    if mapping is not None and Path(src).is_dir():
        from apprentice.data.lerobot import LeRobotSource

        return LeRobotSource(Path(src), mapping=mapping)
    return open_source(src)


def command() -> Command:
    return Command(
        "convert",
        "convert demos between robomimic's, LeRobot's and Isaac Lab's dataset formats",
        ConvertConfig,
        run,
        {"positional": ("src", "dst"), "choices": {"to": list(FORMATS)}},
    )


__all__ = ["ConvertConfig", "command"]
