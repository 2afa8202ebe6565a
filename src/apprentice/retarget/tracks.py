"""Tracked demonstrations on disk: the wrist's 6-DoF poses and the grip over time, one track
per demo, in the motion-capture system's frame.

Two formats, one track each:

- NPZ: `t` (T,) seconds, strictly increasing (any start, any rate, jitter allowed);
  `wrist_pos` (T, 3) metres; `wrist_quat` (T, 4) w x y z; `grip` (T,) in [0, 1] (0 open,
  1 closed). Optional: `seed` (int: the task's initial scene), `object_pos` (K, 3) and
  `object_quat` (K, 4) (the tracked objects' poses in the first frame, used to align the
  mocap frame to the task's; a single object may be (3,) and (4,)), and `object_names`
  (K,) naming them as the task does (default: the task's first K objects, in order).
- CSV: a header row naming the columns t,x,y,z,qw,qx,qy,qz,grip (in any order; more columns
  are ignored), then one row per sample. A JSON file of the same stem beside it
  (`track_3.csv` + `track_3.json`) may give `seed`, `object_pos`, `object_quat` and
  `object_names` as above.

A folder holds any number of such files (read in name order); other files in it are ignored.
Malformed input (a missing or misshapen array, NaN, a non-unit quaternion, timestamps that do
not increase) raises ApprenticeError naming the file, the array and the sample index.
"""

from __future__ import annotations

import csv
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from apprentice.errors import ApprenticeError

CSV_COLUMNS = ("t", "x", "y", "z", "qw", "qx", "qy", "qz", "grip")
TRACK_SUFFIXES = (".npz", ".csv")
_IMAGE_KEYS = ("images", "frames", "rgb", "video")
"""NPZ keys a file of camera frames rather than poses would use (refused with a pointer)."""


@dataclass(frozen=True)
class Track:
    """One tracked demonstration, validated on construction.

    t: (T,) s; pos: (T, 3) m; quat: (T, 4) unit, w x y z; grip: (T,) in [0, 1];
    object_pos: (K, 3) and object_quat: (K, 4) in the first frame, or None.
    """

    name: str
    """Where the track came from (its file), for messages and the report."""
    t: np.ndarray
    pos: np.ndarray
    quat: np.ndarray
    grip: np.ndarray
    seed: int | None = None
    """The task's initial-scene seed; None lets the caller assign one."""
    object_pos: np.ndarray | None = None
    object_quat: np.ndarray | None = None
    object_names: tuple[str, ...] = ()
    """Task object names of the K object poses; () means the task's first K objects."""

    def __post_init__(self) -> None:
        n = self.t.shape[0] if self.t.ndim == 1 else -1
        for key, arr, shape in (
            ("t", self.t, (n,)),
            ("wrist_pos", self.pos, (n, 3)),
            ("wrist_quat", self.quat, (n, 4)),
            ("grip", self.grip, (n,)),
        ):
            if arr.shape != shape:
                want = "(T,)" if len(shape) == 1 else f"(T, {shape[1]})"
                raise ApprenticeError(f"{self.name}: {key} has shape {arr.shape}, expected {want}")
            _check_finite(self.name, key, arr)
        if n < 2:
            raise ApprenticeError(f"{self.name}: holds {n} samples; a track needs at least 2")
        dt = np.diff(self.t)
        if np.any(dt <= 0):
            i = int(np.argmax(dt <= 0)) + 1
            raise ApprenticeError(
                f"{self.name}: t does not increase at index {i} ({self.t[i - 1]:.6g} then "
                f"{self.t[i]:.6g} s); timestamps must be strictly increasing"
            )
        norms = np.linalg.norm(self.quat, axis=1)
        if np.any(np.abs(norms - 1.0) > 0.01):
            i = int(np.argmax(np.abs(norms - 1.0) > 0.01))
            raise ApprenticeError(
                f"{self.name}: wrist_quat at index {i} has norm {norms[i]:.4g}, not 1 "
                "(quaternions are w x y z unit quaternions)"
            )
        if np.any((self.grip < 0) | (self.grip > 1)):
            i = int(np.argmax((self.grip < 0) | (self.grip > 1)))
            raise ApprenticeError(
                f"{self.name}: grip at index {i} is {self.grip[i]:.4g}, outside [0, 1] "
                "(0 open, 1 closed)"
            )
        if (self.object_pos is None) != (self.object_quat is None):
            raise ApprenticeError(f"{self.name}: give object_pos and object_quat together")
        if self.object_pos is not None and self.object_quat is not None:
            k = self.object_pos.shape[0]
            for key, arr, shape in (
                ("object_pos", self.object_pos, (k, 3)),
                ("object_quat", self.object_quat, (k, 4)),
            ):
                if arr.shape != shape:
                    raise ApprenticeError(
                        f"{self.name}: {key} has shape {arr.shape}, expected (K, {shape[1]})"
                    )
                _check_finite(self.name, key, arr)
            if self.object_names and len(self.object_names) != k:
                raise ApprenticeError(
                    f"{self.name}: object_names names {len(self.object_names)} objects, "
                    f"object_pos holds {k}"
                )

    @property
    def duration(self) -> float:
        """Seconds from the first sample to the last."""
        return float(self.t[-1] - self.t[0])

    @property
    def has_objects(self) -> bool:
        return self.object_pos is not None


