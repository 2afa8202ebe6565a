"""Self-describing checkpoints: one file holds everything `load_policy` needs.

A checkpoint is a `torch.save`d dict: format tag and version, package version, the policy
config (JSON-safe dict), observation/action spec, normalizer state, weights, the task's
env_args, and caller extras (the trainer's optimizer and RNG state). It is read back with
`weights_only=True`, so opening a checkpoint never runs pickled code; numpy arrays are stored
as tensors for that reason.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

import apprentice
from apprentice.data.spec import ObsActSpec
from apprentice.errors import ApprenticeError
from apprentice.files import atomic_write
from apprentice.policies.base import Policy, policy_config_from_dict, with_run_time_settings

FORMAT = "apprentice-checkpoint"
FORMAT_VERSION = 1


def _to_storable(value: Any) -> Any:
    """numpy arrays/scalars -> tensors/Python numbers, recursively (weights_only-safe)."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _to_storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_storable(v) for v in value)
    return value


def _to_numpy(value: Any) -> Any:
    """Inverse of `_to_storable` for the numpy-side normalizer state."""
    if isinstance(value, torch.Tensor):
        return value.numpy()
    if isinstance(value, dict):
        return {k: _to_numpy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_numpy(v) for v in value)
    return value


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """torch.save to a temporary file beside `path`, fsync, then rename over it.

    A process killed at any instant leaves either the old file or the new one, never half.
    """
    with atomic_write(path) as tmp:
        torch.save(obj, tmp)


def save_checkpoint(
    path: str | os.PathLike[str],
    policy: Policy,
    *,
    env_args: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> None:
    """Write `policy` and what rebuilds it to one file, atomically."""
    atomic_torch_save(
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "apprentice_version": apprentice.__version__,
            "policy_config": policy.config.to_dict(),
            "spec": policy.spec.to_dict(),
            "normalizer_state": _to_storable(policy.normalizer_state),
            # CPU tensors: a checkpoint written on a GPU loads on any machine.
            "state_dict": {
                k: v.detach().to("cpu", copy=True) for k, v in policy.state_dict().items()
            },
            "env_args": _to_storable(dict(env_args)),
            "extra": _to_storable(dict(extra or {})),
        },
        path,
    )


RUN_FOLDER_CHECKPOINTS = ("best.pt", "final.pt", "last.pt")
"""The checkpoints of a run folder, in the order a command taking a run picks one."""


def resolve_checkpoint(run_or_checkpoint: str | os.PathLike[str]) -> Path:
    """A checkpoint file, or the best one of a run folder (best.pt, then final.pt, last.pt)."""
    path = Path(run_or_checkpoint)
    if path.is_dir():
        for name in RUN_FOLDER_CHECKPOINTS:
            if (path / name).is_file():
                return path / name
        raise ApprenticeError(
            f"run folder {path} holds no checkpoint ({', '.join(RUN_FOLDER_CHECKPOINTS)})"
        )
    if not path.exists():
        raise ApprenticeError(
            f"checkpoint {path} does not exist (no such run folder or checkpoint file)"
        )
    return path


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_TAKE_A_CHECKPOINT = (
    "eval, export and serve take a checkpoint (.pt, written by `apprentice train`) or a run folder"
)


