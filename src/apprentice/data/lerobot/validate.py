"""Checking a LeRobot folder when it is opened: info.json is well formed, the episodes table,
the data files and the videos agree on episodes and frames, every feature has an obs key (or is
listed unread) and the mapping fits. What the check finds, low-dim columns read into memory
included, is the folder's `Contents`, which `LeRobotSource` serves from.

Shapes: `N` frames of the dataset, `D` values of a feature per frame.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from apprentice.data.lerobot.layout import (
    APPRENTICE_JSON,
    CHUNKS_SIZE,
    FRAME_FEATURES,
    READ_VERSIONS,
    SPLIT_FEATURES,
    FeatureMapping,
    check_mapping,
    default_key,
    hwc,
    keys_from_names,
)
from apprentice.errors import ApprenticeError, fault


@dataclass(frozen=True)
class EpisodeRef:
    """One episode: its T, tasks, data file, and per video feature its mp4 and first frame in it
    (paths relative to the dataset folder)."""

    index: int
    length: int
    tasks: tuple[str, ...]
    data_file: str
    videos: dict[str, tuple[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class Contents:
    """What a valid LeRobot folder holds, as found by `validate`."""

    info: dict[str, Any]
    """meta/info.json."""
    episodes: list[EpisodeRef]
    """In episode order: episode i is demo `names[i]`."""
    names: list[str]
    """demo_0, demo_1, ..."""
    extras: dict[str, Any]
    """meta/apprentice.json; {} where apprentice did not write the folder."""
    low_dim: dict[str, tuple[str, int, int]]
    """Numeric obs key -> (feature, start, stop): its columns of the feature."""
    cameras: dict[str, str]
    """Image obs key -> its video or image feature."""
    unread: list[str]
    """Features that no obs key, actions, rewards or dones take."""
    arrays: dict[str, np.ndarray]
    """Numeric feature -> its (N,) or (N, D) values, rows in (episode, frame) order."""
    starts: list[int]
    """Each episode's first row in `arrays`."""
    order: np.ndarray
    """(N,) the data files' rows (concatenated) in (episode, frame) order."""
    masks: dict[str, list[str]]


def validate(path: Path, mapping: Mapping[str, Mapping[str, Sequence[int]]] | None) -> Contents:
    """Check the folder `path` and say what it holds; `mapping` ({feature: {key: (start, stop)}})
    overrides how numeric features split into obs keys.

    Raises ApprenticeError naming the folder and the file or field at fault.
    """
    return _Check(path).run(mapping)


