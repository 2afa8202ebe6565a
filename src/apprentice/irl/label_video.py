"""`apprentice label-actions --from-video`: label camera recordings with an inverse-dynamics
model on frames (`apprentice.irl.pixel_idm`) trained on the task's own interaction.

    recordings (video files, LeRobot folder, HDF5 with images)      -> apprentice.irl.videos
      check: the task renders the camera at the recordings' size, or refuse (or --resize)
    explore the task, rendering that camera (+ --labelled demos)    -> the IDM, saved beside --out
    label every recording's steps, write them through the store     -> demos that train

The labelled demos hold the camera's frames as observations (obs and next_obs) and the IDM's
actions: nothing the recordings did not show. Their env_args are the task's with that camera
on, so a policy trained on them is evaluated on what it was trained to see.

Shape legend: T steps of one recording, A action.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from apprentice.data.episode import Episode
from apprentice.data.reader import DemoFile
from apprentice.data.store import DemoWriter, split_train_valid, write_mask
from apprentice.envs.base import Task, make_task, make_task_from_env_args, task_available, task_spec
from apprentice.errors import ApprenticeError
from apprentice.irl.label import LabelConfig, LabelResult, action_error
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


def build_pixel_idm(
    cfg: LabelConfig, videos: Videos, tasks: tuple[Task, Task], idm_path: Path
) -> tuple[PixelIDM, dict[str, Any]]:
    """Load `cfg.idm`, reuse a resumed run's model, or explore the task (rendering the camera,
    through the recordings' video codec where they are video) and fit one. Returns the model
    and what to report of its making."""
    with_camera, explorer = tasks
    shape = task_spec(with_camera).obs_shapes[videos.key]
    action_dim = int(with_camera.action_space.shape[0])
    if cfg.idm or (idm_path.exists() and not cfg.overwrite):
        path = cfg.idm or idm_path
        model, env_args = PixelIDM.load(path)
        trained_on = (env_args.get("env_name"), model.camera, model.image_shape)
        if trained_on != (with_camera.name, cfg.camera, tuple(shape)):
            raise ApprenticeError(
                f"IDM {path} was trained on task {trained_on[0]!r}, camera {trained_on[1]!r} at "
                f"{trained_on[2][0]}x{trained_on[2][1]}, not {with_camera.name!r}, "
                f"{cfg.camera!r} at {shape[0]}x{shape[1]}"
            )
        return model, {"idm": f"loaded from {path}"}
    codec = videos.codec

    def like_the_videos(frames: np.ndarray) -> np.ndarray:
        return frames if codec is None else through_codec(frames, codec)

    data = explore_frames(
        explorer,
        cfg.exploration_steps,
        camera=cfg.camera,
        size=int(shape[0]),
        mode=cfg.exploration,
        noise=cfg.exploration_noise,
        seed=cfg.seed,
        transform=like_the_videos,
    )
    steps = {"exploration steps": len(data)}
    if cfg.labelled:
        extra = _labelled_demos(cfg, tuple(shape), action_dim)
        steps["labelled demo steps"] = len(extra)
        data = data + extra
    idm_cfg = PixelIDMConfig(
        past_frames=cfg.idm_past_frames,
        future_frames=cfg.idm_future_frames,
        hidden_dims=cfg.idm_hidden_dims,
        steps=cfg.idm_steps,
    )
    model, loss = fit_pixel_idm(data, cfg.camera, idm_cfg, seed=cfg.seed, device=cfg.device)
    model.save(idm_path, with_camera.env_args)
    report: dict[str, Any] = {**steps, "idm final loss": loss}
    if codec is not None:
        report["exploration frames through"] = codec.describe()
    return model, report


def write_labelled_videos(
    videos: Videos,
    out: Path,
    model: PixelIDM,
    shape: tuple[int, ...],
    *,
    env_args: dict[str, Any],
    resume: bool,
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
            labels = model.label(
                FrameTransitions.from_episodes([(frames, np.zeros((t, 0), np.float32))])
            )  # T,A
            if demo.actions is not None and demo.actions.shape[1] == model.action_dim:
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
                attrs={"labelled_from": name, "actions_source": "idm-video"},
            )
            done[name] = writer.append(episode)
    return pairs, resumed


def label_video(cfg: LabelConfig) -> LabelResult:
    """Label `cfg.from_video` (see the module docstring); resumable, crash-safe."""
    out = Path(cfg.out)
    idm_path = out.with_suffix(".idm.pt")
    with Videos(cfg.from_video, cfg.camera) as videos:
        tasks = video_tasks(cfg, videos)
        with_camera = tasks[0]
        shape = tuple(task_spec(with_camera).obs_shapes[videos.key])
        model, report = build_pixel_idm(cfg, videos, tasks, idm_path)
        pairs, resumed = write_labelled_videos(
            videos, out, model, shape, env_args=with_camera.env_args, resume=not cfg.overwrite
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
    return LabelResult(out, None if cfg.idm else idm_path, n, resumed, error, extra)


__all__ = ["build_pixel_idm", "label_video", "video_tasks", "write_labelled_videos"]
