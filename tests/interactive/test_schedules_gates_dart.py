"""Beta schedules, the HG-DAgger gate, and DART's noise fit on synthetic data."""

from __future__ import annotations

from typing import Any, ClassVar, cast

import numpy as np
import pytest

from apprentice.errors import ApprenticeError
from apprentice.interactive.dagger import beta
from apprentice.interactive.dart import NoiseModel, fit_noise, learner_errors
from apprentice.interactive.gates import ActionGapGate
from apprentice.policies.base import Policy


def test_linear_schedule_reaches_the_pure_learner_in_the_last_round() -> None:
    assert [beta("linear", i, 4) for i in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]


def test_exponential_schedule_halves_each_round() -> None:
    assert [beta("exponential", i, 4, 0.5) for i in range(4)] == [1.0, 0.5, 0.25, 0.125]
    assert beta("exponential", 2, 9, 0.8) == pytest.approx(0.64)


def test_unknown_schedule_is_named() -> None:
    with pytest.raises(ApprenticeError, match="unknown beta schedule 'cosine'"):
        beta("cosine", 1, 3)


def test_gate_takes_over_on_a_gap_holds_and_hands_back() -> None:
    gate = ActionGapGate(threshold=0.5, release=0.1, min_steps=3)
    expert = np.zeros(2)
    gaps = [0.0, 0.2, 1.0, 0.0, 0.0, 0.0, 0.0, 0.3, 0.9, 0.05, 0.05, 0.05, 0.0]
    drives = [gate.expert_drives(np.array([g, 0.0]), expert) for g in gaps]
    # Takeover at the 1.0 gap, held 3 steps, handed back once the gap is under 0.1; the
    # second takeover at 0.9 waits out its 3 steps although the gap is small at once.
    assert drives == [
        False,
        False,
        True,
        True,
        True,
        False,
        False,
        False,
        True,
        True,
        True,
        False,
        False,
    ]
    assert gate.interventions == 2
    gate.reset()
    assert gate.expert_drives(np.zeros(2), expert) is False
    assert gate.interventions == 2


def test_gate_compares_only_the_chosen_dimensions() -> None:
    gate = ActionGapGate(threshold=0.5, dims=(0,))
    assert not gate.expert_drives(np.array([0.0, 5.0]), np.zeros(2))
    assert gate.expert_drives(np.array([1.0, 0.0]), np.zeros(2))


def test_fitted_noise_is_the_learner_error_covariance() -> None:
    rng = np.random.default_rng(0)
    true_cov = np.array([[0.04, 0.01, 0.0], [0.01, 0.09, 0.0], [0.0, 0.0, 0.01]])
    errors = rng.multivariate_normal(np.zeros(3), true_cov, size=20_000)
    model = fit_noise(errors, scale=1.0)
    np.testing.assert_allclose(model.cov, true_cov, atol=4e-3)
    np.testing.assert_allclose(model.std, np.sqrt(np.diag(true_cov)), rtol=0.05)
    # A biased learner: the second moment counts its bias too (DART eq. 6 is not centred).
    biased = fit_noise(np.full((10, 2), 0.3))
    np.testing.assert_allclose(biased.cov, np.full((2, 2), 0.09))


def test_noise_samples_follow_the_fit_and_spare_frozen_dims() -> None:
    cov = np.diag([0.04, 0.25, 1.0])
    model = NoiseModel(cov=cov, scale=4.0, frozen=(2,))
    rng = np.random.default_rng(1)
    samples = np.stack([model.sample(rng) for _ in range(5000)])
    assert np.all(samples[:, 2] == 0.0)
    np.testing.assert_allclose(samples[:, :2].std(axis=0), [0.4, 1.0], rtol=0.05)
    np.testing.assert_allclose(model.std, [0.4, 1.0, 0.0])


class _OffsetLearner:
    """A stand-in policy: obs "x" plus a fixed offset, and a reset counter (stateful use)."""

    obs_keys: ClassVar[list[str]] = ["x"]

    def __init__(self, offset: np.ndarray) -> None:
        self.offset = offset
        self.resets = 0

    def reset(self) -> None:
        self.resets += 1

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(obs["x"] + self.offset, dtype=np.float32)


def test_learner_errors_run_each_episode_from_a_reset(synthetic: Any) -> None:
    from apprentice.data.episode import Episode

    def episode(n: int) -> Episode:
        x = np.arange(2 * n, dtype=np.float32).reshape(n, 2) / 10
        z = np.zeros(n, dtype=np.float32)
        return Episode({"x": x}, {"x": x}, x.copy(), z, z, np.zeros((n, 1)))

    learner = _OffsetLearner(np.array([0.1, -0.2]))
    errors = learner_errors(cast(Policy, learner), [episode(3), episode(4)])
    assert errors.shape == (7, 2)
    np.testing.assert_allclose(errors, np.tile([0.1, -0.2], (7, 1)), atol=1e-6)
    assert learner.resets == 3  # before each episode, and after the last
    with pytest.raises(ApprenticeError, match="no expert steps"):
        learner_errors(cast(Policy, learner), [])
