"""The policy contract: a frozen config registered by name, and the `Policy` module it builds.

Training calls the module, `policy(batch)` (its `forward`: the loss), on windows cut by the
data layer's `WindowSampler`; run time calls `policy.act(obs)` on one raw observation
(normalization happens inside, with the dataset's stats stored as buffers, so a checkpoint
needs nothing else to act).

Camera observations (`image_keys`) go through one encoder per camera inside the policy, built
as the config's `camera` (`encoders.CameraConfig`) says; their features and the normalized
low-dim keys, concatenated, are the per-frame features F that frame stacking, `obs_windows`
and the run-time history use. So every policy built on `obs_windows` and `_act_step` reads
images without knowing it. Images stay uint8 in datasets, samplers and batches and become
float only inside the encoder.

Shape legend: B batch, T time (training steps of a window), To observation frames of a window
(frame_stack + T - 1), D raw low-dim observation size (the policy's low-dim keys concatenated),
F per-frame features (D + feature_dim per camera; F = D without cameras), A action,
H, W, C image height, width, channels.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Self, TypeVar, get_type_hints

import numpy as np
import torch
from torch import Tensor, nn

from apprentice.data.spec import ObsActSpec
from apprentice.errors import ApprenticeError
from apprentice.overrides import coerce_tuple, tuple_item_type
from apprentice.policies.encoders import CameraConfig, VisualCore


@dataclass(frozen=True)
class PolicyConfig:
    """Fields every policy has; subclasses add their own and register with `register_policy`."""

    name: ClassVar[str] = ""
    RUN_TIME_FIELDS: ClassVar[frozenset[str]] = frozenset()
    """Fields that change only how the trained policy acts, not what it learnt (its network,
    its training data), so `with_run_time_settings` may change them on a checkpoint. A class
    names its own; those its bases name count too (`run_time_fields`)."""

    obs_keys: tuple[str, ...] = ()
    """Observation keys the policy reads, in order; empty = all low-dim keys of the dataset."""
    seq_len: int = 1
    """Training window length T: actions predicted (and supervised) per sample."""
    frame_stack: int = 1
    """Past observation frames (including the current one) fed at each step."""
    image_keys: tuple[str, ...] = ()
    """Camera observations (uint8 H x W x C) to encode, e.g. agentview_image; empty = none."""
    camera: CameraConfig = field(default_factory=CameraConfig)
    """How the cameras are encoded and augmented (`CameraConfig`; its fields by name on the
    command line: encoder=resnet18 random_shift=0)."""

    def __post_init__(self) -> None:
        if self.seq_len < 1:
            raise ApprenticeError(f"{self.name} policy: seq_len must be >= 1, got {self.seq_len}")
        if self.frame_stack < 1:
            raise ApprenticeError(
                f"{self.name} policy: frame_stack must be >= 1, got {self.frame_stack}"
            )
        # JSON round trips give lists, the command line "a,b"; keep the config hashable.
        for name in ("obs_keys", "image_keys"):
            value = getattr(self, name)
            keys = value.split(",") if isinstance(value, str) else value
            object.__setattr__(self, name, tuple(str(k) for k in keys if k))
        if isinstance(self.camera, dict):  # from JSON or `asdict`
            what = f"{self.name} policy"
            object.__setattr__(self, "camera", CameraConfig(**_camera_fields(self.camera, what)))
        if not isinstance(self.camera, CameraConfig):
            raise ApprenticeError(
                f"{self.name} policy: camera must be a CameraConfig, not {self.camera!r}"
            )
        both = sorted(set(self.obs_keys) & set(self.image_keys))
        if both:
            raise ApprenticeError(
                f"{self.name} policy: {', '.join(both)} listed in both obs_keys and image_keys"
            )

    def build(self, spec: ObsActSpec, normalizer_state: dict[str, Any]) -> Policy:
        """Make the policy module for a dataset's spec and its fitted normalizer state."""
        raise NotImplementedError(f"{type(self).__name__} is not registered with a policy class")

    @classmethod
    def tiny(cls, **overrides: Any) -> Self:
        """A config small enough to train and act in milliseconds, every part of the policy
        still there: the size tests and smoke benchmarks use. `overrides` go on top."""
        raise NotImplementedError(f"{cls.__name__} defines no tiny size")

    @classmethod
    def run_time_fields(cls) -> frozenset[str]:
        """The run-time settings of this policy kind: `RUN_TIME_FIELDS` of the class and of
        every base class."""
        return frozenset().union(*(vars(k).get("RUN_TIME_FIELDS", ()) for k in cls.__mro__))

    @property
    def keeps_ema(self) -> bool:
        """Whether the policy keeps an average of its own weights (in `after_optimizer_step`);
        the trainer's EMA (`TrainConfig.ema_decay`) is refused for such a policy."""
        return False

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict with the registered "name"; `policy_config_from_dict` inverts it.
        A policy without cameras leaves `image_keys` and `camera` out: its dict names only
        what it uses."""
        d: dict[str, Any] = {"name": self.name}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "camera":
                if self.image_keys or value != CameraConfig():
                    d["camera"] = asdict(value)
            elif f.name != "image_keys" or value:
                d[f.name] = list(value) if isinstance(value, tuple) else value
        return d


CAMERA_FIELDS = tuple(f.name for f in fields(CameraConfig))
"""`CameraConfig`'s fields, which a policy config dict may also give at its top level: the
command line's `encoder=resnet18`, and checkpoints and run folders that hold them there."""


