"""Run an exported policy file like a `Policy`: `reset()`, `act(obs)`, the state held inside.

An exported step is a pure function `(obs, *state) -> (action, *next_state)` (see
`apprentice.deploy.export`); this module keeps the state between calls so a robot loop uses it
exactly as it would use `load_policy(...)`. The ONNX path needs only numpy and onnxruntime
(no torch), so it runs on a robot computer without PyTorch; TorchScript needs torch.

Every exported file describes itself (`ExportMeta`): observation keys and sizes in the order
the flat input concatenates them, the action size, each state tensor's name, shape and dtype,
the task's env_args and the apprentice version. ONNX files carry it in `metadata_props`,
TorchScript files as an extra file in the archive, and both have a JSON sidecar beside them.

Shape legend: B batch (1: one observation per call), D observation features, A action.
"""

from __future__ import annotations

import json
import os
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from apprentice.errors import ApprenticeError

EXPORT_FORMAT = "apprentice-export"
EXPORT_FORMAT_VERSION = 1
META_KEY = "apprentice_export"
"""Name of the metadata entry (ONNX metadata_props key; TorchScript extra file)."""
_DTYPES = ("float32", "int64")


@dataclass(frozen=True)
class StateSpec:
    """One recurrent state tensor of an exported step; zeros are the state after reset()."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    def zeros(self) -> np.ndarray:
        return np.zeros(self.shape, dtype=self.dtype)


@dataclass(frozen=True)
class ExportMeta:
    """What an exported file is: enough to feed it and to know which task it acts in."""

    format: str
    """"onnx" or "torchscript"."""
    policy_kind: str
    obs_keys: tuple[str, ...]
    """Keys concatenated, in this order, into the flat input `obs` (B, D)."""
    obs_dims: tuple[int, ...]
    action_dim: int
    state: tuple[StateSpec, ...] = ()
    """Inputs after `obs`, in order; the outputs after `action` are their next values."""
    env_args: dict[str, Any] = field(default_factory=dict)
    policy_config: dict[str, Any] = field(default_factory=dict)
    apprentice_version: str = ""

    @property
    def input_names(self) -> list[str]:
        return ["obs", *(s.name for s in self.state)]

    @property
    def output_names(self) -> list[str]:
        return ["action", *(f"next_{s.name}" for s in self.state)]

    @property
    def obs_dim(self) -> int:
        return sum(self.obs_dims)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["state"] = [{**asdict(s), "shape": list(s.shape)} for s in self.state]
        d["obs_keys"], d["obs_dims"] = list(self.obs_keys), list(self.obs_dims)
        d["inputs"], d["outputs"] = self.input_names, self.output_names
        return {"export_format": EXPORT_FORMAT, "export_format_version": EXPORT_FORMAT_VERSION, **d}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, source: str) -> ExportMeta:
        """Validate and rebuild; `source` names the file in errors."""
        if not isinstance(d, Mapping) or d.get("export_format") != EXPORT_FORMAT:
            raise ApprenticeError(f"{source} has no {EXPORT_FORMAT!r} metadata")
        if int(d.get("export_format_version", 0)) > EXPORT_FORMAT_VERSION:
            raise ApprenticeError(
                f"{source} has export format version {d['export_format_version']}, newer than "
                f"this apprentice reads ({EXPORT_FORMAT_VERSION}); upgrade apprentice"
            )
        try:
            state = tuple(
                StateSpec(str(s["name"]), tuple(int(n) for n in s["shape"]), str(s["dtype"]))
                for s in d.get("state", [])
            )
            meta = cls(
                format=str(d["format"]),
                policy_kind=str(d["policy_kind"]),
                obs_keys=tuple(str(k) for k in d["obs_keys"]),
                obs_dims=tuple(int(n) for n in d["obs_dims"]),
                action_dim=int(d["action_dim"]),
                state=state,
                env_args=dict(d.get("env_args", {})),
                policy_config=dict(d.get("policy_config", {})),
                apprentice_version=str(d.get("apprentice_version", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ApprenticeError(f"{source}: malformed export metadata ({exc!r})") from None
        if len(meta.obs_keys) != len(meta.obs_dims) or any(s.dtype not in _DTYPES for s in state):
            raise ApprenticeError(f"{source}: malformed export metadata (keys, dims or dtypes)")
        return meta


class _Backend(Protocol):
    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]: ...


class _OnnxBackend:
    def __init__(self, path: Path, intra_op_threads: int | None) -> None:
        ort = import_onnxruntime()
        options = ort.SessionOptions()
        # Errors only: ONNX Runtime's warnings are about its own graph optimizer (it cannot
        # constant-fold a Mish on constant inputs, as a U-Net's step embedding at a fixed
        # flow time), not about the model; a model that fails to load still raises.
        options.log_severity_level = 3
        if intra_op_threads is not None:
            options.intra_op_num_threads = intra_op_threads
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own types for foreign or broken files
            raise ApprenticeError(
                f"{path} is not a loadable ONNX model ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''})"
            ) from None
        self.names = [i.name for i in self.session.get_inputs()]

    def metadata(self) -> str | None:
        return self.session.get_modelmeta().custom_metadata_map.get(META_KEY)

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        outs = self.session.run(None, dict(zip(self.names, inputs, strict=True)))
        return [np.asarray(o) for o in outs]


class _TorchScriptBackend:
    def __init__(self, path: Path) -> None:
        import torch

        extra = {META_KEY + ".json": ""}
        try:
            with warnings.catch_warnings():
                # torch 2.13 deprecates TorchScript; the file was exported for libtorch users.
                warnings.simplefilter("ignore", DeprecationWarning)
                self.module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        except Exception as exc:  # torch raises many types for foreign or broken archives
            raise ApprenticeError(
                f"{path} is not a loadable TorchScript module ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''})"
            ) from None
        self.module.eval()
        self._meta = extra[META_KEY + ".json"]
        self._torch = torch

    def metadata(self) -> str | None:
        meta = self._meta.decode() if isinstance(self._meta, bytes) else self._meta
        return meta or None  # torch leaves a missing extra file as it was passed: empty

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        with self._torch.inference_mode():
            outs = self.module(*(self._torch.from_numpy(a) for a in inputs))
        return [o.numpy() for o in outs]


class ExportedPolicy:
    """An exported policy that acts like `Policy`: `reset()`, then `act(obs)` per step."""

    def __init__(self, backend: _Backend, meta: ExportMeta, path: Path) -> None:
        self.backend = backend
        self.meta = meta
        self.path = path
        self.env_args = meta.env_args
        self.obs_keys = list(meta.obs_keys)
        self.action_dim = meta.action_dim
        self._state: list[np.ndarray] = []
        self.reset()

    def reset(self) -> None:
        """Start a new episode: every state tensor back to zeros."""
        self._state = [s.zeros() for s in self.meta.state]

    def act(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        """The action (A,) float32 for ONE raw observation {key: (D,)}; advances the state."""
        outs = self.backend.run([self.flat_obs(obs), *self._state])
        self._state = outs[1:]
        return np.asarray(outs[0][0], dtype=np.float32)

    def flat_obs(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Checked observation {key: (D,)} -> (1, D) float32 in the exported key order."""
        if not isinstance(obs, Mapping):
            raise ApprenticeError(f"observation must be a dict of arrays, got {type(obs).__name__}")
        parts = []
        for key, dim in zip(self.meta.obs_keys, self.meta.obs_dims, strict=True):
            if key not in obs:
                raise ApprenticeError(
                    f"observation has no key {key!r} (it has: {', '.join(sorted(obs))}); "
                    f"{self.path.name} reads {', '.join(self.meta.obs_keys)}"
                )
            arr = np.asarray(obs[key], dtype=np.float32)
            if arr.shape != (dim,):
                raise ApprenticeError(
                    f"observation {key!r} has shape {arr.shape}, expected ({dim},)"
                )
            if not np.all(np.isfinite(arr)):
                # As Policy.act: a NaN would silently poison the recurrent state.
                raise ApprenticeError(f"observation {key!r} contains NaN or inf: {arr}")
            parts.append(arr)
        return np.concatenate(parts)[None]  # (1, D)


