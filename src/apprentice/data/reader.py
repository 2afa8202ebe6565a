"""Reading a store: `DemoFile` validates the robomimic layout on open, then reads episodes.

Files written by robomimic (or MimicGen, Isaac Lab) are read as they are: their demos may lack
seed/success/source attrs, states, rewards or dones, and masks are arrays of byte strings.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np

from apprentice.data.episode import DatagenInfo, Episode
from apprentice.data.journal import recover
from apprentice.data.spec import ObsActSpec
from apprentice.errors import ApprenticeError, fault

DEMO_RE = re.compile(r"^demo_(\d+)$")
_KNOWN_ATTRS = ("num_samples", "seed", "success", "source")


def demo_index(name: str) -> int:
    """demo_12 -> 12; other names sort after all numbered demos."""
    m = DEMO_RE.match(name)
    return int(m.group(1)) if m else 1 << 62


def sorted_demos(names: Sequence[str]) -> list[str]:
    """Numeric order (demo_2 before demo_10), as robomimic lists demos."""
    return sorted(names, key=lambda n: (demo_index(n), n))


def canonical_env_args(env_args: dict[str, Any]) -> dict[str, Any]:
    """env_args as JSON sees them (tuples become lists), so stored and given ones compare."""
    try:
        out: dict[str, Any] = json.loads(json.dumps(env_args))
    except TypeError as e:
        raise ApprenticeError(f"env_args must be JSON-serializable: {e}") from None
    return out


def is_image(shape: tuple[int, ...], dtype: np.dtype[Any]) -> bool:
    """Per-step shape (H, W, C) in uint8 is an image; everything else is low-dim."""
    return dtype == np.uint8 and len(shape) == 3


def attr_value(value: Any) -> Any:
    """h5py attribute value -> plain Python where it has a plain form."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    return value


