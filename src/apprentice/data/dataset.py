"""Training data: a store loaded once into contiguous arrays, and windows cut by index arithmetic.

Training never reads HDF5 per sample. `DemoDataset.load` concatenates all demos (N steps in
total) into one array per key plus an episode index; `WindowSampler` cuts frame-stacked,
sequence-long windows for a whole batch with one fancy-indexing gather per key.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from apprentice.data.source import DemoSource, open_source
from apprentice.data.spec import ObsActSpec
from apprentice.errors import ApprenticeError


@dataclass(frozen=True)
class DemoDataset:
    """All steps of the selected demos, episode after episode.

    obs: key -> (N, ...) (low-dim float32 (N, D), images uint8 (N, H, W, C));
    actions: (N, A) float32; episode_starts, episode_lengths: (E,) int64.
    """

    obs: dict[str, np.ndarray]
    actions: np.ndarray
    episode_starts: np.ndarray
    episode_lengths: np.ndarray
    demo_names: list[str]
    env_args: dict[str, Any]

    @property
    def num_steps(self) -> int:
        return int(self.actions.shape[0])

    @property
    def num_episodes(self) -> int:
        return int(self.episode_starts.shape[0])

    @property
    def spec(self) -> ObsActSpec:
        return ObsActSpec(
            {k: tuple(int(s) for s in v.shape[1:]) for k, v in self.obs.items()},
            int(self.actions.shape[1]),
        )

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        obs_keys: Sequence[str] | None = None,
        mask: str | None = None,
        demos: Sequence[str] | None = None,
        with_images: bool = True,
    ) -> DemoDataset:
        """Read the demos of `mask` (or `demos`, or all) of the dataset at `path`."""
        with open_source(path) as source:
            return cls.from_source(
                source, obs_keys=obs_keys, mask=mask, demos=demos, with_images=with_images
            )

    @classmethod
    def from_source(
        cls,
        source: DemoSource,
        *,
        obs_keys: Sequence[str] | None = None,
        mask: str | None = None,
        demos: Sequence[str] | None = None,
        with_images: bool = True,
    ) -> DemoDataset:
        """Read the demos of `mask` (or `demos`, or all) of an open `source`."""
        p = source.path
        names = source.demo_names
        if mask is not None:
            masks = source.masks
            if mask not in masks:
                raise ApprenticeError(
                    f"{p}: no mask {mask!r} (it has: {', '.join(sorted(masks)) or 'none'})"
                )
            in_mask = set(masks[mask])
            names = [n for n in names if n in in_mask]
        if demos is not None:
            unknown = [d for d in demos if d not in set(names)]
            if unknown:
                raise ApprenticeError(f"{p}: no demo {unknown[0]!r} in the file")
            chosen = set(demos)
            names = [n for n in names if n in chosen]
        if not names:
            raise ApprenticeError(f"{p}: no demos selected (mask={mask!r}, demos={demos!r})")
        keys = source.obs_keys if obs_keys is None else list(obs_keys)
        source.check_obs_keys(keys)
        if not with_images:
            keys = [k for k in keys if k not in source.image_keys]
        shapes = source.obs_shapes
        images = set(source.image_keys)

        lengths = np.array([source.num_samples(n) for n in names], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        n_steps = int(lengths.sum())
        # Preallocate and fill in place: one copy of the data, no list of per-demo arrays.
        obs: dict[str, np.ndarray] = {}
        for k in keys:
            # A low-dim key stored as (T,) becomes (N, 1), so every low-dim key is (N, D).
            shape = shapes[k] if shapes[k] else (1,)
            dtype = np.uint8 if k in images else np.float32
            obs[k] = np.empty((n_steps, *shape), dtype=dtype)
        actions = np.empty((n_steps, source.action_dim), dtype=np.float32)
        for name, s, t in zip(names, starts, lengths, strict=True):
            for k in keys:
                obs[k][s : s + t] = source.read_obs(name, k).reshape(t, *obs[k].shape[1:])
            actions[s : s + t] = source.read_actions(name)
        for k in keys:
            if k not in images and not np.all(np.isfinite(obs[k])):
                step = int(np.argwhere(~np.isfinite(obs[k]))[0][0])
                demo = int(np.searchsorted(starts, step, side="right") - 1)
                raise ApprenticeError(
                    f"{p}: data/{names[demo]}/obs/{k}: NaN or inf at step {step - starts[demo]}"
                )
        return cls(obs, actions, starts, lengths, names, source.env_args)


class WindowShape(Protocol):
    """What a window is shaped by: a policy config's steps supervised and frames stacked."""

    @property
    def seq_len(self) -> int: ...

    @property
    def frame_stack(self) -> int: ...


