"""`apprentice label-actions --from-video --latent`: latent actions learnt from frames alone,
decoded with a budget of labelled steps, written beside the decoded actions."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from apprentice.cli.main import main
from apprentice.data import DemoFile
from apprentice.errors import ApprenticeError
from apprentice.irl import label_video
from apprentice.irl.label import LabelConfig, label_actions
from apprentice.irl.latent_actions import (
    LatentActionConfig,
    LatentActionModel,
    fit_decoder,
    fit_latent_actions,
)
from apprentice.irl.pixel_idm import FrameTransitions

TINY = ["--image-size", "32", "--latent-steps", "5", "--labelled-steps", "120"]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _squares(n: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Episodes of a 3x3 square moving by a_t in {-1, 0, 1} pixels per axis (16x16)."""
    rng = np.random.default_rng(seed)
    episodes = []
    for _ in range(n):
        pos, frames, actions = rng.integers(4, 10, size=2), [], []
        for t in range(9):
            image = np.zeros((16, 16, 3), np.uint8)
            image[pos[0] : pos[0] + 3, pos[1] : pos[1] + 3] = 255
            frames.append(image)
            if t < 8:
                step = rng.integers(-1, 2, size=2)
                pos = np.clip(pos + step, 1, 12)
                actions.append(step.astype(np.float32))
        episodes.append((np.stack(frames), np.stack(actions)))
    return episodes


def test_latent_model_trains_on_frames_and_round_trips(tmp_path: Path) -> None:
    episodes = _squares(12, seed=0)
    frames_only = FrameTransitions.from_episodes(
        [(f, np.zeros((len(a), 0), np.float32)) for f, a in episodes]
    )
    cfg = LatentActionConfig(latent_dim=4, hidden_dims=(32,), steps=40, decoder_steps=50)
    model, loss = fit_latent_actions(frames_only, "agentview", 2, cfg, seed=0)
    assert np.isfinite(loss)
    labelled = FrameTransitions.from_episodes(episodes[:4])
    decoder_loss = fit_decoder(model, labelled, seed=0)
    assert np.isfinite(decoder_loss)
    z = model.latents(labelled)
    assert z.shape == (len(labelled), 4) and np.abs(z).max() <= 1.0
    # The decoder reads z standardized over the steps it was fitted on: z may vary by
    # little more than 0.01 around a fixed point.
    np.testing.assert_allclose(model.z_mean.numpy(), z.mean(0), atol=1e-6)
    np.testing.assert_allclose(model.z_std.numpy(), z.std(0, ddof=1), rtol=1e-4)
    a = model.label(labelled)
    assert a.shape == (len(labelled), 2) and np.abs(a).max() <= 1.0
    model.save(tmp_path / "m.lam.pt", {"env_name": "squares"})
    loaded, env_args = LatentActionModel.load(tmp_path / "m.lam.pt")
    assert env_args == {"env_name": "squares"} and loaded.cfg == cfg
    np.testing.assert_array_equal(loaded.latents(labelled), z)
    np.testing.assert_array_equal(loaded.label(labelled), a)
    torch.save({"format": "apprentice-pixel-idm"}, tmp_path / "idm.pt")
    with pytest.raises(ApprenticeError, match="not a latent action model"):
        LatentActionModel.load(tmp_path / "idm.pt")


def test_reconstruction_beats_predicting_no_change() -> None:
    """z must carry the move: without it the forward model cannot tell where the square
    goes, and the best it can do is about the mean squared change of a frame."""
    frames_only = FrameTransitions.from_episodes(
        [(f, np.zeros((len(a), 0), np.float32)) for f, a in _squares(12, seed=1)]
    )
    now = frames_only.frames[frames_only.at].astype(np.float32) / 255  # N,H,W,3
    after = frames_only.frames[frames_only.at + 1].astype(np.float32) / 255
    no_change = float(((after - now) ** 2).mean())  # about 0.028
    cfg = LatentActionConfig(latent_dim=4, hidden_dims=(32,), past_frames=0, future_frames=0)
    _, loss = fit_latent_actions(frames_only, "cam", 2, replace(cfg, steps=200), seed=0)
    assert loss < 0.75 * no_change  # 0.018 here


