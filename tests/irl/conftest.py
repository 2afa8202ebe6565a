"""Camera recordings of lift shared by the --from-video tests (label_video, latent_actions)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from apprentice.collect.oracle import CollectConfig, collect_demos
from apprentice.collect.replay import write_video
from apprentice.data import DemoFile, DemoWriter
from apprentice.irl.videos import Videos


@pytest.fixture(scope="module")
def camera_demos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three lift demos with 32x32 agentview and eye-in-hand frames (and states, actions)."""
    path = tmp_path_factory.mktemp("lift32") / "lift.hdf5"
    cfg = CollectConfig(task="lift", n=3, out=str(path), workers=1, camera=True, progress=False)
    collect_demos(replace(cfg, task_args=("image_size=32",)))
    return path


@pytest.fixture(scope="module")
def video_dir(camera_demos: Path) -> Path:
    """One mp4 of agentview frames per demo, as a camera would leave them."""
    folder = camera_demos.parent / "videos"
    with Videos(camera_demos, "agentview") as videos:
        for name in videos.names:
            write_video(folder / f"{name}.mp4", list(videos.read(name).frames))
    return folder


def _images_only(src: Path, dst: Path, *, actions: bool) -> Path:
    """A copy of `src` holding only agentview frames (no states, no low-dim observations),
    with its true actions or none."""
    with DemoFile(src) as f, DemoWriter(dst, env_args=f.env_args) as w:
        for name in f.demo_names:
            ep = f.read(name, obs_keys=["agentview_image"])
            t = ep.num_samples
            kept = ep.actions if actions else np.zeros((t, 0), np.float32)
            w.append(replace(ep, actions=kept, states=np.zeros((t, 0)), datagen_info=None))
    return dst


@pytest.fixture(scope="module")
def images_file(camera_demos: Path) -> Path:
    """camera_demos' agentview frames and true actions only."""
    return _images_only(camera_demos, camera_demos.parent / "images.hdf5", actions=True)
