"""Infer the actions of state-only demos (`apprentice label-actions`) with an inverse-dynamics
model (`apprentice.irl.idm`) trained on the agent's own exploration.

Recordings without actions (video, motion capture, another robot's logs) hold (s, s') pairs
but not the command that took one to the other.

State-only files. The robomimic layout has every field T steps long; a demo without actions
stores `actions` as a (T, 0) array. The store writes and reads that unchanged (no special
case in `apprentice.data`), `DemoFile.action_dim` is 0, and a learner that needs actions
sees an empty action space and refuses. `strip_actions` makes such a copy of a normal file
(`apprentice label-actions --demos full.hdf5 --strip --out states.hdf5`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from apprentice.data.reader import DemoFile
from apprentice.data.source import open_source
from apprentice.data.store import DemoWriter, write_mask
from apprentice.envs import gym_tasks  # noqa: F401  (registers the gym/<id> tasks)
from apprentice.envs.base import Task, make_task, make_task_from_env_args
from apprentice.errors import ApprenticeError
from apprentice.irl.idm import (
    IDMConfig,
    InverseDynamicsModel,
    explore,
    fit_idm,
    flat,
    obs_keys_of,
)

# ---- demos: checks, labelling, error --------------------------------------------------------


def resolve_task(demos: str | Path, task_name: str) -> Task:
    """The task of `demos`: --task, else the file's env_args; both given must agree."""
    with open_source(demos) as f:
        env_args = f.env_args
    in_file = env_args.get("env_name")
    if task_name and in_file and task_name != in_file:
        raise ApprenticeError(f"{demos} holds demos of task {in_file!r}, not --task {task_name!r}")
    if in_file:  # the file's env_kwargs too (a placement variant)
        return make_task_from_env_args(env_args)
    if not task_name:
        raise ApprenticeError(f"{demos} names no task in its env_args; pass --task")
    return make_task(task_name)


def read_state_demos(path: str | Path, keys: list[str]) -> dict[str, tuple[np.ndarray, ...]]:
    """demo -> (obs (T, D), next_obs (T, D), actions (T, A) or (T, 0)), checked for what
    learning from observation needs: every key in obs and next_obs (NaN is refused by the
    reader, naming the demo and step)."""
    out: dict[str, tuple[np.ndarray, ...]] = {}
    with open_source(path) as f:
        missing = [k for k in keys if k not in f.obs_shapes]
        if missing:
            video = f.image_keys[0].removesuffix("_image") if f.image_keys else ""
            hint = f"; label its frames with --from-video {path} --camera {video}" if video else ""
            raise ApprenticeError(
                f"{path}: lacks observation keys {', '.join(missing)} that the task gives "
                f"(it has: {', '.join(f.obs_keys) or 'none'}){hint}"
            )
        for name in f.demo_names:
            ep = f.read(name, obs_keys=keys, with_images=False)
            gone = [k for k in keys if k not in ep.next_obs]
            if gone:
                raise ApprenticeError(
                    f"{path}: data/{name} has no next_obs/{gone[0]}; learning from observation "
                    "needs (s, s') pairs (record with next_obs)"
                )
            out[name] = (flat(ep.obs, keys), flat(ep.next_obs, keys), ep.actions)
    if not out:
        raise ApprenticeError(f"{path}: holds no demos")
    return out


def action_error(pred: np.ndarray, true: np.ndarray) -> dict[str, Any]:
    """Per-dimension MAE, overall MAE, relative MAE (MAE over the true actions' mean
    absolute deviation: 0 exact, 1 no better than always predicting their mean) and mean
    cosine similarity (for A = 1 only sign agreement) of pred vs true (N, A)."""
    mae = np.abs(pred - true).mean(axis=0)  # A
    spread = np.abs(true - true.mean(axis=0)).mean()
    norms = np.linalg.norm(pred, axis=1) * np.linalg.norm(true, axis=1)  # N
    ok = norms > 1e-8
    cos = (pred * true).sum(1)[ok] / norms[ok]
    return {
        "mae": float(mae.mean()),
        "mae_per_dim": [round(float(x), 5) for x in mae],
        "relative_mae": float(mae.mean() / spread) if spread > 0 else float("nan"),
        "cosine": float(cos.mean()) if cos.size else float("nan"),
        "steps": int(true.shape[0]),
    }


