"""`write_isaaclab`: any `DemoSource` written in Isaac Lab's HDF5 demo layout (the package
docstring gives the mapping).

Shapes: `T` steps of one demo, `A` action dims, `S` scene state dims.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from apprentice.data.convert import ConversionNotes, staged_path
from apprentice.data.episode import DatagenInfo, Episode
from apprentice.data.isaaclab.layout import (
    APPRENTICE_ENV_ARGS,
    DATAGEN,
    DEFAULT_EEF,
    EXTRAS,
    FORMAT_VERSIONS,
    QUAT_NAMES,
    SCENE,
    file_quat_order,
    implied_dones,
    in_order,
    quat_offset,
    quat_order,
)
from apprentice.data.isaaclab.reader import IsaacLabSource
from apprentice.errors import ApprenticeError

if TYPE_CHECKING:
    from apprentice.data.source import DemoSource


@dataclass(frozen=True)
class _Plan:
    """What a write needs to know of its source beyond its demos."""

    format_version: int
    source_order: str
    """The order of the quaternions in the source's observations ("wxyz" or "xyzw")."""
    eef: str
    env_args: dict[str, Any]
    isaac: IsaacLabSource | None
    """The source where it is an Isaac Lab file: its nesting and scene states are restored."""

    @property
    def file_order(self) -> str:
        return file_quat_order(self.format_version)


def write_isaaclab(
    source: DemoSource,
    dst: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    format_version: int = 1,
    eef_name: str | None = None,
) -> ConversionNotes:
    """Write every demo of `source` to `dst` in Isaac Lab's HDF5 layout; returns what was
    written, mapped and left out.

    Demos become demo_0 ... demo_<n-1> in source order (masks follow). datagen_info becomes
    Mimic's obs/datagen_info under end-effector `eef_name` (default: the source's, else "eef").
    Quaternions are turned from the order of the source's task (`quat_order` of its env_args)
    into `format_version`'s. Built in a temporary file beside `dst` and moved into place when
    complete; an existing `dst` is refused unless `overwrite`.
    """
    path = Path(dst)
    if format_version not in FORMAT_VERSIONS:
        raise ApprenticeError(
            f"{path}: format_version {format_version!r}: Isaac Lab's are 0 (quaternions "
            "w, x, y, z) and 1 (x, y, z, w)"
        )
    isaac = source if isinstance(source, IsaacLabSource) else None
    plan = _Plan(
        format_version=format_version,
        source_order=isaac.obs_quat_order if isaac else quat_order(source.env_args),
        eef=eef_name or (isaac.datagen_eef if isaac else None) or DEFAULT_EEF,
        env_args=isaac.isaaclab_env_args if isaac else _isaaclab_env_args(source.env_args),
        isaac=isaac,
    )
    notes = ConversionNotes()
    with staged_path(path, overwrite) as tmp, h5py.File(tmp, "w") as f:
        _write_file(f, source, plan, notes)
    return notes


def _isaaclab_env_args(env_args: dict[str, Any]) -> dict[str, Any]:
    """apprentice's env_args as Isaac Lab's (env_name, type 2), keeping the original."""
    return {"env_name": str(env_args.get("env_name", "")), "type": 2, APPRENTICE_ENV_ARGS: env_args}


def _write_file(f: h5py.File, source: DemoSource, plan: _Plan, notes: ConversionNotes) -> None:
    if plan.format_version == 1:
        f.attrs["format_version"] = 1
    data = f.create_group("data")
    data.attrs["env_args"] = json.dumps(plan.env_args)
    renamed: dict[str, str] = {}
    for i, name in enumerate(source.demo_names):
        renamed[name] = f"demo_{i}"
        ep = source.read(name)
        info = ep.datagen_info if ep.datagen_info is not None else source.read_datagen_info(name)
        _write_demo(data.create_group(renamed[name]), name, ep, info, plan, notes)
        notes.demos += 1
        notes.frames += ep.num_samples
    data.attrs["total"] = notes.frames
    for mask, demos in source.masks.items():
        names = [renamed[d].encode("utf-8") for d in demos]
        f.create_dataset(
            f"mask/{mask}", data=np.array(names, dtype="S") if names else np.zeros(0, "S1")
        )
    _note_mapping(source, plan, renamed, notes)


def _note_mapping(
    source: DemoSource, plan: _Plan, renamed: dict[str, str], notes: ConversionNotes
) -> None:
    if any(old != new for old, new in renamed.items()):
        notes.note("demos: renumbered demo_0 ... in source order, as Isaac Lab names them")
    if plan.isaac is None:
        notes.note(
            f"env_args: type 2 (Isaac Lab's); apprentice's kept under {APPRENTICE_ENV_ARGS!r}"
        )
        return
    for field in plan.isaac.unmapped:
        notes.drop(f"{field}: no DemoSource field carries it")


def _note_quat(where: str, stored: str, plan: _Plan, notes: ConversionNotes) -> None:
    """Say how the quaternion of `where`, held in order `stored`, was written."""
    file = QUAT_NAMES[plan.file_order]
    version = f"format_version {plan.format_version}"
    if stored == plan.file_order:
        notes.note(f"quaternions: {where} written as held, {file}, already {version}'s order")
    else:
        notes.note(
            f"quaternions: {where} written {file} from {QUAT_NAMES[stored]}, as {version} says"
        )


def _put(group: h5py.Group, path: str, arr: np.ndarray) -> None:
    """Write `arr` at `path`, gzip-compressed as Isaac Lab writes (where HDF5 can chunk it)."""
    arr = np.asarray(arr)
    group.create_dataset(path, data=arr, compression="gzip" if arr.ndim and arr.size else None)