def test_latent_route_uses_frames_alone_and_the_labelled_budget(
    images_file: Path,
    camera_demos: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The recordings have true actions: the latent model must not see them, nor any other
    action; it learns from the recordings' frames and those of the exploration and the
    --labelled demos, whose actions the decoder alone sees."""
    seen: dict[str, Any] = {}

    def spy_latent(frames: FrameTransitions, *args: Any, **kw: Any) -> Any:
        seen["latent"] = frames.actions.shape
        return fit_latent_actions(frames, *args, **kw)

    def spy_decoder(model: LatentActionModel, labelled: FrameTransitions, **kw: Any) -> float:
        seen["decoder"] = len(labelled)
        return fit_decoder(model, labelled, **kw)

    monkeypatch.setattr(label_video, "fit_latent_actions", spy_latent)
    monkeypatch.setattr(label_video, "fit_decoder", spy_decoder)
    out = tmp_path / "latent.hdf5"
    cfg = LabelConfig(
        from_video=str(images_file),
        out=str(out),
        latent=True,
        latent_steps=5,
        labelled_steps=150,
        labelled=str(camera_demos),
    )
    r = label_actions(cfg)
    with DemoFile(images_file) as f:
        steps = sum(f.num_samples(n) for n in f.demo_names)
    # Every recorded step and every step the decoder fits, no action columns.
    assert seen["latent"] == (steps + 150 + steps, 0)
    assert seen["decoder"] == 150 + steps  # the budget plus the labelled demos
    assert r.extra["exploration steps"] == 150 and r.extra["labelled demo steps"] == steps
    assert r.extra["latent model steps (no actions)"] == steps + 150 + steps
    assert r.idm_path == out.with_suffix(".lam.pt") and r.idm_path.is_file()
    assert r.error is not None and r.error["steps"] == steps
    with DemoFile(out) as f:
        assert f.obs_keys == ["agentview_image"] and f.action_dim == 7
        ep = f.read("demo_0")
        assert ep.attrs["actions_source"] == "latent-video"
        assert ep.action_dict["latent"].shape == (ep.num_samples, 8)
        model, _ = LatentActionModel.load(r.idm_path)
        np.testing.assert_allclose(model.decode(ep.action_dict["latent"]), ep.actions, atol=1e-6)
    # A rerun resumes with the saved model: nothing is trained again.
    seen.clear()
    again = label_actions(cfg)
    assert again.resumed == 3 and not seen
    assert again.extra["latent action model"] == f"loaded from {r.idm_path}"


def test_cli_latent_on_video_files_then_train(
    video_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "latent.hdf5"
    args = ["label-actions", "--from-video", str(video_dir), "--task", "lift", "--latent"]
    assert main([*args, *TINY, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "latent action model" in printed and "decoder final loss" in printed
    assert "unknown (camera frames only)" in printed
    with DemoFile(out) as f:
        assert f.masks["train"] and f.masks["valid"]
        assert f.read("demo_0").action_dict["latent"].shape[1] == 8
    train = ["train", "--dataset", str(out), "--policy", "mlp", "--out", str(tmp_path / "run")]
    train += ["--policy-args", "image_keys=agentview_image", "hidden_dims=16"]
    train += ["--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "4", "--eval-every", "0"]
    assert main([*train, "--threads", "1"]) == 0
    assert (tmp_path / "run" / "final.pt").is_file()


def test_bad_latent_flags_are_one_line_and_exit_2(
    video_dir: Path, images_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = ["--out", str(tmp_path / "o.hdf5")]

    def err(*argv: str) -> str:
        capsys.readouterr()
        assert main(["label-actions", *argv, *out]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1, lines
        return lines[0]

    assert "--latent learns from --from-video frames" in err(
        "--demos", str(images_file), "--latent"
    )
    assert "give one of them" in err(
        "--from-video", str(images_file), "--latent", "--idm", str(tmp_path / "m.pt")
    )
    assert "labelled_steps, latent_dim and latent_steps must be >= 1" in err(
        "--from-video", str(images_file), "--latent", "--labelled-steps", "0"
    )
    # A resumed run's model file that is no latent action model.
    (tmp_path / "o.lam.pt").write_bytes(b"garbage")
    assert "latent action model" in err("--from-video", str(images_file), "--latent")
    assert "frames are 32x32, task lift renders camera 'agentview' at 84x84" in err(
        "--from-video", str(video_dir), "--task", "lift", "--latent"
    )