class _Check:
    """One validation pass, gathering the obs keys features give."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.info: dict[str, Any] = {}
        self.features: dict[str, dict[str, Any]] = {}
        self.extras: dict[str, Any] = {}
        self.low_dim: dict[str, tuple[str, int, int]] = {}
        self.cameras: dict[str, str] = {}
        self.unread: list[str] = []

    def fail(self, where: str, what: str) -> ApprenticeError:
        return fault(self.path, where, what)

    def run(self, mapping: Mapping[str, Mapping[str, Sequence[int]]] | None) -> Contents:
        self.info = self.load_info()
        self.features = self.info["features"]
        video_features = [f for f, ft in self.features.items() if ft.get("dtype") == "video"]
        self.check_codecs(video_features)
        v3 = self.info["codebase_version"] == "v3.0"
        load = _v3_episodes if v3 else _v2_episodes
        episodes = load(self.path, self.info, video_features)
        self.check_counter("total_episodes", len(episodes), "episodes")
        names = [f"demo_{i}" for i in range(len(episodes))]
        extras = self.path / APPRENTICE_JSON
        self.extras = _read_json(extras, self.path) if extras.is_file() else {}
        rules = check_mapping(mapping, "mapping") if mapping is not None else {}
        self.lay_out(rules)
        arrays, starts, order = self.load_rows(episodes)
        self.check_videos_exist(episodes)
        return Contents(
            info=self.info,
            episodes=episodes,
            names=names,
            extras=self.extras,
            low_dim=self.low_dim,
            cameras=self.cameras,
            unread=self.unread,
            arrays=arrays,
            starts=starts,
            order=order,
            masks=self.load_masks(dict(zip(names, episodes, strict=True))),
        )

    def load_info(self) -> dict[str, Any]:
        info = _read_json(self.path / "meta" / "info.json", self.path)
        if not isinstance(info, dict):
            raise self.fail("meta/info.json", "is not a JSON object")
        version = info.get("codebase_version")
        if version not in READ_VERSIONS:
            raise self.fail(
                "meta/info.json: codebase_version",
                f"{version!r} is a LeRobot layout apprentice does not read "
                f"(it reads {', '.join(READ_VERSIONS)})",
            )
        if not isinstance(info.get("fps"), int | float) or info["fps"] <= 0:
            raise self.fail("meta/info.json: fps", f"{info.get('fps')!r} is not a positive number")
        if not isinstance(info.get("features"), dict):
            raise self.fail("meta/info.json: features", "missing, or not a JSON object")
        for feature, ft in info["features"].items():
            if (
                not isinstance(ft, dict)
                or "dtype" not in ft
                or not isinstance(ft.get("shape"), list)
            ):
                raise self.fail(f"meta/info.json: features.{feature}", "needs a dtype and a shape")
        return info

    def check_codecs(self, video_features: list[str]) -> None:
        for feature in video_features:
            ft = self.features[feature]
            codec = (ft.get("info") or ft.get("video_info") or {}).get("video.codec")
            if codec is None:
                continue
            try:
                av.Codec(str(codec), "r")
            except (ValueError, av.FFmpegError):
                raise self.fail(
                    f"meta/info.json: features.{feature}.info.video.codec",
                    f"{codec!r} is not a codec PyAV can decode",
                ) from None

    def check_counter(self, counter: str, actual: int, what: str) -> None:
        said = self.info.get(counter)
        if said is not None and int(said) != actual:
            raise self.fail(
                f"meta/info.json: {counter}", f"says {said}, the dataset holds {actual} {what}"
            )

    def lay_out(self, rules: FeatureMapping) -> None:
        """Assign every feature an obs key (or actions, rewards, dones), or list it as unread."""
        camera_keys: dict[str, str] = self.extras.get("camera_keys", {})
        for feature, ft in self.features.items():
            shape = tuple(int(s) for s in ft["shape"])
            if feature in FRAME_FEATURES or feature in ("action", "next.reward", "next.done"):
                continue
            if ft["dtype"] in ("video", "image") and len(shape) == 3 and hwc(ft)[2] == 3:
                self.add_key(camera_keys.get(feature) or default_key(feature), feature, None)
            elif feature.startswith("observation.") and _numeric(ft["dtype"]) and len(shape) == 1:
                for key, start, stop in self.split(feature, shape[0], rules.get(feature)):
                    self.add_key(key, feature, (start, stop))
            else:
                self.unread.append(feature)
        for feature in rules:
            if feature not in self.features or feature in self.unread:
                raise self.fail(
                    f"mapping: {feature}", "no numeric (N,) observation feature of that name"
                )

    def split(
        self, feature: str, dim: int, rule: dict[str, tuple[int, int]] | None
    ) -> list[tuple[str, int, int]]:
        if rule is not None:
            for key, (start, stop) in rule.items():
                if stop > dim:
                    raise self.fail(
                        f"mapping: {feature}.{key}", f"[{start}, {stop}) is past its {dim} dims"
                    )
            return [(key, start, stop) for key, (start, stop) in rule.items()]
        if feature in SPLIT_FEATURES:
            spans = keys_from_names(self.features[feature].get("names"), dim)
            if spans is not None:
                return spans
        return [(default_key(feature), 0, dim)]

    def add_key(self, key: str, feature: str, span: tuple[int, int] | None) -> None:
        other = self.low_dim.get(key, (self.cameras.get(key), 0, 0))[0]
        if other is not None:
            raise self.fail(
                "meta/info.json: features",
                f"{feature} and {other} both give obs key {key!r}; pass a mapping",
            )
        if span is None:
            self.cameras[key] = feature
        else:
            self.low_dim[key] = (feature, *span)

    def load_rows(
        self, episodes: list[EpisodeRef]
    ) -> tuple[dict[str, np.ndarray], list[int], np.ndarray]:
        """Every numeric column read, rows sorted by (episode, frame); each episode's first row;
        and the sorting order of the files' rows."""
        wanted = sorted({f for f, _, _ in self.low_dim.values()})
        wanted += [f for f in ("action", "next.reward", "next.done") if f in self.features]
        cols = [*wanted, "episode_index", "frame_index"]
        files = dict.fromkeys(ep.data_file for ep in episodes)
        table = pa.concat_tables([read_parquet(self.path / f, self.path, cols) for f in files])
        self.check_counter("total_frames", table.num_rows, "frames")
        episode = _column_array(table["episode_index"])
        order = np.lexsort((_column_array(table["frame_index"]), episode))
        episode = episode[order]
        starts = np.searchsorted(episode, [ep.index for ep in episodes]).tolist()
        counts = np.searchsorted(episode, [ep.index for ep in episodes], side="right")
        for ep, start, stop in zip(episodes, starts, counts.tolist(), strict=True):
            if stop - start != ep.length:
                raise self.fail(
                    ep.data_file,
                    f"holds {stop - start} rows of episode {ep.index}, its length is {ep.length}",
                )
        arrays = {}
        for feature in wanted:
            values = _column_array(table[feature])[order]
            dim = int(np.prod(self.features[feature]["shape"]))
            if values.ndim == 2 and values.shape[1] != dim:
                raise self.fail(
                    f"data: {feature}", f"rows hold {values.shape[1]} values, info.json says {dim}"
                )
            arrays[feature] = values
        return arrays, starts, order

    def check_videos_exist(self, episodes: list[EpisodeRef]) -> None:
        for feature in self.cameras.values():
            if self.features[feature]["dtype"] != "video":
                continue
            for ep in episodes:
                mp4 = ep.videos[feature][0]
                if not (self.path / mp4).is_file():
                    raise self.fail(mp4, f"missing (the video of {feature}, episode {ep.index})")

    def load_masks(self, by_name: dict[str, EpisodeRef]) -> dict[str, list[str]]:
        """apprentice's masks where it wrote the folder (they hold what LeRobot's splits do, and
        more), else the splits."""
        if "masks" in self.extras:
            return {m: [d for d in ds if d in by_name] for m, ds in self.extras["masks"].items()}
        by_index = {ep.index: name for name, ep in by_name.items()}
        return {
            name: _episodes_in(spec, by_index, f"{self.path}: meta/info.json: splits.{name}")
            for name, spec in (self.info.get("splits") or {}).items()
        }


