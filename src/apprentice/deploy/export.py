"""Export a policy's act() path to ONNX or TorchScript, with its recurrent state made explicit.

A `Policy` keeps its run-time state (frame history, LSTM (h, c), steps since reset) in Python
attributes, which no exported graph can hold. `InferenceStep` rewrites one `act` step as a
pure function `(obs, *state) -> (action, *next_state)`: it normalizes and stacks frames as
every policy does, and each policy kind supplies the rest as its own hooks
(`Policy.export_step`, `Policy.export_state`), reusing its modules (trunk, LSTM, heads) and
turning the branches on state into `where`s, so one graph serves every step. A kind without
an `export_step` cannot be exported. `apprentice.deploy.runtime.ExportedPolicy` holds the state
again and acts like the policy. Every export is checked against the PyTorch policy on random
observations (a rollout that carries the state, with a reset halfway) before it is kept.

Shape legend: B batch (1 at run time), D observation features, fs frame_stack, L LSTM layers,
H hidden size, A action.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

import apprentice
from apprentice.data.spec import ObsActSpec
from apprentice.deploy.runtime import (
    META_KEY,
    ExportedPolicy,
    ExportMeta,
    StateSpec,
    import_onnxruntime,
    load_exported,
    sidecar_path,
)
from apprentice.errors import ApprenticeError
from apprentice.files import atomic_write, write_text_atomic
from apprentice.policies.base import Policy, policy_config_class, policy_names

EXPORT_FORMATS = ("onnx", "torchscript")
_SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}


@dataclass(frozen=True)
class ExportConfig:
    """Export a checkpoint for deployment and check it against the PyTorch policy."""

    checkpoint: str = ""
    """The checkpoint to export (a .pt written by `apprentice train`) or its run folder
    (best.pt, then final.pt, last.pt)."""
    format: str = "onnx"
    """onnx (ONNX Runtime, from any language) or torchscript (libtorch, no Python needed)."""
    out: str | None = None
    """Exported file to write; default: beside the checkpoint, .onnx or .torchscript.pt
    (runs/lift/best.onnx for a run folder runs/lift)."""
    check_samples: int = 500
    """Random observations fed to both the export and the policy, as one rollout that carries
    the state (with a reset halfway)."""
    tolerance: float = 1e-4
    """Largest max-abs action difference from the PyTorch policy that the check accepts."""
    seed: int = 0
    """Seed of the check's random observations."""

    def __post_init__(self) -> None:
        if self.format not in EXPORT_FORMATS:
            raise ApprenticeError(
                f"unknown export format {self.format!r}; formats: {', '.join(EXPORT_FORMATS)}"
            )
        if self.check_samples < 2:
            raise ApprenticeError(f"check_samples must be >= 2, got {self.check_samples}")
        if not self.tolerance > 0:
            raise ApprenticeError(f"tolerance must be > 0, got {self.tolerance}")


@dataclass(frozen=True)
class ExportResult:
    """What `export_policy` wrote and how closely the export matched the policy."""

    path: Path
    sidecar: Path
    meta: ExportMeta
    max_abs_diff: float
    """Largest |action_export - action_policy| over the check's samples and action dims."""
    samples: int
    tolerance: float