def import_onnxruntime() -> Any:
    """onnxruntime, or an error that says how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise ApprenticeError(
            "ONNX Runtime is not installed; install the export extra: "
            "pip install 'apprentice[export]' (or pip install onnxruntime)"
        ) from None
    return onnxruntime


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """The JSON description written beside an exported file."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def is_torchscript(path: Path) -> bool:
    """TorchScript archives are zip files; ONNX models are protobuf."""
    return zipfile.is_zipfile(path)


def load_exported(
    path: str | os.PathLike[str], *, intra_op_threads: int | None = None
) -> ExportedPolicy:
    """Open an exported file (ONNX or TorchScript, told apart by content).

    `intra_op_threads` sets ONNX Runtime's intra-op thread pool (None: its default); a
    control loop usually wants 1, so that the policy never waits on a busy core.
    """
    path = Path(path)
    if not path.is_file():
        raise ApprenticeError(f"exported policy {path} does not exist (or is not a file)")
    backend: _OnnxBackend | _TorchScriptBackend
    if is_torchscript(path):
        backend = _TorchScriptBackend(path)
    else:
        backend = _OnnxBackend(path, intra_op_threads)
    raw = backend.metadata()
    if raw is None:
        raise ApprenticeError(
            f"{path} has no apprentice metadata; export it with `apprentice export`"
        )
    try:
        meta = ExportMeta.from_dict(json.loads(raw), source=str(path))
    except json.JSONDecodeError:
        raise ApprenticeError(f"{path}: its apprentice metadata is not valid JSON") from None
    return ExportedPolicy(backend, meta, path)
