"""`apprentice label-actions --from-video`: label camera recordings with an inverse-dynamics
model on frames (`apprentice.irl.pixel_idm`) trained on the task's own interaction.

    recordings (video files, LeRobot folder, HDF5 with images)      -> apprentice.irl.videos
      check: the task renders the camera at the recordings' size, or refuse (or --resize)
    explore the task, rendering that camera (+ --labelled demos)    -> the IDM, saved beside --out
    label every recording's steps, write them through the store     -> demos that train

With --latent (`apprentice.irl.latent_actions`, LAPO-style) the model that labels is learnt
from frames alone, as latent actions (the recordings' and --labelled-steps of exploration's,
+ --labelled demos', without actions), and only its decoder z -> a from that exploration's
actions (+ --labelled demos'); it is saved beside --out as .lam.pt.

The labelled demos hold the camera's frames as observations (obs and next_obs) and the
model's actions: nothing the recordings did not show; with --latent also the latent actions,
as action_dict/latent (T, Dz). Their env_args are the task's with that camera on, so a
policy trained on them is evaluated on what it was trained to see.

Shape legend: T steps of one recording, A action.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from apprentice.data.episode import Episode
from apprentice.data.reader import DemoFile
from apprentice.data.store import DemoWriter, split_train_valid, write_mask
from apprentice.envs.base import Task, make_task, make_task_from_env_args, task_available, task_spec
from apprentice.errors import ApprenticeError
from apprentice.irl.label import LabelConfig, LabelResult, action_error
from apprentice.irl.latent_actions import (
    LatentActionConfig,
    LatentActionModel,
    fit_decoder,
    fit_latent_actions,
)
from apprentice.irl.pixel_idm import (
    FrameTransitions,
    PixelIDM,
    PixelIDMConfig,
    explore_frames,
    fit_pixel_idm,
)
from apprentice.irl.videos import Videos, resize_frames, through_codec


def video_tasks(cfg: LabelConfig, videos: Videos) -> tuple[Task, Task]:
    """The task the recordings show, as (with the camera on, to check against and to name
    in the output; without cameras, to explore and render one camera). The task comes from
    --task or the input's env_args (both given must agree); the frame size from
    --image-size, else the input's env_args, else the task's default."""
    in_input = videos.env_args.get("env_name", "")
    if in_input and not task_available(in_input):
        in_input = ""  # a LeRobot dataset's robot_type, not a task of this package
    if cfg.task and in_input and cfg.task != in_input:
        raise ApprenticeError(
            f"{videos.path} holds demos of task {in_input!r}, not --task {cfg.task!r}"
        )
    if not (cfg.task or in_input):
        raise ApprenticeError(f"{videos.path}: names no task; pass --task")
    size = {"image_size": cfg.image_size} if cfg.image_size else {}
    if in_input:
        with_camera = make_task_from_env_args(videos.env_args, camera=True, **size)
        explorer = make_task_from_env_args(videos.env_args, camera=False)
    else:
        with_camera = make_task(cfg.task, camera=True, **size)
        explorer = make_task(cfg.task)
    shapes = task_spec(with_camera).obs_shapes
    cameras = [k.removesuffix("_image") for k in task_spec(with_camera).image_keys]
    if videos.key not in shapes:
        raise ApprenticeError(
            f"task {with_camera.name} has no camera {cfg.camera!r}; its cameras: "
            f"{', '.join(cameras) or 'none'}; pass --camera"
        )
    want, have = shapes[videos.key], videos.frame_shape
    if have != want and not cfg.resize:
        raise ApprenticeError(
            f"{videos.path}: frames are {have[0]}x{have[1]}, task {with_camera.name} renders "
            f"camera {cfg.camera!r} at {want[0]}x{want[1]}; pass --image-size {have[0]} to "
            "explore at the recordings' size (square frames), or --resize to scale them"
        )
    return with_camera, explorer


def _frames(frames: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """`frames` at the task's size (resized only where --resize let them differ)."""
    return frames if frames.shape[1:] == shape else resize_frames(frames, int(shape[0]))


def _labelled_demos(cfg: LabelConfig, shape: tuple[int, ...], action_dim: int) -> FrameTransitions:
    """--labelled: frames of the camera and true actions of a few demos, for the IDM."""
    with Videos(cfg.labelled, cfg.camera) as labelled:
        if labelled.action_dim != action_dim:
            raise ApprenticeError(
                f"--labelled {cfg.labelled}: has actions of {labelled.action_dim} dims, the task "
                f"takes {action_dim}"
            )
        if labelled.frame_shape != shape and not cfg.resize:
            raise ApprenticeError(
                f"--labelled {cfg.labelled}: frames are {labelled.frame_shape[0]}x"
                f"{labelled.frame_shape[1]}, the task renders {shape[0]}x{shape[1]}; pass --resize"
            )
        episodes = []
        for name in labelled.names:
            demo = labelled.read(name)
            assert demo.actions is not None  # action_dim > 0
            episodes.append((_frames(demo.frames, shape), demo.actions))
    return FrameTransitions.from_episodes(episodes)