def _check_finite(name: str, key: str, arr: np.ndarray) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.argwhere(bad)[0][0])
        raise ApprenticeError(f"{name}: {key} is NaN or inf at index {i}")


def find_gap(track: Track, factor: float) -> str | None:
    """What is wrong if two samples of `track` lie more than `factor` times the median
    interval apart (a tracker dropout: interpolating across it would invent motion), else
    None."""
    dt = np.diff(track.t)
    limit = factor * float(np.median(dt))
    if not np.any(dt > limit):
        return None
    i = int(np.argmax(dt > limit))
    return (
        f"gap of {dt[i]:.3f} s between index {i} and {i + 1} (t={track.t[i]:.3f} s), more "
        f"than {factor:g}x the median interval {np.median(dt):.4f} s"
    )


# ---- reading ---------------------------------------------------------------------------------


def _natural_key(path: Path) -> list[Any]:
    """Sort key that orders demo_2 before demo_10."""
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", path.name)]


def track_files(path: str | Path) -> list[Path]:
    """The track files of `path`: the file itself, or a folder's .npz and .csv files in name
    order (numbers by value: track_2 before track_10)."""
    p = Path(path)
    if p.is_dir():
        files = sorted(
            (f for f in p.iterdir() if f.suffix.lower() in TRACK_SUFFIXES), key=_natural_key
        )
        if not files:
            raise ApprenticeError(f"{p}: holds no track files (.npz or .csv)")
        return files
    if not p.exists():
        raise ApprenticeError(f"{p}: no such file or folder")
    if p.suffix.lower() not in TRACK_SUFFIXES:
        raise ApprenticeError(f"{p}: not a track file; give an .npz, a .csv or a folder of them")
    return [p]


def read_track(path: str | Path) -> Track:
    """The track in one .npz or .csv file (see the module docstring)."""
    p = Path(path)
    if p.suffix.lower() == ".csv":
        return _read_csv(p)
    return _read_npz(p)


def _read_npz(p: Path) -> Track:
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: np.asarray(z[k]) for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise ApprenticeError(f"{p}: not a readable .npz file ({e})") from None
    required = ("t", "wrist_pos", "wrist_quat", "grip")
    if "wrist_pos" not in arrays and "wrist_quat" not in arrays:
        if any(k in arrays for k in _IMAGE_KEYS):
            raise ApprenticeError(
                f"{p}: holds images but no poses (wrist_pos, wrist_quat); retarget replays "
                "tracked wrist poses: run a hand tracker on the video first"
            )
        raise ApprenticeError(
            f"{p}: holds neither poses (wrist_pos, wrist_quat) nor images; it has: "
            f"{', '.join(sorted(arrays)) or 'nothing'}"
        )
    missing = [k for k in required if k not in arrays]
    if missing:
        raise ApprenticeError(
            f"{p}: lacks {', '.join(missing)} (a track needs {', '.join(required)})"
        )
    meta = {k: v for k, v in arrays.items() if k not in required}
    return _track(p, arrays["t"], arrays["wrist_pos"], arrays["wrist_quat"], arrays["grip"], meta)


