"""Camera observations: encoders, augmentation, image policies end to end, and their errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from apprentice.algos.bc import batch_to_tensors
from apprentice.algos.trainer import TrainConfig, train
from apprentice.data.dataset import DemoDataset, WindowSampler
from apprentice.data.normalize import Normalizer
from apprentice.errors import ApprenticeError
from apprentice.policies import (
    MLPConfig,
    Policy,
    RNNConfig,
    load_policy,
    policy_config_class,
    policy_config_from_dict,
    save_checkpoint,
)
from apprentice.policies.augment import ImageAugment, color_jitter, random_shift
from apprentice.policies.base import CAMERA_FIELDS
from apprentice.policies.encoders import CameraConfig, ResNet18Trunk, SpatialSoftmax, VisualCore

# The cameras of the synthetic helper's write_camera_demos (the `synthetic` fixture).
CAMS = ("agentview_image", "eye_in_hand_image")
SMALL_CAMERA = CameraConfig(feature_dim=16, num_keypoints=8)


@pytest.fixture(scope="module")
def camera_file(tmp_path_factory: pytest.TempPathFactory, synthetic: Any) -> Path:
    assert tuple(synthetic.CAMS) == CAMS
    return synthetic.write_camera_demos(tmp_path_factory.mktemp("cam") / "cam.hdf5")


@pytest.fixture(scope="module")
def camera_data(camera_file: Path) -> tuple[DemoDataset, dict[str, Any]]:
    dataset = DemoDataset.load(camera_file)
    return dataset, Normalizer.fit(dataset).state_dict()


def _stream(dataset: DemoDataset, steps: int, start: int = 0) -> list[dict[str, np.ndarray]]:
    return [{k: v[start + t] for k, v in dataset.obs.items()} for t in range(steps)]


def _overfit(policy: Policy, dataset: DemoDataset, steps: int = 40) -> list[float]:
    sampler = WindowSampler.for_policy(
        dataset, policy.config, batch_size=16, rng=np.random.default_rng(0)
    )
    batch = batch_to_tensors(sampler.sample())
    optimizer = torch.optim.Adam(policy.parameters(), lr=3e-3)
    losses = []
    policy.train()
    for _ in range(steps):
        loss, _ = policy(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


# ---- encoders and augmentation ----------------------------------------------------------


def test_spatial_softmax_finds_the_hot_pixel() -> None:
    heat = torch.zeros(1, 2, 9, 13)
    heat[0, 0, 2, 10] = 100.0  # row 2, column 10
    heat[0, 1, 8, 0] = 100.0  # bottom-left corner
    keypoints = SpatialSoftmax(2, num_keypoints=None)(heat)  # (1, 2, 2) as (x, y)
    expected = torch.tensor([[[-1 + 2 * 10 / 12, -1 + 2 * 2 / 8], [-1.0, 1.0]]])
    torch.testing.assert_close(keypoints, expected, atol=1e-5, rtol=0)


def test_random_shift_only_translates() -> None:
    pad = 3
    x = torch.arange(4 * 3 * 10 * 12, dtype=torch.float32).reshape(4, 3, 10, 12)
    out = random_shift(x, pad, group=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    offsets = []
    for i in range(4):
        rows, cols = torch.arange(10), torch.arange(12)
        match = [
            (dy, dx)
            for dy in range(-pad, pad + 1)
            for dx in range(-pad, pad + 1)
            if torch.equal(
                out[i],
                x[i][:, (rows + dy).clamp(0, 9)][:, :, (cols + dx).clamp(0, 11)],
            )
        ]
        assert len(match) == 1, f"image {i} is not a translation of its input"
        offsets.append(match[0])
    assert offsets[0] == offsets[1] and offsets[2] == offsets[3]  # one draw per group
    assert torch.equal(random_shift(x, 0), x)


def test_color_jitter_changes_colors_within_range_only_in_training() -> None:
    x = torch.rand(6, 3, 8, 8)
    jittered = color_jitter(x, 0.3, generator=torch.Generator().manual_seed(1))
    assert jittered.shape == x.shape and not torch.allclose(jittered, x)
    assert float(jittered.min()) >= 0.0 and float(jittered.max()) <= 1.0
    augment = ImageAugment(shift_pad=4, color_strength=0.3)
    assert torch.equal(augment.eval()(x), x)
    assert not torch.equal(augment.train()(x), x)


def test_visual_core_keeps_uint8_input_and_augments_only_in_train_mode() -> None:
    torch.manual_seed(0)
    core = VisualCore((32, 32, 3), shift_pad=4, color_strength=0.2, feature_dim=16, num_keypoints=8)
    images = torch.randint(0, 256, (3, 32, 32, 3), dtype=torch.uint8)
    before = images.clone()
    a, b = core.train()(images), core(images)
    assert a.shape == (3, 16) and not torch.allclose(a, b)  # a fresh augmentation each pass
    assert torch.equal(images, before) and images.dtype == torch.uint8
    core.eval()
    torch.testing.assert_close(core(images), core(images), atol=0, rtol=0)


def test_resnet18_shapes_parameters_and_pretrained_file(tmp_path: Path) -> None:
    trunk = ResNet18Trunk(3, "batch")
    # torchvision's resnet18 has 11,689,512 parameters, 513,000 of them in its classifier.
    assert sum(p.numel() for p in trunk.parameters()) == 11_689_512 - 513_000
    assert trunk.eval()(torch.zeros(2, 3, 84, 84)).shape == (2, 512, 3, 3)
    core = VisualCore((84, 84, 3), encoder="resnet18", norm="group", feature_dim=64)
    assert core.eval()(torch.zeros(2, 84, 84, 3, dtype=torch.uint8)).shape == (2, 64)

    with pytest.raises(ApprenticeError, match=r"does not exist.*never downloaded"):
        trunk.load_pretrained(tmp_path / "resnet18.pth")
    # A torchvision-layout file (with its classifier) loads; GroupNorm takes BN's affine weights.
    state = {k: torch.randn_like(v.float()).to(v.dtype) for k, v in trunk.state_dict().items()}
    state |= {"fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}
    torch.save(state, tmp_path / "resnet18.pth")
    group = ResNet18Trunk(3, "group")
    group.load_pretrained(tmp_path / "resnet18.pth")
    torch.testing.assert_close(group.layer3[1].bn2.weight, state["layer3.1.bn2.weight"])
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, tmp_path / "other.pth")
    with pytest.raises(ApprenticeError, match="not a resnet18 state_dict"):
        group.load_pretrained(tmp_path / "other.pth")


# ---- image policies ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        MLPConfig(hidden_dims=(64,), image_keys=CAMS, camera=SMALL_CAMERA),
        RNNConfig(hidden_dim=32, seq_len=4, image_keys=("agentview_image",), camera=SMALL_CAMERA),
    ],
    ids=["mlp-2cams", "rnn-1cam"],
)
def test_image_policy_learns_round_trips_and_batches(
    config: Any, camera_data: Any, tmp_path: Path
) -> None:
    dataset, norm = camera_data
    torch.manual_seed(0)
    policy = config.build(dataset.spec, norm)
    assert policy.obs_dim == 3 + 16 * len(config.image_keys)  # F = D + Df per camera
    losses = _overfit(policy, dataset)
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), losses

    save_checkpoint(tmp_path / "p.pt", policy, env_args={"env_name": "lift"})
    loaded = load_policy(tmp_path / "p.pt")
    stream = _stream(dataset, 6)
    policy.reset()
    loaded.reset()
    a = np.stack([policy.act(o) for o in stream])
    np.testing.assert_array_equal(a, np.stack([loaded.act(o) for o in stream]))

    streams = [_stream(dataset, 5, start=s) for s in (0, 21, 50)]
    single = []
    for s in streams:
        loaded.reset()
        single.append(np.stack([loaded.act(o) for o in s]))
    loaded.reset()
    batched = [
        loaded.act_batch({k: np.stack([s[t][k] for s in streams]) for k in streams[0][0]})
        for t in range(5)
    ]
    np.testing.assert_allclose(np.stack(batched, 1), np.stack(single), atol=1e-5)


def test_frame_stack_history_holds_encoded_frames(camera_data: Any) -> None:
    """act with frame_stack=2 equals the training path on the same two frames."""
    dataset, norm = camera_data
    config = MLPConfig(hidden_dims=(32,), frame_stack=2, image_keys=("agentview_image",))
    policy = config.build(dataset.spec, norm).eval()
    policy.reset()
    first, second = _stream(dataset, 2, start=3)
    policy.act(first)
    action = policy.act(second)
    batch = {f"obs/{k}": torch.from_numpy(np.stack([first[k], second[k]])[None]) for k in first}
    with torch.no_grad():
        expected = policy.predict(policy.obs_windows(batch))[0, 0]  # (A,)
    np.testing.assert_allclose(action, expected.numpy(), atol=1e-5)


@pytest.mark.parametrize("name", ["act", "diffusion", "flow"])
def test_chunk_policies_encode_only_the_frames_the_chunk_is_conditioned_on(
    camera_data: Any, name: str
) -> None:
    """ACT, diffusion and flow condition a chunk on its first step: of a window of k + C - 1 frames
    only the first C pass through the encoders (ACT encoded all of them once: k times the
    work with cameras)."""
    dataset, norm = camera_data
    extra = {"hidden_dim": 16, "num_heads": 2, "ff_dim": 32, "chunk_size": 6}
    if name == "diffusion":
        extra = {"denoiser": "transformer", "num_train_steps": 10, "seq_len": 6}
        extra["action_horizon"] = 4
    if name == "flow":
        extra = {"embed_dim": 32, "num_layers": 1, "seq_len": 6, "action_horizon": 4}
    config = policy_config_class(name)(image_keys=CAMS, frame_stack=2, camera=SMALL_CAMERA, **extra)
    policy = config.build(dataset.spec, norm).eval()
    sampler = WindowSampler.for_policy(dataset, config, batch_size=4, rng=np.random.default_rng(0))
    batch = batch_to_tensors(sampler.sample())
    assert batch[f"obs/{CAMS[0]}"].shape[1] == 6 + 2 - 1
    seen: list[int] = []
    for key in CAMS:
        policy.image_encoder(key).register_forward_hook(
            lambda _m, args, _out: seen.append(args[0].shape[0])
        )
    with torch.no_grad():
        loss, _ = policy(batch)
    assert seen == [4 * 2] * len(CAMS)  # B * C images per camera, not B * (k + C - 1)
    assert torch.isfinite(loss)


def test_trainer_trains_an_image_policy_from_a_file(camera_file: Path, tmp_path: Path) -> None:
    config = MLPConfig(hidden_dims=(64,), image_keys=("agentview_image",), camera=SMALL_CAMERA)
    result = train(
        TrainConfig(
            dataset=str(camera_file),
            out=str(tmp_path / "run"),
            policy=config,
            epochs=3,
            steps_per_epoch=15,
            batch_size=16,
            lr=3e-3,
            progress=False,
            threads=1,
        )
    )
    losses = [m["train_loss"] for m in result.metrics]
    assert losses[-1] < 0.7 * losses[0], losses
    policy = load_policy(result.final_checkpoint)
    assert policy.image_keys == ["agentview_image"] and policy.env_args["env_kwargs"]["camera"]
    assert policy_config_from_dict(json.loads((tmp_path / "run/config.json").read_text())["policy"])


# ---- configuration and bad input ---------------------------------------------------------


def test_a_policy_without_cameras_leaves_them_out_of_its_dict() -> None:
    assert set(MLPConfig().to_dict()).isdisjoint({"image_keys", "camera", "encoder"})
    config = MLPConfig(
        image_keys="agentview_image,eye_in_hand_image",  # type: ignore[arg-type]
        camera=CameraConfig(encoder="resnet18"),
    )
    assert config.image_keys == ("agentview_image", "eye_in_hand_image")
    d = config.to_dict()
    assert d["camera"]["encoder"] == "resnet18" and set(d["camera"]) == set(CAMERA_FIELDS)
    assert policy_config_from_dict(json.loads(json.dumps(d))) == config
    # A camera policy with the default camera settings still names them.
    assert MLPConfig(image_keys=CAMS).to_dict()["camera"] == dataclasses.asdict(CameraConfig())


def test_camera_config_errors() -> None:
    with pytest.raises(ApprenticeError, match="camera config: unknown encoder 'vit'"):
        CameraConfig(encoder="vit")
    with pytest.raises(ApprenticeError, match="pretrained_path needs encoder=resnet18"):
        CameraConfig(pretrained_path="x.pth")
    with pytest.raises(ApprenticeError, match="random_shift must be >= 0"):
        policy_config_from_dict({"name": "mlp", "random_shift": -1})
    with pytest.raises(ApprenticeError, match=r"camera has no field\(s\) shift; known: encoder"):
        policy_config_from_dict({"name": "mlp", "camera.shift": 2})
    with pytest.raises(ApprenticeError, match="random_shift given both by name and as camera"):
        policy_config_from_dict({"name": "mlp", "random_shift": 2, "camera.random_shift": 1})
    with pytest.raises(ApprenticeError, match=r"give them by name \(encoder=resnet18\)"):
        policy_config_from_dict({"name": "mlp", "camera": "resnet18"})
    with pytest.raises(ApprenticeError, match=r"unknown field.*hiden_dims.*the camera's encoder"):
        policy_config_from_dict({"name": "mlp", "hiden_dims": [8]})


def test_camera_fields_by_name_by_path_or_nested_make_one_config() -> None:
    """--policy-args gives the camera's fields by name or by path; a checkpoint nests them."""
    want = MLPConfig(
        image_keys=CAMS, camera=CameraConfig(encoder="resnet18", random_shift=0, color_jitter=0.1)
    )
    forms = [
        {"encoder": "resnet18", "random_shift": 0, "color_jitter": 0.1},
        {"camera.encoder": "resnet18", "camera.random_shift": 0, "camera.color_jitter": 0.1},
        {"camera": {"encoder": "resnet18", "random_shift": 0, "color_jitter": 0.1}},
        # An override by name or path goes on top of a nested dict (a default's to_dict()).
        {
            "camera": {"encoder": "resnet18", "random_shift": 4},
            "random_shift": 0,
            "camera.color_jitter": 0.1,
        },
    ]
    for form in forms:
        assert (
            policy_config_from_dict({"name": "mlp", "image_keys": ",".join(CAMS), **form}) == want
        )


