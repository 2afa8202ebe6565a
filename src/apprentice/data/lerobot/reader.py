"""`LeRobotSource`: a LeRobot dataset folder read as a `DemoSource` (the package docstring gives
the mapping).

Shapes: `T` steps of one demo, `A` action dims, `F` frames of one mp4 (or rows of the dataset).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pyarrow as pa

from apprentice.data.episode import DatagenInfo, Episode
from apprentice.data.lerobot.layout import hwc
from apprentice.data.lerobot.validate import EpisodeRef, read_parquet, validate
from apprentice.data.lerobot.video import (
    cached_frames,
    decode_images,
    decode_video,
    frame_cache_dir,
)
from apprentice.data.spec import ObsActSpec
from apprentice.errors import ApprenticeError, fault


class LeRobotSource:
    """A LeRobot dataset folder (v3.0, or v2.0/v2.1) as a validated, read-only `DemoSource`.

    Opening reads the metadata and every low-dim column into memory and checks that the counters,
    files and features agree; each failure is one ApprenticeError naming the folder and the file or
    field at fault. Camera frames are decoded on first use into `cache_dir` (default
    `frame_cache_dir(path)`) and read from there after.

    mapping: {feature: {key: (start, stop)}} overrides how numeric features split into obs keys.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        mapping: Mapping[str, Mapping[str, Sequence[int]]] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise ApprenticeError(f"{self.path}: no such folder (a LeRobot dataset is a folder)")
        contents = validate(self.path, mapping)
        self._info = contents.info
        self.fps = float(self._info["fps"])
        self._features: dict[str, dict[str, Any]] = self._info["features"]
        self._episodes = contents.episodes
        self._names = contents.names
        self._by_name = dict(zip(self._names, self._episodes, strict=True))
        self._position = {name: i for i, name in enumerate(self._names)}
        self._extras = contents.extras
        self._low_dim = contents.low_dim  # key -> (feature, start, stop)
        self._cameras = contents.cameras  # key -> video or image feature
        self.unread: list[str] = contents.unread
        """Features that no obs key, actions, rewards or dones take (e.g. strings, 2-D arrays)."""
        self._arrays, self._starts, self._order = contents.arrays, contents.starts, contents.order
        self._masks = contents.masks
        self._cache_dir = Path(cache_dir) if cache_dir is not None else frame_cache_dir(self.path)
        self._frames: dict[str, dict[str, np.ndarray]] = {}  # feature -> mp4 -> (F, H, W, 3)

    # -- the public view --------------------------------------------------------------------------

    @property
    def env_args(self) -> dict[str, Any]:
        if "env_args" in self._extras:
            return dict(self._extras["env_args"])
        return {
            "env_name": self._info.get("robot_type") or "unknown",
            "env_type": 0,
            "env_kwargs": {"control_freq": self._info["fps"]},
        }

    @property
    def obs_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {
            k: (stop - start,) for k, (_, start, stop) in self._low_dim.items()
        }
        shapes.update({key: hwc(self._features[f]) for key, f in self._cameras.items()})
        return dict(sorted(shapes.items()))

    @property
    def obs_keys(self) -> list[str]:
        return list(self.obs_shapes)

    @property
    def image_keys(self) -> list[str]:
        return sorted(self._cameras)

    @property
    def action_dim(self) -> int:
        action = self._features.get("action")
        return int(np.prod(action["shape"])) if action is not None else 0

    @property
    def spec(self) -> ObsActSpec:
        return ObsActSpec(self.obs_shapes, self.action_dim)

    @property
    def demo_names(self) -> list[str]:
        return list(self._names)

    @property
    def masks(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self._masks.items()}

    def num_samples(self, name: str) -> int:
        return self._episode(name).length

    def attrs(self, name: str) -> dict[str, Any]:
        """episode_index, task (and tasks where several), and what apprentice stored (seed,
        success, source, ...)."""
        ep = self._episode(name)
        out: dict[str, Any] = {"episode_index": ep.index, "task": ep.tasks[0] if ep.tasks else ""}
        if len(ep.tasks) > 1:
            out["tasks"] = list(ep.tasks)
        demos = self._extras.get("demos", [])
        if self._position[name] < len(demos):
            out.update(demos[self._position[name]])
        return out

    def check_obs_keys(self, obs_keys: Sequence[str]) -> None:
        unknown = [k for k in obs_keys if k not in self._low_dim and k not in self._cameras]
        if unknown:
            raise ApprenticeError(
                f"{self.path}: no observation key {unknown[0]!r} "
                f"(it has: {', '.join(self.obs_keys) or 'none'})"
            )

    def read_obs(self, name: str, key: str) -> np.ndarray:
        """(T, D) low-dim in the stored dtype, or (T, H, W, 3) uint8 frames."""
        ep = self._episode(name)
        self.check_obs_keys([key])
        if key in self._cameras:
            feature = self._cameras[key]
            if self._features[feature]["dtype"] == "image":
                return np.array(self._rows(name, self._image_frames(feature)))
            mp4, first = ep.videos[feature]
            return np.array(self._video_frames(feature)[mp4][first : first + ep.length])
        feature, start, stop = self._low_dim[key]
        return np.array(self._rows(name, self._arrays[feature])[:, start:stop])

    def read_actions(self, name: str) -> np.ndarray:
        """(T, A) float32; (T, 0) where the dataset has no action feature."""
        t = self.num_samples(name)
        if "action" not in self._arrays:
            return np.zeros((t, 0), dtype=np.float32)
        return np.asarray(self._rows(name, self._arrays["action"]), dtype=np.float32).reshape(t, -1)

    def read_states(self, name: str) -> np.ndarray | None:
        """None: LeRobot keeps no simulator states."""
        self._episode(name)
        return None

    def read_datagen_info(self, name: str) -> DatagenInfo | None:
        """None: LeRobot keeps no generation record."""
        self._episode(name)
        return None

    def read(
        self, name: str, obs_keys: Sequence[str] | None = None, with_images: bool = True
    ) -> Episode:
        """Demo `name` as an Episode: no next_obs, states (T, 0); rewards zeros and dones on the
        last step where the dataset has no next.reward / next.done."""
        t = self.num_samples(name)
        keys = self.obs_keys if obs_keys is None else list(obs_keys)
        self.check_obs_keys(keys)
        keys = [k for k in keys if with_images or k not in self._cameras]
        rewards = (
            self._rows(name, self._arrays["next.reward"]).reshape(t).astype(np.float32)
            if "next.reward" in self._arrays
            else np.zeros(t, dtype=np.float32)
        )
        done = (
            self._rows(name, self._arrays["next.done"]).reshape(t)
            if "next.done" in self._arrays
            else None
        )
        attrs = self.attrs(name)
        seed = attrs.pop("seed", None)
        try:
            return Episode(
                obs={k: self.read_obs(name, k) for k in keys},
                next_obs={},
                actions=self.read_actions(name),
                rewards=rewards,
                dones=(np.arange(t) == t - 1 if done is None else done).astype(np.int64),
                states=np.zeros((t, 0), dtype=np.float64),
                seed=None if seed is None else int(seed),
                success=bool(attrs.pop("success", True)),
                source=str(attrs.pop("source", "lerobot")),
                attrs=attrs,
            )
        except ApprenticeError as e:
            raise ApprenticeError(f"{self.path}: {e}".replace("episode/", f"{name}/")) from None

    # -- rows and frames --------------------------------------------------------------------------

    def _episode(self, name: str) -> EpisodeRef:
        ep = self._by_name.get(name)
        if ep is None:
            shown = ", ".join(self._names[:5]) + (" ..." if len(self._names) > 5 else "")
            raise ApprenticeError(f"{self.path}: no demo {name!r} (it has: {shown or 'none'})")
        return ep

    def _rows(self, name: str, values: np.ndarray) -> np.ndarray:
        """Demo `name`'s rows of `values` (one row per frame of the dataset, in episode order)."""
        t = self.num_samples(name)
        start = self._starts[self._position[name]]
        return values[start : start + t]

    def _video_frames(self, feature: str) -> dict[str, np.ndarray]:
        """mp4 -> its frames (F, H, W, 3) uint8, memory-mapped from the cache; the whole camera is
        decoded into the cache on first use."""
        if feature not in self._frames:
            needed: dict[str, int] = {}
            for ep in self._episodes:
                mp4, first = ep.videos[feature]
                needed[mp4] = max(needed.get(mp4, 0), first + ep.length)
            shape = self._camera_shape(feature)
            self._frames[feature] = {
                mp4: cached_frames(
                    self._cache_dir,
                    self.path,
                    feature,
                    [mp4],
                    (n, *shape),
                    partial(self._decode_mp4, feature, mp4),
                )
                for mp4, n in needed.items()
            }
        return self._frames[feature]

    def _image_frames(self, feature: str) -> np.ndarray:
        """Every row's frame (N, H, W, 3) uint8 in (episode, frame) order, decoded from the data
        files' PNG/JPEG cells into the cache on first use."""
        if feature not in self._frames:
            files = list(dict.fromkeys(ep.data_file for ep in self._episodes))
            shape = (len(self._order), *self._camera_shape(feature))
            fill = partial(self._decode_cells, feature, files)
            cached = cached_frames(self._cache_dir, self.path, feature, files, shape, fill)
            self._frames[feature] = {"": cached}
        return self._frames[feature][""]

    def _camera_shape(self, feature: str) -> tuple[int, ...]:
        return self.obs_shapes[next(k for k, f in self._cameras.items() if f == feature)]

    def _decode_mp4(self, feature: str, mp4: str, out: np.ndarray) -> None:
        filled = decode_video(self.path / mp4, out, self.fps)
        if filled.all():
            return
        missing = int(np.argmin(filled))
        ep = next(
            e
            for e in self._episodes
            if e.videos[feature][0] == mp4 and e.videos[feature][1] + e.length > missing
        )
        raise fault(
            self.path,
            mp4,
            f"video shorter than its episodes: it holds {int(filled.sum())} of the "
            f"{len(filled)} frames they need (episode {ep.index} needs frame {missing})",
        )

    def _decode_cells(self, feature: str, files: list[str], out: np.ndarray) -> None:
        """Decode the PNG/JPEG cells of image feature `feature` into `out` (N, H, W, 3)."""
        tables = [read_parquet(self.path / f, self.path, [feature]) for f in files]
        cells = pa.concat_tables(tables)[feature].to_pylist()
        decode_images(cells, self._order.tolist(), out, f"{self.path}: data: {feature}")

    # -- lifetime ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Release the memory-mapped frame caches."""
        self._frames.clear()

    def __enter__(self) -> LeRobotSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
