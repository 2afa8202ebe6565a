"""TrainConfig: one default per setting, its checks, and key=value overrides of nested configs."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from apprentice.algos.config import TrainConfig, config_from_overrides
from apprentice.errors import ApprenticeError
from apprentice.interactive.dagger import DaggerConfig, config_dict, round_training
from apprentice.irl.bco import BCOConfig, clone_training
from apprentice.policies.gmm import GMMConfig
from apprentice.policies.mlp import MLPConfig
from apprentice.splits import check_valid_fraction


def test_threads_and_valid_fraction_are_checked_where_the_config_is_made() -> None:
    for threads in (0, -1):
        with pytest.raises(ApprenticeError, match="threads must be >= 1"):
            TrainConfig(threads=threads)
    assert TrainConfig(threads=None).threads is None
    for fraction in (1.0, 2.0, -0.1):
        with pytest.raises(ApprenticeError, match=r"valid_fraction must be in \[0, 1\)"):
            TrainConfig(valid_fraction=fraction)
    check_valid_fraction(0.0, "--valid-fraction")
    with pytest.raises(ApprenticeError, match=r"--valid-fraction must be in \[0, 1\).*not 1.0"):
        check_valid_fraction(1.0, "--valid-fraction")


def test_overrides_reach_nested_configs_and_their_policy() -> None:
    values = {
        "alpha": 0.5,
        "rounds": 1,
        "idm_hidden_dims": "64,64",
        "train.epochs": 2,
        "train.policy.hidden_dims": "32,32",
    }
    cfg = config_from_overrides(BCOConfig, values, "irl --algo-args")
    assert cfg.idm_hidden_dims == (64, 64)
    # Fields not named keep the command's defaults, not TrainConfig's.
    assert cfg.train == clone_training(epochs=2, policy=MLPConfig(hidden_dims=(32, 32)))
    gmm = config_from_overrides(BCOConfig, {"train.policy": "gmm"}, "x").train.policy
    assert gmm == GMMConfig()
    with pytest.raises(ApprenticeError, match=r"unknown key\(s\) epochs; known: .*train"):
        config_from_overrides(BCOConfig, {"epochs": 2}, "irl --algo-args")
    with pytest.raises(ApprenticeError, match=r"set train's fields as train\.<field>=value"):
        config_from_overrides(BCOConfig, {"train": 2}, "irl --algo-args")
    with pytest.raises(ApprenticeError, match="threads must be >= 1"):
        config_from_overrides(BCOConfig, {"train.threads": 0}, "irl --algo-args")


def test_bco_clones_with_the_training_it_always_had() -> None:
    # Every setting of each round's TrainConfig before it was nested (eval_episodes aside:
    # BCO passes no rollout callback, so it is never read).
    before = TrainConfig(
        policy=MLPConfig(hidden_dims=(256, 256)),
        epochs=20,
        steps_per_epoch=100,
        batch_size=100,
        lr=1e-3,
        valid_fraction=0.0,
        train_mask="",
        threads=None,
        progress=False,
        eval_every=0,
    )
    assert BCOConfig().train == before


def test_a_dagger_run_folder_with_the_flat_config_layout_resumes(tmp_path: Path) -> None:
    train = round_training(policy=MLPConfig(hidden_dims=(16,)), epochs=1, threads=1)
    cfg = DaggerConfig(task="lift", out=str(tmp_path / "run"), train=train)
    flat = {k: v for k, v in config_dict(cfg).items() if k != "train"}
    flat |= {"policy": "mlp", "policy_args": ["hidden_dims=[16]"], "epochs": 1}
    flat |= {"steps_per_epoch": 100, "batch_size": 100, "lr": 1e-3, "threads": 1}
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps(flat))
    from apprentice.interactive.dagger import _Run

    run = _Run(cfg)
    assert run.prepare()["rounds_done"] == -1  # accepted as the same run
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == config_dict(cfg)
    changed = replace(cfg, train=replace(train, lr=3e-4))
    with pytest.raises(ApprenticeError, match=r"different config \(train.lr differ\)"):
        _Run(changed).prepare()