def write_labelled(
    src: str | Path,
    out: Path,
    model: InverseDynamicsModel,
    demos: dict[str, tuple[np.ndarray, ...]],
    *,
    env_args: dict[str, Any],
    resume: bool,
) -> tuple[dict[str, np.ndarray], int]:
    """Write every demo of `src` to `out` with the IDM's actions, through the store (one
    crash-safe append per demo; with `resume`, demos already in `out` are kept). Masks and
    data attrs (an expert's reference returns) are carried over. Returns the labels per
    source demo and how many demos `out` already held."""
    done: dict[str, str] = {}
    if resume and out.exists():
        with DemoFile(out) as f:
            done = {str(f.attrs(n).get("labelled_from")): n for n in f.demo_names}
    resumed = len(done)
    preds: dict[str, np.ndarray] = {}
    with DemoFile(src) as f, DemoWriter(out, env_args=env_args, overwrite=not resume) as writer:
        masks, data_attrs = f.masks, f.data_attrs
        for name, (obs, nxt, _) in demos.items():
            preds[name] = model.predict(obs, nxt)  # T,A
            if name in done:
                continue
            ep = f.read(name)
            attrs = {**ep.attrs, "labelled_from": name, "actions_source": "idm"}
            # datagen_info holds the true gripper commands: it would contradict the labels.
            labelled = replace(ep, actions=preds[name], datagen_info=None, attrs=attrs)
            done[name] = writer.append(labelled)
        if data_attrs:
            writer.set_data_attrs(data_attrs)
    for mask, names in masks.items():
        write_mask(out, mask, [done[n] for n in names if n in done])
    return preds, resumed


def strip_actions(src: str | Path, dst: str | Path, *, overwrite: bool = False) -> int:
    """Write a state-only copy of `src` to `dst` (actions (T, 0), no datagen_info, masks
    kept); returns the number of demos."""
    if Path(dst).exists() and not overwrite:
        raise ApprenticeError(f"{dst} exists; pass --overwrite to replace it")
    with DemoFile(src) as f:
        names, masks, env_args = f.demo_names, f.masks, f.env_args
        with DemoWriter(dst, env_args=env_args, overwrite=overwrite) as w:
            for name in names:
                ep = f.read(name)
                t = ep.num_samples
                w.append(replace(ep, actions=np.zeros((t, 0), np.float32), datagen_info=None))
            if f.data_attrs:
                w.set_data_attrs(f.data_attrs)
    for mask, demos in masks.items():
        write_mask(dst, mask, demos)
    return len(names)


# ---- labelling a file ---------------------------------------------------------------------


@dataclass(frozen=True)
class LabelConfig:
    """Infer the actions of demos without them (states, or camera video) with an
    inverse-dynamics model."""

    out: str
    """Labelled copy (HDF5); a partial one from a killed run is resumed."""
    demos: str = ""
    """Demos with states to label (HDF5; state-only, or with actions to measure the labels'
    error)."""
    from_video: str = ""
    """Camera recordings to label instead: a video file, a folder of videos (one demo each), a
    LeRobot dataset folder, or an HDF5 file with camera images."""
    task: str = ""
    """Task to explore; default: the one the file's env_args name."""
    strip: bool = False
    """Only write a state-only copy of --demos to --out (actions removed), then stop."""
    idm: str = ""
    """A saved inverse-dynamics model (.pt) instead of exploring and fitting one."""
    exploration_steps: int = 20_000
    """Env steps of the agent's own interaction that the IDM learns from."""
    exploration: str = "auto"
    """auto (oracle if the task has one, else random), random, or oracle (with noise)."""
    exploration_noise: float = 0.3
    """Largest std of the Gaussian noise on the explorer's actions (drawn per episode)."""
    idm_steps: int = 3000
    """Gradient steps fitting the IDM."""
    idm_hidden_dims: tuple[int, ...] = (256, 256)
    """Hidden widths of the IDM."""
    camera: str = "agentview"
    """--from-video: the camera that recorded the frames; the task renders it for the IDM."""
    image_size: int = 0
    """--from-video: frame size the task renders; 0 = the input's env_args, else the task's."""
    resize: bool = False
    """--from-video: scale frames of another size to the task's instead of refusing them."""
    labelled: str = ""
    """--from-video: demos with actions and the camera's frames that the IDM also learns from."""
    idm_past_frames: int = 1
    """--from-video: frames before a step that the IDM also sees (the motion under way)."""
    idm_future_frames: int = 1
    """--from-video: frames after a step's end that the IDM also sees (a late gripper)."""
    latent: bool = False
    """--from-video: learn latent actions from frames alone (LAPO; the recordings' and the
    exploration's) and decode them with a decoder fitted on --labelled-steps of exploration,
    instead of an IDM."""
    labelled_steps: int = 2000
    """--latent: steps of the task's exploration whose frames the latent model also learns
    from and whose true actions fit the decoder (plus --labelled demos); --exploration-steps
    is the IDM's."""
    latent_dim: int = 8
    """--latent: dimensions of a latent action."""
    latent_steps: int = 3000
    """--latent: gradient steps training the latent action model."""
    valid_fraction: float = 0.1
    """--from-video: share of recordings in mask/valid where the input has no masks."""
    device: str = "cpu"
    """--from-video: torch device fitting and running the IDM (cpu, cuda)."""
    seed: int = 0
    """Seed of exploration and the IDM's training."""
    overwrite: bool = False
    """Replace --out (and its IDM) instead of resuming."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "idm_hidden_dims", tuple(int(h) for h in self.idm_hidden_dims))
        if self.exploration_steps < 1 or self.idm_steps < 1:
            raise ApprenticeError("label-actions: exploration_steps and idm_steps must be >= 1")
        if self.exploration_noise < 0:
            raise ApprenticeError("label-actions: exploration_noise must be >= 0")
        if bool(self.demos) == bool(self.from_video):
            raise ApprenticeError(
                "label-actions: give the demos to label: --demos FILE (with states) or "
                "--from-video VIDEO_OR_FOLDER (camera frames), one of them"
            )
        if self.strip and not self.demos:
            raise ApprenticeError("label-actions: --strip copies --demos; --from-video has none")
        if self.latent and not self.from_video:
            raise ApprenticeError("label-actions: --latent learns from --from-video frames")
        if self.latent and self.idm:
            raise ApprenticeError(
                "label-actions: --idm loads an inverse-dynamics model; --latent fits a latent "
                "action model instead (saved beside --out); give one of them"
            )
        if min(self.labelled_steps, self.latent_dim, self.latent_steps) < 1:
            raise ApprenticeError(
                "label-actions: labelled_steps, latent_dim and latent_steps must be >= 1"
            )
        if min(self.idm_past_frames, self.idm_future_frames) < 0:
            raise ApprenticeError("label-actions: idm_past_frames and idm_future_frames >= 0")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise ApprenticeError("label-actions: valid_fraction must be in [0, 1)")
        if Path(self.demos or self.from_video).resolve() == Path(self.out).resolve():
            given = "--demos" if self.demos else "--from-video"
            raise ApprenticeError(f"label-actions: --out must differ from {given}")


@dataclass
class LabelResult:
    path: Path
    idm_path: Path | None
    """The model fitted and saved beside --out (with --latent: the latent action model)."""
    demos: int
    resumed: int
    """Demos already in --out from an earlier, interrupted run."""
    error: dict[str, Any] | None = None
    """Against the true actions when --demos has them (mae, mae_per_dim, cosine)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """What else the run has to say (label-actions --from-video: the input's form, the
    camera and frame size, the model's final training loss)."""


