"""Facts of Isaac Lab's HDF5 demo layout that reading and writing share: its names, the order
of its quaternions, how obs terms become apprentice keys, how the scene state is flattened, and
how a file is told from robomimic's."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from apprentice.data.reader import attr_value, sorted_demos
from apprentice.errors import ApprenticeError

FORMAT_VERSIONS = (0, 1)
"""Isaac Lab's dataset format versions: 0 (attr absent) stores quaternions (w, x, y, z), 1
stores them (x, y, z, w)."""
KEY_SEP = "__"
"""Joins the groups of a nested obs term into one apprentice key."""
APPRENTICE_ENV_ARGS = "apprentice_env_args"
"""The key of env_args under which a file written by apprentice keeps apprentice's own."""
EXTRAS = "apprentice"
"""The demo group holding what Isaac Lab's layout has no field for."""
DEFAULT_EEF = "eef"
"""The end-effector name datagen_info is written under when the source names none."""
DATAGEN = "datagen_info"
"""The obs group of Isaac Lab Mimic's annotation."""
SCENE = ("initial_state", "states")
"""The demo groups of the scene state: after reset (1, ...) and after each step (T, ...)."""
KNOWN_MEMBERS = ("actions", "obs", *SCENE, EXTRAS)
"""Demo members a DemoSource field carries (any other is listed as unmapped)."""
KNOWN_DATAGEN = (
    "eef_pose",
    "target_eef_pose",
    "gripper_action",
    "object_pose",
    "subtask_term_signals",
)
"""Members of obs/datagen_info that apprentice's datagen_info carries."""

_POLICY = "policy"
_KINDS = ("articulation", "deformable_object", "rigid_object")
_FIELDS = (
    "root_pose",
    "root_velocity",
    "joint_position",
    "joint_velocity",
    "nodal_position",
    "nodal_velocity",
)


# ---- quaternions ---------------------------------------------------------------------------

QUAT_NAMES = {"wxyz": "(w, x, y, z)", "xyzw": "(x, y, z, w)"}
"""The two quaternion orders, as notes spell them."""


def file_quat_order(format_version: int) -> str:
    """The order of the quaternions a file of `format_version` stores."""
    return "xyzw" if format_version == 1 else "wxyz"


def quat_order(env_args: Mapping[str, Any]) -> str:
    """The order of the quaternions in the observations of demos recorded on the task of
    `env_args`: "xyzw" for a robosuite task (robomimic's env type 1, as `env_type` or as
    robomimic's own `type`), whose observations (e.g. robot0_eef_quat) hold them (x, y, z, w);
    "wxyz", MuJoCo's order, for any other (apprentice's built-in tasks)."""
    env_type = env_args.get("env_type", env_args.get("type"))
    return "xyzw" if env_type == 1 else "wxyz"


def quat_offset(path: str, step_shape: tuple[int, ...]) -> int | None:
    """Where a quaternion sits in the last axis of the array at `path`: 3 in a root_pose
    (pos 3 + quat 4), 0 in a term whose name ends in "quat" with shape (4,); None otherwise."""
    leaf = path.rsplit("/", 1)[-1]
    if leaf == "root_pose" and step_shape[-1:] == (7,):
        return 3
    if leaf.endswith("quat") and step_shape == (4,):
        return 0
    return None


def reorder_quat(arr: np.ndarray, offset: int, *, to: str) -> np.ndarray:
    """A copy of `arr` (..., D) whose quaternion at [..., offset:offset + 4] is reordered:
    to="wxyz" from (x, y, z, w), to="xyzw" from (w, x, y, z)."""
    if to not in QUAT_NAMES:
        raise ValueError(f"to must be 'wxyz' or 'xyzw', got {to!r}")
    out = np.array(arr, copy=True)
    quat = arr[..., offset : offset + 4]
    out[..., offset : offset + 4] = np.roll(quat, 1 if to == "wxyz" else -1, axis=-1)
    return out


def in_order(arr: np.ndarray, path: str, *, stored: str, to: str) -> np.ndarray:
    """The array at `path` (T, ...) with its quaternion (if `quat_offset` finds one) turned
    from order `stored` into order `to`; `arr` itself where they agree or there is none."""
    offset = quat_offset(path, arr.shape[1:])
    return arr if offset is None or stored == to else reorder_quat(arr, offset, to=to)


# ---- names ---------------------------------------------------------------------------------