class InferenceStep(nn.Module):
    """One `Policy.act` step as a pure function: (obs, *state) -> (action, *next_state).

    obs (B, D) is the raw observation, keys concatenated in `policy.obs_keys` order. State:
    `history` (B, fs, D) the last fs normalized frames (only if frame_stack > 1), then the
    policy's own (`Policy.export_state`, e.g. an LSTM's `h`, `c`), then `step` (B,) int64
    steps since reset (whenever there is any state). All zeros is the state after `reset()`.
    This module does what every policy's `act` shares (normalization, frame stacking, the
    clamp); the policy's `export_step` does the rest.
    """

    def __init__(self, policy: Policy) -> None:
        super().__init__()
        if not exports(type(policy)):
            raise ApprenticeError(
                f"policy kind {policy.config.name!r} ({type(policy).__name__}) cannot be "
                f"exported; exportable kinds: {', '.join(exportable_kinds())}"
            )
        if policy.image_keys:
            # The exported step takes one flat low-dim vector; camera encoders are not in it.
            raise ApprenticeError(
                f"{policy.config.name} policy reads camera images "
                f"({', '.join(policy.image_keys)}); only low-dim policies can be exported"
            )
        if getattr(policy.config, "deterministic_act", True) is False:
            # A sampled action depends on torch's generator, which no exported graph carries.
            raise ApprenticeError(
                f"{policy.config.name} policy samples its actions (deterministic_act=False); "
                "only deterministic policies can be exported"
            )
        self.policy = policy
        self.state_specs = state_specs(policy)
        self._names = [s.name for s in self.state_specs]
        self._own = list(policy.export_state())

    def forward(self, obs: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        p = self.policy
        s = dict(zip(self._names, state, strict=True))
        nxt: dict[str, Tensor] = {}
        x = (obs - p.obs_mean) / p.obs_std  # (B, D)
        step = s.get("step")  # (B,) int64
        fs = p.config.frame_stack
        if fs > 1:
            assert step is not None
            # A fresh episode repeats its first frame, as Policy._act_frames does.
            fresh = step == 0  # (B,) bool
            shifted = torch.cat([s["history"][:, 1:], x[:, None]], dim=1)  # (B, fs, D)
            first = x[:, None].expand(-1, fs, -1)  # (B, fs, D)
            nxt["history"] = torch.where(fresh[:, None, None], first, shifted)
            x = nxt["history"].reshape(x.shape[0], fs * x.shape[1])  # (B, fs * D)
        action, own = p.export_step(x, step, {n: s[n] for n in self._own})  # (B, A)
        nxt.update(own)
        if step is not None:
            nxt["step"] = step + 1
        return (action.clamp(-1.0, 1.0), *(nxt[n] for n in self._names))


def exports(policy_class: type[Policy]) -> bool:
    """Whether a policy class has an export step (overrides `Policy.export_step`)."""
    return policy_class.export_step is not Policy.export_step


def exportable_kinds() -> list[str]:
    """Registered policy names whose act() path `InferenceStep` can export.

    Each kind's tiny config is built on a one-key spec to find its policy class, which is
    where the export step lives.
    """
    spec = ObsActSpec({"obs": (2,)}, action_dim=1)
    return [
        name
        for name in policy_names()
        if exports(type(policy_config_class(name).tiny().build(spec, {})))
    ]


def state_specs(policy: Policy) -> tuple[StateSpec, ...]:
    """The explicit state of one exported step (batch 1); empty for a stateless policy."""
    specs: list[StateSpec] = []
    fs = policy.config.frame_stack
    if fs > 1:
        specs.append(StateSpec("history", (1, fs, policy.obs_dim)))
    specs += [StateSpec(name, shape) for name, shape in policy.export_state().items()]
    if specs:
        specs.append(StateSpec("step", (1,), "int64"))
    return tuple(specs)


def export_meta(policy: Policy, fmt: str) -> ExportMeta:
    return ExportMeta(
        format=fmt,
        policy_kind=policy.config.name,
        obs_keys=tuple(policy.obs_keys),
        obs_dims=tuple(policy.obs_dims),
        action_dim=policy.action_dim,
        state=state_specs(policy),
        env_args=_json_safe(policy.env_args),
        policy_config=policy.config.to_dict(),
        apprentice_version=apprentice.__version__,
    )


def export_policy(
    policy: Policy,
    out: str | os.PathLike[str],
    *,
    fmt: str = "onnx",
    check_samples: int = 500,
    tolerance: float = 1e-4,
    seed: int = 0,
) -> ExportResult:
    """Write `policy`'s act() step to `out`, check it, and write the JSON sidecar.

    The file is written under a temporary name and renamed only once the check passes, so
    an export that disagrees with the policy never replaces a good one.
    """
    cfg = ExportConfig(
        format=fmt, out=str(out), check_samples=check_samples, tolerance=tolerance, seed=seed
    )
    out = Path(out)
    step = InferenceStep(policy).eval()
    meta = export_meta(policy, fmt)
    example = (
        torch.zeros(1, policy.obs_dim),
        *(torch.zeros(s.shape, dtype=getattr(torch, s.dtype)) for s in meta.state),
    )
    # Under a short temporary name (a 250-byte `out` stays legal), replaced only on success.
    with atomic_write(out) as tmp:
        with torch.no_grad():
            if fmt == "onnx":
                _write_onnx(step, example, meta, tmp)
            else:
                _write_torchscript(step, example, meta, tmp)
        diff = check_equivalence(
            policy, load_exported(tmp), samples=cfg.check_samples, rng=np.random.default_rng(seed)
        )
        if not diff <= tolerance:  # also catches NaN
            raise ApprenticeError(
                f"exported {fmt} policy differs from the PyTorch policy by up to {diff:.3g} "
                f"(tolerance {tolerance:g}); nothing was written to {out}"
            )
    sidecar = sidecar_path(out)
    check = {"samples": cfg.check_samples, "max_abs_diff": diff, "tolerance": tolerance}
    meta_json = json.dumps({**meta.to_dict(), "check": check}, indent=2, sort_keys=True)
    write_text_atomic(sidecar, meta_json)
    return ExportResult(out, sidecar, meta, diff, cfg.check_samples, tolerance)


def export_checkpoint(cfg: ExportConfig) -> ExportResult:
    """`apprentice export`: load a checkpoint, export it as `cfg.format`, check it."""
    from apprentice.policies.checkpoint import load_policy, resolve_checkpoint

    if not cfg.checkpoint:
        raise ApprenticeError("no checkpoint given to export")
    checkpoint = resolve_checkpoint(cfg.checkpoint)
    policy = load_policy(checkpoint)
    out = cfg.out or str(checkpoint.with_suffix(_SUFFIX[cfg.format]))
    return export_policy(
        policy,
        out,
        fmt=cfg.format,
        check_samples=cfg.check_samples,
        tolerance=cfg.tolerance,
        seed=cfg.seed,
    )


def random_observations(
    policy: Policy, n: int, rng: np.random.Generator
) -> list[dict[str, np.ndarray]]:
    """n raw observations drawn around the policy's normalization stats (mean +- 1 std)."""
    mean = policy.obs_mean.numpy().astype(np.float64)  # (D,)
    std = policy.obs_std.numpy().astype(np.float64)  # (D,)
    flat = (mean + std * rng.standard_normal((n, mean.size))).astype(np.float32)  # (n, D)
    bounds = np.cumsum([0, *policy.obs_dims])
    return [
        {k: row[a:b] for k, a, b in zip(policy.obs_keys, bounds[:-1], bounds[1:], strict=True)}
        for row in flat
    ]


def check_equivalence(
    policy: Policy, exported: ExportedPolicy, *, samples: int, rng: np.random.Generator
) -> float:
    """Max |action difference| of `exported` and `policy.act` over one random rollout.

    Both are reset, fed the same `samples` observations in sequence (so recurrent state and
    frame history are carried), and reset again halfway, which checks reset() as well.
    """
    diff = 0.0
    policy.reset()
    exported.reset()
    for t, obs in enumerate(random_observations(policy, samples, rng)):
        if t == samples // 2:
            policy.reset()
            exported.reset()
        a, b = policy.act(obs), exported.act(obs)
        if a.shape != b.shape:
            raise ApprenticeError(f"exported policy returns actions {b.shape}, policy {a.shape}")
        diff = max(diff, float(np.max(np.abs(a - b))))
        if not np.isfinite(diff):
            return float("nan")
    policy.reset()
    return diff


def _write_onnx(
    step: InferenceStep, example: tuple[Tensor, ...], meta: ExportMeta, path: Path
) -> None:
    # torch's ONNX exporter (torch.export-based) needs onnxscript; the check needs onnxruntime.
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        raise ApprenticeError(
            "ONNX export needs onnxscript; install the export extra: "
            "pip install 'apprentice[export]'"
        ) from None
    import_onnxruntime()
    # The exporter warns about torch internals (deprecations, torchvision ops it skips) that
    # the user cannot act on; keep the command's output to what it did.
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                step,
                example,
                dynamo=True,
                input_names=meta.input_names,
                output_names=meta.output_names,
                verbose=False,
            )
    finally:
        registration.setLevel(level)
    if program is None:
        raise ApprenticeError("torch.onnx.export returned no program")
    program.model.metadata_props[META_KEY] = meta.to_json()
    program.save(str(path))


def _write_torchscript(
    step: InferenceStep, example: tuple[Tensor, ...], meta: ExportMeta, path: Path
) -> None:
    # Tracing is exact here: InferenceStep has no Python branch that depends on values.
    # torch 2.13 deprecates TorchScript; the format is exported for libtorch (C++) users.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(step, example)
        torch.jit.save(traced, str(path), _extra_files={META_KEY + ".json": meta.to_json()})


def _json_safe(value: Any) -> Any:
    """env_args as plain JSON types (checkpoints may hold them as tensors or numpy)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, Tensor | np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