def _not_a_checkpoint(path: Path) -> str | None:
    """Why `path` is no checkpoint, told by its first bytes (what file it is instead); None =
    it may be one (a zip archive from torch.save, or a pickle): torch.load decides."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as exc:
        return f"checkpoint {path} cannot be read ({exc.strerror or exc})"
    # HDF5 files start with the signature, after a user block of 512 * 2^k bytes if any.
    if any(head[at : at + 8] == _HDF5_SIGNATURE for at in (0, 512, 1024, 2048)):
        return (
            f"{path} is an HDF5 file (a demo dataset), not a checkpoint: train a policy on it "
            f"(apprentice train --dataset {path} --out runs/NAME) and give its run folder; "
            f"{_TAKE_A_CHECKPOINT}"
        )
    exported = (
        "run it with apprentice.deploy.runtime.load_exported (see the README's Deploy "
        f"section); {_TAKE_A_CHECKPOINT}, such as the one it was exported from"
    )
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile:
            return None  # a truncated archive: torch.load says so
        if any(n.endswith("/extra/apprentice_export.json") for n in names):
            return f"{path} is an exported TorchScript policy, not a checkpoint: {exported}"
        if any(n.endswith("/constants.pkl") for n in names):
            return f"{path} is a TorchScript archive, not a checkpoint; {_TAKE_A_CHECKPOINT}"
        return None
    # A torch.save pickle starts with the PROTO opcode 0x80; an ONNX model (protobuf) with
    # field 1, its ir_version (tag 0x08).
    if path.suffix.lower() == ".onnx" or head[:1] == b"\x08":
        return f"{path} is an ONNX model (an exported policy), not a checkpoint: {exported}"
    return None


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checkpoint dict (see the module docstring); tensors on the CPU.

    `path` is a checkpoint file or a run folder (`resolve_checkpoint` picks its checkpoint).
    A file of another kind (a dataset, an exported policy) is refused with what it is.
    """
    path = resolve_checkpoint(path)
    if not path.is_file():
        raise ApprenticeError(f"checkpoint {path} is not a file")
    foreign = _not_a_checkpoint(path)
    if foreign is not None:
        raise ApprenticeError(foreign)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        first = str(exc).splitlines()[0] if str(exc) else ""
        if "weights_only" in str(exc) or "Weights only" in str(exc):
            # torch's advice (load with weights_only=False) would run the file's code.
            first = "it holds pickled Python objects, which are never loaded: they can run code"
        raise ApprenticeError(
            f"checkpoint {path} is truncated, corrupt or not an apprentice checkpoint "
            f"({type(exc).__name__}: {first})"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ApprenticeError(f"{path} is not an apprentice checkpoint (no {FORMAT!r} tag)")
    if int(ckpt.get("format_version", 0)) > FORMAT_VERSION:
        raise ApprenticeError(
            f"checkpoint {path} has format version {ckpt['format_version']}, newer than this "
            f"apprentice {apprentice.__version__} reads ({FORMAT_VERSION}); upgrade apprentice"
        )
    missing = [
        k for k in ("policy_config", "spec", "normalizer_state", "state_dict") if k not in ckpt
    ]
    if missing:
        raise ApprenticeError(f"checkpoint {path} lacks {', '.join(missing)}")
    ckpt["normalizer_state"] = _to_numpy(ckpt["normalizer_state"])
    ckpt["path"] = str(path)
    return ckpt


def load_policy(path: str | os.PathLike[str], overrides: dict[str, Any] | None = None) -> Policy:
    """Rebuild the policy saved at `path` (a checkpoint or a run folder), in eval mode;
    `policy.env_args` names its task. `overrides` change run-time settings of the saved
    config (`with_run_time_settings`: e.g. {"temporal_ensemble": False} for an ACT); a
    setting fixed by training is refused."""
    ckpt = load_checkpoint(path)
    config = policy_config_from_dict(ckpt["policy_config"])
    if overrides:
        config = with_run_time_settings(config, overrides)
    policy = config.build(ObsActSpec.from_dict(ckpt["spec"]), ckpt["normalizer_state"])
    try:
        policy.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise ApprenticeError(
            f"checkpoint {path}: weights do not fit its {config.name!r} config ({exc})"
        ) from None
    policy.env_args = dict(ckpt.get("env_args", {}))
    return policy.eval()


def task_name(env_args: dict[str, Any]) -> str:
    """The task name recorded in env_args (robomimic's "env_name")."""
    return _env_name(env_args)


def _env_name(env_args: dict[str, Any]) -> str:
    # Separate from `task_name` because check_task's parameter of that name shadows it.
    try:
        return str(env_args["env_name"])
    except (KeyError, TypeError):
        raise ApprenticeError(f"env_args {env_args!r} has no 'env_name'") from None


def check_task(
    checkpoint_env_args: dict[str, Any], task_name: str, *, checkpoint: str = "checkpoint"
) -> None:
    """Raise unless the checkpoint was trained for `task_name`; `checkpoint` names it."""
    trained_for = _env_name(checkpoint_env_args)
    if trained_for != task_name:
        raise ApprenticeError(
            f"checkpoint {checkpoint} was trained for task {trained_for!r}, not {task_name!r}"
        )
