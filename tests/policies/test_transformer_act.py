"""What the policy contract cannot see in the transformer and ACT policies and their helpers.

Causality of the transformer, ACT's KL term, temporal ensembling against a hand computation,
the open-loop action queue's replanning and per-row reset, and the horizon check.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from apprentice.algos import TrainConfig, train
from apprentice.algos.bc import batch_to_tensors
from apprentice.data.dataset import DemoDataset, WindowSampler
from apprentice.data.normalize import Normalizer
from apprentice.errors import ApprenticeError
from apprentice.policies import ACTConfig, TransformerConfig
from apprentice.policies.act import ACTPolicy, kl_to_standard_normal
from apprentice.policies.chunking import ActionQueue, TemporalEnsembler, check_horizon
from apprentice.policies.transformer import TransformerPolicy


@pytest.fixture(scope="module")
def data(demo_file: Path) -> tuple[DemoDataset, dict[str, Any]]:
    dataset = DemoDataset.load(demo_file, with_images=False)
    return dataset, Normalizer.fit(dataset).state_dict()


def _batch(dataset: DemoDataset, seq_len: int, frame_stack: int) -> dict[str, torch.Tensor]:
    sampler = WindowSampler(
        dataset,
        seq_len=seq_len,
        frame_stack=frame_stack,
        batch_size=16,
        rng=np.random.default_rng(0),
    )
    return batch_to_tensors(sampler.sample())


# ---- transformer ---------------------------------------------------------------------------


def _transformer(data: Any, **kw: Any) -> TransformerPolicy:
    torch.manual_seed(0)
    config = TransformerConfig(embed_dim=32, num_layers=2, num_heads=2, **kw)
    policy = config.build(data[0].spec, data[1])
    policy.eval()
    return policy


def test_transformer_is_causal(data: Any) -> None:
    policy = _transformer(data, frame_stack=5, seq_len=5)
    frames = torch.randn(3, 5, policy.obs_dim)  # (B, C, D)
    later = frames.clone()
    later[:, 3:] += torch.randn(3, 2, policy.obs_dim)  # change frames 3 and 4 only
    with torch.no_grad():
        h, h_later = policy.gpt(frames), policy.gpt(later)  # (B, C, E)
    torch.testing.assert_close(h[:, :3], h_later[:, :3], rtol=0, atol=1e-6)
    assert (h[:, 3:] - h_later[:, 3:]).abs().amax() > 1e-3


def test_transformer_trains_the_position_act_uses(data: Any) -> None:
    """The loss's last supervised position is exactly the run-time computation on that step."""
    policy = _transformer(data, frame_stack=4, seq_len=3)
    batch = _batch(data[0], seq_len=3, frame_stack=4)
    with torch.no_grad():
        x = policy.obs_windows(batch)  # (B, T, C * D)
        train_feat = policy.gpt(policy.frames(x[:, -1]))[:, -1]  # what loss() supervises last
        assert policy.linear is not None
        loss, _ = policy(batch)
        act_time = policy._act_step(x[:, -1], torch.zeros(x.shape[0], dtype=torch.bool))
    torch.testing.assert_close(policy.linear(train_feat).tanh(), act_time)
    assert torch.isfinite(loss)


def test_transformer_config_errors() -> None:
    with pytest.raises(ApprenticeError, match=r"seq_len=5.*frame_stack=3"):
        TransformerConfig(frame_stack=3, seq_len=5)
    with pytest.raises(ApprenticeError, match="num_heads=3 does not divide embed_dim=32"):
        TransformerConfig(embed_dim=32, num_heads=3)


# ---- ACT -----------------------------------------------------------------------------------


def _act(data: Any, **kw: Any) -> ACTPolicy:
    torch.manual_seed(0)
    config = ACTConfig(hidden_dim=32, num_heads=2, ff_dim=64, chunk_size=5, dropout=0.0, **kw)
    return config.build(data[0].spec, data[1])


