"""Run-time execution of action chunks, shared by the chunking policies (ACT, diffusion,
flow).

A chunking policy predicts k future actions per query. Two ways to turn chunks into one action
per control step, each kept per row of a batch (row i of `act_batch` is its own episode):

- `ActionQueue`: query, execute the first Ta actions open-loop, query again (Diffusion
  Policy's receding horizon, Chi et al. 2023; ACT without ensembling, Ta = k).
- `TemporalEnsembler`: query every step and average all chunks' predictions for the current
  step with weights exp(-m * i), i = 0 the oldest (ACT's temporal ensembling, Zhao et al.
  2023, Sec. 3.3), which smooths the switch between chunks.

Both treat a `fresh` row (a new episode, see `Policy.reset`) as empty, so a reset of one row
never touches the others, and hand their per-row state over (`row_state`, `load_row_state`)
for `Policy.run_state`. `check_horizon` refuses a chunk longer than the median demo.

Shape legend: B batch, n rows planned now, Tp predicted steps, Ta executed steps, k chunk, A action.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from apprentice.data.dataset import DemoDataset
from apprentice.errors import ApprenticeError
from apprentice.policies.base import PolicyConfig


class ActionQueue:
    """Per-row queue of planned actions: replan a row when its Ta queued actions are spent.

    Each `step` returns one action per row; a row whose queue is empty (or that is fresh)
    is planned anew through the `plan` callback, which sees only those rows, so rows run on
    independent schedules exactly as separate episodes would.
    """

    def __init__(self, execute_horizon: int) -> None:
        if execute_horizon < 1:
            raise ApprenticeError(f"execute_horizon must be >= 1, got {execute_horizon}")
        self.execute_horizon = execute_horizon
        self.queries = 0
        """Calls of `plan` so far (any rows): tells a benchmark which steps queried."""
        self._actions: Tensor | None = None  # (B, Ta, A)
        self._next: Tensor | None = None  # (B,) int64: index of the next action to execute

    def reset(self, rows: Tensor | None = None) -> None:
        """Empty the queue of all rows (`None`) or of the given rows (n,) (index or bool)."""
        if rows is None or self._next is None:
            self._actions = None
            self._next = None
            return
        self._next[rows] = self.execute_horizon

    def row_state(self) -> dict[str, Tensor]:
        """The queue of every row, batch first (see `Policy.run_state`); {} before a plan."""
        if self._actions is None or self._next is None:
            return {}
        return {"queue_actions": self._actions, "queue_next": self._next}  # (B, Ta, A), (B,)

    def load_row_state(self, state: Mapping[str, Tensor]) -> None:
        """Take over the queues `row_state` gave (stacked, perhaps); none there: empty."""
        self._actions = state.get("queue_actions")
        self._next = state.get("queue_next")

    def due(self, batch: int, fresh: Tensor) -> Tensor:
        """Rows (B,) bool that must plan before this step: fresh rows and spent queues."""
        if self._next is None or self._next.shape[0] != batch:
            return torch.ones(batch, dtype=torch.bool)
        return fresh | (self._next >= self.execute_horizon)

    def step(self, fresh: Tensor, plan: Callable[[Tensor], Tensor]) -> Tensor:
        """The next action (B, A) of every row; `plan(rows (n,) int64) -> chunk (n, Tp, A)`.

        The chunk's first Ta = execute_horizon steps are queued (Tp >= Ta); a policy whose
        chunk starts before the current step (Diffusion Policy's To - 1 past steps) slices
        them off in `plan`.
        """
        batch = fresh.shape[0]
        due = self.due(batch, fresh)  # (B,)
        rows = due.nonzero().flatten()  # (n,)
        if rows.numel():
            chunk = plan(rows)  # (n, Tp, A)
            self.queries += 1
            if chunk.ndim != 3 or chunk.shape[0] != rows.numel():
                raise ValueError(
                    f"plan returned shape {tuple(chunk.shape)} for {rows.numel()} rows"
                )
            if chunk.shape[1] < self.execute_horizon:
                raise ValueError(
                    f"plan returned {chunk.shape[1]} steps, fewer than "
                    f"execute_horizon={self.execute_horizon}"
                )
            if self._actions is None or self._next is None or self._actions.shape[0] != batch:
                self._actions = chunk.new_zeros(batch, self.execute_horizon, chunk.shape[2])
                self._next = torch.zeros(batch, dtype=torch.long)
            self._actions[rows] = chunk[:, : self.execute_horizon]
            self._next[rows] = 0
        assert self._actions is not None and self._next is not None
        action = self._actions[torch.arange(batch), self._next]  # (B, A)
        self._next += 1
        return action


class TemporalEnsembler:
    """ACT's temporal ensembling: a chunk (B, k, A) in every step, their weighted mean out.

    The chunk issued j steps ago (j = 0 now) predicted the current step at its index j. ACT
    weights the predictions w_i = exp(-m * i) with i = 0 the oldest, normalized over the
    predictions a row has; equivalently w ∝ exp(m * j), so a row with fewer chunks (just
    reset) needs no special case. m = 0.01 (ACT) is near-uniform; larger m trusts old chunks more.
    """

    def __init__(self, chunk_size: int, decay: float) -> None:
        if chunk_size < 1:
            raise ApprenticeError(f"chunk_size must be >= 1, got {chunk_size}")
        if decay < 0:
            raise ApprenticeError(f"temporal ensembling decay must be >= 0, got {decay}")
        self.chunk_size = chunk_size
        self.decay = decay
        self.queries = 0
        """Chunks received so far (one per step)."""
        self._chunks: Tensor | None = None  # (B, k, k, A): [:, j] = the chunk issued j steps ago
        self._valid: Tensor | None = None  # (B, k) bool: row has a chunk issued j steps ago

    def reset(self, rows: Tensor | None = None) -> None:
        """Forget the chunks of all rows (`None`) or of the given rows (n,)."""
        if rows is None or self._valid is None:
            self._chunks = None
            self._valid = None
            return
        self._valid[rows] = False

    def row_state(self) -> dict[str, Tensor]:
        """The chunks of every row, batch first (see `Policy.run_state`); {} before a step."""
        if self._chunks is None or self._valid is None:
            return {}
        # (B, k, k, A) and (B, k): the chunks issued j steps ago, and which rows have one.
        return {"ensemble_chunks": self._chunks, "ensemble_valid": self._valid}

    def load_row_state(self, state: Mapping[str, Tensor]) -> None:
        """Take over the chunks `row_state` gave (stacked, perhaps); none there: empty."""
        self._chunks = state.get("ensemble_chunks")
        self._valid = state.get("ensemble_valid")

    def step(self, chunk: Tensor, fresh: Tensor) -> Tensor:
        """Add this step's chunk (B, k, A) (fresh (B,) rows forget theirs) -> actions (B, A)."""
        b, k = chunk.shape[0], self.chunk_size
        if chunk.ndim != 3 or chunk.shape[1] != k:
            raise ValueError(f"chunk of shape {tuple(chunk.shape)}, expected (B, {k}, A)")
        if self._chunks is None or self._valid is None or self._chunks.shape[0] != b:
            self._chunks = chunk.new_zeros(b, k, k, chunk.shape[2])
            self._valid = torch.zeros(b, k, dtype=torch.bool)
        self.queries += 1
        self._valid[fresh] = False
        # Age every chunk by one step; the oldest (issued k steps ago) no longer covers now.
        self._chunks = torch.cat([chunk[:, None], self._chunks[:, :-1]], dim=1)  # (B, k, k, A)
        self._valid = torch.cat([torch.ones(b, 1, dtype=torch.bool), self._valid[:, :-1]], dim=1)
        # Chunk j's prediction for the current step is its entry j: the diagonal.
        now = torch.diagonal(self._chunks, dim1=1, dim2=2)  # (B, A, k)
        ages = torch.arange(k, dtype=chunk.dtype)  # (k,) = j
        w = torch.exp(self.decay * ages) * self._valid.to(chunk.dtype)  # (B, k)
        w = w / w.sum(-1, keepdim=True)  # row b always has its newest chunk, so sum > 0
        return (now * w[:, None, :]).sum(-1)  # (B, A)


@runtime_checkable
class ChunkingConfig(Protocol):
    """A policy config that predicts chunks of `chunk_size` actions from one query."""

    @property
    def chunk_size(self) -> int: ...


def check_horizon(config: PolicyConfig, dataset: DemoDataset) -> None:
    """Refuse a chunking policy whose chunk is longer than most training demos.

    The sampler pads a window past a demo's end (the last action repeated, masked out of the
    loss), so a few demos shorter than the chunk are fine: Push-T's expert finishes some
    episodes in a dozen steps when the block starts near the goal. A chunk longer than the
    median demo, though, trains mostly on padding and plans past most episodes' ends: it is a
    setting mistake (ACT's 100 steps at 50 Hz copied to 20 Hz data), so it is one clear error.
    Policies that are not `ChunkingConfig`s pass unchecked.
    """
    if not isinstance(config, ChunkingConfig) or dataset.num_episodes == 0:
        return
    lengths = dataset.episode_lengths
    median = int(np.median(lengths))
    if config.chunk_size > median:
        shortest = int(lengths.argmin())
        shorter = int((lengths < config.chunk_size).sum())
        raise ApprenticeError(
            f"{config.name} policy: horizon chunk_size={config.chunk_size} is longer than the "
            f"median training demo ({median} steps; {shorter} of {len(lengths)} demos are "
            f"shorter, the shortest {dataset.demo_names[shortest]}: {int(lengths[shortest])} "
            f"steps); use chunk_size <= {median}"
        )


__all__ = ["ActionQueue", "ChunkingConfig", "TemporalEnsembler", "check_horizon"]