_C = TypeVar("_C", bound=type[PolicyConfig])

# Name -> config class. A registry, like the task registry: filled once at import time.
_REGISTRY: dict[str, type[PolicyConfig]] = {}


def register_policy(name: str) -> Callable[[_C], _C]:
    """Class decorator on a `PolicyConfig` subclass: make it constructible by name."""

    def wrap(cls: _C) -> _C:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ApprenticeError(f"policy name {name!r} is already registered")
        clash = sorted({f.name for f in fields(cls)} & set(CAMERA_FIELDS))
        if clash:
            # A camera field given by name must mean one thing (see `policy_config_from_dict`).
            raise ApprenticeError(
                f"policy {name!r} has field(s) {', '.join(clash)}, named as camera fields"
            )
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
    """Rebuild a config from `PolicyConfig.to_dict()` output (e.g. a checkpoint's JSON) or
    from key=value overrides. The camera's fields come as a `camera` dict, by name at the top
    level (`encoder="resnet18"`), or by path (`"camera.encoder"`); the last two override the
    first."""
    if not isinstance(d, dict) or "name" not in d:
        raise ApprenticeError(f"policy config {d!r} has no 'name' field")
    cls = policy_config_class(str(d["name"]))
    what = f"policy config for {cls.name!r}"
    known = {f.name for f in fields(cls)}
    camera_keys = {k for k in d if k in CAMERA_FIELDS or k.startswith("camera.")}
    unknown = sorted(set(d) - known - camera_keys - {"name"})
    if unknown:
        raise ApprenticeError(
            f"{what} has unknown field(s) {', '.join(unknown)}; known: "
            f"{', '.join(sorted(known - {'camera'}))}, and the camera's "
            f"{', '.join(CAMERA_FIELDS)}"
        )
    # A tuple field takes a JSON list, a comma list (image_keys=a,b, unet_channels=16,32,64)
    # or one value (hidden_dims=256 is a 1-tuple).
    hints = get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for k, v in d.items():
        if k == "name" or k in camera_keys or k == "camera":
            continue
        item_type = tuple_item_type(hints[k])
        if item_type is not None and v is not None:
            v = coerce_tuple(v, item_type, f"{what}: {k}")
        kwargs[k] = v
    try:
        if "camera" in d or camera_keys:
            kwargs["camera"] = CameraConfig(**_camera_fields(d.get("camera", {}), what, d))
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ApprenticeError(f"{what}: {exc}") from None


