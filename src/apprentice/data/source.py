"""`DemoSource`: what the trainer, the sampler, `inspect` and `generate` need of a dataset.

A dataset format is one class that satisfies this protocol, plus one branch in `open_source`,
which picks the class by what the path is. robomimic's HDF5 layout (`DemoFile`) is the native
format; LeRobot's dataset folders (`apprentice.data.lerobot`) and Isaac Lab's HDF5 files
(`apprentice.data.isaaclab`) are read through the same protocol. A source is opened validated
and read-only; it is a context manager.

Shapes: `T` steps of one demo, `A` action dims, `S` simulator state dims.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

import numpy as np

from apprentice.data.episode import DatagenInfo, Episode
from apprentice.data.reader import DemoFile
from apprentice.data.spec import ObsActSpec
from apprentice.errors import ApprenticeError


@runtime_checkable
class DemoSource(Protocol):
    """A validated, read-only dataset of demos.

    Demo names are listed in the order training and `inspect` show them. Every method that takes
    a demo name raises ApprenticeError naming the source and the demo when it has no such demo.
    """

    path: Path

    @property
    def env_args(self) -> dict[str, Any]:
        """The task the demos were recorded on: env_name, env_type, env_kwargs."""
        ...

    @property
    def spec(self) -> ObsActSpec:
        """Per-step observation shapes ((D,) low-dim, (H, W, C) uint8 images) and action dim A
        (0 in a state-only dataset)."""
        ...

    @property
    def obs_keys(self) -> list[str]:
        """Every observation key, sorted."""
        ...

    @property
    def obs_shapes(self) -> dict[str, tuple[int, ...]]:
        """key -> per-step shape, sorted by key."""
        ...

    @property
    def image_keys(self) -> list[str]:
        """The observation keys that are camera images (uint8 H, W, C)."""
        ...

    @property
    def action_dim(self) -> int:
        """A; 0 in a state-only dataset."""
        ...

    @property
    def demo_names(self) -> list[str]: ...

    @property
    def masks(self) -> dict[str, list[str]]:
        """Filters: name -> the demos it selects (train, valid, and any user filter)."""
        ...

    def num_samples(self, name: str) -> int:
        """T of demo `name`."""
        ...

    def attrs(self, name: str) -> dict[str, Any]:
        """Demo `name`'s attributes as plain Python (seed, success, source where recorded)."""
        ...

    def check_obs_keys(self, obs_keys: Sequence[str]) -> None:
        """Raise ApprenticeError naming the first unknown key and listing the dataset's keys."""
        ...

    def read_obs(self, name: str, key: str) -> np.ndarray:
        """obs/<key> of demo `name`: (T, ...) in the dtype stored."""
        ...

    def read_actions(self, name: str) -> np.ndarray:
        """Demo `name`'s actions: (T, A) in the dtype stored (float32 where apprentice wrote
        them)."""
        ...

    def read_states(self, name: str) -> np.ndarray | None:
        """Simulator states (T, S) for exact replay; None where the demo has none."""
        ...

    def read_datagen_info(self, name: str) -> DatagenInfo | None:
        """What generation needs of demo `name`; None where it has none."""
        ...

    def read(
        self, name: str, obs_keys: Sequence[str] | None = None, with_images: bool = True
    ) -> Episode:
        """Demo `name` as an Episode: obs (and next_obs where stored) of `obs_keys` (all if None;
        no camera images if not `with_images`), actions, rewards, dones, states."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> DemoSource: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


def open_source(path: str | os.PathLike[str]) -> DemoSource:
    """The dataset at `path`, opened by the implementation its format needs: a LeRobot dataset
    folder (meta/info.json), an Isaac Lab HDF5 file, or robomimic's HDF5 layout.

    Raises ApprenticeError naming the path when it does not exist, or is a folder or file of no
    format apprentice reads.
    """
    p = Path(path)
    if p.is_dir():
        if (p / "meta" / "info.json").is_file():
            try:
                from apprentice.data.lerobot import LeRobotSource
            except ImportError as e:
                raise ApprenticeError(
                    f"{p}: a LeRobot dataset; reading it needs the lerobot extra "
                    f"(pip install 'apprentice[lerobot]'): {e}"
                ) from None
            return LeRobotSource(p)
        raise ApprenticeError(
            f"{p}: is a folder with no meta/info.json; give an HDF5 demo file (robomimic or "
            "Isaac Lab layout) or a LeRobot dataset folder"
        )
    if not p.is_file():
        raise ApprenticeError(f"{p}: no such file")
    from apprentice.data.isaaclab import IsaacLabSource, is_isaaclab

    if is_isaaclab(p):
        return IsaacLabSource(p)
    return DemoFile(p)


def source_format(source: DemoSource) -> str:
    """The format `source` was read from: one of `apprentice.data.convert.FORMATS`."""
    from apprentice.data.isaaclab import IsaacLabSource
    from apprentice.data.lerobot import LeRobotSource

    if isinstance(source, LeRobotSource):
        return "lerobot"
    if isinstance(source, IsaacLabSource):
        return "isaaclab"
    return "robomimic"


def require_actions(source: DemoSource, *, learner: str = "behavioral cloning") -> None:
    """Raise ApprenticeError when `source` holds no actions (a state-only dataset), saying how
    to label them."""
    if source.action_dim == 0:
        raise ApprenticeError(
            f"{source.path}: holds no actions (a state-only dataset), and {learner} learns from "
            f"actions; label them first: `apprentice label-actions --demos {source.path} "
            "--out labelled.hdf5`"
        )


__all__ = ["DemoSource", "open_source", "require_actions", "source_format"]