def test_a_checkpoint_with_the_camera_fields_at_the_top_loads(
    camera_data: Any, tmp_path: Path
) -> None:
    """A checkpoint or run folder whose policy config holds the camera fields at its top
    level loads into the same policy, its weights by the same names."""
    dataset, norm = camera_data
    torch.manual_seed(0)
    config = MLPConfig(
        hidden_dims=(8,),
        image_keys=("agentview_image",),
        camera=CameraConfig(feature_dim=4, num_keypoints=2, encoder_norm="batch", random_shift=0),
    )
    policy = config.build(dataset.spec, norm)
    path = tmp_path / "old.pt"
    save_checkpoint(path, policy, env_args={})
    ckpt = torch.load(path, weights_only=False)
    # The policy config exactly as such a checkpoint holds it.
    ckpt["policy_config"] = {
        "name": "mlp",
        "obs_keys": [],
        "seq_len": 1,
        "frame_stack": 1,
        "image_keys": ["agentview_image"],
        "feature_dim": 4,
        "num_keypoints": 2,
        "encoder_norm": "batch",
        "random_shift": 0,
        "hidden_dims": [8],
        "activation": "relu",
        "init": "orthogonal",
    }
    torch.save(ckpt, path)
    loaded = load_policy(path)
    assert loaded.config == config
    assert "image_encoders.agentview_image.trunk.layers.1.running_mean" in ckpt["state_dict"]
    for key, value in policy.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    obs = _stream(dataset, 3)
    np.testing.assert_array_equal([loaded.act(o) for o in obs], [policy.eval().act(o) for o in obs])
    # A run folder's config.json (train, and DAgger's or BCO's "train") of that layout.
    train_dict = TrainConfig(dataset="d.hdf5", policy=config).to_dict()
    train_dict["policy"] = ckpt["policy_config"]
    assert TrainConfig.from_dict(json.loads(json.dumps(train_dict))).policy == config


