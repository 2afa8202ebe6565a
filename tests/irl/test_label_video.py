"""`apprentice label-actions --from-video`: the IDM on frames, the recordings it reads (video
files, an HDF5 file of images, a LeRobot folder) and the demos it writes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from apprentice.cli.main import main
from apprentice.data import DemoFile, DemoWriter, Episode
from apprentice.envs.base import make_task
from apprentice.envs.seeds import exploration_seed
from apprentice.irl.label import LabelConfig, label_actions
from apprentice.irl.pixel_idm import (
    FrameTransitions,
    PixelIDM,
    PixelIDMConfig,
    explore_frames,
    fit_pixel_idm,
)
from apprentice.irl.videos import VideoCodec, Videos, read_video, through_codec

SIZE = ["--image-size", "32"]
TINY = ["--exploration-steps", "300", "--idm-steps", "20"]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _one_line_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


# ---- the model ----------------------------------------------------------------------------


def test_windows_repeat_the_edge_frames_of_their_episode() -> None:
    frames = [np.full((4, 2, 2, 3), e * 10 + np.arange(4)[:, None, None, None]) for e in (1, 2)]
    data = FrameTransitions.from_episodes(
        [(f.astype(np.uint8), np.zeros((3, 1), np.float32)) for f in frames]
    )
    assert len(data) == 6 and data.frames.shape == (8, 2, 2, 3)
    w = data.windows(np.array([0, 2, 3]), past=1, future=1)[..., 0, 0, 0]  # B,F
    np.testing.assert_array_equal(w, [[10, 10, 11, 12], [11, 12, 13, 13], [20, 20, 21, 22]])


def test_pixel_idm_recovers_the_shift_of_a_moving_square(tmp_path: Path) -> None:
    """A 3x3 square moves by a_t pixels (each axis in {-1, 0, 1}) per step: a is in the
    frames, wherever the square is."""
    rng = np.random.default_rng(0)

    def frame(pos: np.ndarray) -> np.ndarray:
        image = np.zeros((16, 16, 3), np.uint8)
        image[pos[0] : pos[0] + 3, pos[1] : pos[1] + 3] = 255
        return image

    episodes = []
    for _ in range(72):
        pos = rng.integers(4, 10, size=2)
        frames, actions = [frame(pos)], []
        for _ in range(10):
            step = rng.integers(-1, 2, size=2)
            pos = np.clip(pos + step, 1, 12)
            frames.append(frame(pos))
            actions.append(step.astype(np.float32))
        episodes.append((np.stack(frames), np.stack(actions)))
    train = FrameTransitions.from_episodes(episodes[:64])
    test = FrameTransitions.from_episodes(episodes[64:])
    cfg = PixelIDMConfig(hidden_dims=(64,), steps=400, past_frames=0, future_frames=0)
    model, _ = fit_pixel_idm(train, "agentview", cfg, seed=0)
    # Where the clip at the border stops the square, its move is not the action.
    assert np.abs(model.label(test) - test.actions).mean() < 0.2  # 0.67 guessing 0
    model.save(tmp_path / "idm.pt", {"env_name": "squares"})
    loaded, env_args = PixelIDM.load(tmp_path / "idm.pt")
    assert env_args == {"env_name": "squares"} and loaded.cfg == cfg
    np.testing.assert_array_equal(loaded.label(test), model.label(test))


def test_explore_frames_renders_the_camera_after_every_reset_and_step() -> None:
    task = make_task("lift")
    data = explore_frames(task, 120, camera="agentview", size=24, mode="oracle", noise=0.3, seed=0)
    episodes = len(np.unique(data.first))
    assert len(data) == 120 and data.frames.shape == (120 + episodes, 24, 24, 3)
    assert data.actions.shape == (120, 7) and np.abs(data.actions).max() <= 1.0
    task.reset(seed=exploration_seed(0, 0))
    np.testing.assert_array_equal(data.frames[0], task.render_frame("agentview", 24))
    assert not np.array_equal(data.frames[0], data.frames[data.last[0]])  # the scene moved


def test_through_codec_keeps_the_frames_close(camera_demos: Path) -> None:
    with Videos(camera_demos, "agentview") as videos:
        frames = videos.read("demo_0").frames  # T+1,H,W,3
    out = through_codec(frames, VideoCodec("h264", "yuv420p", 1.0, 20.0))
    assert out.shape == frames.shape and out.dtype == np.uint8
    assert 0 < np.abs(out.astype(int) - frames).mean() < 8


# ---- labelling recordings -----------------------------------------------------------------


def test_label_video_files_end_to_end_then_train(
    camera_demos: Path, video_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "labelled.hdf5"
    args = ["label-actions", "--from-video", str(video_dir), "--task", "lift", *SIZE, *TINY]
    assert main([*args, "--camera", "agentview", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "video files, camera agentview at 32x32" in printed
    assert "h264 yuv420p" in printed and "unknown (camera frames only)" in printed
    assert out.with_suffix(".idm.pt").is_file()
    with DemoFile(out) as f, DemoFile(camera_demos) as ref:
        assert f.obs_keys == ["agentview_image"] and f.action_dim == 7  # nothing privileged
        assert f.env_args["env_kwargs"]["camera"] is True
        assert f.env_args["env_kwargs"]["image_size"] == 32
        assert f.masks["train"] and f.masks["valid"]
        for name in f.demo_names:
            source = f.attrs(name)["labelled_from"]  # demo_0.mp4 ...
            assert f.num_samples(name) == ref.num_samples(source.removesuffix(".mp4"))
            ep = f.read(name)
            video = read_video(video_dir / source)
            np.testing.assert_array_equal(ep.obs["agentview_image"], video[:-1])
            np.testing.assert_array_equal(ep.next_obs["agentview_image"], video[1:])
            assert np.abs(ep.actions).max() <= 1.0
    # A rerun resumes: the IDM is loaded, every recording is already there.
    again = label_actions(
        LabelConfig(
            from_video=str(video_dir), task="lift", image_size=32, out=str(out), idm_steps=1
        )
    )
    assert again.resumed == 3 and again.extra["idm"] == f"loaded from {out.with_suffix('.idm.pt')}"
    train = ["train", "--dataset", str(out), "--policy", "mlp", "--out", str(tmp_path / "run")]
    train += ["--policy-args", "image_keys=agentview_image", "hidden_dims=16"]
    train += ["--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "4", "--eval-every", "0"]
    assert main([*train, "--threads", "1"]) == 0
    assert (tmp_path / "run" / "final.pt").is_file()


def test_label_an_images_only_file_reports_the_error_of_its_actions(
    images_file: Path, tmp_path: Path
) -> None:
    cfg = LabelConfig(
        from_video=str(images_file),
        out=str(tmp_path / "l.hdf5"),
        exploration_steps=1000,
        idm_steps=200,
    )
    r = label_actions(cfg)
    assert r.error is not None and r.demos == 3
    with DemoFile(images_file) as f:
        assert r.error["steps"] == sum(f.num_samples(n) for n in f.demo_names)
    assert len(r.error["mae_per_dim"]) == 7
    assert r.error["relative_mae"] < 0.7  # 1 = the mean action; about 0.5 here
    with DemoFile(r.path) as out:
        assert out.masks["train"] and out.masks["valid"]  # the file had none: a split
        assert out.obs_keys == ["agentview_image"]
        assert out.attrs("demo_0")["actions_source"] == "idm-video"


def test_resize_and_labelled_demos(
    camera_demos: Path, images_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """32x32 frames labelled by an IDM of 16x16 frames (--resize), which also learnt from
    the labelled demos."""
    out = tmp_path / "small.hdf5"
    args = ["label-actions", "--from-video", str(images_file), "--out", str(out), *TINY]
    args += ["--image-size", "16", "--resize", "--labelled", str(camera_demos)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "labelled demo steps" in printed and "MAE vs true actions" in printed
    with DemoFile(out) as f:
        assert f.obs_shapes == {"agentview_image": (16, 16, 3)}
        assert f.env_args["env_kwargs"]["image_size"] == 16


def test_label_a_lerobot_folder(camera_demos: Path, tmp_path: Path) -> None:
    folder = tmp_path / "lerobot"
    assert main(["convert", str(camera_demos), str(folder), "--to", "lerobot"]) == 0
    cfg = LabelConfig(from_video=str(folder), out=str(tmp_path / "l.hdf5"), idm_steps=20)
    r = label_actions(replace(cfg, exploration_steps=300))
    assert r.extra["input"] == "LeRobot dataset, camera agentview at 32x32"
    assert "bits/pixel" in r.extra["exploration frames through"]  # its videos are lossy
    assert r.error is not None and r.error["steps"] > 0  # its true actions, T - 1 per demo
    with DemoFile(r.path) as f:
        assert f.masks["train"] and f.obs_keys == ["agentview_image"]


def test_bad_inputs_are_one_line_and_exit_2(
    camera_demos: Path,
    video_dir: Path,
    images_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = ["--out", str(tmp_path / "o.hdf5"), *TINY]

    def err(*argv: str) -> str:
        return _one_line_error(["label-actions", *argv, *out], capsys)

    assert "frames are 32x32, task lift renders camera 'agentview' at 84x84" in err(
        "--from-video", str(video_dir), "--task", "lift"
    )
    assert "pass --task" in err("--from-video", str(video_dir), *SIZE)
    assert "task lift has no camera 'side'" in err(
        "--from-video", str(video_dir), "--task", "lift", "--camera", "side", *SIZE
    )
    assert "has no frames of camera 'eye_in_hand'" in err(
        "--from-video", str(images_file), "--camera", "eye_in_hand"
    )
    assert "holds demos of task 'lift', not --task 'stack'" in err(
        "--from-video", str(images_file), "--task", "stack"
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "a folder with no videos" in err("--from-video", str(empty), "--task", "lift")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video" * 100)
    assert "broken.mp4: cannot open this video" in err(
        "--from-video", str(broken), "--task", "lift"
    )
    # A file with neither camera images nor states: refused by both routes.
    bare = tmp_path / "bare.hdf5"
    with DemoFile(camera_demos) as f, DemoWriter(bare, env_args=f.env_args) as w:
        ep = f.read("demo_0")
        t = ep.num_samples
        w.append(Episode({}, {}, ep.actions, ep.rewards, ep.dones, np.zeros((t, 0))))
    assert "holds no camera images" in err("--from-video", str(bare))
    assert "lacks observation keys" in err("--demos", str(bare))
    # States missing but frames there: the state route points to the video route.
    assert "label its frames with --from-video" in err("--demos", str(images_file))
    assert "one of them" in err("--demos", str(bare), "--from-video", str(video_dir))