def with_run_time_settings(config: PolicyConfig, settings: dict[str, Any]) -> PolicyConfig:
    """`config` with some of its run-time settings changed (`PolicyConfig.run_time_fields`,
    e.g. a trained ACT's temporal_ensemble), for acting differently without retraining.

    An unknown setting, one fixed by training (the network, the data it learnt from) or a
    bool, int or float setting given a value of another type is refused, naming the key.
    """
    kind = config.name
    allowed = type(config).run_time_fields()
    known = {f.name for f in fields(config)} | set(CAMERA_FIELDS)
    unknown = sorted(k for k in settings if k not in known and not k.startswith("camera."))
    fixed = sorted(k for k in settings if k not in allowed and k not in unknown)
    refused = []
    if unknown:
        refused.append(f"{kind} policy has no setting {', '.join(unknown)}")
    if fixed:
        verb = "is" if len(fixed) == 1 else "are"
        refused.append(f"policy setting {', '.join(fixed)} {verb} fixed by training")
    if refused:
        offered = ", ".join(sorted(allowed)) or "none"
        raise ApprenticeError(f"{'; '.join(refused)}; run-time settings of {kind}: {offered}")
    hints = get_type_hints(type(config))
    for key, value in settings.items():
        want = hints[key]
        if want in (bool, int, float) and not _is_a(value, want):
            raise ApprenticeError(
                f"{kind} policy: setting {key}={value!r} is not a{'n' if want is int else ''} "
                f"{want.__name__}"
            )
    return policy_config_from_dict({**config.to_dict(), **settings})


def _is_a(value: Any, kind: type) -> bool:
    """Whether `value` (read from JSON) fits a bool, int or float field: an int is a float,
    a bool is neither an int nor a float."""
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    return isinstance(value, int | float) if kind is float else isinstance(value, int)


def _camera_fields(nested: Any, what: str, top: dict[str, Any] | None = None) -> dict[str, Any]:
    """CameraConfig's keyword arguments from a `camera` dict, with the camera fields of `top`
    (a policy config dict) given by name or by path on top of it."""
    top = top or {}
    if isinstance(nested, CameraConfig):
        nested = asdict(nested)
    if not isinstance(nested, dict):
        raise ApprenticeError(
            f"{what}: camera is a set of fields; give them by name (encoder=resnet18) or as "
            f"camera.<field>=value, not camera={nested!r}"
        )
    by_name = {k: v for k, v in top.items() if k in CAMERA_FIELDS}
    by_path = {k.removeprefix("camera."): v for k, v in top.items() if k.startswith("camera.")}
    twice = sorted(set(by_name) & set(by_path))
    unknown = sorted((set(nested) | set(by_path)) - set(CAMERA_FIELDS))
    if twice:
        raise ApprenticeError(f"{what}: {', '.join(twice)} given both by name and as camera.*")
    if unknown:
        raise ApprenticeError(
            f"{what}: camera has no field(s) {', '.join(unknown)}; known: "
            f"{', '.join(CAMERA_FIELDS)}"
        )
    return {**nested, **by_name, **by_path}


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


def features_key(image_key: str) -> str:
    """The observation key under which training data holds the cached encoder features of
    camera `image_key` (`Policy.camera_features`), in place of its frames."""
    return f"{image_key}:features"


def masked_mean(per_step: Tensor, mask: Tensor) -> Tensor:
    """Mean of per_step (B, T) over the steps where mask (B, T) is 1 (padding past an end is 0)."""
    return (per_step * mask).sum() / mask.sum().clamp(min=1.0)


RunState = dict[str, Tensor]
"""What `act_batch`'s rows carry from one call to the next (`Policy.run_state`): named
tensors, each (B, ...) with row i the state of stream i; {} is the state after `reset()`."""


def stack_run_states(states: Sequence[RunState]) -> RunState:
    """The run state of one `act_batch` call over several streams, row i from `states[i]`
    (each one row; {} is a stream after its reset, which the call starts afresh, as
    `Policy.reset(rows)` does). New tensors: the policy may change them in place."""
    if len(states) == 1:
        return {k: v.clone() for k, v in states[0].items()}
    template = next((s for s in states if s), None)
    if template is None:
        return {}
    rows = list(states)
    if not all(rows):
        fresh = {k: torch.zeros_like(v[:1]) for k, v in template.items()}
        fresh["fresh"] = torch.ones(1, dtype=torch.bool)
        rows = [s or fresh for s in rows]
    if any(r.keys() != template.keys() for r in rows):
        keys = sorted({", ".join(sorted(r)) for r in rows})
        raise ValueError(f"run states of one batch hold different entries: {keys}")
    return {k: torch.cat([r[k] for r in rows]) for k in template}