def test_policy_args_take_camera_fields_and_list_them_in_help() -> None:
    import argparse

    from apprentice.algos.config import config_from_overrides
    from apprentice.cli.args import add_dataclass_args, dataclass_from_args

    parser = argparse.ArgumentParser()
    add_dataclass_args(parser, TrainConfig)
    args = ["--dataset", "d.hdf5", "--policy-args", "image_keys=agentview_image"]
    args += ["encoder=resnet18", "camera.random_shift=0"]
    config = dataclass_from_args(TrainConfig, parser.parse_args(args))
    assert config.policy.camera == CameraConfig(encoder="resnet18", random_shift=0)
    help_text = " ".join(parser.format_help().split())
    assert "[random_shift=4] Training augmentation: pad by this many pixels" in help_text
    assert "[pretrained_path=FILE] resnet18: a local torchvision" in help_text
    # --algo-args reach the camera of a nested training config the same ways.
    values = {"policy.image_keys": "agentview_image", "policy.feature_dim": 8}
    values["policy.camera.encoder_norm"] = "none"
    nested = config_from_overrides(TrainConfig, values, "--algo-args")
    assert nested.policy.camera == CameraConfig(feature_dim=8, encoder_norm="none")


def test_image_policy_on_a_dataset_without_images(demo_file: Path, tmp_path: Path) -> None:
    config = MLPConfig(hidden_dims=(8,), image_keys=("agentview_image",))
    with pytest.raises(ApprenticeError, match=r"'agentview_image'.*no images.*eef_pos"):
        train(TrainConfig(dataset=str(demo_file), out=str(tmp_path / "r"), policy=config))
    assert not (tmp_path / "r").exists()
    spec = DemoDataset.load(demo_file).spec
    with pytest.raises(ApprenticeError, match=r"'agentview_image'.*image keys: none"):
        config.build(spec, {})


