"""LeRobot dataset folders: `LeRobotSource` reads one as a `DemoSource`, `write_lerobot` writes
any `DemoSource` as one.

A LeRobot v3.0 folder (LeRobot 0.4 and later) holds

    meta/info.json           codebase_version, fps, features (dtype, shape, names), counters,
                             data_path / video_path templates, splits
    meta/stats.json          per feature: min, max, mean, std, count, q01 ... q99
    meta/tasks.parquet       task (the index) -> task_index
    meta/episodes/chunk-*/file-*.parquet   one row per episode: length, tasks, where its rows
                             and frames are, per-episode stats
    data/chunk-*/file-*.parquet            one row per frame, many episodes per file
    videos/<feature>/chunk-*/file-*.mp4    many episodes one after another per file

v2.0 / v2.1 folders (read only) keep meta/episodes.jsonl and meta/tasks.jsonl, and one parquet
and one mp4 per episode.

Names: episode i (in episode order) is `demo_<i>`. `observation.images.<cam>` is the image key
`<cam>_image` (T, H, W, 3) uint8 and `observation.image` is `image`; `observation.state` and
`observation.environment_state` are split into apprentice's keys by their feature names
(`eef_pos.0`, `eef_pos.1`, ... -> `eef_pos`) or by a mapping, else they are one key `state` /
`environment_state`; any other numeric `observation.<x>` is `<x>`. `action` is the actions,
`next.reward` and `next.done` the rewards and dones. LeRobot has no simulator states:
`read_states` is None. What apprentice knows and LeRobot does not (env_args, masks beyond the
splits, per-demo seed/success/source) travels in meta/apprentice.json, which LeRobot ignores.

Video is decoded once per camera into a cache of uint8 arrays (see `frame_cache_dir`), which
reads then slice.

Modules: `layout` (the format's facts shared by both directions: paths, names <-> keys, mappings,
`is_lerobot`), `validate` (the checks made on open), `reader` (`LeRobotSource`), `video` (PyAV
encode and decode, and the frame cache), `features` (which features a source's keys become),
`stats` (LeRobot's feature stats), `writer` (`write_lerobot`).
"""

from apprentice.data.lerobot.layout import (
    CODEBASE_VERSION,
    READ_VERSIONS,
    FeatureMapping,
    check_mapping,
    is_lerobot,
    load_mapping,
)
from apprentice.data.lerobot.reader import LeRobotSource
from apprentice.data.lerobot.video import decode_video, frame_cache_dir
from apprentice.data.lerobot.writer import write_lerobot

__all__ = [
    "CODEBASE_VERSION",
    "READ_VERSIONS",
    "FeatureMapping",
    "LeRobotSource",
    "check_mapping",
    "decode_video",
    "frame_cache_dir",
    "is_lerobot",
    "load_mapping",
    "write_lerobot",
]