def split_run_state(state: RunState, rows: int) -> list[RunState]:
    """The one-row run state of each of `rows` streams in `state`: views of its tensors,
    which the policy no longer changes once it has loaded another state."""
    if not state:
        return [{} for _ in range(rows)]
    return [{k: v[i : i + 1] for k, v in state.items()} for i in range(rows)]


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


def _check_obs_key(spec: ObsActSpec, key: str, *, image: bool, policy: str) -> None:
    """Raise unless the dataset has `key` as a low-dim (D,) or, if `image`, an (H, W, C) key."""
    if key not in spec.obs_shapes:
        if image:
            raise ApprenticeError(
                f"{policy} policy reads camera images {key!r}, which the dataset does not have "
                f"(its image keys: {', '.join(spec.image_keys) or 'none'}; other keys: "
                f"{', '.join(sorted(spec.low_dim_keys))}); record cameras with "
                "`apprentice collect --camera`"
            )
        raise ApprenticeError(
            f"{policy} policy reads observation {key!r}, which the dataset does not "
            f"have (it has: {', '.join(sorted(spec.obs_shapes))})"
        )
    shape = tuple(spec.obs_shapes[key])
    if image and len(shape) != 3:
        raise ApprenticeError(
            f"{policy} policy: {key!r} is a low-dim observation of shape {shape}, not a camera "
            "image (H, W, C); list it in obs_keys, not image_keys"
        )
    if not image and len(shape) == 3:
        raise ApprenticeError(
            f"{policy} policy: {key!r} is a camera image of shape {shape}; list it in "
            "image_keys (it is encoded), not obs_keys"
        )
    if not image and len(shape) != 1:
        raise ApprenticeError(
            f"{policy} policy: observation {key!r} has shape {shape}; only low-dim (D,) "
            "observations and (H, W, C) camera images are supported"
        )


