"""The on-disk store: robomimic's HDF5 layout, written crash-safely, read with validation.

    data                 attrs: total, env_args (JSON)
      demo_<i>           attrs: num_samples, seed, success, source, + Episode.attrs
        obs/<key>, next_obs/<key>   (T, ...)
        actions (T, A), rewards (T,), dones (T,), states (T, S)
        action_dict/<name>          (T, ...)  other representations of the actions
        datagen_info/    eef_pose, target_pose, gripper_action, object_poses/*,
                         subtask_term_signals/*
    mask/<name>          (M,) bytes: demo names

Every write goes through `apprentice.data.journal`, so a killed writer loses at most the episode in
flight and the next open (writer or reader) rolls the file back to its last committed append.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np

from apprentice.data.episode import DatagenInfo, Episode
from apprentice.data.journal import JournaledFile, recover
from apprentice.data.reader import (
    DEMO_RE,
    DemoFile,
    attr_value,
    canonical_env_args,
    demo_index,
    sorted_demos,
)
from apprentice.errors import ApprenticeError
from apprentice.files import atomic_write
from apprentice.interrupts import sigint_deferred

_RESERVED_ATTRS = ("num_samples", "seed", "success", "source")


def _create_empty(path: Path, env_args: dict[str, Any]) -> None:
    """Create an empty store atomically: a crash leaves either no file or an empty valid one."""
    with atomic_write(path) as tmp, h5py.File(tmp, "w") as f:
        data = f.create_group("data")
        data.attrs["total"] = 0
        data.attrs["env_args"] = json.dumps(env_args)


@contextmanager
def _journaled(path: Path, *, durable: bool = True) -> Iterator[tuple[h5py.File, JournaledFile]]:
    """Open an existing store for writing under the undo journal; commit on a clean exit.

    Ctrl-C is held until the change is committed or undone (see `sigint_deferred`)."""
    with sigint_deferred():
        recover(path)
        jf = JournaledFile.open(path, durable=durable)
        try:
            f = h5py.File(jf, "r+")
        except OSError as e:
            jf.abandon()
            raise ApprenticeError(f"{path}: not a readable HDF5 file ({e})") from None
        try:
            yield f, jf
        except BaseException:
            f.close()
            jf.abandon()
            recover(path)  # undo the half-done change now rather than on the next open
            raise
        f.flush()
        f.close()
        jf.commit()
        jf.close()


def _append_mask(f: h5py.File, name: str, demos: Sequence[str], *, replace: bool) -> None:
    key = f"mask/{name}"
    old: list[bytes] = []
    if key in f:
        if not replace:
            old = [bytes(x) for x in f[key][()]]
        del f[key]
    new = old + [d.encode("utf-8") for d in demos]
    # robomimic reads masks as an array of byte strings; a fixed-length "S" array is what it writes.
    f.create_dataset(key, data=np.array(new, dtype="S") if new else np.zeros(0, dtype="S1"))


class DemoWriter:
    """Append episodes to a store, crash-safely.

    A process killed at any instant loses at most the episode in flight; the file it leaves opens
    and validates. Re-opening an existing file continues the numbering (resumed collection).
    durable=False skips fsync: still safe if the process dies, not if the machine loses power.
    Ctrl-C during an open, append or close is held until it returns (see `sigint_deferred`).
    """

    @sigint_deferred()
    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        env_args: dict[str, Any],
        overwrite: bool = False,
        durable: bool = True,
    ) -> None:
        self.path = Path(path)
        self.env_args = canonical_env_args(env_args)
        if self.path.exists():
            recover(self.path)  # also refuses a file that a live writer holds
        if overwrite or not self.path.exists():
            _create_empty(self.path, self.env_args)
        else:
            self._check_existing()
        self._jf = JournaledFile.open(self.path, durable=durable)
        try:
            self._h5: h5py.File | None = h5py.File(self._jf, "r+")
        except OSError as e:
            self._jf.abandon()
            raise ApprenticeError(f"{self.path}: not a readable HDF5 file ({e})") from None
        data = self._h5["data"]
        indices = [demo_index(n) for n in data if DEMO_RE.match(n)]
        self._next_index = max(indices) + 1 if indices else 0
        self._total = int(sum(int(data[n].attrs.get("num_samples", 0)) for n in data))
        self._commit()

    def _check_existing(self) -> None:
        try:
            f = h5py.File(self.path, "r")
        except OSError as e:
            raise ApprenticeError(f"{self.path}: not a readable HDF5 file ({e})") from None
        with f:
            if "data" not in f:
                raise ApprenticeError(f"{self.path}: no 'data' group; not a demo store")
            raw = f["data"].attrs.get("env_args", "{}")
            try:
                existing = json.loads(attr_value(raw))
            except json.JSONDecodeError:
                raise ApprenticeError(f"{self.path}: data attr env_args is not JSON") from None
        if existing != self.env_args:
            raise ApprenticeError(
                f"{self.path}: holds demos of env_args {json.dumps(existing)}, not "
                f"{json.dumps(self.env_args)}; choose another output file, or replace this one "
                "(overwrite=True; --overwrite in collect and generate)"
            )

    def _commit(self) -> None:
        assert self._h5 is not None
        self._h5.flush()
        self._jf.commit()

    @sigint_deferred()
    def append(self, episode: Episode, masks: Sequence[str] = ()) -> str:
        """Write `episode` as the next demo_<i>, add it to `masks`; returns its name.

        When this returns, the demo survives any later crash.
        """
        if self._h5 is None:
            raise ApprenticeError(f"{self.path}: writer is closed")
        name = f"demo_{self._next_index}"
        try:
            self._write_demo(self._h5, name, episode)
            for mask in masks:
                _append_mask(self._h5, mask, [name], replace=False)
            self._total += episode.num_samples
            self._h5["data"].attrs["total"] = self._total
            self._commit()
        except BaseException:
            # Roll back to the last append so the open file never keeps half a demo.
            self._h5.close()
            self._h5 = None
            self._jf.abandon()
            recover(self.path)
            raise
        self._next_index += 1
        return name

    @sigint_deferred()
    def set_data_attrs(self, attrs: dict[str, Any]) -> None:
        """Set attrs of the `data` group (e.g. a generation record); committed on return."""
        if self._h5 is None:
            raise ApprenticeError(f"{self.path}: writer is closed")
        for key in attrs:
            if key in ("total", "env_args"):
                raise ApprenticeError(f"{self.path}: data attr {key!r} is reserved")
        self._h5["data"].attrs.update(attrs)
        self._commit()

    def _write_demo(self, f: h5py.File, name: str, ep: Episode) -> None:
        g = f["data"].create_group(name)
        for key, value in ep.attrs.items():
            if key in _RESERVED_ATTRS:
                raise ApprenticeError(f"{self.path}: data/{name}: attr {key!r} is reserved")
            try:
                g.attrs[key] = value
            except TypeError as e:
                raise ApprenticeError(
                    f"{self.path}: data/{name}: attr {key!r} cannot be stored in HDF5 ({e})"
                ) from None
        g.attrs["num_samples"] = ep.num_samples
        if ep.seed is not None:
            g.attrs["seed"] = ep.seed
        g.attrs["success"] = bool(ep.success)
        g.attrs["source"] = ep.source
        for key, arr in ep.obs.items():
            g.create_dataset(f"obs/{key}", data=arr)
        for key, arr in ep.next_obs.items():
            g.create_dataset(f"next_obs/{key}", data=arr)
        g.create_dataset("actions", data=np.asarray(ep.actions, dtype=np.float32))
        g.create_dataset("rewards", data=ep.rewards)
        g.create_dataset("dones", data=ep.dones)
        g.create_dataset("states", data=ep.states)
        for key, arr in ep.action_dict.items():
            g.create_dataset(f"action_dict/{key}", data=arr)
        if ep.datagen_info is not None:
            _write_datagen(g, ep.datagen_info)

    @sigint_deferred()
    def close(self) -> None:
        if self._h5 is None:
            return
        self._commit()
        self._h5.close()
        self._h5 = None
        self._jf.commit()  # HDF5 may write on close (free space, superblock)
        self._jf.close()

    def __enter__(self) -> DemoWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def write_mask(path: str | os.PathLike[str], name: str, demos: Sequence[str]) -> None:
    """Write (or replace) mask/<name> listing `demos`, which must exist in the file."""
    p = Path(path)
    with DemoFile(p) as df:
        unknown = sorted(set(demos) - set(df.demo_names))
    if unknown:
        raise ApprenticeError(
            f"{p}: mask/{name}: demos {', '.join(unknown[:5])} are not in the file"
        )
    with _journaled(p) as (f, _):
        _append_mask(f, name, sorted_demos(list(demos)), replace=True)


def write_datagen_info(
    path: str | os.PathLike[str], demo: str, info: DatagenInfo, *, replace: bool = False
) -> None:
    """Write (or with `replace`, rewrite) data/<demo>/datagen_info, crash-safely."""
    p = Path(path)
    with DemoFile(p) as df:
        if demo not in df.demo_names:
            raise ApprenticeError(f"{p}: no demo {demo!r}")
        t = df.num_samples(demo)
    if info.target_pose.shape[0] != t:
        raise ApprenticeError(
            f"{p}: data/{demo}: datagen_info has {info.target_pose.shape[0]} steps, demo has {t}"
        )
    with _journaled(p) as (f, _):
        g = f[f"data/{demo}"]
        if "datagen_info" in g:
            if not replace:
                raise ApprenticeError(f"{p}: data/{demo} already has datagen_info")
            del g["datagen_info"]
        _write_datagen(g, info)


def _write_datagen(g: h5py.Group, di: DatagenInfo) -> None:
    g.create_dataset("datagen_info/eef_pose", data=di.eef_pose)
    g.create_dataset("datagen_info/target_pose", data=di.target_pose)
    g.create_dataset("datagen_info/gripper_action", data=di.gripper_action)
    for obj, pose in di.object_poses.items():
        g.create_dataset(f"datagen_info/object_poses/{obj}", data=pose)
    for sig, val in di.subtask_term_signals.items():
        g.create_dataset(f"datagen_info/subtask_term_signals/{sig}", data=val)


def split_train_valid(
    path: str | os.PathLike[str], valid_fraction: float = 0.1, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Write mask/train and mask/valid (robomimic's names), a random split; returns both."""
    if not 0.0 <= valid_fraction < 1.0:
        raise ApprenticeError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
    p = Path(path)
    with DemoFile(p) as df:
        names = df.demo_names
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(names))
    n_valid = round(valid_fraction * len(names))
    if valid_fraction > 0 and len(names) > 1:
        n_valid = min(max(n_valid, 1), len(names) - 1)  # keep both sides non-empty
    valid = sorted_demos([names[i] for i in order[:n_valid]])
    train = sorted_demos([names[i] for i in order[n_valid:]])
    with _journaled(p) as (f, _):
        _append_mask(f, "train", train, replace=True)
        _append_mask(f, "valid", valid, replace=True)
    return train, valid


__all__ = ["DemoFile", "DemoWriter", "split_train_valid", "write_mask"]
