"""What an offline W&B run wrote, read back from its run-<id>.wandb file without network.

The file is W&B's transaction log: a 7-byte header, then LevelDB-log records (32 KiB blocks;
each record a 7-byte header of CRC, length and type, split across blocks as FIRST, MIDDLE,
LAST pieces) holding `wandb_internal_pb2.Record` protobufs. wandb itself has no reader of it
any more, so this one follows the format.

W&B's service process writes the file: it may still be writing when `run.finish()` returns
(the command's own exit waits for it), so a run is read once its exit record is in.
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_BLOCK = 32 * 1024
_HEADER = 7
_FULL, _LAST = 1, 4


@dataclass
class OfflineRun:
    """One offline-run-* folder: the run's id, project, config and logged rows."""

    folder: Path
    run_id: str = ""
    project: str = ""
    job_type: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    """Each `run.log` call's values (without W&B's own _step, _runtime, _timestamp)."""
    finished: bool = False
    """Whether the run's exit record was read."""


def _records(path: Path) -> list[bytes]:
    raw = path.read_bytes()
    assert raw[:4] == b":W&B", f"{path} is not a W&B transaction log"
    pos, piece, out = _HEADER, b"", []
    while pos + _HEADER <= len(raw):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:  # a block's tail too short for a header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", raw[pos : pos + _HEADER])
        if length == 0 and kind == 0:  # zero padding to the block's end
            pos += left
            continue
        if pos + _HEADER + length > len(raw):  # being written
            break
        piece += raw[pos + _HEADER : pos + _HEADER + length]
        pos += _HEADER + length
        if kind in (_FULL, _LAST):
            out.append(piece)
            piece = b""
    return out


def read_offline_run(folder: Path, timeout: float = 30.0) -> OfflineRun:
    """The run in `folder`, once W&B has written its end (or after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    run = _read(folder)
    while not run.finished and time.monotonic() < deadline:
        time.sleep(0.05)
        run = _read(folder)
    return run


def _read(folder: Path) -> OfflineRun:
    from wandb.proto import wandb_internal_pb2 as pb

    (log,) = folder.glob("run-*.wandb")
    run = OfflineRun(folder)
    for data in _records(log):
        record = pb.Record()
        record.ParseFromString(data)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.run_id, run.project = record.run.run_id, record.run.project
            run.job_type = record.run.job_type
            run.config.update({u.key: json.loads(u.value_json) for u in record.run.config.update})
        elif kind == "config":
            run.config.update({u.key: json.loads(u.value_json) for u in record.config.update})
        elif kind == "history":
            row = {
                i.key or "/".join(i.nested_key): json.loads(i.value_json)
                for i in record.history.item
            }
            run.history.append({k: v for k, v in row.items() if not k.startswith("_")})
        elif kind == "exit":
            run.finished = True
    run.config.pop("_wandb", None)
    return run


def read_offline_runs(run_dir: Path) -> list[OfflineRun]:
    """The offline runs W&B wrote under `run_dir`/wandb, oldest first."""
    return [read_offline_run(f) for f in sorted((run_dir / "wandb").glob("offline-run-*"))]