# ---- reading the metadata -----------------------------------------------------------------------


def _read_json(path: Path, root: Path) -> Any:
    rel = path.relative_to(root)
    if not path.is_file():
        raise ApprenticeError(f"{root}: {rel}: missing")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ApprenticeError(f"{root}: {rel}: not JSON ({e})") from None


def _read_jsonl(path: Path, root: Path) -> list[dict[str, Any]]:
    rel = path.relative_to(root)
    if not path.is_file():
        raise ApprenticeError(f"{root}: {rel}: missing")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]
    except json.JSONDecodeError as e:
        raise ApprenticeError(f"{root}: {rel}: not JSON lines ({e})") from None


def read_parquet(path: Path, root: Path, columns: list[str] | None = None) -> pa.Table:
    """The parquet file at `path` in the folder `root`, only `columns` where given; an
    ApprenticeError naming the file where it is missing, unreadable or lacks a column."""
    rel = path.relative_to(root)
    if not path.is_file():
        raise ApprenticeError(f"{root}: {rel}: missing")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise ApprenticeError(f"{root}: {rel}: not a readable parquet file ({e})") from None
    missing = [c for c in columns or [] if c not in table.column_names]
    if missing:
        raise ApprenticeError(f"{root}: {rel}: no column {missing[0]!r}")
    return table if columns is None else table.select(columns)