def _own_interaction(
    cfg: LabelConfig, videos: Videos, tasks: tuple[Task, Task], steps: int
) -> tuple[FrameTransitions, dict[str, Any]]:
    """`steps` of the task's exploration rendered with the camera (through the recordings'
    video codec where they are video), plus the --labelled demos; and what to report."""
    with_camera, explorer = tasks
    shape = task_spec(with_camera).obs_shapes[videos.key]
    codec = videos.codec

    def like_the_videos(frames: np.ndarray) -> np.ndarray:
        return frames if codec is None else through_codec(frames, codec)

    data = explore_frames(
        explorer,
        steps,
        camera=cfg.camera,
        size=int(shape[0]),
        mode=cfg.exploration,
        noise=cfg.exploration_noise,
        seed=cfg.seed,
        transform=like_the_videos,
    )
    report: dict[str, Any] = {"exploration steps": len(data)}
    if cfg.labelled:
        extra = _labelled_demos(cfg, tuple(shape), int(with_camera.action_space.shape[0]))
        report["labelled demo steps"] = len(extra)
        data = data + extra
    if codec is not None:
        report["exploration frames through"] = codec.describe()
    return data, report


def _check_trained_on(
    what: str,
    env_args: dict[str, Any],
    model: PixelIDM | LatentActionModel,
    task: Task,
    camera: str,
) -> None:
    """Refuse a saved model of another task, camera or frame size than `task` renders."""
    want = (task.name, camera, tuple(task_spec(task).obs_shapes[f"{camera}_image"]))
    have = (env_args.get("env_name"), model.camera, tuple(model.image_shape))
    if have != want:
        raise ApprenticeError(
            f"{what} was trained on task {have[0]!r}, camera {have[1]!r} at {have[2][0]}x"
            f"{have[2][1]}, not {want[0]!r}, {want[1]!r} at {want[2][0]}x{want[2][1]}"
        )


def build_pixel_idm(
    cfg: LabelConfig, videos: Videos, tasks: tuple[Task, Task], idm_path: Path
) -> tuple[PixelIDM, dict[str, Any]]:
    """Load `cfg.idm`, reuse a resumed run's model, or explore the task (rendering the camera,
    through the recordings' video codec where they are video) and fit one. Returns the model
    and what to report of its making."""
    with_camera = tasks[0]
    if cfg.idm or (idm_path.exists() and not cfg.overwrite):
        path = cfg.idm or idm_path
        model, env_args = PixelIDM.load(path)
        _check_trained_on(f"IDM {path}", env_args, model, with_camera, cfg.camera)
        return model, {"idm": f"loaded from {path}"}
    data, report = _own_interaction(cfg, videos, tasks, cfg.exploration_steps)
    idm_cfg = PixelIDMConfig(
        past_frames=cfg.idm_past_frames,
        future_frames=cfg.idm_future_frames,
        hidden_dims=cfg.idm_hidden_dims,
        steps=cfg.idm_steps,
    )
    model, loss = fit_pixel_idm(data, cfg.camera, idm_cfg, seed=cfg.seed, device=cfg.device)
    model.save(idm_path, with_camera.env_args)
    return model, {**report, "idm final loss": loss}


def build_latent_model(
    cfg: LabelConfig, videos: Videos, tasks: tuple[Task, Task], path: Path
) -> tuple[LatentActionModel, dict[str, Any]]:
    """Reuse a resumed run's latent action model, or learn one from frames alone (the
    recordings' and those of `cfg.labelled_steps` of exploration + --labelled demos, all
    without their actions) and fit its decoder on that exploration with its actions. Returns
    the model and what to report of its making."""
    with_camera = tasks[0]
    if path.exists() and not cfg.overwrite:
        model, env_args = LatentActionModel.load(path)
        _check_trained_on(f"latent action model {path}", env_args, model, with_camera, cfg.camera)
        return model, {"latent action model": f"loaded from {path}"}
    shape = tuple(task_spec(with_camera).obs_shapes[videos.key])
    action_dim = int(with_camera.action_space.shape[0])
    recordings = FrameTransitions.from_episodes(
        (_frames(d.frames, shape), np.zeros((len(d.frames) - 1, 0), np.float32))
        for d in map(videos.read, videos.names)
    )  # the recordings' frames, their true actions (if any) left out
    labelled, report = _own_interaction(cfg, videos, tasks, cfg.labelled_steps)
    # The task's own interaction widens what the latent model sees of the scene (LAPO
    # learns from all the observations it has); its actions stay with the decoder.
    unlabelled = recordings + replace(labelled, actions=labelled.actions[:, :0])
    lam_cfg = LatentActionConfig(
        latent_dim=cfg.latent_dim,
        past_frames=cfg.idm_past_frames,
        future_frames=cfg.idm_future_frames,
        steps=cfg.latent_steps,
    )
    model, loss = fit_latent_actions(
        unlabelled, cfg.camera, action_dim, lam_cfg, seed=cfg.seed, device=cfg.device
    )
    decoder_loss = fit_decoder(model, labelled, seed=cfg.seed, device=cfg.device)
    model.save(path, with_camera.env_args)
    return model, {
        "recording steps (no actions)": len(recordings),
        **report,
        "latent model steps (no actions)": len(unlabelled),
        "latent model final loss": loss,
        "decoder final loss": decoder_loss,
    }


