"""Mocap-like tracks made from oracle demos, for the tests and the benchmark of retargeting.

Each demo's eef poses (datagen_info, one per control step, plus the last next_obs) and gripper
commands become a track as a motion-capture system would record it: in another frame (one
random rigid transform for the whole set, written as `mocap_to_world.json` beside the
tracks), with its clock starting anywhere, sampled at `rate` Hz with jittered timestamps,
and with Gaussian tracking noise on positions, rotations and the grip aperture. The first
frame's object poses (with the same noise) and the demo's seed go with each track, so that
retargeting can align the frame and rebuild the scene.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from apprentice.data.episode import Episode
from apprentice.data.reader import DemoFile
from apprentice.envs.base import make_task_from_env_args
from apprentice.errors import ApprenticeError
from apprentice.generate.poses import pose_inv
from apprentice.retarget.align import apply
from apprentice.retarget.resample import matrix_to_quat, poses_from, quat_to_matrix, resample
from apprentice.retarget.tracks import TRACK_SUFFIXES, Track, write_track

POS_STD = 0.003
"""Metres of position noise per axis at noise scale 1 (optical mocap: millimetres)."""
ROT_STD = np.deg2rad(1.5)
"""Radians of rotation noise per axis at noise scale 1."""
GRIP_STD = 0.05
"""Noise of the grip aperture (in [0, 1]) at noise scale 1."""
JITTER = 0.15
"""Timestamp jitter std as a fraction of the sampling interval (clipped to 0.4 of it, so the
timestamps still increase)."""
FRAME_FILE = "mocap_to_world.json"


@dataclass(frozen=True)
class MadeTracks:
    paths: list[Path]
    frame_path: Path
    """The true mocap -> world transform, as `--frame` reads it."""


def random_frame(rng: np.random.Generator) -> np.ndarray:
    """A random rigid transform (4, 4): a uniformly drawn rotation, a translation in [-1, 1]^3 m."""
    q = rng.standard_normal(4)  # a normalized Gaussian 4-vector is uniform on SO(3)
    out = np.eye(4)
    out[:3, :3] = quat_to_matrix((q / np.linalg.norm(q))[None])[0]
    out[:3, 3] = rng.uniform(-1.0, 1.0, size=3)
    return out


def rotvec_to_matrix(rotvec: np.ndarray) -> np.ndarray:
    """Rotation matrices (N, 3, 3) of rotation vectors (N, 3) (Rodrigues' formula)."""
    angle = np.linalg.norm(rotvec, axis=1)  # N
    axis = rotvec / np.where(angle > 0, angle, 1.0)[:, None]  # N,3
    k = np.zeros((len(rotvec), 3, 3))
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    k = k - np.transpose(k, (0, 2, 1))  # N,3,3: the cross-product matrix of each axis
    s, c = np.sin(angle)[:, None, None], np.cos(angle)[:, None, None]
    return np.asarray(np.eye(3) + s * k + (1 - c) * (k @ k))


def noisy(poses: np.ndarray, rng: np.random.Generator, scale: float) -> np.ndarray:
    """Poses (N, 4, 4) with Gaussian position noise and a small random rotation each."""
    out = poses.copy()
    out[:, :3, 3] += scale * POS_STD * rng.standard_normal((len(poses), 3))
    turn = rotvec_to_matrix(scale * ROT_STD * rng.standard_normal((len(poses), 3)))
    out[:, :3, :3] = turn @ poses[:, :3, :3]
    return out


def demo_poses(episode: Episode) -> tuple[np.ndarray, np.ndarray]:
    """The eef poses (T+1, 4, 4) a demo went through (each step's start, and its end) and the
    grip aperture (T+1,) in [0, 1] of its gripper commands."""
    info = episode.datagen_info
    if info is None or "eef_pos" not in episode.next_obs or "eef_quat" not in episode.next_obs:
        raise ApprenticeError("needs datagen_info and next_obs eef_pos/eef_quat (collect's demos)")
    last = poses_from(
        episode.next_obs["eef_pos"][-1:].astype(np.float64),
        episode.next_obs["eef_quat"][-1:].astype(np.float64),
    )
    poses = np.concatenate([info.eef_pose, last])  # T+1,4,4
    grip = (np.clip(info.gripper_action[:, 0], -1.0, 1.0) + 1.0) / 2.0  # T
    return poses, np.append(grip, grip[-1])


def demo_track(
    episode: Episode,
    name: str,
    *,
    mocap_from_world: np.ndarray,
    control_freq: float,
    rate: float,
    noise: float,
    rng: np.random.Generator,
) -> Track:
    """A mocap-like track of one demo (see the module docstring)."""
    poses, grip = demo_poses(episode)
    t_demo = np.arange(len(poses)) / control_freq  # T+1
    period = 1.0 / rate
    n = int(np.floor(t_demo[-1] * rate + 1e-9)) + 1
    jitter = np.clip(JITTER * period * rng.standard_normal(n), -0.4 * period, 0.4 * period)
    # Still strictly increasing: neighbours stay at least 0.2 periods apart.
    t = np.clip(np.arange(n) * period + jitter, 0.0, t_demo[-1])  # n
    t[0] = 0.0
    quat = matrix_to_quat(poses[:, :3, :3])
    pos, quat, g = resample(t_demo, poses[:, :3, 3], quat, grip, t)
    tracked = noisy(apply(mocap_from_world, poses_from(pos, quat)), rng, noise)
    g = np.clip(g + noise * GRIP_STD * rng.standard_normal(n), 0.0, 1.0)
    assert episode.datagen_info is not None
    names = tuple(episode.datagen_info.object_poses)
    first = np.stack([episode.datagen_info.object_poses[k][0] for k in names])  # K,4,4
    objects = noisy(apply(mocap_from_world, first), rng, noise)
    start = float(rng.uniform(0.0, 100.0))  # the tracker's clock starts anywhere
    return Track(
        name=name,
        t=start + t,
        pos=tracked[:, :3, 3],
        quat=matrix_to_quat(tracked[:, :3, :3]),
        grip=g,
        seed=episode.seed,
        object_pos=objects[:, :3, 3],
        object_quat=matrix_to_quat(objects[:, :3, :3]),
        object_names=names,
    )


def make_tracks(
    demos: str | Path,
    out: str | Path,
    *,
    noise: float = 1.0,
    rate: float = 30.0,
    seed: int = 0,
    overwrite: bool = False,
) -> MadeTracks:
    """Write a track (<demo>.npz) per demo of the oracle demos `demos` into the folder `out`,
    and the true frame as `out`/mocap_to_world.json. The same seed gives the same tracks."""
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise ApprenticeError(f"--out {folder}: is a file; --make-tracks writes a folder")
    if folder.is_dir() and not overwrite:
        existing = [p for p in folder.iterdir() if p.suffix in TRACK_SUFFIXES]
        if existing:
            raise ApprenticeError(
                f"--out {folder}: holds tracks already ({existing[0].name}, ...); choose another "
                "folder, or pass --overwrite"
            )
    rng = np.random.default_rng(seed)
    world_to_mocap = pose_inv(random_frame(rng))
    with DemoFile(demos) as f:
        task = make_task_from_env_args(f.env_args)
        control_freq = float(task.control_freq)
        task.close()
        names = f.demo_names
        if not names:
            raise ApprenticeError(f"{demos}: holds no demos")
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for i, name in enumerate(names):
            episode = f.read(name, with_images=False)
            if episode.seed is None:
                raise ApprenticeError(f"{demos}: data/{name} has no seed attr to rebuild its scene")
            try:
                track = demo_track(
                    episode,
                    name,
                    mocap_from_world=world_to_mocap,
                    control_freq=control_freq,
                    rate=rate,
                    noise=noise,
                    rng=np.random.default_rng([seed, i]),
                )
            except ApprenticeError as e:
                raise ApprenticeError(f"{demos}: data/{name}: {e}") from None
            paths.append(write_track(track, folder / f"{name}.npz"))
    frame_path = folder / FRAME_FILE
    frame = {"mocap_to_world": np.round(pose_inv(world_to_mocap), 12).tolist()}
    frame_path.write_text(json.dumps(frame, indent=2) + "\n")
    return MadeTracks(paths, frame_path)
