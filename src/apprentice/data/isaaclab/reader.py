"""`IsaacLabSource`: an Isaac Lab HDF5 demo file read as a `DemoSource` (the package docstring
gives the mapping).

Shapes: `T` steps of one demo, `A` action dims, `S` scene state dims.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np

from apprentice.data.episode import DatagenInfo, Episode
from apprentice.data.isaaclab.layout import (
    APPRENTICE_ENV_ARGS,
    DATAGEN,
    EXTRAS,
    QUAT_NAMES,
    SCENE,
    StateField,
    file_quat_order,
    implied_dones,
    in_order,
    quat_offset,
    quat_order,
)
from apprentice.data.isaaclab.validate import validate
from apprentice.data.reader import attr_value, is_image
from apprentice.data.spec import ObsActSpec
from apprentice.errors import ApprenticeError, fault


class IsaacLabSource:
    """A validated, read-only Isaac Lab HDF5 file: a `DemoSource` (see the package docstring for
    the mapping). `eef` picks the end-effector whose poses datagen_info gives.

    Opening checks the layout and raises ApprenticeError naming the path, demo and field at fault.
    """

    def __init__(self, path: str | os.PathLike[str], *, eef: str | None = None) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise ApprenticeError(f"{self.path}: is a folder, not an Isaac Lab HDF5 file")
        if not self.path.is_file():
            raise ApprenticeError(f"{self.path}: no such file")
        try:
            self._h5 = h5py.File(self.path, "r")
        except OSError as e:
            raise ApprenticeError(f"{self.path}: not a readable HDF5 file ({e})") from None
        try:
            self._c = validate(self._h5, self.path, eef)
        except BaseException:
            self._h5.close()
            raise
        self._file_order = file_quat_order(self._c.format_version)
        kept = self._c.env_args.get(APPRENTICE_ENV_ARGS)
        self._obs_order = quat_order(kept) if isinstance(kept, dict) else "wxyz"

    def _fail(self, where: str, what: str) -> ApprenticeError:
        return fault(self.path, where, what)

    # -- the public view ----------------------------------------------------------------------

    @property
    def env_args(self) -> dict[str, Any]:
        raw = self._c.env_args
        kept = raw.get(APPRENTICE_ENV_ARGS)
        if isinstance(kept, dict):
            return dict(kept)
        rest = {k: v for k, v in raw.items() if k not in ("env_name", "type")}
        return {
            "env_name": raw.get("env_name", ""),
            "env_type": raw.get("type", 2),
            "env_kwargs": rest,
        }

    @property
    def isaaclab_env_args(self) -> dict[str, Any]:
        """data attr env_args as the file holds them."""
        return dict(self._c.env_args)

    @property
    def format_version(self) -> int:
        return self._c.format_version

    @property
    def obs_quat_order(self) -> str:
        """The order ("wxyz" or "xyzw") of the quaternions `read_obs` gives: that of the task in
        `env_args` (`quat_order`) where apprentice wrote the file, else (w, x, y, z)."""
        return self._obs_order

    @property
    def demo_names(self) -> list[str]:
        return list(self._c.demo_names)

    @property
    def masks(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self._c.masks.items()}

    @property
    def obs_keys(self) -> list[str]:
        return sorted(self._c.paths)

    @property
    def obs_paths(self) -> dict[str, str]:
        """key -> the term's path below obs/ ("" for an `obs` array), sorted by key."""
        return dict(sorted(self._c.paths.items()))

    @property
    def obs_shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: self._c.obs[p][0] for k, p in sorted(self._c.paths.items())}

    @property
    def image_keys(self) -> list[str]:
        return [k for k, p in sorted(self._c.paths.items()) if is_image(*self._c.obs[p])]

    @property
    def action_dim(self) -> int:
        if self._c.action_dim is None:
            raise self._fail("data", "holds no demos")
        return self._c.action_dim

    @property
    def spec(self) -> ObsActSpec:
        return ObsActSpec(self.obs_shapes, self.action_dim)

    @property
    def state_layout(self) -> tuple[StateField, ...]:
        """The arrays of the scene state, in the order the flat states hold them; () if none."""
        return self._c.state_layout

    @property
    def datagen_eef(self) -> str | None:
        """The end-effector datagen_info's eef_pose and target_pose are of; None if unnamed."""
        return self._c.eef

    @property
    def unmapped(self) -> list[str]:
        """Fields of the file no DemoSource method gives (e.g. processed_actions)."""
        extra = [f"obs/{DATAGEN}/eef_pose/{e}" for e in self._c.eefs if e != self._c.eef]
        return list(self._c.unmapped) + extra

    @property
    def notes(self) -> list[str]:
        """What reading maps beyond a copy: quaternions reordered (or that none needed to be),
        the end-effector picked."""
        out = self._quat_notes()
        if len(self._c.eefs) > 1:
            out.append(
                f"datagen_info: of end-effector {self._c.eef!r} of {', '.join(self._c.eefs)}"
            )
        return out

    def _quat_notes(self) -> list[str]:
        # Each quaternion field and the order it is read in: obs terms in the order of the task
        # in env_args, the scene's root_pose in (w, x, y, z).
        wanted = [
            (f"obs/{p}", self._obs_order)
            for p, (shape, _) in sorted(self._c.obs.items())
            if quat_offset(p, shape) is not None
        ]
        wanted += [
            (f"states/{f.path}", "wxyz")
            for f in self.state_layout
            if quat_offset(f.path, f.shape) is not None
        ]
        stored, version = self._file_order, self._c.format_version
        out = []
        for to, name in QUAT_NAMES.items():
            fields = [field for field, order in wanted if order == to != stored]
            if fields:
                out.append(
                    f"quaternions: read as {name} from format_version {version}'s "
                    f"{QUAT_NAMES[stored]} in {', '.join(fields)}"
                )
        kept = [field for field, order in wanted if order == stored]
        if kept:
            out.append(
                f"quaternions: none reordered in {', '.join(kept)}: format_version {version} "
                f"stores them {QUAT_NAMES[stored]}, the order apprentice reads them in"
            )
        return out

    def num_samples(self, name: str) -> int:
        self._check_demo(name)
        return self._c.lengths[name]

    def attrs(self, name: str) -> dict[str, Any]:
        self._check_demo(name)
        return {k: attr_value(v) for k, v in self._h5[f"data/{name}"].attrs.items()}

    def check_obs_keys(self, obs_keys: Sequence[str]) -> None:
        unknown = [k for k in obs_keys if k not in self._c.paths]
        if unknown:
            raise ApprenticeError(
                f"{self.path}: no observation key {unknown[0]!r} "
                f"(it has: {', '.join(self.obs_keys) or 'none'})"
            )

    def _check_demo(self, name: str) -> None:
        if name not in self._c.lengths:
            names = self._c.demo_names
            shown = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
            raise ApprenticeError(f"{self.path}: no demo {name!r} (it has: {shown or 'none'})")

    def _demo(self, name: str) -> h5py.Group:
        self._check_demo(name)
        return self._h5[f"data/{name}"]

    # -- reading ------------------------------------------------------------------------------

    def read_obs(self, name: str, key: str) -> np.ndarray:
        """obs term `key` of demo `name`: (T, ...) in the dtype stored, quaternions in
        `obs_quat_order`."""
        g = self._demo(name)
        self.check_obs_keys([key])
        path = self._c.paths[key]
        arr = np.asarray((g["obs"][path] if path else g["obs"])[()])
        return in_order(arr, path, stored=self._file_order, to=self._obs_order)

    def read_actions(self, name: str) -> np.ndarray:
        """Demo `name`'s actions: (T, A) as stored."""
        return np.asarray(self._demo(name)["actions"][()])

    def read_scene_states(self, name: str) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Isaac Lab's scene states of demo `name`, flattened in `state_layout` order with
        quaternions (w, x, y, z): the one after reset (S,) and those after each step (T, S);
        None for what the demo lacks."""
        g = self._demo(name)
        out: list[np.ndarray | None] = []
        for scene in SCENE:
            if scene not in g or not self.state_layout:
                out.append(None)
                continue
            cols = [
                in_order(
                    np.asarray(g[scene][f.path][()]), f.path, stored=self._file_order, to="wxyz"
                )
                for f in self.state_layout
            ]
            out.append(np.concatenate([c.reshape(c.shape[0], -1) for c in cols], axis=1))
        initial, post = out
        return (None if initial is None else initial[0]), post

    def read_states(self, name: str) -> np.ndarray | None:
        """States (T, S) before each action: initial_state then states[:-1]; else the states an
        apprentice writer kept (apprentice/states); None where the demo has neither."""
        initial, post = self.read_scene_states(name)
        if initial is not None and post is not None:
            return np.concatenate([initial[None], post[:-1]], axis=0)
        kept = self._demo(name).get(f"{EXTRAS}/states")
        return np.asarray(kept[()]) if isinstance(kept, h5py.Dataset) else None

    def read_datagen_info(self, name: str) -> DatagenInfo | None:
        """Demo `name`'s Mimic annotation as apprentice's datagen_info; None if it has none."""
        g = self._demo(name)
        dg = g.get(f"obs/{DATAGEN}")
        if not isinstance(dg, h5py.Group):
            return None
        where = f"data/{name}/obs/{DATAGEN}"
        t = self._c.lengths[name]
        gripper = self._per_eef(dg, "gripper_action", where, required=False)
        if gripper is None:
            gripper = np.asarray(g["actions"][:, -1:])
        return DatagenInfo(
            eef_pose=self._per_eef(dg, "eef_pose", where),
            target_pose=self._per_eef(dg, "target_eef_pose", where),
            gripper_action=gripper.reshape(t, -1),
            object_poses=self._named(dg, "object_pose"),
            subtask_term_signals={
                k: self._signal(v, t, f"{where}/subtask_term_signals/{k}")
                for k, v in self._named(dg, "subtask_term_signals").items()
            },
        )

    def _signal(self, arr: np.ndarray, t: int, where: str) -> np.ndarray:
        """A subtask signal (T,) or (T, 1) as apprentice's (T,) int8 in {0, 1}."""
        if arr.size != t:
            raise self._fail(where, f"has shape {arr.shape}; a signal is (T,) or (T, 1)")
        return (arr.reshape(t) != 0).astype(np.int8)

    def _per_eef(self, dg: h5py.Group, field: str, where: str, required: bool = True) -> Any:
        item = dg.get(field)
        if item is None:
            if required:
                raise self._fail(f"{where}/{field}", "missing")
            return None
        if isinstance(item, h5py.Dataset):
            return np.asarray(item[()])
        if self._c.eef is None or self._c.eef not in item:
            raise self._fail(f"{where}/{field}", f"has no end-effector {self._c.eef!r}")
        return np.asarray(item[self._c.eef][()])

    @staticmethod
    def _named(dg: h5py.Group, field: str) -> dict[str, np.ndarray]:
        item = dg.get(field)
        return (
            {k: np.asarray(v[()]) for k, v in item.items()} if isinstance(item, h5py.Group) else {}
        )

    def read(
        self, name: str, obs_keys: Sequence[str] | None = None, with_images: bool = True
    ) -> Episode:
        """Demo `name` as a validated Episode; rewards are 0 and dones mark the last step
        where an apprentice writer kept none."""
        g = self._demo(name)
        keys = self.obs_keys if obs_keys is None else list(obs_keys)
        self.check_obs_keys(keys)
        if not with_images:
            keys = [k for k in keys if k not in self.image_keys]
        t = self._c.lengths[name]
        extras = g.get(EXTRAS)
        kept = extras if isinstance(extras, h5py.Group) else {}
        next_obs = kept.get("next_obs", {})
        states = self.read_states(name)
        attrs = self.attrs(name)
        seed = attrs.pop("seed", None)
        try:
            return Episode(
                obs={k: self.read_obs(name, k) for k in keys},
                next_obs={k: np.asarray(next_obs[k][()]) for k in keys if k in next_obs},
                actions=np.asarray(g["actions"][()], dtype=np.float32),
                rewards=np.asarray(kept["rewards"][()]) if "rewards" in kept else _rewards(t),
                dones=np.asarray(kept["dones"][()]) if "dones" in kept else implied_dones(t),
                states=np.zeros((t, 0)) if states is None else states,
                datagen_info=self.read_datagen_info(name),
                seed=None if seed is None else int(seed),
                # Like robomimic files, a demo that does not say is taken as a success.
                success=bool(attrs.pop("success", True)),
                source=str(attrs.pop("source", "unknown")),
                attrs={k: v for k, v in attrs.items() if k != "num_samples"},
            )
        except ApprenticeError as e:
            raise ApprenticeError(
                f"{self.path}: {e}".replace("episode/", f"data/{name}/")
            ) from None

    # -- lifetime -----------------------------------------------------------------------------

    def close(self) -> None:
        self._h5.close()

    def __enter__(self) -> IsaacLabSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _rewards(t: int) -> np.ndarray:
    """Isaac Lab records no rewards: (T,) zeros."""
    return np.zeros(t, dtype=np.float32)


__all__ = ["IsaacLabSource"]
