"""Normalizer statistics and their JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from apprentice.data import DemoDataset, Normalizer
from apprentice.errors import ApprenticeError


def _dataset() -> DemoDataset:
    rng = np.random.default_rng(0)
    n = 500
    return DemoDataset(
        obs={
            "eef_pos": rng.normal(2.0, 3.0, (n, 3)).astype(np.float32),
            "fixed": np.full((n, 2), 7.0, dtype=np.float32),
            "img": np.zeros((n, 4, 4, 3), dtype=np.uint8),
        },
        actions=rng.uniform(-1, 1, (n, 2)).astype(np.float32),
        episode_starts=np.array([0], dtype=np.int64),
        episode_lengths=np.array([n], dtype=np.int64),
        demo_names=["demo_0"],
        env_args={},
    )


def test_fit_normalizes_to_zero_mean_unit_std() -> None:
    ds = _dataset()
    norm = Normalizer.fit(ds)
    assert norm.obs_keys == ["eef_pos", "fixed"]  # images are the encoder's business
    z = norm.normalize_obs("eef_pos", ds.obs["eef_pos"])
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=0), 1, atol=1e-4)
    # A constant dimension maps to 0, not to inf/NaN.
    np.testing.assert_array_equal(norm.normalize_obs("fixed", ds.obs["fixed"]), 0)
    a = norm.normalize_action(ds.actions)
    np.testing.assert_allclose(norm.unnormalize_action(a), ds.actions, atol=1e-6)
    with pytest.raises(ApprenticeError, match="'img'"):
        norm.normalize_obs("img", ds.obs["img"])


def test_a_nearly_constant_dimension_does_not_amplify_noise() -> None:
    ds = _dataset()
    ds.obs["fixed"][:, 0] += np.random.default_rng(1).normal(0, 1e-5, len(ds.obs["fixed"]))
    norm = Normalizer.fit(ds)
    # At rollout a millimetre-sized deviation stays a small input, not a huge one.
    z = norm.normalize_obs("fixed", np.array([[7.001, 7.0]], dtype=np.float32))
    assert np.all(np.abs(z) < 0.2)


def test_state_dict_round_trips_through_json() -> None:
    ds = _dataset()
    norm = Normalizer.fit(ds)
    back = Normalizer.from_state_dict(json.loads(json.dumps(norm.state_dict())))
    x = ds.obs["eef_pos"][:10]
    np.testing.assert_array_equal(
        back.normalize_obs("eef_pos", x), norm.normalize_obs("eef_pos", x)
    )
    np.testing.assert_array_equal(back.action_stats[1], norm.action_stats[1])
    with pytest.raises(ApprenticeError, match="obs"):
        Normalizer.from_state_dict({"actions": {}})