class WindowSampler:
    """Batches of windows over a DemoDataset, every step of every episode an anchor.

    A window anchored at step t has observations t-To+1 .. t+Ta-1 (To = frame_stack,
    Ta = seq_len; steps before the episode start repeat the first step, like robomimic's
    pad_frame_stack) and actions t .. t+Ta-1 (steps past the end repeat the last step with
    mask 0, like robomimic's pad_seq_length).
    """

    def __init__(
        self,
        dataset: DemoDataset,
        *,
        seq_len: int = 1,
        frame_stack: int = 1,
        batch_size: int,
        rng: np.random.Generator,
    ) -> None:
        if seq_len < 1 or frame_stack < 1 or batch_size < 1:
            raise ApprenticeError(
                f"seq_len, frame_stack and batch_size must be >= 1, "
                f"got {seq_len}, {frame_stack}, {batch_size}"
            )
        self.dataset = dataset
        self.seq_len = seq_len
        self.frame_stack = frame_stack
        self.batch_size = batch_size
        self.rng = rng
        # Per step: the first and last global index of its episode, for clamping.
        lengths = dataset.episode_lengths
        self._first = np.repeat(dataset.episode_starts, lengths)  # (N,)
        self._last = self._first + np.repeat(lengths, lengths) - 1  # (N,)
        self._obs_offsets = np.arange(-frame_stack + 1, seq_len, dtype=np.int64)  # (To+Ta-1,)
        self._act_offsets = np.arange(seq_len, dtype=np.int64)  # (Ta,)

    @classmethod
    def for_policy(
        cls,
        dataset: DemoDataset,
        config: WindowShape,
        *,
        batch_size: int,
        rng: np.random.Generator,
    ) -> WindowSampler:
        """The windows the policy of `config` trains on (its seq_len and frame_stack)."""
        return cls(
            dataset,
            seq_len=config.seq_len,
            frame_stack=config.frame_stack,
            batch_size=batch_size,
            rng=rng,
        )

    @property
    def num_anchors(self) -> int:
        return self.dataset.num_steps

    def __len__(self) -> int:
        """Batches per epoch."""
        return -(-self.num_anchors // self.batch_size)

    def batch(self, anchors: np.ndarray) -> dict[str, np.ndarray]:
        """Windows for global step indices `anchors` (B,)."""
        anchors = np.asarray(anchors, dtype=np.int64)
        b, w, ta = anchors.shape[0], self._obs_offsets.size, self.seq_len
        first = self._first[anchors][:, None]  # B,1
        last = self._last[anchors][:, None]  # B,1
        obs_idx = anchors[:, None] + self._obs_offsets  # B,To+Ta-1
        np.maximum(obs_idx, first, out=obs_idx)  # frame-stack padding: repeat the first step
        np.minimum(obs_idx, last, out=obs_idx)  # sequence padding: repeat the last step
        act_raw = anchors[:, None] + self._act_offsets  # B,Ta
        act_idx = np.minimum(act_raw, last)  # B,Ta
        # np.take on a flat index is several times faster than 2-D fancy indexing.
        flat_obs, flat_act = obs_idx.ravel(), act_idx.ravel()
        out: dict[str, np.ndarray] = {}
        for k, arr in self.dataset.obs.items():
            out[f"obs/{k}"] = np.take(arr, flat_obs, axis=0).reshape(b, w, *arr.shape[1:])
        actions = self.dataset.actions
        out["actions"] = np.take(actions, flat_act, axis=0).reshape(b, ta, -1)
        out["mask"] = (act_raw <= last).astype(np.float32)  # B,Ta
        return out

    def sample(self) -> dict[str, np.ndarray]:
        """One batch of anchors drawn uniformly with replacement."""
        return self.batch(self.rng.integers(0, self.num_anchors, size=self.batch_size))

    def epoch(self) -> Iterator[dict[str, np.ndarray]]:
        """Every anchor once, shuffled; the last batch may be smaller."""
        order = self.rng.permutation(self.num_anchors)
        for i in range(0, self.num_anchors, self.batch_size):
            yield self.batch(order[i : i + self.batch_size])