def _read_csv(p: Path) -> Track:
    try:
        with p.open(newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as e:
        raise ApprenticeError(f"{p}: cannot read ({e})") from None
    if not rows:
        raise ApprenticeError(f"{p}: empty; a track CSV has a header {','.join(CSV_COLUMNS)}")
    header = [c.strip().lower() for c in rows[0]]
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        raise ApprenticeError(
            f"{p}: header lacks column(s) {', '.join(missing)}; a track CSV has the columns "
            f"{','.join(CSV_COLUMNS)}"
        )
    cols = [header.index(c) for c in CSV_COLUMNS]
    values = np.empty((len(rows) - 1, len(CSV_COLUMNS)))
    for i, row in enumerate(rows[1:]):
        try:
            values[i] = [float(row[c]) for c in cols]
        except (ValueError, IndexError):
            raise ApprenticeError(
                f"{p}: row {i + 2} (sample index {i}) is not {len(header)} numbers: {row}"
            ) from None
    meta: dict[str, Any] = {}
    sidecar = p.with_suffix(".json")
    if sidecar.exists():
        try:
            meta = json.loads(sidecar.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ApprenticeError(f"{sidecar}: not readable JSON ({e})") from None
        if not isinstance(meta, dict):
            raise ApprenticeError(f"{sidecar}: expected a JSON object (seed, object_pos, ...)")
    return _track(p, values[:, 0], values[:, 1:4], values[:, 4:8], values[:, 8], meta)


def _track(
    p: Path,
    t: np.ndarray,
    pos: np.ndarray,
    quat: np.ndarray,
    grip: np.ndarray,
    meta: dict[str, Any],
) -> Track:
    def floats(key: str, value: Any) -> np.ndarray:
        try:
            return np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise ApprenticeError(f"{p}: {key} is not numeric") from None

    seed = None
    if "seed" in meta:
        s = np.asarray(meta["seed"])
        if s.shape != () or s.dtype.kind not in "iu" or int(s) < 0:
            raise ApprenticeError(
                f"{p}: seed must be one non-negative integer, got {meta['seed']!r}"
            )
        seed = int(s)
    obj_pos = obj_quat = None
    if "object_pos" in meta or "object_quat" in meta:
        obj_pos = np.atleast_2d(floats("object_pos", meta.get("object_pos")))
        obj_quat = np.atleast_2d(floats("object_quat", meta.get("object_quat")))
        if obj_quat.shape[-1] == 4 and np.all(np.isfinite(obj_quat)):
            norms = np.linalg.norm(obj_quat, axis=-1, keepdims=True)
            if np.any(np.abs(norms - 1.0) > 0.01):
                raise ApprenticeError(f"{p}: object_quat is not a unit quaternion (w x y z)")
            obj_quat = obj_quat / norms
    names: tuple[str, ...] = ()
    if "object_names" in meta:
        names = tuple(str(n) for n in np.atleast_1d(np.asarray(meta["object_names"])))
    quat = floats("wrist_quat", quat)
    if quat.ndim == 2 and quat.shape[1] == 4 and np.all(np.isfinite(quat)):
        norms = np.linalg.norm(quat, axis=1, keepdims=True)
        # Trackers round; renormalize what is within 1% of unit length (the rest is refused).
        ok = np.abs(norms - 1.0) <= 0.01
        quat = np.where(ok, quat / np.where(norms > 0, norms, 1.0), quat)
    return Track(
        name=str(p),
        t=floats("t", t),
        pos=floats("wrist_pos", pos),
        quat=quat,
        grip=floats("grip", grip),
        seed=seed,
        object_pos=obj_pos,
        object_quat=obj_quat,
        object_names=names,
    )


# ---- writing ---------------------------------------------------------------------------------


def write_track(track: Track, path: str | Path) -> Path:
    """Write `track` as an .npz file (the layout `read_track` reads)."""
    p = Path(path)
    arrays: dict[str, np.ndarray] = {
        "t": track.t,
        "wrist_pos": track.pos,
        "wrist_quat": track.quat,
        "grip": track.grip,
    }
    if track.seed is not None:
        arrays["seed"] = np.asarray(track.seed, dtype=np.int64)
    if track.object_pos is not None and track.object_quat is not None:
        arrays["object_pos"] = track.object_pos
        arrays["object_quat"] = track.object_quat
    if track.object_names:
        arrays["object_names"] = np.asarray(track.object_names)
    p.parent.mkdir(parents=True, exist_ok=True)
    np.savez(p, **arrays)  # type: ignore[arg-type]
    return p