Labeller = Callable[[FrameTransitions], tuple[np.ndarray, dict[str, np.ndarray]]]
"""Transitions of one recording (N) -> actions (N, A) and other representations of them
(an Episode's action_dict)."""


def idm_labeller(model: PixelIDM) -> Labeller:
    return lambda data: (model.label(data), {})


def latent_labeller(model: LatentActionModel) -> Labeller:
    def label(data: FrameTransitions) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        z = model.latents(data)  # N,Dz
        return model.decode(z), {"latent": z}

    return label


def write_labelled_videos(
    videos: Videos,
    out: Path,
    label: Labeller,
    shape: tuple[int, ...],
    *,
    env_args: dict[str, Any],
    resume: bool,
    actions_source: str = "idm-video",
) -> tuple[list[tuple[np.ndarray, np.ndarray]], int]:
    """Label every recording and write it to `out` through the store (one crash-safe append
    per recording; with `resume`, recordings already in `out` are kept). Returns (labels,
    true actions) of the recordings that have true actions, and how many recordings `out`
    already held."""
    done: dict[str, str] = {}
    if resume and out.exists():
        with DemoFile(out) as f:
            done = {str(f.attrs(n).get("labelled_from")): n for n in f.demo_names}
    resumed = len(done)
    pairs: list[tuple[np.ndarray, np.ndarray]] = []
    key = videos.key
    with DemoWriter(out, env_args=env_args, overwrite=not resume) as writer:
        for name in videos.names:
            demo = videos.read(name)
            frames = _frames(demo.frames, shape)  # T+1,H,W,3
            t = len(frames) - 1
            labels, action_dict = label(
                FrameTransitions.from_episodes([(frames, np.zeros((t, 0), np.float32))])
            )  # T,A; name -> T,...
            if demo.actions is not None and demo.actions.shape[1] == labels.shape[1]:
                pairs.append((labels, demo.actions))
            if name in done:
                continue
            episode = Episode(
                obs={key: frames[:-1]},
                next_obs={key: frames[1:]},
                actions=labels,
                rewards=np.zeros(t, np.float32),
                dones=(np.arange(t) == t - 1).astype(np.int64),
                states=np.zeros((t, 0), np.float64),
                seed=demo.seed,
                success=demo.success,
                source=demo.source,
                attrs={"labelled_from": name, "actions_source": actions_source},
                action_dict=action_dict,
            )
            done[name] = writer.append(episode)
    return pairs, resumed


def label_video(cfg: LabelConfig) -> LabelResult:
    """Label `cfg.from_video` (see the module docstring); resumable, crash-safe."""
    out = Path(cfg.out)
    model_path = out.with_suffix(".lam.pt" if cfg.latent else ".idm.pt")
    with Videos(cfg.from_video, cfg.camera) as videos:
        tasks = video_tasks(cfg, videos)
        with_camera = tasks[0]
        shape = tuple(task_spec(with_camera).obs_shapes[videos.key])
        label: Labeller
        if cfg.latent:
            lam, report = build_latent_model(cfg, videos, tasks, model_path)
            label, source = latent_labeller(lam), "latent-video"
        else:
            idm, report = build_pixel_idm(cfg, videos, tasks, model_path)
            label, source = idm_labeller(idm), "idm-video"
        pairs, resumed = write_labelled_videos(
            videos,
            out,
            label,
            shape,
            env_args=with_camera.env_args,
            resume=not cfg.overwrite,
            actions_source=source,
        )
        masks, form = videos.masks, videos.form
        n = len(videos.names)
    with DemoFile(out) as f:
        by_source = {str(f.attrs(d).get("labelled_from")): d for d in f.demo_names}
    if masks:
        for mask, names in masks.items():
            write_mask(out, mask, [by_source[s] for s in names if s in by_source])
    else:
        split_train_valid(out, cfg.valid_fraction, seed=cfg.seed)
    error = None
    if pairs:
        error = action_error(
            np.concatenate([p for p, _ in pairs]), np.concatenate([a for _, a in pairs])
        )
    extra = {
        "input": f"{form}, camera {cfg.camera} at {shape[0]}x{shape[1]}",
        **report,
    }
    return LabelResult(out, None if cfg.idm else model_path, n, resumed, error, extra)


__all__ = [
    "Labeller",
    "build_latent_model",
    "build_pixel_idm",
    "idm_labeller",
    "label_video",
    "latent_labeller",
    "video_tasks",
    "write_labelled_videos",
]