class Policy(nn.Module):
    """A policy: `forward` (the loss) for training, `act`/`act_batch` + `reset` at run time.

    Subclasses implement `forward` and `_act_step`; recurrent ones also `_reset_rows`, and
    `_row_state`/`_load_row_state` to hand their per-row state to `run_state` (which lets a
    server batch its sessions). They see per-frame features F (`obs_dim`), whatever mix of
    low-dim keys and cameras makes them.
    """

    obs_mean: Tensor
    obs_std: Tensor

    def __init__(
        self, config: PolicyConfig, spec: ObsActSpec, normalizer_state: dict[str, Any]
    ) -> None:
        super().__init__()
        name = config.name
        keys = list(config.obs_keys) or spec.low_dim_keys
        if not keys and not config.image_keys:
            raise ApprenticeError(f"{name} policy: the dataset spec has no low-dim obs keys")
        for key in keys:
            _check_obs_key(spec, key, image=False, policy=name)
        for key in config.image_keys:
            _check_obs_key(spec, key, image=True, policy=name)
        self.config = config
        self.spec = spec
        self.normalizer_state = normalizer_state
        self.env_args: dict[str, Any] = {}
        """The task this policy was trained for (set by `load_policy` from the checkpoint)."""
        self.obs_keys: list[str] = keys
        """Low-dim keys, in the order their values are concatenated (D)."""
        self.obs_dims: list[int] = [int(spec.obs_shapes[k][0]) for k in keys]
        self.low_dim = sum(self.obs_dims)
        """D: the raw low-dim observation size."""
        self.image_keys: list[str] = list(config.image_keys)
        self.image_shapes: dict[str, tuple[int, int, int]] = {
            k: (int(s[0]), int(s[1]), int(s[2]))
            for k, s in ((k, spec.obs_shapes[k]) for k in self.image_keys)
        }
        self.image_encoders = self._build_encoders()
        self.obs_dim = self.low_dim + config.camera.feature_dim * len(self.image_keys)
        """F: features per frame (the normalized low-dim keys, then each camera's features)."""
        self.action_dim = int(spec.action_dim)
        self.input_dim = self.obs_dim * config.frame_stack
        stats = [
            _obs_stats(normalizer_state, k, d) for k, d in zip(keys, self.obs_dims, strict=True)
        ]
        # A policy on cameras alone has D = 0: empty stats.
        self.register_buffer("obs_mean", torch.cat([m for m, _ in stats] or [torch.zeros(0)]))
        self.register_buffer("obs_std", torch.cat([s for _, s in stats] or [torch.ones(0)]))
        # Run-time state: the last frame_stack frames' features per row, and fresh rows.
        self._history: Tensor | None = None  # (B, frame_stack, F)
        self._fresh: Tensor | None = None  # (B,) bool

    def _build_encoders(self) -> nn.ModuleDict:
        """One VisualCore per camera (key "shared" for a shared one); empty without cameras."""
        camera = self.config.camera
        encoders = nn.ModuleDict()
        if not self.image_keys:
            return encoders
        shapes = set(self.image_shapes.values())
        if camera.share_encoder and len(shapes) > 1:
            sizes = ", ".join(f"{k} {s}" for k, s in self.image_shapes.items())
            raise ApprenticeError(
                f"{self.config.name} policy: share_encoder needs one image size, the cameras "
                f"have {sizes}"
            )
        for key in ["shared"] if camera.share_encoder else self.image_keys:
            encoders[key] = camera.build(
                self.image_shapes[self.image_keys[0] if camera.share_encoder else key]
            )
        return encoders

    def image_encoder(self, key: str) -> VisualCore:
        """The encoder of camera `key` (the shared one with share_encoder)."""
        core = self.image_encoders["shared" if self.config.camera.share_encoder else key]
        assert isinstance(core, VisualCore)
        return core

    def load_pretrained_encoders(self) -> None:
        """Start the encoders from `config.camera`'s pretrained_path (resnet18 ImageNet
        weights, a local file) or encoder_checkpoint (`apprentice pretrain-encoder` files).

        Called by the trainer for a fresh run only, not by `build`: a checkpoint already holds
        the trained (or frozen) weights, so loading one never needs these files.
        """
        camera = self.config.camera
        if camera.pretrained_path is not None:
            for core in self.image_encoders.values():
                assert isinstance(core, VisualCore)
                core.load_pretrained(camera.pretrained_path)
        if camera.encoder_checkpoint is not None:
            self._load_encoder_files(camera.encoder_checkpoint)

    def _load_encoder_files(self, paths: str) -> None:
        """Each file of `paths` (comma-separated) into the encoder of the camera it names; a
        shared encoder takes one file of any of the cameras. Every camera must get one."""
        from apprentice.policies.encoder_file import EncoderFile

        camera = self.config.camera
        files = [EncoderFile.load(p) for p in paths.split(",") if p]
        if camera.share_encoder:
            if len(files) != 1:
                raise ApprenticeError(
                    f"encoder_checkpoint: a shared encoder starts from one file, got {len(files)}"
                )
            files[0].load_into(self.image_encoder(self.image_keys[0]), camera, what="cameras")
            return
        by_key = {f.image_key: f for f in files}
        missing = [k for k in self.image_keys if k not in by_key]
        if missing or len(by_key) != len(files):
            raise ApprenticeError(
                f"encoder_checkpoint files are for {', '.join(f.image_key for f in files)}; the "
                f"policy reads {', '.join(self.image_keys)}: give one file per camera"
            )
        for key in self.image_keys:
            by_key[key].load_into(self.image_encoder(key), camera, what=f"{key!r} images")

    @property
    def cached_cameras(self) -> list[str]:
        """The cameras whose features training may compute once per frame and cache
        (`camera_features`): those with a frozen encoder."""
        return list(self.image_keys) if self.config.camera.freeze_encoder else []

    @torch.no_grad()
    def camera_features(
        self, key: str, images: Tensor, device: torch.device, batch_size: int = 256
    ) -> Tensor:
        """Features (N, Df) float32 on the CPU of camera `key`'s frames (N, H, W, C) uint8,
        `batch_size` frames at a time on `device` (so only one batch of frames is ever there):
        what a frozen encoder gives every step, to cache under `features_key(key)`."""
        core = Policy.image_encoder(self, key)  # the trained one, never an average of it
        out = [
            core(images[i : i + batch_size].to(device)).float().cpu()
            for i in range(0, images.shape[0], batch_size)
        ]
        return torch.cat(out) if out else torch.zeros((0, self.config.camera.feature_dim))

    def encode_frames(self, frames: dict[str, Tensor], group: int = 1) -> Tensor:
        """Per-frame features (..., F): low-dim keys (..., D_k) and images (..., H, W, C) raw.

        Low-dim keys are normalized with the dataset's stats; each camera goes through its
        encoder as one flat batch (augmented in train mode, `group` consecutive frames alike),
        unless its cached features (..., Df) come instead, under `features_key(key)`.
        """
        parts: list[Tensor] = []
        if self.obs_keys:
            x = torch.cat([frames[k] for k in self.obs_keys], dim=-1).float()  # (..., D)
            parts.append((x - self.obs_mean) / self.obs_std)
        for key in self.image_keys:
            if key not in frames:
                parts.append(self._cached(key, frames[features_key(key)]))  # (..., Df)
                continue
            images = frames[key]  # (..., H, W, C) uint8
            lead = images.shape[:-3]
            flat = images.reshape(-1, *images.shape[-3:])  # (N, H, W, C)
            parts.append(self.image_encoder(key)(flat, group).reshape(*lead, -1))  # (..., Df)
        return torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]  # (..., F)

    def _cached(self, key: str, features: Tensor) -> Tensor:
        """Cached features (..., Df) of camera `key`, checked: only a frozen encoder's
        features stay what the encoder would give."""
        if key not in self.cached_cameras:
            raise ApprenticeError(
                f"training batch has cached features of {key!r} but its encoder trains; "
                "cache features only with freeze_encoder=true"
            )
        df = self.config.camera.feature_dim
        if features.shape[-1] != df or not features.is_floating_point():
            raise ApprenticeError(
                f"cached features of {key!r} are {tuple(features.shape)} {features.dtype}; the "
                f"encoder gives {df} float features per frame"
            )
        return features.float()

    # ---- training -------------------------------------------------------------------------

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Scalar loss over a window batch (masked on padded steps) and logged numbers.

        Called as `policy(batch)`, so that a wrapper hooking the module call (such as
        DistributedDataParallel, which synchronises gradients there) sees it.
        """
        raise NotImplementedError

    def after_optimizer_step(self) -> None:
        """Hook run after every optimizer step (e.g. to update EMA weights); default none."""

    def as_replica(self, rank: int) -> None:
        """Train as data-parallel replica `rank` (a torchrun process, `algos/distributed.py`):
        what the policy draws for itself in training must differ between replicas, as their
        batches do. Default none: the trainer seeds torch's generator per replica."""

    def obs_windows(self, batch: dict[str, Tensor]) -> Tensor:
        """Frame-stacked per-frame features (B, T, frame_stack * F) of a sampler batch.

        Every frame of the window (B, To) is encoded once, as one (B * To) image batch, before
        the stacking, so a frame shared by several steps' stacks costs one encoder pass.
        """
        frames: dict[str, Tensor] = {}
        for key in [*self.obs_keys, *self.image_keys]:
            cached = features_key(key)
            if key in self.image_shapes and f"obs/{key}" not in batch and f"obs/{cached}" in batch:
                frames[cached] = batch[f"obs/{cached}"]  # (B, To, Df): a frozen encoder's
            elif f"obs/{key}" not in batch:
                raise ApprenticeError(f"training batch has no 'obs/{key}'")
            else:
                frames[key] = batch[f"obs/{key}"]
        for key, shape in self.image_shapes.items():
            if key not in frames:
                continue
            got = tuple(frames[key].shape[2:])
            if got != shape or frames[key].dtype != torch.uint8:
                raise ApprenticeError(
                    f"training images 'obs/{key}' are {got} {frames[key].dtype}; the encoder "
                    f"was built for {shape} uint8 (H, W, C)"
                )
        to = next(iter(frames.values())).shape[1]
        x = self.encode_frames(frames, group=to)  # (B, To, F): a window's frames alike
        fs = self.config.frame_stack
        if to < fs:
            raise ApprenticeError(
                f"training batch has {to} observation frames, fewer than frame_stack={fs}"
            )
        # Step t sees frames t .. t+fs-1 of the window (the last one is the current frame).
        x = x.unfold(1, fs, 1)  # (B, T, F, fs)
        return x.transpose(-1, -2).reshape(x.shape[0], x.shape[1], fs * self.obs_dim)

    def first_step_features(self, batch: dict[str, Tensor]) -> Tensor:
        """`obs_windows` of the window's first step alone (B, frame_stack * F), for policies
        that condition a whole chunk on it: only that step's frame_stack frames are encoded,
        not the window's T + frame_stack - 1 (with cameras, T times fewer encoder passes)."""
        c = self.config.frame_stack
        first = {k: v[:, :c] if k.startswith("obs/") else v for k, v in batch.items()}
        return self.obs_windows(first)[:, 0]

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
            mask = torch.ones(actions.shape[:2], device=actions.device)
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
        """The action (A,) float32 in [-1, 1] for ONE raw observation {key: (D,) or (H, W, C)}."""
        return self._act_frames(self._check_obs(obs, batched=False))[0]

    def act_batch(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Actions (B, A) for B raw observations {key: (B, D) or (B, H, W, C)}, state per row.

        Row i behaves exactly as a separate `act` stream; a change of B starts all rows afresh.
        """
        return self._act_frames(self._check_obs(obs, batched=True))

    def _act_frames(self, frames: dict[str, Tensor]) -> np.ndarray:
        self.eval()
        # no_grad rather than inference_mode: the run-time state kept between calls must stay
        # an ordinary tensor so reset(rows=...) can edit it in place.
        with torch.no_grad():
            x = self.encode_frames(frames)  # (B, F): only the current frame is encoded
            b = x.shape[0]
            if self._history is None or self._fresh is None or self._history.shape[0] != b:
                self._reset_rows(None)
                self._history = x[:, None].repeat(1, self.config.frame_stack, 1)  # (B, fs, F)
                self._fresh = torch.ones(b, dtype=torch.bool)
            else:
                # Shift in the new frame; a fresh row repeats its first frame, as the
                # sampler pads windows before an episode start.
                self._history = torch.cat([self._history[:, 1:], x[:, None]], dim=1)
                fresh = self._fresh
                self._history[fresh] = x[fresh][:, None].expand(-1, self.config.frame_stack, -1)
            stacked = self._history.reshape(b, -1)  # (B, fs * F)
            action = self._act_step(stacked, self._fresh)  # (B, A)
            self._fresh = torch.zeros(b, dtype=torch.bool)
        return action.clamp(-1.0, 1.0).to(torch.float32).numpy().copy()

    def _act_step(self, x: Tensor, fresh: Tensor) -> Tensor:
        """Actions (B, A) from stacked features x (B, fs * F); fresh (B,) rows start."""
        raise NotImplementedError

    def _reset_rows(self, rows: Tensor | None) -> None:
        """Hook for recurrent state; `None` drops all of it."""

    def run_state(self) -> RunState:
        """The state each row carries to the next `act_batch` call, every tensor (B, ...):
        the frame history, which rows are fresh, and the kind's own (`_row_state`: an RNN's
        hidden state, a chunk queue). {} after `reset()`, before the first act.

        The tensors are the policy's own, not copies: the next act changes them in place
        unless `load_run_state` (or a reset) has replaced them first.
        """
        if self._history is None or self._fresh is None:
            return {}
        return {"history": self._history, "fresh": self._fresh, **self._row_state()}

    def load_run_state(self, state: RunState) -> None:
        """Continue the rows of `state` (`run_state`'s, or `stack_run_states`' of several
        streams): the next `act_batch` must have as many rows. The policy takes the tensors
        over and changes them in place; {} is a reset."""
        if not state:
            self.reset()
            return
        self._history, self._fresh = state["history"], state["fresh"]
        self._load_row_state(state)

    def batching_refusal(self) -> str | None:
        """Why the rows of one `act_batch` call cannot stand for separate streams that act
        alone (a server's sessions), or None when they can: then row i acts as its own `act`
        stream would, and `run_state` holds all of its state.

        A kind that keeps state of its own (it overrides `_reset_rows`) must hand it over in
        `_row_state`, or say here why its rows are not independent.
        """
        kind = type(self)
        if kind._reset_rows is not Policy._reset_rows and kind._row_state is Policy._row_state:
            return f"{kind.__name__} keeps run-time state that run_state does not hold"
        return None

    def _row_state(self) -> RunState:
        """Hook: the kind's own state of every row, each tensor (B, ...); {} for none."""
        return {}

    def _load_row_state(self, state: RunState) -> None:
        """Hook: take back what `_row_state` gave (`state` holds the base's entries too)."""

    # ---- export ------------------------------------------------------------------------------

    def export_state(self) -> dict[str, tuple[int, ...]]:
        """The policy's own recurrent state in an exported step, beside the frame history and
        step count that `apprentice.deploy.export` keeps: name -> float32 shape at batch 1.
        Zeros are the state after `reset()`."""
        return {}

    def export_step(
        self, x: Tensor, step: Tensor | None, state: dict[str, Tensor]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """One deterministic `_act_step` as a pure function, for `apprentice.deploy.export`.

        x (B, fs * F) are the stacked features `_act_step` gets; step (B,) int64 the steps
        since reset (None when the exported step keeps no state); state the tensors that
        `export_state` names. Returns actions (B, A), before the clamp, and the next state.
        A policy kind that overrides this can be exported; one that does not cannot.
        """
        raise ApprenticeError(
            f"policy kind {self.config.name!r} ({type(self).__name__}) has no export step"
        )

    def _check_obs(self, obs: dict[str, np.ndarray], *, batched: bool) -> dict[str, Tensor]:
        """Raw frames {key: (B, D_k) float32 or (B, H, W, C) uint8} of one observation (B=1)."""
        if not isinstance(obs, dict):
            raise ApprenticeError(f"observation must be a dict of arrays, got {type(obs).__name__}")
        expected: list[tuple[str, tuple[int, ...]]] = [
            *((k, (d,)) for k, d in zip(self.obs_keys, self.obs_dims, strict=True)),
            *self.image_shapes.items(),
        ]
        frames: dict[str, Tensor] = {}
        batch: int | None = None
        for key, shape in expected:
            if key not in obs:
                raise ApprenticeError(
                    f"observation has no key {key!r} (it has: {', '.join(sorted(obs))}); the "
                    f"policy reads {', '.join([*self.obs_keys, *self.image_keys])}"
                )
            image = key in self.image_shapes
            arr = np.asarray(obs[key]) if image else np.asarray(obs[key], dtype=np.float32)
            dims = ", ".join(map(str, shape))
            want = f"(B, {dims})" if batched else f"({dims},)" if len(shape) == 1 else f"({dims})"
            ok = (
                arr.shape[1:] == shape and arr.ndim == len(shape) + 1
                if batched
                else arr.shape == shape
            )
            if not ok or (batched and batch is not None and arr.shape[0] != batch):
                built = " (the encoder was built for this image size)" if image else ""
                raise ApprenticeError(
                    f"observation {key!r} has shape {arr.shape}, expected {want}{built}"
                )
            if image and arr.dtype != np.uint8:
                raise ApprenticeError(
                    f"observation {key!r} has dtype {arr.dtype}; camera images must be uint8"
                )
            if not image and not np.all(np.isfinite(arr)):
                raise ApprenticeError(f"observation {key!r} contains NaN or inf: {arr}")
            batch = arr.shape[0] if batched else 1
            frames[key] = torch.from_numpy(np.ascontiguousarray(arr).reshape(batch, *shape))
        return frames
