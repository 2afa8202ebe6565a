"""Checking an Isaac Lab HDF5 file when it is opened: every demo's actions, obs terms, scene
state and Mimic annotation agree in length and shape, masks name demos that exist, and the
end-effector asked for is there. What the check finds is the file's `Contents`, which
`IsaacLabSource` serves from.

Shapes: `T` steps of one demo, `A` action dims.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from apprentice.data.isaaclab.layout import (
    DATAGEN,
    EXTRAS,
    FORMAT_VERSIONS,
    KNOWN_DATAGEN,
    KNOWN_MEMBERS,
    SCENE,
    StateField,
    leaves,
    obs_key_names,
    state_layout,
)
from apprentice.data.reader import attr_value, sorted_demos
from apprentice.errors import ApprenticeError, fault


@dataclass(frozen=True)
class Contents:
    """What a valid Isaac Lab file holds, as found by `validate`."""

    format_version: int
    env_args: dict[str, Any]
    """data attr env_args as the file holds them."""
    demo_names: list[str]
    """In numeric order (demo_2 before demo_10)."""
    lengths: dict[str, int]
    """Demo name -> T."""
    action_dim: int | None
    """A; None in a file with no demos."""
    obs: dict[str, tuple[tuple[int, ...], np.dtype[Any]]]
    """Path below obs/ ("" for an `obs` array) -> per-step shape and dtype."""
    paths: dict[str, str]
    """apprentice key -> path below obs/."""
    state_layout: tuple[StateField, ...]
    """The scene state's arrays in flat order; () where no demo records a scene."""
    eefs: list[str]
    """The end-effectors of obs/datagen_info/eef_pose, sorted."""
    eef: str | None
    """The end-effector datagen_info is read for; None where the file names none."""
    unmapped: list[str]
    """Demo members no DemoSource field carries (e.g. processed_actions), sorted."""
    masks: dict[str, list[str]]


def validate(h5: h5py.File, path: Path, eef: str | None) -> Contents:
    """Check the open file `h5` (at `path`) and say what it holds; `eef` picks the end-effector
    of datagen_info (default: the first by name).

    Raises ApprenticeError naming the path, demo and field at fault.
    """
    return _Check(h5, path).run(eef)


