"""The learning-rate schedule: warmup and cosine rates, the steps they drive, their checks."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from apprentice.algos import TrainConfig, Trainer, train
from apprentice.algos.training_data import load_train_data
from apprentice.data import WindowSampler
from apprentice.errors import ApprenticeError
from apprentice.policies import DiffusionConfig, MLPConfig


def _config(demo_file: Path, out: Path, **kw: Any) -> TrainConfig:
    base: dict[str, Any] = {
        "dataset": str(demo_file),
        "out": str(out),
        "policy": MLPConfig(hidden_dims=(32, 32)),
        "epochs": 2,
        "steps_per_epoch": 10,
        "batch_size": 16,
        "lr": 1e-2,
        "progress": False,
        "threads": 1,
    }
    return TrainConfig(**{**base, **kw})


def _lrs_and_moves(config: TrainConfig, steps: int) -> tuple[list[float], list[float]]:
    """Per step of a `for_policy` trainer: the learning rate it ran at and the largest
    change of any weight it made."""
    data = load_train_data(config)
    torch.manual_seed(0)
    policy = config.policy.build(data.train.spec, data.normalizer_state)
    trainer = Trainer.for_policy(policy, config)
    sampler = WindowSampler.for_policy(
        data.train, config.policy, batch_size=config.batch_size, rng=np.random.default_rng(0)
    )
    lrs, moves = [], []
    for _ in range(steps):
        lrs.append(trainer.optimizer.param_groups[0]["lr"])
        before = [p.detach().clone() for p in policy.parameters()]
        trainer.step(sampler.sample())
        after = [p.detach() for p in policy.parameters()]
        moves.append(max(float((a - b).abs().max()) for a, b in zip(after, before, strict=True)))
    return lrs, moves


def test_cosine_schedule_after_a_warmup_follows_its_formula(
    demo_file: Path, tmp_path: Path
) -> None:
    # 2 epochs x 10 steps: warmup over steps 0..3, then half a cosine over steps 4..19.
    config = _config(demo_file, tmp_path / "run", lr_schedule="cosine", warmup_steps=4)
    lrs, moves = _lrs_and_moves(config, 20)
    assert lrs[:5] == pytest.approx([2.5e-3, 5e-3, 7.5e-3, 1e-2, 1e-2])
    assert lrs[8] == pytest.approx(1e-2 * (1 + np.cos(np.pi * 4 / 16)) / 2)  # 8.54e-3
    assert lrs[12] == pytest.approx(5e-3)  # halfway down the cosine
    assert lrs[19] == pytest.approx(1e-2 * (1 + np.cos(np.pi * 15 / 16)) / 2)  # 9.6e-5
    assert all(a >= b for a, b in itertools.pairwise(lrs[3:]))  # down from the peak
    # Adam's first step moves each weight by about lr (m / sqrt(v) = sign of its gradient):
    # the optimizer runs at the scheduled rate, not at lr.
    assert moves[0] == pytest.approx(2.5e-3, rel=1e-3)


def test_warmup_ramps_to_a_constant_rate(demo_file: Path, tmp_path: Path) -> None:
    lrs, _ = _lrs_and_moves(_config(demo_file, tmp_path / "run", warmup_steps=4), 7)
    assert lrs == pytest.approx([2.5e-3, 5e-3, 7.5e-3, 1e-2, 1e-2, 1e-2, 1e-2])
    plain, _ = _lrs_and_moves(_config(demo_file, tmp_path / "plain"), 3)
    assert plain == [1e-2, 1e-2, 1e-2]


def test_a_run_logs_its_rate_and_its_schedule_spans_the_run(
    demo_file: Path, tmp_path: Path
) -> None:
    # steps_per_epoch None: an epoch is one pass over the training windows.
    config = _config(demo_file, tmp_path / "run", lr_schedule="cosine", steps_per_epoch=None)
    result = train(config)
    steps = [r["steps"] for r in result.metrics]
    total = sum(steps)
    assert [r["lr"] for r in result.metrics] == pytest.approx(
        [1e-2 * (1 + np.cos(np.pi * sum(steps[: i + 1]) / total)) / 2 for i in range(2)]
    )
    assert result.metrics[-1]["lr"] == pytest.approx(0.0, abs=1e-12)  # the end of the cosine
    assert "lr" not in train(_config(demo_file, tmp_path / "plain")).metrics[0]


def test_a_cosine_run_resumes_only_with_its_length(demo_file: Path, tmp_path: Path) -> None:
    """More epochs would stretch the cosine the epochs done followed: refused, naming epochs.
    Under a constant rate, epochs may change on resume."""
    run = tmp_path / "run"
    train(_config(demo_file, run, epochs=1, lr_schedule="cosine"))
    with pytest.raises(ApprenticeError, match=r"different config \(epochs differ\)"):
        train(_config(demo_file, run, epochs=2, lr_schedule="cosine"))
    with pytest.raises(ApprenticeError, match=r"\(lr_schedule differ\)"):
        train(_config(demo_file, run, epochs=1))
    constant = tmp_path / "constant"
    train(_config(demo_file, constant, epochs=1, warmup_steps=3))
    assert train(_config(demo_file, constant, epochs=2, warmup_steps=3)).resumed_from_epoch == 1


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"lr_schedule": "linear"}, "unknown lr_schedule 'linear'; known: constant, cosine"),
        ({"warmup_steps": -1}, "warmup_steps must be >= 0, not -1"),
        ({"ema_decay": 0.0}, r"ema_decay must be in \(0, 1\) or None, not 0.0"),
        ({"ema_decay": 1.0}, r"ema_decay must be in \(0, 1\) or None, not 1.0"),
        ({"ema_decay": 0.99, "ema_power": 0.0}, "ema_power must be > 0"),
        (
            {"ema_decay": 0.99, "policy": DiffusionConfig()},
            "ema_decay is set, but the diffusion policy keeps its own EMA; turn one off",
        ),
    ],
)
def test_bad_levers_are_one_clear_error(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ApprenticeError, match=f"^train config: {message}"):
        TrainConfig(**kw)


def test_the_trainers_ema_is_allowed_for_a_diffusion_policy_without_its_own() -> None:
    config = TrainConfig(policy=DiffusionConfig(ema=False), ema_decay=0.999)
    assert not config.policy.keeps_ema and DiffusionConfig().keeps_ema
    assert TrainConfig.from_dict(config.to_dict()) == config