def _posterior_kl(policy: ACTPolicy, batch: dict[str, torch.Tensor]) -> float:
    with torch.no_grad():
        x = policy.obs_windows(batch)
        actions, mask = policy.targets(batch, x.shape[1])
        mu, logvar = policy.posterior(policy.frames(x[:, 0]), actions, mask < 0.5)
        return float(kl_to_standard_normal(mu, logvar))


def test_act_kl_term_pulls_the_posterior_to_the_prior(data: Any) -> None:
    batch = _batch(data[0], seq_len=5, frame_stack=1)
    kls = {}
    for beta in (0.0, 10.0):
        policy = _act(data, kl_weight=beta)
        optimizer = torch.optim.Adam(policy.parameters(), lr=3e-3)
        policy.train()
        for _ in range(40):
            loss, _ = policy(batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        kls[beta] = _posterior_kl(policy, batch)
    # Without the term the encoder is free to spread z; with beta = 10 it stays near N(0, I).
    assert kls[10.0] < 0.2 * kls[0.0], kls


def test_act_loss_is_l1_plus_weighted_kl(data: Any) -> None:
    policy = _act(data, kl_weight=10.0)
    policy.eval()  # z = posterior mean: the loss is deterministic
    loss, info = policy(_batch(data[0], seq_len=5, frame_stack=1))
    assert float(info["kl"]) > 0
    assert float(loss.detach()) == pytest.approx(
        float(info["l1"]) + 10.0 * float(info["kl"]), rel=1e-5
    )


def test_act_config_ties_seq_len_to_the_chunk() -> None:
    assert ACTConfig(chunk_size=7).seq_len == 7
    with pytest.raises(ApprenticeError, match=r"seq_len=3 differs from chunk_size=7"):
        ACTConfig(chunk_size=7, seq_len=3)
    with pytest.raises(ApprenticeError, match="execute_horizon"):
        ACTConfig(chunk_size=7, execute_horizon=8)


def test_act_open_loop_queries_every_execute_horizon_steps(data: Any) -> None:
    policy = _act(data, temporal_ensemble=False, execute_horizon=2)
    calls: list[int] = []
    predict = policy.predict_chunk

    def counting(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        return predict(x)

    policy.predict_chunk = counting  # type: ignore[method-assign]
    obs = {k: v[:5] for k, v in data[0].obs.items()}
    for t in range(5):
        policy.act({k: v[t] for k, v in obs.items()})
    assert calls == [1, 1, 1]  # steps 0, 2, 4


# ---- chunk execution helpers ----------------------------------------------------------------


def test_temporal_ensembling_matches_a_hand_computation() -> None:
    k, m = 3, 0.5
    torch.manual_seed(0)
    chunks = [torch.randn(2, k, 1) for _ in range(5)]  # issued at steps 0..4, (B, k, A)
    ens = TemporalEnsembler(k, m)
    fresh = torch.zeros(2, dtype=torch.bool)
    out = [ens.step(c, fresh) for c in chunks]  # 5 x (B, A)
    for t in range(5):
        # ACT: predictions for step t, oldest first, weighted exp(-m * i), normalized.
        issued = list(range(max(0, t - k + 1), t + 1))
        preds = [chunks[s][:, t - s] for s in issued]  # oldest first, each (B, A)
        w = [math.exp(-m * i) for i in range(len(preds))]
        want = sum(wi * p for wi, p in zip(w, preds, strict=True)) / sum(w)
        torch.testing.assert_close(out[t], want)
    # Resetting row 1: its next action is its newest chunk's first entry; row 0 is untouched.
    ens2 = TemporalEnsembler(k, m)
    for c in chunks[:3]:
        ens2.step(c, fresh)
    ens2.reset(torch.tensor([1]))
    got = ens2.step(chunks[3], fresh)
    torch.testing.assert_close(got[1], chunks[3][1, 0])
    torch.testing.assert_close(got[0], out[3][0])


def test_action_queue_replans_every_ta_steps_and_resets_per_row() -> None:
    ta, tp = 3, 5
    plans: list[list[int]] = []
    step_of_plan: list[int] = []

    def plan(rows: torch.Tensor) -> torch.Tensor:
        plans.append(rows.tolist())
        # Chunk entries encode (plan number, row, index) so every action names its origin.
        n = len(plans)
        idx = torch.arange(tp, dtype=torch.float32)
        return (100.0 * n + 10.0 * rows[:, None] + idx)[..., None]  # (n, Tp, 1)

    queue = ActionQueue(ta)
    actions = []
    for t in range(7):
        fresh = torch.tensor([False, t == 4])  # row 1 starts a new episode at step 4
        before = len(plans)
        actions.append(queue.step(fresh, plan)[:, 0].tolist())  # (B,)
        if len(plans) > before:
            step_of_plan.append(t)
    # Both rows replan after Ta = 3 steps; the reset replans row 1 alone at step 4, which
    # puts it on its own schedule: at step 6 only row 0's queue is spent.
    assert step_of_plan == [0, 3, 4, 6]
    assert plans == [[0, 1], [0, 1], [1], [0]]
    assert queue.queries == 4
    row0, row1 = zip(*actions, strict=True)
    assert row0 == (100, 101, 102, 200, 201, 202, 400)
    assert row1 == (110, 111, 112, 210, 310, 311, 312)


def test_check_horizon_names_the_chunk_and_the_shortest_demo(data: Any) -> None:
    dataset = data[0]
    check_horizon(ACTConfig(chunk_size=30), dataset)  # the synthetic demos are 30 steps
    check_horizon(TransformerConfig(frame_stack=40, seq_len=40), dataset)  # not a chunk policy
    with pytest.raises(ApprenticeError, match=r"chunk_size=31 .*median .*demo_\d+: 30 steps"):
        check_horizon(ACTConfig(chunk_size=31), dataset)


def test_check_horizon_lets_a_few_demos_be_shorter_than_the_chunk(data: Any) -> None:
    """Push-T's expert ends some demos within a dozen steps: those windows are padded."""
    dataset = data[0]
    lengths = dataset.episode_lengths.copy()
    lengths[0] = 5
    short = dataclasses.replace(dataset, episode_lengths=lengths)
    check_horizon(ACTConfig(chunk_size=30), short)
    lengths[: len(lengths) // 2 + 1] = 5
    with pytest.raises(ApprenticeError, match=r"median training demo \(5 steps"):
        check_horizon(
            ACTConfig(chunk_size=30), dataclasses.replace(dataset, episode_lengths=lengths)
        )


def test_trainer_refuses_a_chunk_longer_than_a_demo(demo_file: Path, tmp_path: Path) -> None:
    config = TrainConfig(
        dataset=str(demo_file),
        out=str(tmp_path / "run"),
        policy=ACTConfig(chunk_size=40, hidden_dim=16, num_heads=2),
        epochs=1,
        steps_per_epoch=1,
        progress=False,
    )
    with pytest.raises(ApprenticeError, match=r"act policy: horizon chunk_size=40"):
        train(config)


def test_training_logs_the_loss_parts_to_tensorboard(demo_file: Path, tmp_path: Path) -> None:
    """ACT's l1 and kl go to TensorBoard beside the summed loss: a collapsed posterior (kl near
    0) is invisible in the sum."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    config = TrainConfig(
        dataset=str(demo_file),
        out=str(run),
        policy=ACTConfig(chunk_size=4, hidden_dim=16, num_heads=2, ff_dim=32),
        epochs=1,
        steps_per_epoch=4,
        log_every=2,
        progress=False,
    )
    train(config)
    events = EventAccumulator(str(run / "tb"))
    events.Reload()
    for tag in ("train/step_loss", "train/l1", "train/kl"):
        assert [e.step for e in events.Scalars(tag)] == [2, 4], tag
    l1, kl = (events.Scalars(t)[-1].value for t in ("train/l1", "train/kl"))
    loss = events.Scalars("train/step_loss")[-1].value
    assert loss == pytest.approx(l1 + config.policy.kl_weight * kl, rel=1e-5)