def test_low_dim_and_image_keys_in_the_wrong_list(
    camera_data: Any, camera_file: Path, tmp_path: Path
) -> None:
    dataset, norm = camera_data
    with pytest.raises(ApprenticeError, match=r"'eef_pos' is a low-dim.*not image_keys"):
        MLPConfig(image_keys=("eef_pos",)).build(dataset.spec, norm)
    with pytest.raises(ApprenticeError, match=r"'agentview_image' is a camera image.*image_keys"):
        MLPConfig(obs_keys=("agentview_image",)).build(dataset.spec, norm)
    with pytest.raises(ApprenticeError, match=r"share_encoder.*\(32, 32, 3\).*\(24, 24, 3\)"):
        MLPConfig(image_keys=CAMS, camera=CameraConfig(share_encoder=True)).build(
            dataset.spec, norm
        )
    with pytest.raises(ApprenticeError, match=r"'eef_pos', a low-dim observation"):
        train(
            TrainConfig(
                dataset=str(camera_file),
                out=str(tmp_path / "run"),
                policy=MLPConfig(image_keys=("eef_pos",)),
            )
        )
    assert not (tmp_path / "run").exists()  # refused before a run folder was made


def test_act_time_image_errors_name_key_expected_and_got(camera_data: Any) -> None:
    dataset, norm = camera_data
    policy = MLPConfig(hidden_dims=(8,), image_keys=CAMS, camera=SMALL_CAMERA).build(
        dataset.spec, norm
    )
    obs = _stream(dataset, 1)[0]
    small = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(ApprenticeError, match=r"'agentview_image'.*\(16, 16, 3\).*\(32, 32, 3\)"):
        policy.act({**obs, "agentview_image": small})
    with pytest.raises(ApprenticeError, match=r"'eye_in_hand_image'.*dtype float32.*uint8"):
        policy.act({**obs, "eye_in_hand_image": obs["eye_in_hand_image"].astype(np.float32)})
    with pytest.raises(ApprenticeError, match=r"no key 'eye_in_hand_image'"):
        policy.act({k: v for k, v in obs.items() if k != "eye_in_hand_image"})
    with pytest.raises(ApprenticeError, match=r"'agentview_image'.*\(B, 32, 32, 3\)"):
        policy.act_batch({k: v[None] for k, v in obs.items()} | {"agentview_image": small[None]})
    batch = {f"obs/{k}": torch.from_numpy(np.stack([v])[None]) for k, v in obs.items()}
    batch["obs/agentview_image"] = torch.zeros(1, 1, 16, 16, 3, dtype=torch.uint8)
    with pytest.raises(
        ApprenticeError, match=r"'obs/agentview_image'.*\(16, 16, 3\).*\(32, 32, 3\)"
    ):
        policy.obs_windows(batch)