class _Check:
    """One validation pass, gathering the per-demo facts that must agree across demos."""

    def __init__(self, h5: h5py.File, path: Path) -> None:
        self.h5 = h5
        self.path = path
        self.demo_names: list[str] = []
        self.action_dim: int | None = None
        self.obs: dict[str, tuple[tuple[int, ...], np.dtype[Any]]] = {}
        self.layout: tuple[StateField, ...] | None = None
        self.eefs: set[str] = set()
        self.unmapped: set[str] = set()

    def fail(self, where: str, what: str) -> ApprenticeError:
        return fault(self.path, where, what)

    def run(self, eef: str | None) -> Contents:
        f = self.h5
        version = attr_value(f.attrs.get("format_version", 0))
        if version not in FORMAT_VERSIONS:
            raise self.fail("attr format_version", f"{version!r}; apprentice reads 0 and 1")
        data = f.get("data")
        if not isinstance(data, h5py.Group):
            raise self.fail("data", "missing group; this is not an Isaac Lab demo file")
        env_args = self.env_args(data)
        self.demo_names = sorted_demos([n for n in data if isinstance(data[n], h5py.Group)])
        lengths = {name: self.demo(name, data[name]) for name in self.demo_names}
        total = sum(lengths.values())
        if "total" in data.attrs and int(data.attrs["total"]) != total:
            raise self.fail(
                "data attr total", f"says {int(data.attrs['total'])}, demos hold {total}"
            )
        try:
            keys = obs_key_names(sorted(self.obs))
        except ApprenticeError as e:
            raise self.fail("obs", str(e)) from None
        masks = self.masks(lengths)
        return Contents(
            format_version=int(version),
            env_args=env_args,
            demo_names=self.demo_names,
            lengths=lengths,
            action_dim=self.action_dim,
            obs=self.obs,
            paths={key: path for path, key in keys.items()},
            state_layout=self.layout or (),
            eefs=sorted(self.eefs),
            eef=self.pick_eef(eef),
            unmapped=sorted(self.unmapped),
            masks=masks,
        )

    def env_args(self, data: h5py.Group) -> dict[str, Any]:
        raw = attr_value(data.attrs.get("env_args", "{}"))
        try:
            env_args = json.loads(raw)
        except (json.JSONDecodeError, TypeError):
            raise self.fail("data attr env_args", f"not JSON: {str(raw)[:80]!r}") from None
        if not isinstance(env_args, dict):
            raise self.fail("data attr env_args", "is not a JSON object")
        return env_args

    def demo(self, name: str, g: h5py.Group) -> int:
        """Check demo `name` and return its T."""
        where = f"data/{name}"
        t = self.actions(where, g)
        self.obs_terms(where, g, t)
        self.scene(where, g, t)
        for group in (f"obs/{DATAGEN}", EXTRAS):
            if isinstance(g.get(group), h5py.Group):
                self.lengths(f"{where}/{group}", leaves(g[group]), t)
        dg = g.get(f"obs/{DATAGEN}")
        if isinstance(dg, h5py.Group):
            if isinstance(dg.get("eef_pose"), h5py.Group):
                self.eefs.update(dg["eef_pose"])
            self.unmapped.update(f"obs/{DATAGEN}/{k}" for k in dg if k not in KNOWN_DATAGEN)
        self.unmapped.update(k for k in g if k not in KNOWN_MEMBERS)
        return t

    def actions(self, where: str, g: h5py.Group) -> int:
        actions = g.get("actions")
        if actions is None:
            raise self.fail(f"{where}/actions", "missing; every demo needs its (T, A) actions")
        if not isinstance(actions, h5py.Dataset) or actions.ndim != 2 or actions.shape[0] == 0:
            got = "a group" if isinstance(actions, h5py.Group) else f"shape {actions.shape}"
            raise self.fail(f"{where}/actions", f"expected one (T, A) array with T > 0, got {got}")
        t = int(actions.shape[0])
        if "num_samples" in g.attrs and int(g.attrs["num_samples"]) != t:
            raise self.fail(
                f"{where} attr num_samples", f"says {int(g.attrs['num_samples'])}, actions has {t}"
            )
        a = actions[()]
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            step = int(np.argwhere(~np.isfinite(a))[0][0])
            raise self.fail(f"{where}/actions", f"NaN or inf at step {step}")
        if self.action_dim is None:
            self.action_dim = int(actions.shape[1])
        elif actions.shape[1] != self.action_dim:
            raise self.fail(
                f"{where}/actions",
                f"has {actions.shape[1]} dims, {self.demo_names[0]} has {self.action_dim}",
            )
        return t

    def obs_terms(self, where: str, g: h5py.Group, t: int) -> None:
        obs = g.get("obs")
        arrays = {"": obs} if isinstance(obs, h5py.Dataset) else {}
        if isinstance(obs, h5py.Group):
            arrays = leaves(obs, skip=DATAGEN)
        self.lengths(f"{where}/obs", arrays, t)
        for path, ds in arrays.items():
            step = tuple(int(s) for s in ds.shape[1:])
            known = self.obs.setdefault(path, (step, ds.dtype))
            if known[0] != step:
                raise self.fail(f"{where}/obs/{path}", f"per-step shape {step}, others {known[0]}")
        missing = sorted(set(self.obs) - set(arrays))
        if missing:
            raise self.fail(f"{where}/obs", f"lacks terms other demos have: {missing[:5]}")

    def scene(self, where: str, g: h5py.Group, t: int) -> None:
        groups = {s: g[s] for s in SCENE if s in g}
        for scene, item in groups.items():
            if not isinstance(item, h5py.Group):
                raise self.fail(f"{where}/{scene}", "an array; Isaac Lab keeps a group per kind")
        if not groups:
            return
        arrays = {s: leaves(item) for s, item in groups.items()}
        if "initial_state" in arrays:
            self.lengths(f"{where}/initial_state", arrays["initial_state"], 1)
        if "states" in arrays:
            self.lengths(f"{where}/states", arrays["states"], t)
        layouts = {s: state_layout(a) for s, a in arrays.items()}
        if len({tuple((f.path, f.shape) for f in lay) for lay in layouts.values()}) > 1:
            raise self.fail(f"{where}/initial_state", "holds other arrays than states")
        layout = next(iter(layouts.values()))
        if self.layout is None:
            self.layout = layout
        elif [(f.path, f.shape) for f in layout] != [(f.path, f.shape) for f in self.layout]:
            raise self.fail(
                f"{where}/states", "describes other assets or shapes than the demos before"
            )

    def lengths(self, where: str, arrays: dict[str, h5py.Dataset], t: int) -> None:
        for path, ds in arrays.items():
            if ds.ndim == 0 or ds.shape[0] != t:
                at = f"{where}/{path}" if path else where
                raise self.fail(at, f"has shape {ds.shape}, expected {t} steps first")

    def masks(self, lengths: dict[str, int]) -> dict[str, list[str]]:
        masks: dict[str, list[str]] = {}
        group = self.h5.get("mask")
        if not isinstance(group, h5py.Group):
            return masks
        for mname, ds in group.items():
            demos = [attr_value(x) for x in np.atleast_1d(ds[()])]
            unknown = [d for d in demos if d not in lengths]
            if unknown:
                raise self.fail(f"mask/{mname}", f"lists demos not in data: {unknown[:5]}")
            masks[mname] = demos
        return masks

    def pick_eef(self, eef: str | None) -> str | None:
        names = sorted(self.eefs)
        if eef is not None and names and eef not in names:
            raise ApprenticeError(
                f"{self.path}: no end-effector {eef!r} in obs/datagen_info (it has: "
                f"{', '.join(names)})"
            )
        return eef if eef is not None else (names[0] if names else None)


__all__ = ["Contents", "validate"]
