"""Policy-specific behaviour: the GMM likelihood, sampling, and the RNN's rollout horizon."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import distributions as D

from apprentice.data.spec import ObsActSpec
from apprentice.policies import GMMConfig, RNNConfig
from apprentice.policies.gmm import GMMHead

SPEC = ObsActSpec({"eef_pos": (3,), "object": (5,)}, 7)


def _obs(rng: np.random.Generator, steps: int) -> list[dict[str, np.ndarray]]:
    return [
        {
            "eef_pos": rng.normal(size=3).astype(np.float32),
            "object": rng.normal(size=5).astype(np.float32),
        }
        for _ in range(steps)
    ]


@pytest.mark.parametrize("use_tanh", [False, True])
def test_gmm_log_prob_matches_torch_distributions(use_tanh: bool) -> None:
    torch.manual_seed(0)
    head = GMMHead(16, 7, num_modes=5, min_std=1e-4, use_tanh=use_tanh)
    h = torch.randn(4, 3, 16)  # (B, T, H)
    actions = torch.rand(4, 3, 7) * 1.8 - 0.9  # (B, T, A)
    means, stds, logits = head(h)
    base = D.MixtureSameFamily(
        D.Categorical(logits=logits), D.Independent(D.Normal(means, stds), 1)
    )
    if use_tanh:
        expected = D.TransformedDistribution(base, [D.TanhTransform()]).log_prob(actions)
    else:
        expected = base.log_prob(actions)
    torch.testing.assert_close(head.log_prob(h, actions), expected, atol=1e-3, rtol=1e-4)


def test_gmm_sampling_is_reproducible_after_reset() -> None:
    torch.manual_seed(0)
    policy = GMMConfig(hidden_dims=(32,), deterministic_act=False, low_noise_eval=False).build(
        SPEC, {}
    )
    stream = _obs(np.random.default_rng(0), 5)
    first = np.stack([policy.act(o) for o in stream])
    policy.reset()
    np.testing.assert_array_equal(np.stack([policy.act(o) for o in stream]), first)
    # Sampling with the predicted stds is not the deterministic mode-mean action.
    det = GMMConfig(hidden_dims=(32,)).build(SPEC, {})
    det.load_state_dict(policy.state_dict())
    assert not np.allclose(np.stack([det.act(o) for o in stream]), first)


def _rnn(**kw: Any) -> Any:
    torch.manual_seed(0)
    return RNNConfig(hidden_dim=16, **kw).build(SPEC, {})


def test_rnn_restarts_its_hidden_state_every_horizon_steps() -> None:
    stream = _obs(np.random.default_rng(1), 7)
    policy = _rnn(rnn_horizon=3)
    actions = [policy.act(o) for o in stream]
    policy.reset()
    # Step 3 starts a fresh hidden state, as robomimic's rollout does every `horizon` steps.
    np.testing.assert_allclose(actions[3], policy.act(stream[3]), atol=1e-6)
    never = _rnn(rnn_horizon=0)
    kept = [never.act(o) for o in stream]
    never.reset()
    assert not np.allclose(kept[3], never.act(stream[3]), atol=1e-6)
    np.testing.assert_allclose(kept[:3], actions[:3], atol=1e-6)


def test_rnn_defaults_follow_robomimic() -> None:
    config = RNNConfig()
    assert (config.hidden_dim, config.num_layers, config.seq_len, config.rnn_horizon) == (
        400,
        2,
        10,
        10,
    )
    assert GMMConfig().num_modes == 5 and RNNConfig(head="gmm").num_modes == 5
