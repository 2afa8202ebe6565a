"""The shared trainer: run folder, best/last/final, determinism, resume after SIGKILL, errors."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import apprentice
import apprentice.algos.trainer as trainer_module
from apprentice.algos import TrainConfig, Trainer, train
from apprentice.algos.training_data import load_train_data
from apprentice.data import WindowSampler
from apprentice.errors import ApprenticeError
from apprentice.policies import (
    DiffusionConfig,
    MLPConfig,
    RNNConfig,
    TransformerConfig,
    check_task,
    load_checkpoint,
    load_policy,
    task_name,
)
from apprentice.policies.base import config_field_docs


def _config(demo_file: Path, out: Path, **kw: Any) -> TrainConfig:
    base: dict[str, Any] = {
        "dataset": str(demo_file),
        "out": str(out),
        "policy": MLPConfig(hidden_dims=(64, 64)),
        "epochs": 3,
        "steps_per_epoch": 5,
        "batch_size": 32,
        "lr": 1e-3,
        "progress": False,
        # One thread: tiny GEMMs gain nothing from two, and lose a lot on a busy machine.
        "threads": 1,
    }
    base.update(kw)
    return TrainConfig(**base)


def _records(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_train_writes_a_complete_run_folder(demo_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = train(_config(demo_file, run))
    assert json.loads((run / "config.json").read_text())["policy"]["name"] == "mlp"
    records = _records(run)
    assert [r["epoch"] for r in records] == [1, 2, 3]
    for r in records:
        assert {"train_loss", "valid_loss", "seconds", "steps_per_s"} <= set(r)
        assert r["valid_loss"] is not None and r["steps"] == 5
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    for name in ("last.pt", "best.pt", "final.pt"):
        assert (run / name).exists()
    assert any((run / "tb").iterdir())
    # Without rollouts, best.pt is the epoch of the lowest validation loss.
    best_epoch = min(records, key=lambda r: r["valid_loss"])["epoch"]
    assert result.best_epoch == best_epoch
    assert load_checkpoint(run / "best.pt")["extra"]["epoch"] == best_epoch
    assert result.best_metric == pytest.approx(records[best_epoch - 1]["valid_loss"])
    policy = load_policy(result.final_checkpoint)
    assert task_name(policy.env_args) == "lift"
    assert type(apprentice.load_policy(result.final_checkpoint)) is type(policy)
    obs = {k: np.zeros(d, np.float32) for k, d in policy.spec.obs_shapes.items()}
    assert policy.act(obs).shape == (7,)


def test_best_checkpoint_follows_the_rollout_success_rate(demo_file: Path, tmp_path: Path) -> None:
    rates = iter([0.2, 0.8, 0.5, 0.7])
    calls: list[int] = []

    def evaluate(policy: Any, episodes: int) -> dict[str, float]:
        calls.append(episodes)
        obs = {k: np.zeros(d, np.float32) for k, d in policy.spec.obs_shapes.items()}
        policy.act(obs)  # the callback may roll out; training must carry on afterwards
        return {"success_rate": next(rates)}

    run = tmp_path / "run"
    result = train(
        _config(demo_file, run, epochs=4, eval_every=2, eval_episodes=7), evaluate=evaluate
    )
    # Epochs 2 and 4 (every 2, and the last); best is epoch 4 (0.8 vs 0.2 -> second call).
    assert calls == [7, 7]
    records = _records(run)
    assert [r.get("success_rate") for r in records] == [None, 0.2, None, 0.8]
    assert result.best_epoch == 4 and result.best_metric == pytest.approx(0.8)


def _scripted_rollouts(results: list[tuple[float, float]]) -> Any:
    """A rollout callback returning (success_rate, mean_max_reward) in turn."""
    it = iter(results)

    def evaluate(policy: Any, episodes: int) -> dict[str, float]:
        success, reward = next(it)
        return {"success_rate": success, "mean_max_reward": reward}

    return evaluate


def test_a_tie_in_success_goes_to_the_higher_mean_best_reward(
    demo_file: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    evaluate = _scripted_rollouts([(0.5, 0.6), (0.5, 0.8), (0.5, 0.7), (0.25, 0.99)])
    result = train(_config(demo_file, run, epochs=4, eval_every=1), evaluate=evaluate)
    # Epoch 2 ties epoch 1's success with a higher reward; 3 ties lower; 4 has less success.
    assert [r["mean_max_reward"] for r in _records(run)] == [0.6, 0.8, 0.7, 0.99]
    assert result.best_epoch == 2 and result.best_metric == pytest.approx(0.5)
    assert load_checkpoint(run / "best.pt")["extra"]["epoch"] == 2


def test_a_last_pt_holding_a_plain_float_best_metric_resumes(
    demo_file: Path, tmp_path: Path
) -> None:
    """A last.pt whose best_metric is the success rate alone (no reward beside it) resumes:
    a higher success later takes best.pt, a lower one does not."""
    run = tmp_path / "run"
    kw: dict[str, Any] = {"eval_every": 1, "steps_per_epoch": 3}
    train(_config(demo_file, run, epochs=2, **kw), evaluate=_scripted_rollouts([(0.5, 0.5)] * 2))
    last = run / "last.pt"
    state = torch.load(last, map_location="cpu", weights_only=True)
    assert state["extra"]["best_metric"] == (0.5, 0.5) and state["extra"]["best_epoch"] == 1
    state["extra"]["best_metric"] = 0.5
    torch.save(state, last)
    lower = train(
        _config(demo_file, run, epochs=3, **kw), evaluate=_scripted_rollouts([(0.25, 1.0)])
    )
    assert lower.resumed_from_epoch == 2
    assert lower.best_epoch == 1 and lower.best_metric == pytest.approx(0.5)
    higher = train(
        _config(demo_file, run, epochs=4, **kw), evaluate=_scripted_rollouts([(0.75, 0.75)])
    )
    assert higher.best_epoch == 4 and higher.best_metric == pytest.approx(0.75)
    assert load_checkpoint(run / "best.pt")["extra"]["epoch"] == 4
    assert load_checkpoint(last)["extra"]["best_metric"] == (0.75, 0.75)


def test_same_seed_same_curve(demo_file: Path, tmp_path: Path) -> None:
    a = train(_config(demo_file, tmp_path / "a", policy=RNNConfig(hidden_dim=16, seq_len=4)))
    b = train(_config(demo_file, tmp_path / "b", policy=RNNConfig(hidden_dim=16, seq_len=4)))
    assert [r["train_loss"] for r in a.metrics] == [r["train_loss"] for r in b.metrics]
    wa = load_checkpoint(a.final_checkpoint)["state_dict"]
    wb = load_checkpoint(b.final_checkpoint)["state_dict"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


_SCRIPT = """
import json, sys
from apprentice.algos import TrainConfig, train
train(TrainConfig.from_dict(json.loads(sys.argv[1])))
"""


def test_resume_after_sigkill_loses_at_most_the_epoch_in_flight(
    demo_file: Path, tmp_path: Path
) -> None:
    kw: dict[str, Any] = {"epochs": 12, "steps_per_epoch": 20}
    run = tmp_path / "killed"
    config = _config(demo_file, run, **kw)
    script = tmp_path / "train_script.py"
    script.write_text(_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), json.dumps(config.to_dict())],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    metrics = run / "metrics.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.005)
    assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = len(_records(run))
    assert 3 <= killed_at < 12

    resumed = train(config)
    assert resumed.resumed_from_epoch >= killed_at - 1
    assert resumed.epochs_done == 12
    records = _records(run)
    assert [r["epoch"] for r in records] == list(range(1, 13))
    # Resuming restores weights, optimizer and sampler RNG: the curve is the uninterrupted one.
    straight = train(_config(demo_file, tmp_path / "straight", **kw))
    np.testing.assert_allclose(
        [r["train_loss"] for r in records], [r["train_loss"] for r in straight.metrics], rtol=1e-5
    )
    # Training again with the same config finds the run finished and does no more epochs.
    again = train(config)
    assert again.resumed_from_epoch == 12 and len(_records(run)) == 12


@pytest.mark.parametrize(
    "policy",
    [
        MLPConfig(hidden_dims=(64, 64)),
        TransformerConfig(embed_dim=32, num_layers=1, frame_stack=3, seq_len=2, dropout=0.1),
        DiffusionConfig(unet_channels=(16, 32), step_embed_dim=16, seq_len=8, inference_steps=2),
    ],
    ids=["mlp", "transformer-dropout", "diffusion-ema"],
)
def test_a_resumed_run_is_bit_identical_to_a_straight_one(
    demo_file: Path, tmp_path: Path, policy: Any
) -> None:
    """Two epochs, then a resume to four (epochs may change on resume), give the weights,
    best.pt, optimizer moments and losses of four straight epochs: last.pt carries the
    optimizer, the sampler's and torch's generators (dropout) and the policy's own state
    (diffusion's EMA and step counter)."""
    kw: dict[str, Any] = {"policy": policy, "steps_per_epoch": 4, "batch_size": 16}
    straight = train(_config(demo_file, tmp_path / "straight", epochs=4, **kw))
    run = tmp_path / "split"
    first = train(_config(demo_file, run, epochs=2, **kw))
    resumed = train(_config(demo_file, run, epochs=4, **kw))
    assert first.epochs_done == 2 and resumed.resumed_from_epoch == 2
    assert [r["train_loss"] for r in _records(run)] == [r["train_loss"] for r in straight.metrics]
    assert [r["valid_loss"] for r in _records(run)] == [r["valid_loss"] for r in straight.metrics]
    assert resumed.best_epoch == straight.best_epoch
    for name in ("final.pt", "best.pt"):
        a = load_checkpoint(straight.run_dir / name)["state_dict"]
        b = load_checkpoint(run / name)["state_dict"]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    moments = [
        load_checkpoint(r / "last.pt")["extra"]["optimizer"]["state"]
        for r in (run, straight.run_dir)
    ]
    for key, state in moments[0].items():
        assert all(torch.equal(v, moments[1][key][n]) for n, v in state.items())


def test_incompatible_run_folder_is_refused(demo_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(_config(demo_file, run, epochs=1))
    with pytest.raises(ApprenticeError, match=r"different config \(lr differ\)"):
        train(_config(demo_file, run, epochs=1, lr=5e-4))
    with pytest.raises(ApprenticeError, match="overwrite"):
        train(_config(demo_file, run, epochs=1, resume=False))
    result = train(_config(demo_file, run, epochs=2, lr=5e-4, overwrite=True))
    assert result.resumed_from_epoch == 0 and [r["epoch"] for r in _records(run)] == [1, 2]
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(ApprenticeError, match=r"no config\.json"):
        train(_config(demo_file, stranger))


def test_corrupt_or_truncated_checkpoints_raise_naming_the_path(
    demo_file: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    train(_config(demo_file, run, epochs=1))
    last = run / "last.pt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])
    with pytest.raises(ApprenticeError, match=re.escape(str(last))):
        train(_config(demo_file, run, epochs=2))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ApprenticeError, match=re.escape(str(garbage))):
        load_policy(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(ApprenticeError, match="not an apprentice checkpoint"):
        load_policy(foreign)
    with pytest.raises(ApprenticeError, match="does not exist"):
        load_policy(tmp_path / "missing.pt")


def test_checkpoint_from_another_task_is_rejected(demo_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = train(_config(demo_file, run, epochs=1))
    ckpt = load_checkpoint(result.final_checkpoint)
    check_task(ckpt["env_args"], "lift")
    with pytest.raises(ApprenticeError, match=r"trained for task 'lift', not 'stack'"):
        check_task(ckpt["env_args"], "stack", checkpoint=str(result.final_checkpoint))


def test_nan_actions_in_the_dataset_are_reported(synthetic: Any, tmp_path: Path) -> None:
    path = synthetic.write_demo_file(tmp_path / "nan.hdf5", nan_action=True)
    with pytest.raises(ApprenticeError, match="demo_1"):
        train(_config(path, tmp_path / "run"))


def _nan_at_call(monkeypatch: pytest.MonkeyPatch, call: int) -> None:
    """The trainer's step returns a NaN loss on its `call`-th call (the step itself is real)."""
    real = Trainer.step
    calls = {"n": 0}

    def flaky(self: Trainer, batch: dict[str, np.ndarray]) -> Any:
        calls["n"] += 1
        loss, info = real(self, batch)
        return (torch.full_like(loss, float("nan")) if calls["n"] == call else loss), info

    monkeypatch.setattr(Trainer, "step", flaky)


@pytest.mark.parametrize("every", [1, 4])
def test_nan_loss_names_epoch_and_step(
    demo_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, every: int
) -> None:
    # every=4: the losses are read back four steps at a time, as on a GPU (every 32 there);
    # the report still names the step, and the weights on disk stay those of epoch 1.
    monkeypatch.setattr(trainer_module, "readback_every", lambda device: every)
    _nan_at_call(monkeypatch, 8)  # epoch 2 (5 steps each), step 2
    run = tmp_path / "run"
    with pytest.raises(ApprenticeError, match="became nan at epoch 2, step 2"):
        train(_config(demo_file, run))
    assert load_checkpoint(run / "last.pt")["extra"]["epoch"] == 1
    assert [r["epoch"] for r in _records(run)] == [1]


def test_reading_losses_back_in_bulk_changes_nothing(
    demo_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The GPU's cadence (losses read back every few steps) trains the same run as the CPU's."""
    first = train(_config(demo_file, tmp_path / "a", log_every=3))
    monkeypatch.setattr(trainer_module, "readback_every", lambda device: 4)
    second = train(_config(demo_file, tmp_path / "b", log_every=3))
    assert [r["train_loss"] for r in first.metrics] == [r["train_loss"] for r in second.metrics]
    a = load_checkpoint(first.final_checkpoint)["state_dict"]
    b = load_checkpoint(second.final_checkpoint)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_step_trains_a_policy_built_elsewhere(demo_file: Path, tmp_path: Path) -> None:
    """`Trainer.for_policy(...).step` is the run's step: the same batches through it give
    the weights `train` gives (one epoch, no validation split)."""
    config = _config(demo_file, tmp_path / "run", epochs=1, valid_fraction=0.0)
    result = train(config)
    data = load_train_data(config)
    torch.manual_seed(config.seed)
    policy = config.policy.build(data.train.spec, data.normalizer_state)
    trainer = Trainer.for_policy(policy, config)
    # The loss comes from calling the module, where DistributedDataParallel hooks in.
    calls: list[int] = []
    policy.register_forward_hook(lambda module, args, out: calls.append(len(calls)))
    sampler = WindowSampler.for_policy(
        data.train, config.policy, batch_size=config.batch_size, rng=np.random.default_rng(0)
    )
    losses = []
    for _ in range(5):
        loss, info = trainer.step(sampler.sample())
        assert loss.ndim == 0 and not loss.requires_grad and set(info) == {"mse"}
        losses.append(float(loss))
    assert len(calls) == 5
    assert [r["train_loss"] for r in result.metrics] == [pytest.approx(np.mean(losses))]
    trained = load_checkpoint(result.final_checkpoint)["state_dict"]
    assert all(torch.equal(trained[k], v) for k, v in policy.state_dict().items())


def test_dataset_masks_pick_train_and_valid(synthetic: Any, tmp_path: Path) -> None:
    path = synthetic.write_demo_file(
        tmp_path / "masked.hdf5",
        masks={"train": ["demo_0", "demo_1", "demo_2", "demo_3"], "valid": ["demo_4"]},
    )
    data = load_train_data(_config(path, tmp_path / "run"))
    assert list(data.train.demo_names) == ["demo_0", "demo_1", "demo_2", "demo_3"]
    assert data.valid is not None and list(data.valid.demo_names) == ["demo_4"]
    # Without masks: a seeded 10% split, disjoint and complete.
    plain = load_train_data(
        _config(synthetic.write_demo_file(tmp_path / "p.hdf5", num_demos=10), tmp_path / "r")
    )
    names = set(plain.train.demo_names) | set(plain.valid.demo_names)
    assert len(plain.valid.demo_names) == 1 and len(names) == 10


def test_missing_dataset_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ApprenticeError, match=r"nope\.hdf5"):
        train(_config(tmp_path / "nope.hdf5", tmp_path / "run"))


def test_bf16_precision_trains(demo_file: Path, tmp_path: Path) -> None:
    result = train(_config(demo_file, tmp_path / "run", precision="bf16", epochs=3))
    losses = [r["train_loss"] for r in result.metrics]
    assert losses[-1] < losses[0]
    with pytest.raises(ApprenticeError, match="precision"):
        _config(demo_file, tmp_path / "x", precision="fp8")


def test_save_every_keeps_the_weights_of_those_epochs(demo_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(_config(demo_file, run, epochs=4, save_every=2))
    assert sorted(p.name for p in run.glob("epoch_*.pt")) == ["epoch_2.pt", "epoch_4.pt"]
    assert load_checkpoint(run / "epoch_2.pt")["extra"]["epoch"] == 2
    final, last_kept = load_policy(run / "final.pt"), load_policy(run / "epoch_4.pt")
    for a, b in zip(final.parameters(), last_kept.parameters(), strict=True):
        assert torch.equal(a, b)


def test_every_train_config_field_is_documented() -> None:
    docs = config_field_docs(TrainConfig)
    assert all(docs.get(f.name) for f in dataclasses.fields(TrainConfig))
    config = TrainConfig(dataset="x.hdf5", policy=RNNConfig(head="gmm"))
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_a_run_folder_in_the_older_config_layout_resumes(demo_file: Path, tmp_path: Path) -> None:
    """config.json written before the settings had one name each (`out_dir`, `num_threads`)
    and before the camera settings had their own config still resumes: it is read into
    today's layout before the comparison."""
    run = tmp_path / "run"
    kw: dict[str, Any] = {"steps_per_epoch": 3}
    train(_config(demo_file, run, epochs=1, **kw))
    config_json = run / "config.json"
    stored = json.loads(config_json.read_text())
    stored["out_dir"] = stored.pop("out")
    stored["num_threads"] = stored.pop("threads")
    stored["policy"].update(encoder="conv", random_shift=4)  # flat camera fields, defaults
    config_json.write_text(json.dumps(stored))
    resumed = train(_config(demo_file, run, epochs=2, **kw))
    assert resumed.resumed_from_epoch == 1 and resumed.epochs_done == 2
    stored["lr"] = 0.5  # a real difference is still refused, by name
    config_json.write_text(json.dumps(stored))
    with pytest.raises(ApprenticeError, match=r"\(lr differ\)"):
        train(_config(demo_file, run, epochs=3, **kw))