def _write_demo(
    g: h5py.Group,
    name: str,
    ep: Episode,
    info: DatagenInfo | None,
    plan: _Plan,
    notes: ConversionNotes,
) -> None:
    g.attrs["num_samples"] = ep.num_samples
    if ep.seed is not None:
        g.attrs["seed"] = ep.seed
    g.attrs["success"] = bool(ep.success)
    g.attrs["source"] = ep.source
    for key, value in ep.attrs.items():
        if key in ("num_samples", "seed", "success", "source"):
            continue
        try:
            g.attrs[key] = value
        except TypeError:
            notes.drop(f"attr {key} of {name}: HDF5 cannot hold a {type(value).__name__}")
    _put(g, "actions", ep.actions)
    obs = g.create_group("obs")
    _write_obs(obs, ep.obs, plan, notes)
    if info is not None:
        _write_datagen(obs.create_group(DATAGEN), info, ep.actions, plan.eef, notes)
    scene = plan.isaac.read_scene_states(name) if plan.isaac else (None, None)
    if any(flat is not None for flat in scene):
        _write_scene(g, scene, plan, notes)
    elif ep.states.shape[1] > 0:
        _put(g, f"{EXTRAS}/states", ep.states)
        notes.drop(
            "initial_state, states: apprentice's flat (T, S) states name no assets, and Isaac "
            f"Lab's reset_to needs them by asset; kept as data/demo_<i>/{EXTRAS}/states"
        )
    _write_extras(g, ep, notes)


def _write_obs(
    obs: h5py.Group, arrays: dict[str, np.ndarray], plan: _Plan, notes: ConversionNotes
) -> None:
    paths = plan.isaac.obs_paths if plan.isaac else {}
    for key, arr in arrays.items():
        path = paths.get(key) or key
        if quat_offset(path, arr.shape[1:]) is not None:
            arr = in_order(arr, path, stored=plan.source_order, to=plan.file_order)
            _note_quat(f"obs/{path}", plan.source_order, plan, notes)
        _put(obs, path, arr)


def _write_datagen(
    dg: h5py.Group, info: DatagenInfo, actions: np.ndarray, eef: str, notes: ConversionNotes
) -> None:
    """Mimic's annotation; gripper_action only where it is not the last action dim, which is
    what Mimic's Franka environments (and `IsaacLabSource`) take it from."""
    _put(dg, f"eef_pose/{eef}", info.eef_pose)
    _put(dg, f"target_eef_pose/{eef}", info.target_pose)
    objects = dg.create_group("object_pose")  # Mimic indexes it even when empty
    for obj, pose in info.object_poses.items():
        _put(objects, obj, pose)
    signals = dg.create_group("subtask_term_signals")
    for sig, on in info.subtask_term_signals.items():
        _put(signals, sig, np.asarray(on) != 0)  # bool, as Isaac Lab's signal terms are
    notes.note(f"datagen_info: written as Mimic's obs/{DATAGEN} of end-effector {eef!r}")
    if not np.array_equal(info.gripper_action, actions[:, -1:]):
        _put(dg, f"gripper_action/{eef}", info.gripper_action)
        notes.note(
            f"datagen_info: gripper_action is not the last action dim; kept as obs/{DATAGEN}/"
            f"gripper_action/{eef}, which Mimic does not read (it derives it from actions)"
        )


def _write_scene(
    g: h5py.Group,
    scene: tuple[np.ndarray | None, np.ndarray | None],
    plan: _Plan,
    notes: ConversionNotes,
) -> None:
    """Isaac Lab's initial_state (1, ...) and states (T, ...) from their flat forms, whose
    quaternions `IsaacLabSource.read_scene_states` gives (w, x, y, z)."""
    assert plan.isaac is not None
    initial, post = scene
    for group, flat in zip(SCENE, (None if initial is None else initial[None], post), strict=True):
        if flat is None:
            continue
        for f in plan.isaac.state_layout:
            arr = flat[:, f.start : f.stop].reshape(flat.shape[0], *f.shape).astype(f.dtype)
            if quat_offset(f.path, f.shape) is not None:
                arr = in_order(arr, f.path, stored="wxyz", to=plan.file_order)
                _note_quat(f"{group}/{f.path}", "wxyz", plan, notes)
            _put(g, f"{group}/{f.path}", arr)


def _write_extras(g: h5py.Group, ep: Episode, notes: ConversionNotes) -> None:
    """next_obs, and rewards and dones where they say more than Isaac Lab's implied ones (no
    reward, done at the last step), under data/demo_<i>/apprentice/."""
    t = ep.num_samples
    for key, arr in ep.next_obs.items():
        _put(g, f"{EXTRAS}/next_obs/{key}", arr)
    if ep.next_obs:
        notes.note(f"next_obs: Isaac Lab records none; kept as data/demo_<i>/{EXTRAS}/next_obs")
    if np.any(ep.rewards != 0):
        _put(g, f"{EXTRAS}/rewards", ep.rewards)
        notes.note(f"rewards: Isaac Lab records none; kept as data/demo_<i>/{EXTRAS}/rewards")
    if not np.array_equal(ep.dones, implied_dones(t)):
        _put(g, f"{EXTRAS}/dones", ep.dones)
        notes.note(f"dones: Isaac Lab records none; kept as data/demo_<i>/{EXTRAS}/dones")


__all__ = ["write_isaaclab"]
