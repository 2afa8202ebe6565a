"""Facts of LeRobot's dataset folder that reading and writing share: its versions, paths and file
size limits, how feature names become apprentice keys and back, and the mapping files that
override that."""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from apprentice.errors import ApprenticeError

CODEBASE_VERSION = "v3.0"
"""The version `write_lerobot` writes (LeRobot 0.4 to 0.6)."""
READ_VERSIONS = ("v2.0", "v2.1", "v3.0")

FeatureMapping = dict[str, dict[str, tuple[int, int]]]
"""feature (e.g. "observation.state") -> apprentice obs key -> its [start, stop) columns."""

FRAME_FEATURES = ("timestamp", "frame_index", "episode_index", "index", "task_index")
"""Columns LeRobot adds to every frame (its DEFAULT_FEATURES)."""
SPLIT_FEATURES = ("observation.state", "observation.environment_state")
"""The features whose columns split into several obs keys by their names."""
APPRENTICE_JSON = "meta/apprentice.json"
"""What apprentice knows and LeRobot does not (env_args, masks, per-demo attrs)."""
_NAME_RE = re.compile(r"^(?P<key>.+)\.(?P<i>\d+)$")

# LeRobot 0.6's layout defaults (lerobot.datasets.utils).
CHUNKS_SIZE = 1000
"""Files per chunk folder."""
DATA_FILE_MB = 100
"""A data parquet file past this size is closed and the next episode starts a new one."""
VIDEO_FILE_MB = 200
"""An mp4 past this size is closed and the next episode starts a new one."""
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"


def is_lerobot(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is a LeRobot dataset folder (it has meta/info.json)."""
    return (Path(path) / "meta" / "info.json").is_file()


def next_file(chunk: int, file: int, chunks_size: int) -> tuple[int, int]:
    """The (chunk, file) after (chunk, file): LeRobot's numbering, chunks_size files a chunk."""
    return (chunk + 1, 0) if file == chunks_size - 1 else (chunk, file + 1)


# ---- mappings -----------------------------------------------------------------------------------


def check_mapping(raw: Any, where: str) -> FeatureMapping:
    """`raw` ({feature: {key: [start, stop]}}) validated; ApprenticeError naming `where` and the
    entry at fault otherwise."""
    if not isinstance(raw, Mapping) or not raw:
        raise ApprenticeError(f"{where}: expected {{feature: {{key: [start, stop]}}}}, non-empty")
    out: FeatureMapping = {}
    seen: dict[str, str] = {}
    for feature, keys in raw.items():
        if not isinstance(keys, Mapping) or not keys:
            raise ApprenticeError(f"{where}: {feature}: expected {{key: [start, stop]}}, non-empty")
        out[feature] = {}
        for key, span in keys.items():
            ok = isinstance(span, list | tuple) and len(span) == 2
            ok = ok and all(isinstance(s, int) and not isinstance(s, bool) for s in span)
            if not ok or not 0 <= span[0] < span[1]:
                raise ApprenticeError(
                    f"{where}: {feature}.{key}: expected [start, stop] with 0 <= start < stop, "
                    f"got {span!r}"
                )
            if key in seen:
                raise ApprenticeError(f"{where}: {feature}.{key}: key also mapped in {seen[key]}")
            seen[key] = feature
            out[feature][key] = (int(span[0]), int(span[1]))
        spans = sorted(out[feature].values())
        for (_, stop), (start, _) in itertools.pairwise(spans):
            if start < stop:
                raise ApprenticeError(f"{where}: {feature}: spans {spans} overlap")
    return out


def load_mapping(path: str | os.PathLike[str]) -> FeatureMapping:
    """The JSON mapping file at `path`: {"observation.state": {"eef_pos": [0, 3], ...}, ...}."""
    p = Path(path)
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise ApprenticeError(f"{p}: cannot read the mapping file ({e.strerror})") from None
    except json.JSONDecodeError as e:
        raise ApprenticeError(f"{p}: not JSON ({e})") from None
    return check_mapping(raw, str(p))


# ---- names --------------------------------------------------------------------------------------


def keys_from_names(names: Any, dim: int) -> list[tuple[str, int, int]] | None:
    """[(key, start, stop)] where `names` are apprentice's `<key>.<i>` (i counting 0, 1, ... over
    one run per key); None where they say something else (e.g. LeRobot's "shoulder_pan.pos")."""
    if not isinstance(names, list) or len(names) != dim:
        return None
    spans: list[tuple[str, int, int]] = []
    for pos, name in enumerate(names):
        m = _NAME_RE.match(name) if isinstance(name, str) else None
        if m is None:
            return None
        key, i = m["key"], int(m["i"])
        if i == 0 and all(k != key for k, _, _ in spans):
            spans.append((key, pos, pos + 1))
        elif spans and spans[-1][0] == key and i == pos - spans[-1][1]:
            spans[-1] = (key, spans[-1][1], pos + 1)
        else:
            return None
    return spans


def default_key(feature: str) -> str:
    """observation.state -> state, observation.images.top -> top_image, observation.image ->
    image."""
    name = feature.removeprefix("observation.")
    if name.startswith("images."):
        return name.removeprefix("images.").replace(".", "_") + "_image"
    return name.replace(".", "_")


def image_feature(key: str) -> str:
    """agentview_image -> observation.images.agentview; image -> observation.image."""
    if key == "image":
        return "observation.image"
    return "observation.images." + key.removesuffix("_image")


def hwc(ft: dict[str, Any]) -> tuple[int, int, int]:
    """A camera feature's (H, W, C), whether its shape is HWC or (names saying so) CHW."""
    h, w, c = (int(s) for s in ft["shape"])
    if (ft.get("names") or [None])[0] in ("channels", "channel"):
        return w, c, h
    return h, w, c