def _v3_episodes(root: Path, info: dict[str, Any], video_features: list[str]) -> list[EpisodeRef]:
    files = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    if not files:
        raise ApprenticeError(f"{root}: meta/episodes/chunk-*/file-*.parquet: missing")
    cols = ["episode_index", "tasks", "length", "data/chunk_index", "data/file_index"]
    for f in video_features:
        cols += [f"videos/{f}/chunk_index", f"videos/{f}/file_index", f"videos/{f}/from_timestamp"]
    rows = [r for p in files for r in read_parquet(p, root, cols).to_pylist()]
    fps = float(info["fps"])
    refs = []
    for r in sorted(rows, key=lambda r: int(r["episode_index"])):
        videos = {
            f: (
                _template(info, "video_path", root, video_key=f, **_chunk(r, f"videos/{f}")),
                round(float(r[f"videos/{f}/from_timestamp"]) * fps),
            )
            for f in video_features
        }
        data_file = _template(info, "data_path", root, **_chunk(r, "data"))
        refs.append(
            EpisodeRef(
                int(r["episode_index"]), int(r["length"]), tuple(r["tasks"]), data_file, videos
            )
        )
    return refs


def _chunk(row: dict[str, Any], prefix: str) -> dict[str, int]:
    return {
        "chunk_index": int(row[f"{prefix}/chunk_index"]),
        "file_index": int(row[f"{prefix}/file_index"]),
    }


def _template(info: dict[str, Any], name: str, root: Path, **fields: Any) -> str:
    try:
        return str(info[name]).format(**fields)
    except (KeyError, IndexError, ValueError) as e:
        raise ApprenticeError(
            f"{root}: meta/info.json: {name} {info.get(name)!r} is not a template of "
            f"{sorted(fields)} ({e})"
        ) from None


def _v2_episodes(root: Path, info: dict[str, Any], video_features: list[str]) -> list[EpisodeRef]:
    rows = _read_jsonl(root / "meta" / "episodes.jsonl", root)
    for n, row in enumerate(rows, 1):
        if not isinstance(row, dict) or not {"episode_index", "length"} <= row.keys():
            raise ApprenticeError(
                f"{root}: meta/episodes.jsonl: line {n} lacks episode_index or length"
            )
    chunks_size = int(info.get("chunks_size", CHUNKS_SIZE))
    refs = []
    for r in sorted(rows, key=lambda r: int(r["episode_index"])):
        idx = int(r["episode_index"])
        where = {"episode_chunk": idx // chunks_size, "episode_index": idx}
        videos = {
            f: (_template(info, "video_path", root, video_key=f, **where), 0)
            for f in video_features
        }
        data_file = _template(info, "data_path", root, **where)
        refs.append(EpisodeRef(idx, int(r["length"]), tuple(r.get("tasks", ())), data_file, videos))
    return refs


def _numeric(dtype: Any) -> bool:
    try:
        return np.dtype(dtype).kind in "biuf"
    except TypeError:
        return False


def _column_array(col: pa.ChunkedArray) -> np.ndarray:
    """A parquet column as (N,) for scalars, (N, D) for lists of D values each."""
    arr = col.combine_chunks()
    if pa.types.is_fixed_size_list(arr.type) or pa.types.is_list(arr.type):
        values = arr.flatten().to_numpy(zero_copy_only=False)
        return values.reshape(len(arr), -1) if len(arr) else values.reshape(0, 0)
    return np.asarray(arr.to_numpy(zero_copy_only=False))


def _episodes_in(spec: Any, by_index: dict[int, str], where: str) -> list[str]:
    """The demos a split selects: "0:80", or several ranges "0:10,20:30" (episode indices)."""
    demos: list[str] = []
    for part in str(spec).split(","):
        m = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", part)
        if m is None:
            raise ApprenticeError(f"{where}: expected 'start:stop' ranges, got {spec!r}")
        demos += [by_index[i] for i in range(int(m[1]), int(m[2])) if i in by_index]
    return demos