def build_idm(cfg: LabelConfig, task: Task, idm_path: Path) -> InverseDynamicsModel:
    """Load `cfg.idm`, reuse a resumed run's model, or explore the task and fit one."""
    keys = obs_keys_of(task)
    if cfg.idm or (idm_path.exists() and not cfg.overwrite):
        model, env_args = InverseDynamicsModel.load(cfg.idm or idm_path)
        if env_args.get("env_name") != task.name:
            raise ApprenticeError(
                f"IDM {cfg.idm or idm_path} was trained on task {env_args.get('env_name')!r}, "
                f"not {task.name!r}"
            )
        if model.obs_keys != keys:
            raise ApprenticeError(f"IDM reads keys {model.obs_keys}, task {task.name} has {keys}")
        return model
    data = explore(
        task,
        cfg.exploration_steps,
        mode=cfg.exploration,
        noise=cfg.exploration_noise,
        seed=cfg.seed,
    )
    idm_cfg = IDMConfig(hidden_dims=cfg.idm_hidden_dims, steps=cfg.idm_steps)
    model, _ = fit_idm(data, keys, idm_cfg, seed=cfg.seed)
    model.save(idm_path, task.env_args)
    return model


def label_actions(cfg: LabelConfig) -> LabelResult:
    """Label `cfg.demos` or `cfg.from_video` (see LabelConfig); resumable, crash-safe
    through the store."""
    if cfg.from_video:
        # Imported here: label_video builds on this module's config, result and error.
        from apprentice.irl.label_video import label_video

        return label_video(cfg)
    out = Path(cfg.out)
    if cfg.strip:
        n = strip_actions(cfg.demos, out, overwrite=cfg.overwrite)
        return LabelResult(out, None, n, 0)
    task = resolve_task(cfg.demos, cfg.task)
    keys = obs_keys_of(task)
    demos = read_state_demos(cfg.demos, keys)
    with open_source(cfg.demos) as f:
        env_args = f.env_args if f.env_args.get("env_name") else task.env_args
    idm_path = out.with_suffix(".idm.pt")
    model = build_idm(cfg, task, idm_path)
    if model.action_dim != int(task.action_space.shape[0]):
        raise ApprenticeError(f"IDM acts in {model.action_dim} dims, task {task.name} does not")
    preds, resumed = write_labelled(
        cfg.demos, out, model, demos, env_args=env_args, resume=not cfg.overwrite
    )
    error = None
    true_dim = next(iter(demos.values()))[2].shape[1]
    if true_dim == model.action_dim:
        error = action_error(
            np.concatenate(list(preds.values())), np.concatenate([d[2] for d in demos.values()])
        )
    return LabelResult(out, None if cfg.idm else idm_path, len(demos), resumed, error)


__all__ = [
    "LabelConfig",
    "LabelResult",
    "action_error",
    "label_actions",
    "read_state_demos",
    "strip_actions",
    "write_labelled",
]
