"""Loading checkpoints: run folders resolve to their checkpoint; other files say what they are."""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from apprentice.data.spec import ObsActSpec
from apprentice.errors import ApprenticeError
from apprentice.policies import MLPConfig, load_checkpoint, load_policy, save_checkpoint
from apprentice.policies.checkpoint import resolve_checkpoint

SPEC = ObsActSpec({"qpos": (3,)}, action_dim=2)
ENV_ARGS = {"env_name": "lift"}


@pytest.fixture
def run_folder(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    policy = MLPConfig.tiny().build(SPEC, {})
    save_checkpoint(run / "final.pt", policy, env_args=ENV_ARGS)
    (run / "config.json").write_text("{}")
    return run


def test_a_run_folder_resolves_to_best_then_final_then_last(run_folder: Path) -> None:
    assert resolve_checkpoint(run_folder) == run_folder / "final.pt"
    (run_folder / "last.pt").write_bytes((run_folder / "final.pt").read_bytes())
    assert resolve_checkpoint(run_folder) == run_folder / "final.pt"
    (run_folder / "best.pt").write_bytes((run_folder / "final.pt").read_bytes())
    assert resolve_checkpoint(run_folder) == run_folder / "best.pt"
    assert load_checkpoint(run_folder)["path"] == str(run_folder / "best.pt")
    assert load_policy(run_folder).config == MLPConfig.tiny()


def test_a_run_folder_without_checkpoints_and_a_missing_path_are_named(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ApprenticeError, match=r"run folder .*empty holds no checkpoint \(best"):
        load_policy(tmp_path / "empty")
    with pytest.raises(ApprenticeError, match=r"missing\.pt does not exist \(no such run folder"):
        load_checkpoint(tmp_path / "missing.pt")


def _assert_one_plain_line(message: str) -> None:
    assert "\n" not in message
    # torch's advice for weights_only failures would have the user run the file's code.
    assert "weights_only" not in message and "arbitrary code" not in message


def test_an_hdf5_dataset_is_named_as_one(demo_file: Path) -> None:
    with pytest.raises(ApprenticeError) as info:
        load_policy(demo_file)
    message = str(info.value)
    _assert_one_plain_line(message)
    assert f"{demo_file} is an HDF5 file (a demo dataset), not a checkpoint" in message
    assert f"apprentice train --dataset {demo_file}" in message


def test_exported_policies_are_named_as_such(tmp_path: Path) -> None:
    from apprentice.deploy.export import export_policy

    policy = MLPConfig.tiny().build(SPEC, {})
    policy.env_args = dict(ENV_ARGS)
    onnx = export_policy(policy, tmp_path / "p.onnx", fmt="onnx", check_samples=4).path
    renamed = tmp_path / "p_onnx.pt"  # told by its content, not by its name
    renamed.write_bytes(onnx.read_bytes())
    script = export_policy(policy, tmp_path / "p.ts.pt", fmt="torchscript", check_samples=4).path
    plain = tmp_path / "traced.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.trace(torch.nn.Linear(2, 2), torch.zeros(1, 2)), str(plain))
    cases = {
        onnx: "is an ONNX model (an exported policy), not a checkpoint",
        renamed: "is an ONNX model (an exported policy), not a checkpoint",
        script: "is an exported TorchScript policy, not a checkpoint",
        plain: "is a TorchScript archive, not a checkpoint; eval, export and serve take",
    }
    for path, what in cases.items():
        with pytest.raises(ApprenticeError) as info:
            load_checkpoint(path)
        message = str(info.value)
        _assert_one_plain_line(message)
        assert f"{path} {what}" in message
        if path != plain:
            assert "apprentice.deploy.runtime.load_exported" in message


def test_a_pickle_of_python_objects_is_refused_without_torchs_advice(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save({"format": "apprentice-checkpoint", "obj": os.path.join}, path)
    with pytest.raises(ApprenticeError) as info:
        load_checkpoint(path)
    message = str(info.value)
    _assert_one_plain_line(message)
    assert "truncated, corrupt or not an apprentice checkpoint" in message
    assert "pickled Python objects, which are never loaded" in message
    legacy = tmp_path / "legacy.pt"
    legacy.write_bytes(pickle.dumps(np.zeros(2)))  # 0x80 PROTO first: not taken for ONNX
    with pytest.raises(ApprenticeError, match="truncated, corrupt or not an apprentice"):
        load_checkpoint(legacy)