def obs_key_names(paths: Sequence[str]) -> dict[str, str]:
    """Path below obs/ -> apprentice key: the term's own name where no other term has it, else
    the path with "/" replaced by KEY_SEP. The path "" (an `obs` array) is the key "policy"."""
    leaves = Counter(p.rsplit("/", 1)[-1] for p in paths)
    keys: dict[str, str] = {}
    for path in paths:
        leaf = path.rsplit("/", 1)[-1]
        keys[path] = (
            _POLICY if not path else leaf if leaves[leaf] == 1 else path.replace("/", KEY_SEP)
        )
    clash = [k for k, n in Counter(keys.values()).items() if n > 1]
    if clash:
        raise ApprenticeError(
            f"obs terms {sorted(p for p in paths if keys[p] == clash[0])} all "
            f"map onto the key {clash[0]!r}"
        )
    return keys


def leaves(group: h5py.Group, skip: str = "") -> dict[str, h5py.Dataset]:
    """Every array below `group` by its path relative to it, except the subgroup `skip`."""
    out: dict[str, h5py.Dataset] = {}
    for name, item in group.items():
        if name == skip:
            continue
        if isinstance(item, h5py.Group):
            out.update({f"{name}/{p}": ds for p, ds in leaves(item).items()})
        else:
            out[name] = item
    return out


# ---- the scene state -----------------------------------------------------------------------


@dataclass(frozen=True)
class StateField:
    """One array of Isaac Lab's scene state within the flat states: `path` below states/ (e.g.
    articulation/robot/joint_position), its per-step `shape` and `dtype`, columns [start, stop)."""

    path: str
    shape: tuple[int, ...]
    dtype: str
    start: int
    stop: int


def _state_order(path: str) -> tuple[Any, ...]:
    """Sort key of a scene-state array: kind, asset, then field in Isaac Lab's order."""
    parts = path.split("/")
    kind, leaf = parts[0], parts[-1]
    kind_rank = _KINDS.index(kind) if kind in _KINDS else len(_KINDS)
    field_rank = _FIELDS.index(leaf) if leaf in _FIELDS else len(_FIELDS)
    return (kind_rank, kind, tuple(parts[1:-1]), field_rank, leaf)


def state_layout(arrays: dict[str, h5py.Dataset]) -> tuple[StateField, ...]:
    """The flat state's columns for the scene arrays `arrays` (path below states/ -> array):
    kinds articulation, deformable_object, rigid_object (then any other, by name), assets by
    name, fields in Isaac Lab's order."""
    fields, start = [], 0
    for path in sorted(arrays, key=_state_order):
        shape = tuple(int(s) for s in arrays[path].shape[1:])
        size = int(np.prod(shape, dtype=np.int64))
        fields.append(StateField(path, shape, str(arrays[path].dtype), start, start + size))
        start += size
    return tuple(fields)


def implied_dones(t: int) -> np.ndarray:
    """Isaac Lab records no dones: (T,) with robomimic's convention, 1 at the last step."""
    return (np.arange(t) == t - 1).astype(np.int64)


# ---- detection -----------------------------------------------------------------------------


def is_isaaclab(path: Path) -> bool:
    """Whether `path` is an Isaac Lab HDF5 demo file, from its attrs and first demo's members.

    True where the file has a format_version attr, its first demo nests groups under obs/ or
    has initial_state or a states group, or its env_args say type 2 while its first demo has no
    robomimic rewards/dones. False for anything else, a file h5py cannot open included.
    """
    try:
        f = h5py.File(path, "r")
    except OSError:
        return False
    with f:
        data = f.get("data")
        if not isinstance(data, h5py.Group):
            return False
        if "format_version" in f.attrs:
            return True
        demos = sorted_demos([n for n in data if isinstance(data[n], h5py.Group)])
        first = data[demos[0]] if demos else None
        if first is not None and _nested(first):
            return True
        try:
            env_type = json.loads(attr_value(data.attrs.get("env_args", "{}"))).get("type")
        except (json.JSONDecodeError, TypeError, AttributeError):
            return False
        flat = first is not None and ("rewards" in first or "dones" in first)
        return "total" in data.attrs and env_type == 2 and not flat


def _nested(demo: h5py.Group) -> bool:
    if "initial_state" in demo or isinstance(demo.get("states"), h5py.Group):
        return True
    obs = demo.get("obs")
    return isinstance(obs, h5py.Group) and any(isinstance(v, h5py.Group) for v in obs.values())


__all__ = [
    "APPRENTICE_ENV_ARGS",
    "DATAGEN",
    "DEFAULT_EEF",
    "EXTRAS",
    "FORMAT_VERSIONS",
    "KEY_SEP",
    "KNOWN_DATAGEN",
    "KNOWN_MEMBERS",
    "QUAT_NAMES",
    "SCENE",
    "StateField",
    "file_quat_order",
    "implied_dones",
    "in_order",
    "is_isaaclab",
    "leaves",
    "obs_key_names",
    "quat_offset",
    "quat_order",
    "reorder_quat",
    "state_layout",
]
