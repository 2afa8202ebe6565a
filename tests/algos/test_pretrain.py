"""Encoder pretraining (deep spatial autoencoder), the encoder file, and policies that start
from one with their encoder frozen and its features cached."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from apprentice.algos.bc import batch_to_tensors
from apprentice.algos.pretrain import PretrainEncoderConfig, pretrain_encoder
from apprentice.algos.trainer import TrainConfig, train
from apprentice.algos.training_data import TrainData, cache_camera_features
from apprentice.cli.main import main
from apprentice.data.dataset import DemoDataset, WindowSampler
from apprentice.data.normalize import Normalizer
from apprentice.errors import ApprenticeError
from apprentice.policies import MLPConfig, RNNConfig, load_policy, policy_config_class
from apprentice.policies.base import features_key, policy_names
from apprentice.policies.encoder_file import EncoderFile
from apprentice.policies.encoders import CameraConfig

CAMERA_ARGS = ("feature_dim=16", "num_keypoints=8")
CAM = "agentview_image"


@pytest.fixture(scope="module")
def camera_file(tmp_path_factory: pytest.TempPathFactory, synthetic: Any) -> Path:
    return synthetic.write_camera_demos(tmp_path_factory.mktemp("cam") / "cam.hdf5")


@pytest.fixture(scope="module")
def encoder_file(camera_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("enc") / "agentview.pt"
    pretrain_encoder(_config(camera_file, out))
    return out


def _config(dataset: Path, out: Path, **kw: Any) -> PretrainEncoderConfig:
    fields = {"steps": 40, "camera_args": CAMERA_ARGS, "threads": 1, **kw}
    return PretrainEncoderConfig(dataset=str(dataset), image_key=CAM, out=str(out), **fields)


def _frozen(encoder_file: Path, **kw: Any) -> CameraConfig:
    fields = {"feature_dim": 16, "num_keypoints": 8, "freeze_encoder": True, **kw}
    return CameraConfig(encoder_checkpoint=str(encoder_file), **fields)


# ---- pretraining ----------------------------------------------------------------------------


def test_pretraining_lowers_the_reconstruction_loss_and_is_seeded(
    camera_file: Path, encoder_file: Path, tmp_path: Path
) -> None:
    saved = EncoderFile.load(encoder_file)
    assert saved.loss_end < 0.6 * saved.loss_start, (saved.loss_start, saved.loss_end)
    assert saved.image_key == CAM and saved.image_shape == (32, 32, 3) and saved.steps == 40
    assert (saved.camera.feature_dim, saved.camera.num_keypoints) == (16, 8)
    again = tmp_path / "again.pt"
    pretrain_encoder(_config(camera_file, again))
    other = EncoderFile.load(again)
    assert other.loss_end == saved.loss_end
    assert all(torch.equal(v, other.state_dict[k]) for k, v in saved.state_dict.items())
    pretrain_encoder(_config(camera_file, again, seed=1))
    assert EncoderFile.load(again).loss_end != saved.loss_end


def test_pretraining_bad_input_is_one_error(camera_file: Path, demo_file: Path) -> None:
    out = Path("never.pt")
    with pytest.raises(ApprenticeError, match="no image key 'wrist'; its image keys: agentview"):
        pretrain_encoder(dataclasses.replace(_config(camera_file, out), image_key="wrist"))
    with pytest.raises(ApprenticeError, match="has no camera images"):
        pretrain_encoder(_config(demo_file, out))
    with pytest.raises(ApprenticeError, match="--steps must be >= 1, got 0"):
        _config(camera_file, out, steps=0)
    with pytest.raises(ApprenticeError, match="freeze_encoder are a policy's settings"):
        _config(camera_file, out, camera_args=("freeze_encoder=true",))
    assert not out.exists()


def test_the_command_writes_the_file_and_refuses_bad_input_in_one_line(
    camera_file: Path, demo_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sub" / "enc.pt"
    argv = ["pretrain-encoder", "--dataset", str(camera_file), "--image-key", CAM]
    tiny = ["--steps", "3", "--batch-size", "4", "--threads", "1", "--camera-args", *CAMERA_ARGS]
    assert main([*argv, "--out", str(out), *tiny]) == 0
    printed = capsys.readouterr().out
    assert "reconstruction loss at start" in printed and "reconstruction loss at end" in printed
    assert EncoderFile.load(out).steps == 3
    assert [p.name for p in out.parent.iterdir()] == ["enc.pt"]  # no temporary left behind
    bad = [
        ([*argv[:-1], "wrist", "--out", str(out)], "its image keys: agentview_image"),
        (
            [
                "pretrain-encoder",
                "--dataset",
                str(demo_file),
                "--image-key",
                CAM,
                "--out",
                str(out),
            ],
            "has no camera images",
        ),
        ([*argv, "--out", str(out), "--steps", "0"], "--steps must be >= 1"),
    ]
    for bad_argv, message in bad:
        assert main(bad_argv) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err


def test_pretraining_on_a_recorded_target_learns_where_the_object_is(
    synthetic: Any, tmp_path: Path
) -> None:
    """With target_key the encoder regresses a low-dim observation (here the bright square's
    position, which only the image shows) instead of rebuilding the frame."""
    import h5py

    data = synthetic.write_camera_demos(tmp_path / "cam.hdf5", num_demos=8, length=40)
    with h5py.File(data, "a") as f:
        for demo in f["data"].values():
            demo.create_dataset("obs/square_pos", data=demo["actions"][:, :2])
    out = tmp_path / "enc.pt"
    camera_args = (*CAMERA_ARGS, "random_shift=0")
    r = pretrain_encoder(
        _config(data, out, target_key="square_pos", steps=300, lr=3e-3, camera_args=camera_args)
    )
    saved = EncoderFile.load(out)
    assert saved.target_key == "square_pos" and saved.steps == 300
    # Standardized MSE: about 1 for an untrained head, well below for an encoder that finds it.
    assert r.loss_start > 0.5 and saved.loss_end < 0.25 * r.loss_start, (r.loss_start, r.loss_end)
    with pytest.raises(ApprenticeError, match="no low-dim observation 'pose' to pretrain on; its"):
        pretrain_encoder(_config(data, tmp_path / "x.pt", target_key="pose"))
    assert not (tmp_path / "x.pt").exists()


# ---- a policy starting from the file ------------------------------------------------------------


@pytest.fixture(scope="module")
def camera_data(camera_file: Path) -> TrainData:
    train_set = DemoDataset.load(camera_file)
    return TrainData(train_set, None, Normalizer.fit(train_set).state_dict(), {})


def test_a_mismatched_encoder_file_is_refused_naming_the_difference(
    encoder_file: Path, camera_data: TrainData, tmp_path: Path
) -> None:
    spec, norm = camera_data.train.spec, camera_data.normalizer_state
    wider = MLPConfig.tiny(image_keys=(CAM,), camera=_frozen(encoder_file, num_keypoints=4))
    with pytest.raises(ApprenticeError, match=r"num_keypoints=8 \(the policy has 4\)"):
        wider.build(spec, norm).load_pretrained_encoders()
    both = MLPConfig.tiny(image_keys=(CAM, "eye_in_hand_image"), camera=_frozen(encoder_file))
    with pytest.raises(ApprenticeError, match="files are for agentview_image; the policy reads"):
        both.build(spec, norm).load_pretrained_encoders()
    shared = dataclasses.replace(both.camera, share_encoder=True)
    other_size = MLPConfig.tiny(image_keys=("eye_in_hand_image",), camera=shared)
    with pytest.raises(
        ApprenticeError, match=r"images \(32, 32, 3\) \(the policy's cameras are \(24"
    ):
        other_size.build(spec, norm).load_pretrained_encoders()
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    bad = dataclasses.replace(both.camera, encoder_checkpoint=str(tmp_path / "other.pt"))
    with pytest.raises(ApprenticeError, match=r"other\.pt is not an encoder file"):
        MLPConfig.tiny(image_keys=(CAM,), camera=bad).build(spec, norm).load_pretrained_encoders()


def test_default_camera_settings_train_every_encoder_weight(camera_data: TrainData) -> None:
    policy = MLPConfig.tiny(image_keys=(CAM,)).build(
        camera_data.train.spec, camera_data.normalizer_state
    )
    assert policy.cached_cameras == []
    assert all(p.requires_grad for p in policy.parameters())
    policy.train()
    assert policy.image_encoder(CAM).training


@pytest.mark.parametrize("kind", policy_names())
def test_cached_features_give_the_loss_of_encoding_on_the_fly(
    kind: str, encoder_file: Path, camera_data: TrainData
) -> None:
    config = policy_config_class(kind).tiny(image_keys=(CAM,), camera=_frozen(encoder_file))
    policy = config.build(camera_data.train.spec, camera_data.normalizer_state)
    policy.load_pretrained_encoders()
    policy.train()
    assert not policy.image_encoder(CAM).training  # frozen: eval mode, no augmentation
    cached = cache_camera_features(camera_data, policy, torch.device("cpu")).train
    assert CAM not in cached.obs and cached.obs[features_key(CAM)].shape == (80, 16)
    anchors = np.arange(0, 80, 5)
    losses = []
    for dataset in (camera_data.train, cached):
        sampler = WindowSampler.for_policy(
            dataset, config, batch_size=16, rng=np.random.default_rng(0)
        )
        torch.manual_seed(0)  # the same training noise for the policies that draw some
        losses.append(policy(batch_to_tensors(sampler.batch(anchors)))[0])
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)


def test_cached_features_with_a_training_encoder_are_refused(
    encoder_file: Path, camera_data: TrainData
) -> None:
    frozen = MLPConfig.tiny(image_keys=(CAM,), camera=_frozen(encoder_file))
    policy = frozen.build(camera_data.train.spec, camera_data.normalizer_state)
    cached = cache_camera_features(camera_data, policy, torch.device("cpu")).train
    batch = WindowSampler(cached, batch_size=4, rng=np.random.default_rng(0)).sample()
    trained = MLPConfig.tiny(image_keys=(CAM,), camera=CameraConfig(feature_dim=16))
    learner = trained.build(camera_data.train.spec, camera_data.normalizer_state)
    with pytest.raises(ApprenticeError, match="cache features only with freeze_encoder=true"):
        learner(batch_to_tensors(batch))


@pytest.mark.parametrize("config_class", [RNNConfig, MLPConfig])
def test_a_frozen_encoder_trains_cached_stays_bit_identical_and_needs_no_file_to_act(
    config_class: Any, camera_file: Path, encoder_file: Path, tmp_path: Path
) -> None:
    local = tmp_path / "enc.pt"
    local.write_bytes(encoder_file.read_bytes())
    config = config_class.tiny(image_keys=(CAM,), camera=_frozen(local))
    result = train(
        TrainConfig(
            dataset=str(camera_file),
            out=str(tmp_path / "run"),
            policy=config,
            epochs=2,
            steps_per_epoch=10,
            batch_size=8,
            lr=3e-3,
            progress=False,
            threads=1,
            valid_fraction=0.25,
        )
    )
    assert all(m["valid_loss"] is not None for m in result.metrics)
    saved = EncoderFile.load(local).state_dict
    local.unlink()  # the policy checkpoint alone must load and act
    policy = load_policy(result.final_checkpoint)
    weights = policy.state_dict()
    for key, value in saved.items():
        assert torch.equal(weights[f"image_encoders.{CAM}.{key}"], value), key
    frame = {k: v[0] for k, v in DemoDataset.load(camera_file).obs.items()}
    action = policy.act(frame)
    assert action.shape == (7,) and np.all(np.isfinite(action))


def test_a_resumed_frozen_run_caches_from_its_own_weights_and_ends_as_the_straight_one(
    camera_file: Path, encoder_file: Path, tmp_path: Path
) -> None:
    local = tmp_path / "enc.pt"
    local.write_bytes(encoder_file.read_bytes())
    config = MLPConfig.tiny(image_keys=(CAM,), camera=_frozen(local))

    def run(folder: str, epochs: int) -> Path:
        settings = {"epochs": epochs, "steps_per_epoch": 5, "batch_size": 8, "threads": 1}
        out = str(tmp_path / folder)
        trained = train(
            TrainConfig(
                dataset=str(camera_file), out=out, policy=config, progress=False, **settings
            )
        )
        return trained.final_checkpoint

    straight = run("straight", 2)
    run("resumed", 1)
    local.unlink()  # the resume reads the frozen weights from last.pt, not from the file
    resumed = run("resumed", 2)
    a, b = load_policy(straight).state_dict(), load_policy(resumed).state_dict()
    assert all(torch.equal(v, b[k]) for k, v in a.items())
