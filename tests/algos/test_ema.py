"""The trainer's EMA of the policy's weights: its formula, the policy that validates, rolls
out and is saved, and a resume (with a schedule too) that goes on bit for bit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from apprentice.algos import TrainConfig, Trainer, train
from apprentice.algos.bc import bc_validation_loss
from apprentice.algos.training_data import load_train_data
from apprentice.data import WindowSampler
from apprentice.policies import (
    DiffusionConfig,
    MLPConfig,
    TransformerConfig,
    load_checkpoint,
    load_policy,
)


def _config(demo_file: Path, out: Path, **kw: Any) -> TrainConfig:
    base: dict[str, Any] = {
        "dataset": str(demo_file),
        "out": str(out),
        "policy": MLPConfig(hidden_dims=(32, 32)),
        "epochs": 2,
        "steps_per_epoch": 4,
        "batch_size": 16,
        "lr": 1e-2,
        "progress": False,
        "threads": 1,
    }
    return TrainConfig(**{**base, **kw})


def _weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(a: Any, b: Any) -> bool:
    """Equal nests of dicts, lists, tensors (bit for bit) and plain values."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    return bool(a == b)


def _stepped(config: TrainConfig, steps: int) -> tuple[Trainer, list[dict[str, Any]]]:
    """A `for_policy` trainer after `steps` steps; per step, the trained and averaged weights."""
    data = load_train_data(config)
    torch.manual_seed(0)
    policy = config.policy.build(data.train.spec, data.normalizer_state)
    trainer = Trainer.for_policy(policy, config)
    sampler = WindowSampler.for_policy(
        data.train, config.policy, batch_size=config.batch_size, rng=np.random.default_rng(0)
    )
    history = []
    for _ in range(steps):
        trainer.step(sampler.sample())
        average = None if trainer.ema is None else _weights(trainer.ema.policy)
        history.append({"trained": _weights(policy), "average": average})
    return trainer, history


def test_the_average_warms_up_as_a_power_law_then_holds_its_decay(
    demo_file: Path, tmp_path: Path
) -> None:
    """decay after n updates = min(1 - n^-0.75, ema_decay): updates 1 and 2 copy the weights,
    update 3 keeps 2^-0.75 of the new ones, update 4 is capped at ema_decay = 0.5."""
    trainer, steps = _stepped(_config(demo_file, tmp_path / "run", ema_decay=0.5), 4)
    assert trainer.ema is not None and trainer.ema.updates == 4
    names = [name for name, _ in trainer.policy.named_parameters()]
    for n in (0, 1):
        assert _same(steps[n]["average"], steps[n]["trained"])
    w2, w3, w4 = (steps[n]["trained"] for n in (1, 2, 3))
    a3, a4 = steps[2]["average"], steps[3]["average"]
    keep = 1 - 2**-0.75  # 0.405, under the cap
    for name in names:
        torch.testing.assert_close(a3[name], keep * w2[name] + (1 - keep) * w3[name])
        torch.testing.assert_close(a4[name], 0.5 * a3[name] + 0.5 * w4[name])
    assert any(not torch.equal(a4[name], w4[name]) for name in names)
    # Normalizer statistics are buffers: copied, never averaged, and nothing of the average
    # trains (the trained weights are those of a run without it).
    assert all(torch.equal(a4[k], w4[k]) for k in ("obs_mean", "obs_std"))
    assert not any(p.requires_grad for p in trainer.ema.policy.parameters())
    _, plain = _stepped(_config(demo_file, tmp_path / "plain"), 4)
    assert _same(plain[3]["trained"], w4)


def test_checkpoints_validation_and_rollouts_use_the_average(
    demo_file: Path, tmp_path: Path
) -> None:
    seen: list[dict[str, torch.Tensor]] = []

    def evaluate(policy: Any, episodes: int) -> dict[str, float]:
        seen.append(_weights(policy))
        policy.act({k: np.zeros(d, np.float32) for k, d in policy.spec.obs_shapes.items()})
        return {"success_rate": 0.5}  # best.pt stays at epoch 1

    run = tmp_path / "run"
    config = _config(demo_file, run, ema_decay=0.9, eval_every=1, save_every=2)
    trainer = Trainer(config, evaluate=evaluate)
    result = trainer.fit()
    assert trainer.ema is not None
    average, trained = _weights(trainer.ema.policy), _weights(trainer.policy)
    assert not _same(average, trained)
    final = load_checkpoint(run / "final.pt")["state_dict"]
    assert _same(final, average) and _same(seen[1], average)
    assert _same(load_checkpoint(run / "epoch_2.pt")["state_dict"], average)
    assert result.best_epoch == 1 and _same(load_checkpoint(run / "best.pt")["state_dict"], seen[0])
    # last.pt acts with the average too, and keeps the trained weights for a resume.
    last = load_checkpoint(run / "last.pt")
    assert _same(last["state_dict"], average)
    assert _same(last["extra"]["ema"], {"updates": 8, "trained_weights": trained})
    # The validation loss is the saved policy's, not the trained one's.
    data = trainer.data
    assert data.valid is not None

    def valid_loss(policy: Any) -> float | None:
        windows = WindowSampler.for_policy(
            data.valid,
            config.policy,
            batch_size=config.batch_size,
            rng=np.random.default_rng(config.seed + 1),
        )
        return bc_validation_loss(policy, windows.epoch())

    assert result.metrics[-1]["valid_loss"] == valid_loss(load_policy(run / "final.pt"))
    assert result.metrics[-1]["valid_loss"] != valid_loss(trainer.policy)


@pytest.mark.parametrize(
    "policy",
    [
        MLPConfig(hidden_dims=(32, 32)),
        TransformerConfig(embed_dim=32, num_layers=1, frame_stack=3, seq_len=2, dropout=0.1),
        DiffusionConfig(
            unet_channels=(16, 32), step_embed_dim=16, seq_len=8, inference_steps=2, ema=False
        ),
    ],
    ids=["mlp", "transformer-dropout", "diffusion-trainer-ema"],
)
def test_an_interrupted_run_with_schedule_and_ema_resumes_bit_for_bit(
    demo_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy: Any
) -> None:
    """Stopped after 2 of 4 epochs and run again, a cosine-with-warmup run with the EMA on
    gives the losses, rates, checkpoints and last.pt (optimizer, scheduler, average, trained
    weights, generators) of the same 4 epochs run straight."""
    kw: dict[str, Any] = {"policy": policy, "epochs": 4, "steps_per_epoch": 3}
    kw |= {"lr_schedule": "cosine", "warmup_steps": 4, "ema_decay": 0.9}
    straight = train(_config(demo_file, tmp_path / "straight", **kw))
    run = tmp_path / "split"
    run_epoch = Trainer.run_epoch

    def stop_at_epoch_3(self: Trainer, epoch: int) -> dict[str, Any]:
        if epoch == 3:
            raise KeyboardInterrupt
        return run_epoch(self, epoch)

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "run_epoch", stop_at_epoch_3)
        with pytest.raises(KeyboardInterrupt):
            train(_config(demo_file, run, **kw))
    resumed = train(_config(demo_file, run, **kw))
    assert resumed.resumed_from_epoch == 2 and resumed.best_epoch == straight.best_epoch
    for key in ("train_loss", "valid_loss", "lr"):
        assert [r[key] for r in resumed.metrics] == [r[key] for r in straight.metrics], key
    for name in ("final.pt", "best.pt", "last.pt"):
        a, b = (load_checkpoint(r / name) for r in (straight.run_dir, run))
        assert _same(a["state_dict"], b["state_dict"]) and _same(a["extra"], b["extra"]), name
