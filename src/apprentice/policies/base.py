"""The policy contract: a frozen config registered by name, and the `Policy` module it builds.

Training calls `policy.loss(batch)` on windows cut by the data layer's `WindowSampler`;
run time calls `policy.act(obs)` on one raw observation (normalization happens inside, with
the dataset's stats stored as buffers, so a checkpoint needs nothing else to act).

Shape legend: B batch, T time (training steps of a window), To observation frames of a window
(frame_stack + T - 1), D observation features (the policy's keys concatenated), A action.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import textwrap
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from apprentice.data.spec import ObsActSpec
from apprentice.errors import ApprenticeError


@dataclass(frozen=True)
class PolicyConfig:
    """Fields every policy has; subclasses add their own and register with `register_policy`."""

    name: ClassVar[str] = ""

    obs_keys: tuple[str, ...] = ()
    """Observation keys the policy reads, in order; empty = all low-dim keys of the dataset."""
    seq_len: int = 1
    """Training window length T: actions predicted (and supervised) per sample."""
    frame_stack: int = 1
    """Past observation frames (including the current one) fed at each step."""

    def __post_init__(self) -> None:
        if self.seq_len < 1:
            raise ApprenticeError(f"{self.name} policy: seq_len must be >= 1, got {self.seq_len}")
        if self.frame_stack < 1:
            raise ApprenticeError(
                f"{self.name} policy: frame_stack must be >= 1, got {self.frame_stack}"
            )
        # JSON round trips give lists; keep the frozen config hashable and comparable.
        object.__setattr__(self, "obs_keys", tuple(self.obs_keys))

    def build(self, spec: ObsActSpec, normalizer_state: dict[str, Any]) -> Policy:
        """Make the policy module for a dataset's spec and its fitted normalizer state."""
        raise NotImplementedError(f"{type(self).__name__} is not registered with a policy class")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict with the registered "name"; `policy_config_from_dict` inverts it."""
        d: dict[str, Any] = {"name": self.name}
        for key, value in asdict(self).items():
            d[key] = list(value) if isinstance(value, tuple) else value
        return d


_C = TypeVar("_C", bound=type[PolicyConfig])

# Name -> config class. A registry, like the task registry: filled once at import time.
_REGISTRY: dict[str, type[PolicyConfig]] = {}


def register_policy(name: str) -> Callable[[_C], _C]:
    """Class decorator on a `PolicyConfig` subclass: make it constructible by name."""

    def wrap(cls: _C) -> _C:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ApprenticeError(f"policy name {name!r} is already registered")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def policy_names() -> list[str]:
    """Names of all registered policies."""
    import apprentice.policies  # noqa: F401  (registers the built-ins)

    return sorted(_REGISTRY)


def policy_config_class(name: str) -> type[PolicyConfig]:
    """The config class registered under `name`."""
    known = policy_names()
    if name not in _REGISTRY:
        raise ApprenticeError(f"unknown policy {name!r}; known policies: {', '.join(known)}")
    return _REGISTRY[name]


def policy_config_from_dict(d: dict[str, Any]) -> PolicyConfig:
    """Rebuild a config from `PolicyConfig.to_dict()` output (e.g. a checkpoint's JSON)."""
    if not isinstance(d, dict) or "name" not in d:
        raise ApprenticeError(f"policy config {d!r} has no 'name' field")
    cls = policy_config_class(str(d["name"]))
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known - {"name"})
    if unknown:
        raise ApprenticeError(
            f"policy config for {cls.name!r} has unknown field(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known))}"
        )
    kwargs: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k != "name"
    }
    return cls(**kwargs)


def config_field_docs(cls: type) -> dict[str, str]:
    """Field name -> the attribute docstring under it (the `--help` text), for any dataclass."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        body = ast.parse(source).body
        if not body or not isinstance(body[0], ast.ClassDef):
            continue
        stmts = body[0].body
        for stmt, nxt in itertools.pairwise(stmts):
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[stmt.target.id] = nxt.value.value.strip()
    return docs


def masked_mean(per_step: Tensor, mask: Tensor) -> Tensor:
    """Mean of per_step (B, T) over the steps where mask (B, T) is 1 (padding past an end is 0)."""
    return (per_step * mask).sum() / mask.sum().clamp(min=1.0)


def _obs_stats(normalizer_state: dict[str, Any], key: str, dim: int) -> tuple[Tensor, Tensor]:
    """(mean, std), each (D,), of the data layer's normalization of `key`; {} = identity."""
    if not normalizer_state:
        return torch.zeros(dim), torch.ones(dim)
    from apprentice.data.normalize import Normalizer

    mean, std = Normalizer.from_state_dict(normalizer_state).obs_stats(key)
    if np.shape(mean) != (dim,):
        raise ApprenticeError(
            f"normalizer stats for {key!r} have shape {np.shape(mean)}, the data has ({dim},)"
        )
    return torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32)


