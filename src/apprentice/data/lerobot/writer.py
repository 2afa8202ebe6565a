"""`write_lerobot`: any `DemoSource` written as a LeRobot v3.0 folder (the package docstring gives
the mapping).

Shapes: `T` steps of one episode, `D` values of a feature per step.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from apprentice.data.convert import ConversionNotes
from apprentice.data.episode import Episode
from apprentice.data.lerobot.features import (
    FeaturePlan,
    arrow_column,
    hf_feature,
    info_features,
    plan_features,
)
from apprentice.data.lerobot.layout import (
    APPRENTICE_JSON,
    CHUNKS_SIZE,
    CODEBASE_VERSION,
    DATA_FILE_MB,
    DATA_PATH,
    EPISODES_PATH,
    VIDEO_FILE_MB,
    VIDEO_PATH,
    default_key,
    next_file,
)
from apprentice.data.lerobot.stats import aggregate_stats, episode_stats, image_stats
from apprentice.data.lerobot.video import Codec, VideoFiles, pick_codec
from apprentice.data.source import DemoSource
from apprentice.errors import ApprenticeError
from apprentice.files import write_text_atomic

_MAX_ATTR_BYTES = 1024
"""Per-demo attrs larger than this (as JSON) stay out of meta/apprentice.json, with a note."""


def write_lerobot(
    source: DemoSource,
    dst: str | os.PathLike[str],
    *,
    fps: float,
    repo_id: str = "apprentice/converted",
    lossless: bool = False,
    vcodec: str | None = None,
    mapping: Mapping[str, Mapping[str, Sequence[int]]] | None = None,
    robot_type: str | None = None,
    task: str | None = None,
    overwrite: bool = False,
) -> ConversionNotes:
    """Write every demo of `source` as a LeRobot v3.0 folder at `dst`, as LeRobot 0.6 writes one
    (`LeRobotDataset(repo_id, root=dst)` loads it).

    Low-dim obs keys are concatenated into observation.state (keys starting with "object" into
    observation.environment_state) with names `<key>.<i>`, or as `mapping` says; each RGB camera
    `<cam>_image` is the video feature observation.images.<cam>, encoded lossy as LeRobot does
    (libsvtav1, crf 30) or, with `lossless`, bit-exact (libx264rgb at qp 0). `fps` frames per
    second (a whole number); `task` names every episode's task (default: env_args' env_name);
    `repo_id` is recorded in meta/apprentice.json. The folder is built beside `dst` and moved into
    place complete; an existing `dst` is refused unless `overwrite`.

    Returns what was written and what LeRobot cannot hold (simulator states, datagen_info,
    next_obs).
    """
    dst = Path(dst)
    if dst.exists() and not overwrite:
        raise ApprenticeError(f"{dst}: already exists; pass overwrite=True to replace it")
    if fps <= 0 or fps != round(fps):
        raise ApprenticeError(
            f"fps {fps}: LeRobot keeps a whole, positive number of frames a second"
        )
    if not source.demo_names:
        raise ApprenticeError(f"{source.path}: holds no demos; nothing to write")
    notes = ConversionNotes()
    plan = plan_features(source, mapping, notes)
    codec = pick_codec(vcodec, lossless, notes) if plan.cameras else None
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".{dst.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        task = task or str(source.env_args.get("env_name") or "unknown")
        _write_folder(source, tmp, plan, codec, int(fps), task, notes, robot_type)
        _write_apprentice_json(source, tmp, plan, repo_id, notes)
        _move_into_place(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    notes.info.insert(0, f"wrote {notes.demos} episodes, {notes.frames} frames as LeRobot v3.0")
    return notes


# ---- the data and video files -------------------------------------------------------------------


class _DataFiles:
    """The data parquet files: one row group per episode, a new file past the size limit."""

    def __init__(self, root: Path, schema: pa.Schema):
        self._root, self.schema = root, schema
        self._chunk, self._file = 0, -1
        self._writer: Any = None

    @property
    def _path(self) -> Path:
        return self._root / DATA_PATH.format(chunk_index=self._chunk, file_index=self._file)

    def append(self, table: pa.Table) -> dict[str, int]:
        """Write one episode's rows; its columns of the episodes table."""
        if self._writer is None or self._path.stat().st_size >= DATA_FILE_MB * 2**20:
            self.close()
            self._chunk, self._file = next_file(self._chunk, self._file, CHUNKS_SIZE)
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self._path, self.schema, compression="snappy")
        self._writer.write_table(table)
        return {"data/chunk_index": self._chunk, "data/file_index": self._file}

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class _FolderWriter:
    """Writes episodes into a v3.0 folder: data rows at once, video on one thread per camera
    (so cameras encode in parallel, and alongside reading the next episode), episode rows once
    their videos are done."""

    def __init__(self, root: Path, plan: FeaturePlan, codec: Codec | None, fps: int):
        self._root, self._plan, self._fps = root, plan, fps
        ft = plan.features
        data = {f: v for f, v in ft.items() if v["dtype"] != "video"}
        meta = json.dumps({"info": {"features": {f: hf_feature(v) for f, v in data.items()}}})
        fields = [
            pa.field(f, arrow_column(np.zeros((1, *v["shape"])), v).type) for f, v in data.items()
        ]
        self._data = _DataFiles(root, pa.schema(fields, metadata={"huggingface": meta}))
        self.videos = {
            f: VideoFiles(
                root,
                f,
                codec,
                fps,
                tuple(ft[f]["shape"]),
                chunks_size=CHUNKS_SIZE,
                file_mb=VIDEO_FILE_MB,
            )
            for f in plan.cameras
            if codec is not None
        }
        self._pools = {f: ThreadPoolExecutor(1, thread_name_prefix=f) for f in self.videos}
        self._pending: list[tuple[dict[str, Any], dict[str, Future[dict[str, Any]]]]] = []
        self.episodes: list[dict[str, Any]] = []
        """The episodes table, a row per episode written."""
        self.stats: list[dict[str, dict[str, np.ndarray]]] = []
        self.frames = 0

    def append(self, ep: Episode, task: str) -> None:
        """Write episode `ep` (its videos in the background)."""
        index, t, ft = len(self.stats), ep.num_samples, self._plan.features
        values = self._values(ep, index)
        columns = {f: arrow_column(v, ft[f]) for f, v in values.items()}
        row: dict[str, Any] = {"episode_index": index, "tasks": [task], "length": t}
        row.update(self._data.append(pa.table(columns, schema=self._data.schema)))
        row.update(dataset_from_index=self.frames, dataset_to_index=self.frames + t)
        videos = {
            f: self._pools[f].submit(video.append, ep.obs[self._plan.cameras[f]])
            for f, video in self.videos.items()
        }
        stats = {f: episode_stats(v.astype(ft[f]["dtype"])) for f, v in values.items()}
        stats.update({f: image_stats(ep.obs[self._plan.cameras[f]]) for f in self.videos})
        self.stats.append(stats)
        self.frames += t
        self._finish_pending()  # at most two episodes in flight: memory stays bounded
        self._pending.append((row, videos))

    def _values(self, ep: Episode, index: int) -> dict[str, np.ndarray]:
        """Episode `ep`'s data columns: (T, D) or (T,) per feature."""
        t, ft = ep.num_samples, self._plan.features
        values: dict[str, np.ndarray] = {
            f: np.concatenate([ep.obs[k].reshape(t, -1) for k in keys], axis=1)
            for f, keys in self._plan.low_dim.items()
        }
        if "action" in ft:
            values["action"] = ep.actions
        values["next.reward"] = ep.rewards
        values["next.done"] = ep.dones
        values["timestamp"] = np.arange(t) / self._fps
        values["frame_index"] = np.arange(t)
        values["episode_index"] = np.full(t, index)
        values["index"] = self.frames + np.arange(t)
        values["task_index"] = np.zeros(t, dtype=np.int64)
        return values

    def _finish_pending(self) -> None:
        for row, videos in self._pending:
            for result in videos.values():
                row.update(result.result())
            stats = self.stats[row["episode_index"]]
            for feature, s in stats.items():
                row.update({f"stats/{feature}/{k}": v.tolist() for k, v in s.items()})
            row.update({"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
            self.episodes.append(row)
        self._pending.clear()

    def close(self) -> None:
        """Finish every episode in flight and close the files."""
        try:
            self._finish_pending()
        finally:
            for pool in self._pools.values():
                pool.shutdown(cancel_futures=True)
            for video in self.videos.values():
                video.close()
            self._data.close()


# ---- the folder ---------------------------------------------------------------------------------


def _write_folder(
    source: DemoSource,
    root: Path,
    plan: FeaturePlan,
    codec: Codec | None,
    fps: int,
    task: str,
    notes: ConversionNotes,
    robot_type: str | None = None,
) -> None:
    names = source.demo_names
    first = source.read(names[0])
    plan.features = info_features(source, plan, first)
    if source.action_dim == 0:
        del plan.features["action"]
        notes.drop("actions: the source holds none (a state-only dataset)")
    writer = _FolderWriter(root, plan, codec, fps)
    try:
        for i, name in enumerate(names):
            ep = first if i == 0 else source.read(name)
            _note_dropped(ep, notes)
            writer.append(ep, task)
    finally:
        writer.close()
    for feature, video in writer.videos.items():
        plan.features[feature]["info"] = video.info()
    notes.demos, notes.frames = len(names), writer.frames
    meta = root / "meta"
    (meta / "episodes" / "chunk-000").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(writer.episodes), root / EPISODES_PATH)
    _write_tasks(meta / "tasks.parquet", [task])
    stats = {f: aggregate_stats([s[f] for s in writer.stats]) for f in writer.stats[0]}
    _write_json(
        meta / "stats.json", {f: {k: v.tolist() for k, v in s.items()} for f, s in stats.items()}
    )
    info = {
        "codebase_version": CODEBASE_VERSION,
        "fps": fps,
        "features": plan.features,
        "total_episodes": len(names),
        "total_frames": writer.frames,
        "total_tasks": 1,
        "chunks_size": CHUNKS_SIZE,
        "data_files_size_in_mb": DATA_FILE_MB,
        "video_files_size_in_mb": VIDEO_FILE_MB,
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH if plan.cameras else None,
        "robot_type": robot_type,
        "splits": _splits(source),
    }
    _write_json(meta / "info.json", info)


def _note_dropped(ep: Episode, notes: ConversionNotes) -> None:
    if ep.states.ndim == 2 and ep.states.shape[1] > 0:
        notes.drop("states: simulator states (T, S); LeRobot has no field for them")
    if ep.datagen_info is not None:
        notes.drop("datagen_info: MimicGen's generation record; LeRobot has no field for it")
    if ep.next_obs:
        notes.drop("next_obs: LeRobot keeps one observation per step (the next is the next row)")


def _splits(source: DemoSource) -> dict[str, str]:
    """LeRobot's splits ("0:80", ranges of episode indices) from the train and valid masks; all
    episodes in train where there are neither, as LeRobot writes them."""
    position = {name: i for i, name in enumerate(source.demo_names)}
    splits = {}
    for mask in ("train", "valid"):
        demos = source.masks.get(mask)
        if demos is not None:
            splits[mask] = _ranges(sorted(position[d] for d in demos if d in position))
    return splits or {"train": f"0:{len(position)}"}


def _ranges(indices: list[int]) -> str:
    """[0, 1, 2, 5, 6] -> "0:3,5:7"."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and runs[-1][1] == i:
            runs[-1][1] = i + 1
        else:
            runs.append([i, i + 1])
    return ",".join(f"{a}:{b}" for a, b in runs)


def _write_apprentice_json(
    source: DemoSource, root: Path, plan: FeaturePlan, repo_id: str, notes: ConversionNotes
) -> None:
    """What LeRobot has no field for, kept for apprentice: env_args, masks (under the new demo
    names), per-demo attrs, image keys whose name LeRobot's would not give back."""
    new_name = {name: f"demo_{i}" for i, name in enumerate(source.demo_names)}
    masks = {m: [new_name[d] for d in ds if d in new_name] for m, ds in source.masks.items()}
    demos = []
    for name in source.demo_names:
        attrs = {"source_demo": name}
        for key, value in source.attrs(name).items():
            size = len(json.dumps(value, default=_plain))
            if size > _MAX_ATTR_BYTES:
                notes.drop(f"attrs/{key}: {size} bytes a demo (e.g. robomimic's model_file)")
            elif key != "num_samples":
                attrs[key] = value
        demos.append(attrs)
    extras = {
        "repo_id": repo_id,
        "source": str(source.path),
        "env_args": source.env_args,
        "masks": masks,
        "demos": demos,
        "camera_keys": {f: k for f, k in plan.cameras.items() if default_key(f) != k},
    }
    _write_json(root / APPRENTICE_JSON, extras)
    notes.note(
        "env_args, masks and per-demo attrs (seed, success, source) kept in meta/apprentice.json; "
        "train/valid also as LeRobot splits"
    )


def _plain(value: Any) -> Any:
    """JSON for numpy values and bytes in attrs."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _write_json(path: Path, value: Any) -> None:
    write_text_atomic(path, json.dumps(value, indent=4, default=_plain) + "\n", durable=False)


def _write_tasks(path: Path, tasks: list[str]) -> None:
    """meta/tasks.parquet as pandas writes LeRobot's DataFrame: task_index, with the task strings
    as its index (pandas' metadata says so)."""
    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [],
        "columns": [
            {
                "name": "task_index",
                "field_name": "task_index",
                "pandas_type": "int64",
                "numpy_type": "int64",
                "metadata": None,
            },
            {
                "name": "task",
                "field_name": "task",
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": None,
            },
        ],
    }
    schema = pa.schema(
        [("task_index", pa.int64()), ("task", pa.string())],
        metadata={"pandas": json.dumps(pandas_meta)},
    )
    pq.write_table(pa.table({"task_index": range(len(tasks)), "task": tasks}, schema=schema), path)


def _move_into_place(tmp: Path, dst: Path) -> None:
    """Rename the finished folder `tmp` to `dst`, replacing what is there."""
    if not dst.exists():
        os.rename(tmp, dst)
        return
    old = dst.parent / f".{dst.name}.old-{os.getpid()}"
    os.rename(dst, old)
    os.rename(tmp, dst)
    if old.is_dir():
        shutil.rmtree(old)
    else:
        old.unlink()