class DemoFile:
    """A validated, read-only view of a store: the robomimic HDF5 `DemoSource`.

    Opening checks the layout and raises ApprenticeError naming the path, demo and field at fault.
    A file left by a killed writer is first rolled back to its last complete demo.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise ApprenticeError(
                f"{self.path}: is a folder, not a dataset file; give an HDF5 demo file"
            )
        if not self.path.is_file():
            raise ApprenticeError(f"{self.path}: no such file")
        try:
            recover(self.path)
        except OSError as e:
            raise ApprenticeError(
                f"{self.path}: a writer died mid-append and the file cannot be repaired ({e})"
            ) from None
        try:
            self._h5 = h5py.File(self.path, "r")
        except OSError as e:
            raise ApprenticeError(f"{self.path}: not a readable HDF5 file ({e})") from None
        try:
            self._validate()
        except BaseException:
            self._h5.close()
            raise

    # -- validation ---------------------------------------------------------------------------

    def _fail(self, where: str, what: str) -> ApprenticeError:
        return fault(self.path, where, what)

    def _validate(self) -> None:
        f = self._h5
        if "data" not in f or not isinstance(f["data"], h5py.Group):
            raise self._fail("data", "missing group; this is not a robomimic-layout demo file")
        data = f["data"]
        raw = attr_value(data.attrs.get("env_args", "{}"))
        try:
            env_args = json.loads(raw)
        except (json.JSONDecodeError, TypeError):
            raise self._fail("data attr env_args", f"not JSON: {str(raw)[:80]!r}") from None
        if not isinstance(env_args, dict):
            raise self._fail("data attr env_args", "is not a JSON object")
        self._env_args: dict[str, Any] = env_args
        names = [n for n in data if isinstance(data[n], h5py.Group)]
        self._demo_names = sorted_demos(names)
        self._lengths: dict[str, int] = {}
        # Per-step shape and dtype of each obs key, fixed by the first demo that has it.
        self._obs_shapes: dict[str, tuple[tuple[int, ...], np.dtype[Any]]] = {}
        self._action_dim: int | None = None  # fixed by the first demo
        for name in self._demo_names:
            self._lengths[name] = self._validate_demo(name, data[name])
        total = sum(self._lengths.values())
        if "total" in data.attrs and int(data.attrs["total"]) != total:
            raise self._fail(
                "data attr total", f"says {int(data.attrs['total'])} but the demos hold {total}"
            )
        self._masks: dict[str, list[str]] = {}
        if "mask" in f:
            for mname in f["mask"]:
                demos = [attr_value(x) for x in np.atleast_1d(f["mask"][mname][()])]
                unknown = [d for d in demos if d not in self._lengths]
                if unknown:
                    raise self._fail(f"mask/{mname}", f"lists demos not in data: {unknown[:5]}")
                self._masks[mname] = demos

    def _not_robomimic(self, where: str, what: str) -> ApprenticeError:
        return self._fail(
            where,
            f"{what}; nested groups inside a demo are Isaac Lab's HDF5 layout, which apprentice "
            "does not read yet (robomimic's layout keeps flat obs/<key>, actions and states "
            "arrays)",
        )

    def _check_flat(self, where: str, members: dict[str, Any]) -> None:
        """Raise the layout error for a demo whose fields are groups (Isaac Lab's layout)."""
        if "initial_state" in members:
            raise self._not_robomimic(f"{where}/initial_state", "a group of initial states")
        for field in ("actions", "rewards", "dones", "states"):
            if isinstance(members.get(field), h5py.Group):
                raise self._not_robomimic(f"{where}/{field}", "a group, not an array")
        for group in ("obs", "next_obs", "action_dict"):
            g = members.get(group)
            if g is None:
                continue
            if not isinstance(g, h5py.Group):
                raise self._fail(f"{where}/{group}", "an array, not a group of arrays")
            for key, ds in g.items():
                if isinstance(ds, h5py.Group):
                    raise self._not_robomimic(f"{where}/{group}/{key}", "a group, not an array")

    def _validate_demo(self, name: str, g: h5py.Group) -> int:
        where = f"data/{name}"
        members = dict(g.items())  # one lookup per member: h5py item access is slow
        self._check_flat(where, members)
        if "actions" not in g:
            raise self._fail(f"{where}/actions", "missing")
        actions = g["actions"]
        if actions.ndim != 2 or actions.shape[0] == 0:
            raise self._fail(f"{where}/actions", f"expected (T, A) with T > 0, got {actions.shape}")
        t = int(actions.shape[0])
        if "num_samples" in g.attrs and int(g.attrs["num_samples"]) != t:
            raise self._fail(
                f"{where} attr num_samples", f"says {int(g.attrs['num_samples'])}, actions has {t}"
            )
        a = actions[()]
        if not np.all(np.isfinite(a)):
            step = int(np.argwhere(~np.isfinite(a))[0][0])
            raise self._fail(f"{where}/actions", f"NaN or inf at step {step}")
        if self._action_dim is None:
            self._action_dim = int(actions.shape[1])
        elif actions.shape[1] != self._action_dim:
            first = self._demo_names[0]
            raise self._fail(
                f"{where}/actions", f"has {actions.shape[1]} dims, {first} has {self._action_dim}"
            )
        for field in ("rewards", "dones", "states"):
            ds = members.get(field)
            if ds is not None and (ds.ndim == 0 or ds.shape[0] != t):
                raise self._fail(f"{where}/{field}", f"shape {ds.shape}, actions has {t} steps")
        for group in ("obs", "next_obs", "action_dict"):
            if group not in members:
                continue
            for key, ds in members[group].items():
                if ds.ndim == 0 or ds.shape[0] != t:
                    raise self._fail(
                        f"{where}/{group}/{key}", f"has shape {ds.shape}, actions has {t} steps"
                    )
                if group != "obs":
                    continue
                step_shape = tuple(int(s) for s in ds.shape[1:])
                known = self._obs_shapes.setdefault(key, (step_shape, ds.dtype))
                if known[0] != step_shape:
                    raise self._fail(
                        f"{where}/obs/{key}",
                        f"per-step shape {step_shape}, other demos have {known[0]}",
                    )
        obs_here = set(members["obs"]) if "obs" in members else set()
        missing = [k for k in self._obs_shapes if k not in obs_here]
        if missing:
            raise self._fail(f"{where}/obs", f"lacks keys other demos have: {missing}")
        return t

    # -- the public view ----------------------------------------------------------------------

    @property
    def env_args(self) -> dict[str, Any]:
        return dict(self._env_args)

    @property
    def data_attrs(self) -> dict[str, Any]:
        """Attrs of the `data` group besides total and env_args (e.g. a generation record)."""
        attrs = self._h5["data"].attrs
        return {k: attr_value(v) for k, v in attrs.items() if k not in ("total", "env_args")}

    @property
    def demo_names(self) -> list[str]:
        return list(self._demo_names)

    @property
    def masks(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self._masks.items()}

    @property
    def obs_keys(self) -> list[str]:
        return sorted(self._obs_shapes)

    @property
    def obs_shapes(self) -> dict[str, tuple[int, ...]]:
        """key -> per-step shape ((D,) low-dim, (H, W, C) image)."""
        return {k: s for k, (s, _) in sorted(self._obs_shapes.items())}

    @property
    def image_keys(self) -> list[str]:
        return [k for k, (s, dt) in sorted(self._obs_shapes.items()) if is_image(s, dt)]

    @property
    def action_dim(self) -> int:
        """A; 0 in a state-only file (actions stored as (T, 0))."""
        if self._action_dim is None:
            raise self._fail("data", "holds no demos")
        return self._action_dim

    @property
    def spec(self) -> ObsActSpec:
        return ObsActSpec(self.obs_shapes, self.action_dim)

    def num_samples(self, name: str) -> int:
        self._check_demo(name)
        return self._lengths[name]

    def attrs(self, name: str) -> dict[str, Any]:
        """All attrs of data/<name> as plain Python values."""
        self._check_demo(name)
        return {k: attr_value(v) for k, v in self._h5[f"data/{name}"].attrs.items()}

    def fields(self, name: str) -> list[str]:
        """The top-level entries of demo `name` (actions, states, obs, datagen_info, ...)."""
        self._check_demo(name)
        return sorted(self._h5[f"data/{name}"].keys())

    def read_field(self, name: str, field: str) -> np.ndarray:
        """One array of a demo, e.g. field="obs/eef_pos" or "actions"."""
        self._check_demo(name)
        ds = self._h5.get(f"data/{name}/{field}")
        if not isinstance(ds, h5py.Dataset):
            raise self._fail(f"data/{name}/{field}", "missing")
        return np.asarray(ds[()])

    def read_obs(self, name: str, key: str) -> np.ndarray:
        """obs/<key> of demo `name`: (T, ...)."""
        self.check_obs_keys([key])
        return self.read_field(name, f"obs/{key}")

    def read_actions(self, name: str) -> np.ndarray:
        """Demo `name`'s actions: (T, A) as stored (float32 where apprentice wrote them)."""
        return self.read_field(name, "actions")

    def read_states(self, name: str) -> np.ndarray | None:
        """Demo `name`'s simulator states (T, S); None where it has none."""
        self._check_demo(name)
        ds = self._h5.get(f"data/{name}/states")
        return np.asarray(ds[()]) if isinstance(ds, h5py.Dataset) else None

    def _check_demo(self, name: str) -> None:
        if name not in self._lengths:
            shown = ", ".join(self._demo_names[:5]) + (" ..." if len(self._demo_names) > 5 else "")
            raise ApprenticeError(f"{self.path}: no demo {name!r} (it has: {shown or 'none'})")

    def check_obs_keys(self, obs_keys: Sequence[str]) -> None:
        unknown = [k for k in obs_keys if k not in self._obs_shapes]
        if unknown:
            raise ApprenticeError(
                f"{self.path}: no observation key {unknown[0]!r} "
                f"(it has: {', '.join(self.obs_keys) or 'none'})"
            )

    def read(
        self, name: str, obs_keys: Sequence[str] | None = None, with_images: bool = True
    ) -> Episode:
        """Demo `name` as a validated Episode (only `obs_keys` if given; no images if asked)."""
        self._check_demo(name)
        keys = self.obs_keys if obs_keys is None else list(obs_keys)
        self.check_obs_keys(keys)
        if not with_images:
            keys = [k for k in keys if k not in self.image_keys]
        g = self._h5[f"data/{name}"]
        t = self._lengths[name]
        obs = {k: np.asarray(g["obs"][k][()]) for k in keys}
        next_obs = {}
        if "next_obs" in g:
            next_obs = {k: np.asarray(g["next_obs"][k][()]) for k in keys if k in g["next_obs"]}
        rewards = g["rewards"][()] if "rewards" in g else np.zeros(t, dtype=np.float32)
        # robomimic's dones mark the last step; a file without them gets the same convention.
        dones = g["dones"][()] if "dones" in g else (np.arange(t) == t - 1).astype(np.int64)
        states = g["states"][()] if "states" in g else np.zeros((t, 0), dtype=np.float64)
        action_dict = {k: np.asarray(v[()]) for k, v in g.get("action_dict", {}).items()}
        attrs = {k: attr_value(v) for k, v in g.attrs.items()}
        seed = attrs.pop("seed", None)
        try:
            return Episode(
                obs=obs,
                next_obs=next_obs,
                actions=np.asarray(g["actions"][()], dtype=np.float32),
                rewards=np.asarray(rewards),
                dones=np.asarray(dones),
                states=np.asarray(states),
                datagen_info=self._read_datagen(g),
                seed=None if seed is None else int(seed),
                # robomimic files keep only successful demos and do not say so.
                success=bool(attrs.pop("success", True)),
                source=str(attrs.pop("source", "unknown")),
                attrs={k: v for k, v in attrs.items() if k not in _KNOWN_ATTRS},
                action_dict=action_dict,
            )
        except ApprenticeError as e:
            raise ApprenticeError(
                f"{self.path}: {e}".replace("episode/", f"data/{name}/")
            ) from None

    def read_datagen_info(self, name: str) -> DatagenInfo | None:
        """Demo `name`'s datagen_info alone (None if it has none), without its observations."""
        self._check_demo(name)
        return self._read_datagen(self._h5[f"data/{name}"])

    def _read_datagen(self, g: h5py.Group) -> DatagenInfo | None:
        if "datagen_info" not in g:
            return None
        d = g["datagen_info"]
        where = f"{g.name}/datagen_info"
        for field in ("eef_pose", "target_pose", "gripper_action"):
            if field not in d:
                raise self._fail(f"{where}/{field}".lstrip("/"), "missing")

        def sub(group: str) -> dict[str, np.ndarray]:
            return {k: np.asarray(v[()]) for k, v in d[group].items()} if group in d else {}

        return DatagenInfo(
            eef_pose=np.asarray(d["eef_pose"][()]),
            target_pose=np.asarray(d["target_pose"][()]),
            gripper_action=np.asarray(d["gripper_action"][()]),
            object_poses=sub("object_poses"),
            subtask_term_signals=sub("subtask_term_signals"),
        )

    # -- lifetime -----------------------------------------------------------------------------

    def close(self) -> None:
        self._h5.close()

    def __enter__(self) -> DemoFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