class Policy(nn.Module):
    """A policy: `loss` for training, `act`/`act_batch` + `reset` at run time.

    Subclasses implement `loss` and `_act_step`; recurrent ones also `_reset_rows`.
    """

    obs_mean: Tensor
    obs_std: Tensor

    def __init__(
        self, config: PolicyConfig, spec: ObsActSpec, normalizer_state: dict[str, Any]
    ) -> None:
        super().__init__()
        keys = list(config.obs_keys) or spec.low_dim_keys
        if not keys:
            raise ApprenticeError(f"{config.name} policy: the dataset spec has no low-dim obs keys")
        for key in keys:
            if key not in spec.obs_shapes:
                raise ApprenticeError(
                    f"{config.name} policy reads observation {key!r}, which the dataset does not "
                    f"have (it has: {', '.join(sorted(spec.obs_shapes))})"
                )
            if len(spec.obs_shapes[key]) != 1:
                raise ApprenticeError(
                    f"{config.name} policy: observation {key!r} has shape "
                    f"{spec.obs_shapes[key]}; only low-dim (D,) observations are supported"
                )
        self.config = config
        self.spec = spec
        self.normalizer_state = normalizer_state
        self.env_args: dict[str, Any] = {}
        """The task this policy was trained for (set by `load_policy` from the checkpoint)."""
        self.obs_keys: list[str] = keys
        self.obs_dims: list[int] = [int(spec.obs_shapes[k][0]) for k in keys]
        self.obs_dim = sum(self.obs_dims)
        self.action_dim = int(spec.action_dim)
        self.input_dim = self.obs_dim * config.frame_stack
        means, stds = zip(
            *(_obs_stats(normalizer_state, k, d) for k, d in zip(keys, self.obs_dims, strict=True)),
            strict=True,
        )
        self.register_buffer("obs_mean", torch.cat(means))  # (D,)
        self.register_buffer("obs_std", torch.cat(stds))  # (D,)
        # Run-time state: the last frame_stack frames per row, and which rows start afresh.
        self._history: Tensor | None = None  # (B, frame_stack, D)
        self._fresh: Tensor | None = None  # (B,) bool

    # ---- training -------------------------------------------------------------------------

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """Scalar loss over a window batch (masked on padded steps) and logged numbers."""
        raise NotImplementedError

    def after_optimizer_step(self) -> None:
        """Hook run after every optimizer step (e.g. to update EMA weights); default none."""

    def obs_windows(self, batch: dict[str, Tensor]) -> Tensor:
        """Normalized, frame-stacked inputs (B, T, frame_stack * D) of a sampler batch."""
        parts = []
        for key in self.obs_keys:
            if f"obs/{key}" not in batch:
                raise ApprenticeError(f"training batch has no 'obs/{key}'")
            parts.append(batch[f"obs/{key}"])
        x = torch.cat(parts, dim=-1).float()  # (B, To, D)
        x = (x - self.obs_mean) / self.obs_std  # (B, To, D)
        fs = self.config.frame_stack
        if x.shape[1] < fs:
            raise ApprenticeError(
                f"training batch has {x.shape[1]} observation frames, fewer than frame_stack={fs}"
            )
        # Step t sees frames t .. t+fs-1 of the window (the last one is the current frame).
        x = x.unfold(1, fs, 1)  # (B, T, D, fs)
        return x.transpose(-1, -2).reshape(x.shape[0], x.shape[1], fs * self.obs_dim)

    def targets(self, batch: dict[str, Tensor], steps: int) -> tuple[Tensor, Tensor]:
        """Actions (B, T, A) and mask (B, T) of a batch, checked against the T inputs give."""
        actions = batch["actions"].float()  # (B, T, A)
        if actions.shape[1] != steps:
            raise ApprenticeError(
                f"training batch has {actions.shape[1]} action steps but {steps} observation "
                f"steps (frame_stack={self.config.frame_stack}); sampler and policy disagree"
            )
        mask = batch.get("mask")
        if mask is None:
            mask = torch.ones(actions.shape[:2])
        return actions, mask.float()  # (B, T, A), (B, T)

    # ---- run time --------------------------------------------------------------------------

    def reset(self, rows: np.ndarray | list[int] | None = None) -> None:
        """Forget run-time state: of all rows (`None`, a new episode) or of the given rows."""
        if rows is None or self._fresh is None:
            self._history = None
            self._fresh = None
            self._reset_rows(None)
            return
        idx = torch.as_tensor(np.asarray(rows, dtype=np.int64))
        self._fresh[idx] = True

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """The action (A,) float32 in [-1, 1] for ONE raw observation {key: (D,)}."""
        x = self._check_obs(obs, batched=False)  # (1, D)
        return self._act_normalized(x)[0]

    def act_batch(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Actions (B, A) for B raw observations {key: (B, D)}, with run-time state per row.

        Row i behaves exactly as a separate `act` stream; a change of B starts all rows afresh.
        """
        return self._act_normalized(self._check_obs(obs, batched=True))

    def _act_normalized(self, x: Tensor) -> np.ndarray:
        self.eval()
        # no_grad rather than inference_mode: the run-time state kept between calls must stay
        # an ordinary tensor so reset(rows=...) can edit it in place.
        with torch.no_grad():
            x = (x - self.obs_mean) / self.obs_std  # (B, D)
            b = x.shape[0]
            if self._history is None or self._fresh is None or self._history.shape[0] != b:
                self._reset_rows(None)
                self._history = x[:, None].repeat(1, self.config.frame_stack, 1)  # (B, fs, D)
                self._fresh = torch.ones(b, dtype=torch.bool)
            else:
                # Shift in the new frame; a fresh row repeats its first frame, as the
                # sampler pads windows before an episode start.
                self._history = torch.cat([self._history[:, 1:], x[:, None]], dim=1)
                fresh = self._fresh
                self._history[fresh] = x[fresh][:, None].expand(-1, self.config.frame_stack, -1)
            stacked = self._history.reshape(b, -1)  # (B, fs * D)
            action = self._act_step(stacked, self._fresh)  # (B, A)
            self._fresh = torch.zeros(b, dtype=torch.bool)
        return action.clamp(-1.0, 1.0).to(torch.float32).numpy().copy()

    def _act_step(self, x: Tensor, fresh: Tensor) -> Tensor:
        """Actions (B, A) from normalized stacked inputs x (B, fs * D); fresh (B,) rows start."""
        raise NotImplementedError

    def _reset_rows(self, rows: Tensor | None) -> None:
        """Hook for recurrent state; `None` drops all of it."""

    def _check_obs(self, obs: dict[str, np.ndarray], *, batched: bool) -> Tensor:
        if not isinstance(obs, dict):
            raise ApprenticeError(f"observation must be a dict of arrays, got {type(obs).__name__}")
        parts = []
        batch: int | None = None
        for key, dim in zip(self.obs_keys, self.obs_dims, strict=True):
            if key not in obs:
                raise ApprenticeError(
                    f"observation has no key {key!r} (it has: {', '.join(sorted(obs))}); "
                    f"the policy reads {', '.join(self.obs_keys)}"
                )
            arr = np.asarray(obs[key], dtype=np.float32)
            want = f"(B, {dim})" if batched else f"({dim},)"
            ok = arr.ndim == 2 and arr.shape[1] == dim if batched else arr.shape == (dim,)
            if not ok or (batched and batch is not None and arr.shape[0] != batch):
                raise ApprenticeError(f"observation {key!r} has shape {arr.shape}, expected {want}")
            if not np.all(np.isfinite(arr)):
                raise ApprenticeError(f"observation {key!r} contains NaN or inf: {arr}")
            batch = arr.shape[0] if batched else 1
            parts.append(arr.reshape(batch, dim))
        return torch.from_numpy(np.concatenate(parts, axis=1))  # (B, D)