def test_export_refuses_an_image_policy_naming_its_cameras(camera_data: Any) -> None:
    from apprentice.deploy.export import InferenceStep

    dataset, norm = camera_data
    policy = MLPConfig(hidden_dims=(8,), image_keys=CAMS, camera=SMALL_CAMERA).build(
        dataset.spec, norm
    )
    with pytest.raises(ApprenticeError, match="agentview_image, eye_in_hand_image"):
        InferenceStep(policy)


def test_train_command_evaluates_an_image_policy_with_the_recorded_cameras(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`apprentice train`'s in-training rollouts build the task with the demos' cameras."""
    from apprentice.cli.main import main

    demos = str(tmp_path / "cam.hdf5")
    assert main(["collect", "--task", "lift", "--n", "2", "--camera", "--out", demos]) == 0
    run = tmp_path / "run"
    args = ["train", "--dataset", demos, "--policy", "mlp", "--out", str(run), "--epochs", "1"]
    args += ["--steps-per-epoch", "2", "--eval-every", "1", "--eval-episodes", "2", "--threads"]
    # The README's camera command: comma lists for the cameras and the low-dim keys.
    args += ["1", "--no-progress", "--policy-args", "image_keys=agentview_image,eye_in_hand_image"]
    args += ["obs_keys=eef_pos,eef_quat,gripper_qpos", "hidden_dims=32", "feature_dim=8"]
    args += ["camera.num_keypoints=4"]  # a camera field by name (above) or by path
    assert main(args) == 0
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert "success_rate" in history[-1]  # the rollout ran, with the cameras the policy reads
    capsys.readouterr()
    # Evaluating on other image sizes fails before any worker starts, naming the camera.
    assert main(["eval", str(run), "--episodes", "1", "--task-args", "image_size=32"]) == 2
    err = capsys.readouterr().err
    assert "'agentview_image' of shape (84, 84, 3)" in err and "(32, 32, 3)" in err
