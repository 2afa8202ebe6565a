"""Training on another device: names checked up front, checkpoints always CPU tensors, and
(on a machine with a CUDA GPU) every policy trained there loads and acts on the CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from apprentice.algos import TrainConfig, train
from apprentice.data.dataset import DemoDataset
from apprentice.errors import ApprenticeError
from apprentice.policies import load_policy, policy_config_class, policy_names
from apprentice.policies.mlp import MLPConfig


def _config(dataset: Path, out: Path, **kw: Any) -> TrainConfig:
    base: dict[str, Any] = {
        "dataset": str(dataset),
        "out": str(out),
        "policy": MLPConfig(hidden_dims=(32,)),
        "epochs": 2,
        "steps_per_epoch": 3,
        "batch_size": 8,
        "lr": 1e-3,
        "progress": False,
        "threads": 1,
    }
    return TrainConfig(**(base | kw))


def _raw_state_devices(path: Path) -> set[str]:
    # No map_location: the devices the tensors were saved from.
    ckpt = torch.load(path, weights_only=True)
    return {v.device.type for v in ckpt["state_dict"].values()}


def test_device_names_are_checked_before_anything_runs(demo_file: Path, tmp_path: Path) -> None:
    with pytest.raises(ApprenticeError, match="'gpu0' is not a torch device"):
        _config(demo_file, tmp_path / "a", device="gpu0")
    with pytest.raises(ApprenticeError, match="'meta' is not supported"):
        _config(demo_file, tmp_path / "b", device="meta")
    if not torch.cuda.is_available():
        # The config itself loads (a GPU run's config.json is readable anywhere); training
        # on the missing GPU is refused before the run folder exists.
        config = _config(demo_file, tmp_path / "c", device="cuda")
        assert TrainConfig.from_dict(config.to_dict()).device == "cuda"
        with pytest.raises(ApprenticeError, match="sees no CUDA GPU"):
            train(config)
        assert not (tmp_path / "c").exists()
    assert not (tmp_path / "a").exists()


def test_auto_device_trains_and_writes_cpu_checkpoints(demo_file: Path, tmp_path: Path) -> None:
    result = train(_config(demo_file, tmp_path / "run", device="auto"))
    for name in ("final.pt", "last.pt", "best.pt"):
        assert _raw_state_devices(result.run_dir / name) == {"cpu"}
    # The device is not part of what is learned: a resume may move the run.
    resumed = train(_config(demo_file, tmp_path / "run", device="cpu", epochs=3))
    assert resumed.resumed_from_epoch == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("images", [False, True], ids=["low_dim", "images"])
@pytest.mark.parametrize("name", policy_names())
def test_every_policy_trains_on_cuda_and_acts_on_the_cpu(
    name: str, images: bool, demo_file: Path, synthetic: Any, tmp_path: Path
) -> None:
    overrides: dict[str, Any] = {}
    data = demo_file
    if images:
        data = synthetic.write_camera_demos(tmp_path / "cam.hdf5")
        overrides |= {"obs_keys": ("eef_pos",), "image_keys": ("agentview_image",)}
    config = _config(
        data, tmp_path / "run", policy=policy_config_class(name).tiny(**overrides), device="cuda"
    )
    result = train(config)
    losses = [r["train_loss"] for r in result.metrics]
    assert all(np.isfinite(losses))
    assert _raw_state_devices(result.final_checkpoint) == {"cpu"}
    # Resume on the GPU from the CPU checkpoint: Adam's moments follow the parameters.
    train(_config(data, tmp_path / "run", policy=config.policy, device="cuda", epochs=3))
    policy = load_policy(result.run_dir / "final.pt")
    dataset = DemoDataset.load(data)
    obs = {k: v[0] for k, v in dataset.obs.items() if k in policy.spec.obs_shapes}
    action = policy.act(obs)
    assert action.shape == (dataset.spec.action_dim,) and np.isfinite(action).all()
