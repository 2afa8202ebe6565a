"""Test helpers: tiny robomimic-layout HDF5 files, and a stand-in for the data layer.

`install()` puts minimal `apprentice.data.dataset` / `apprentice.data.normalize` modules in
`sys.modules` only while the real ones are missing (they are written in parallel); the
stand-ins follow the documented interface (DemoDataset.load, WindowSampler, Normalizer).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
import types
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from apprentice.data.spec import ObsActSpec
from apprentice.errors import ApprenticeError

OBS_DIMS = {"eef_pos": 3, "eef_quat": 4, "gripper_qpos": 2, "object": 10}
ACTION_DIM = 7


def write_demo_file(
    path: Path,
    *,
    num_demos: int = 6,
    length: int = 30,
    seed: int = 0,
    env_name: str = "lift",
    masks: dict[str, list[str]] | None = None,
    nan_action: bool = False,
) -> Path:
    """Demos whose actions are a fixed smooth function of the observation (learnable)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(sum(OBS_DIMS.values()), ACTION_DIM)) * 0.3
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["env_args"] = json.dumps(
            {"env_name": env_name, "env_type": 0, "env_kwargs": {}}
        )
        data.attrs["total"] = num_demos * length
        for i in range(num_demos):
            g = data.create_group(f"demo_{i}")
            obs = {
                k: (rng.normal(size=(length, d)) * 2 + 1).astype(np.float32)
                for k, d in OBS_DIMS.items()
            }
            flat = np.concatenate(list(obs.values()), axis=1)
            actions = np.tanh(flat @ w).astype(np.float32)
            if nan_action and i == 1:
                actions[3, 2] = np.nan
            for k, v in obs.items():
                g.create_dataset(f"obs/{k}", data=v)
            g.create_dataset("actions", data=actions)
            g.attrs["num_samples"] = length
        if masks:
            for name, demos in masks.items():
                f.create_dataset(f"mask/{name}", data=np.array(demos, dtype="S"))
    return path


class FakeDemoDataset:
    def __init__(
        self,
        obs: dict[str, np.ndarray],
        actions: np.ndarray,
        lengths: list[int],
        names: list[str],
        env_args: dict[str, Any],
    ) -> None:
        self.obs = obs
        self.actions = actions
        self.episode_lengths = np.array(lengths)
        self.episode_starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        self.demo_names = names
        self.env_args = env_args

    @property
    def spec(self) -> ObsActSpec:
        return ObsActSpec({k: (v.shape[1],) for k, v in self.obs.items()}, self.actions.shape[1])

    @classmethod
    def load(
        cls,
        path: Any,
        *,
        obs_keys: list[str] | None = None,
        mask: str | None = None,
        demos: list[str] | None = None,
        with_images: bool = True,
    ) -> FakeDemoDataset:
        with h5py.File(path, "r") as f:
            names = sorted(f["data"].keys(), key=lambda n: int(n.split("_")[1]))
            if mask is not None:
                names = [n.decode() for n in f[f"mask/{mask}"][()]]
            if demos is not None:
                names = list(demos)
            keys = obs_keys or sorted(f[f"data/{names[0]}/obs"].keys())
            obs = {k: np.concatenate([f[f"data/{n}/obs/{k}"][()] for n in names]) for k in keys}
            acts = [f[f"data/{n}/actions"][()] for n in names]
            for n, a in zip(names, acts, strict=True):
                if not np.all(np.isfinite(a)):
                    raise ApprenticeError(f"{path}: data/{n}/actions: NaN or inf")
            env_args = json.loads(f["data"].attrs["env_args"])
        return cls(obs, np.concatenate(acts), [len(a) for a in acts], names, env_args)


class FakeWindowSampler:
    def __init__(
        self,
        dataset: FakeDemoDataset,
        *,
        seq_len: int = 1,
        frame_stack: int = 1,
        batch_size: int,
        rng: np.random.Generator,
    ) -> None:
        self.ds, self.seq_len, self.fs, self.batch_size, self.rng = (
            dataset,
            seq_len,
            frame_stack,
            batch_size,
            rng,
        )
        self.anchor_ep = np.repeat(np.arange(len(dataset.episode_lengths)), dataset.episode_lengths)
        self.anchor_t = np.concatenate([np.arange(n) for n in dataset.episode_lengths])

    def _batch(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        start = self.ds.episode_starts[self.anchor_ep[idx]][:, None]
        length = self.ds.episode_lengths[self.anchor_ep[idx]][:, None]
        t = self.anchor_t[idx][:, None]
        obs_t = t + np.arange(-(self.fs - 1), self.seq_len)[None]
        act_t = t + np.arange(self.seq_len)[None]
        out = {
            f"obs/{k}": v[start + np.clip(obs_t, 0, length - 1)] for k, v in self.ds.obs.items()
        }
        out["actions"] = self.ds.actions[start + np.clip(act_t, 0, length - 1)]
        out["mask"] = (act_t < length).astype(np.float32)
        return out

    def sample(self) -> dict[str, np.ndarray]:
        return self._batch(self.rng.integers(0, len(self.anchor_t), self.batch_size))

    def epoch(self) -> Any:
        order = self.rng.permutation(len(self.anchor_t))
        for i in range(0, len(order), self.batch_size):
            yield self._batch(order[i : i + self.batch_size])


class FakeNormalizer:
    def __init__(self, stats: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        self.stats = stats

    @classmethod
    def fit(cls, dataset: FakeDemoDataset) -> FakeNormalizer:
        return cls({k: (v.mean(0), v.std(0) + 1e-6) for k, v in dataset.obs.items()})

    def state_dict(self) -> dict[str, Any]:
        return {"obs": {k: {"mean": m, "std": s} for k, (m, s) in self.stats.items()}}

    @classmethod
    def from_state_dict(cls, d: dict[str, Any]) -> FakeNormalizer:
        return cls({k: (np.asarray(v["mean"]), np.asarray(v["std"])) for k, v in d["obs"].items()})

    def normalize_obs(self, key: str, x: np.ndarray) -> np.ndarray:
        mean, std = self.stats[key]
        return (x - mean) / std


def _real_module(name: str) -> bool:
    if name in sys.modules:
        return True
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def install() -> None:
    """Use the stand-ins wherever the data layer's modules have not landed yet."""
    if not _real_module("apprentice.data.dataset"):
        mod = types.ModuleType("apprentice.data.dataset")
        mod.DemoDataset = FakeDemoDataset  # type: ignore[attr-defined]
        mod.WindowSampler = FakeWindowSampler  # type: ignore[attr-defined]
        sys.modules["apprentice.data.dataset"] = mod
    if not _real_module("apprentice.data.normalize"):
        mod = types.ModuleType("apprentice.data.normalize")
        mod.Normalizer = FakeNormalizer  # type: ignore[attr-defined]
        sys.modules["apprentice.data.normalize"] = mod


def data_layer() -> tuple[Any, Any, Any]:
    """(DemoDataset, WindowSampler, Normalizer): the real ones if present, else stand-ins."""
    install()
    dataset = importlib.import_module("apprentice.data.dataset")
    normalize = importlib.import_module("apprentice.data.normalize")
    return dataset.DemoDataset, dataset.WindowSampler, normalize.Normalizer
