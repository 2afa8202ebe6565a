"""DART: inject noise into the expert's own demos, scaled to the learner's error.

Laskey et al. (2017), "DART: Noise Injection for Robust Imitation Learning". Instead of
letting the learner drive (DAgger), the expert keeps the controls, but its executed action is
perturbed, a ~ N(pi*(s), Sigma), while the label stored is the clean pi*(s). The demos then
visit the states a learner that errs like this would reach, and show how the expert recovers.
DART's noise fit (their eq. 6) sets Sigma to the learner's error covariance on the expert's
states,

    Sigma = 1/N sum_t (pi_theta(s_t) - pi*(s_t)) (pi_theta(s_t) - pi*(s_t))^T,

which is what `fit_noise` computes from stored episodes: their observations in order (so a
recurrent learner sees each episode as it would at run time) and their expert labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from apprentice.data.episode import Episode
from apprentice.errors import ApprenticeError
from apprentice.policies.base import Policy


@dataclass(frozen=True)
class NoiseModel:
    """Zero-mean Gaussian action noise N(0, scale * cov) on all but `frozen` dimensions."""

    cov: np.ndarray
    """(A, A) covariance of the learner's error."""
    scale: float = 1.0
    """Multiplier of the fitted covariance (DART's alpha)."""
    frozen: tuple[int, ...] = ()
    """Action dimensions left noise-free (a gripper's open/close)."""

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """One noise vector (A,)."""
        cov = self.scale * np.asarray(self.cov, dtype=np.float64)
        mask = np.ones(cov.shape[0], dtype=bool)
        mask[list(self.frozen)] = False
        noise = np.zeros(cov.shape[0])
        if mask.any():
            sub = cov[np.ix_(mask, mask)]
            noise[mask] = rng.multivariate_normal(np.zeros(int(mask.sum())), sub, method="eigh")
        return noise.astype(np.float32)

    @property
    def std(self) -> np.ndarray:
        """(A,) per-dimension standard deviation of the noise, after scale and freezing."""
        std = np.sqrt(np.clip(np.diag(self.cov) * self.scale, 0.0, None))
        std[list(self.frozen)] = 0.0
        return std


def learner_errors(policy: Policy, episodes: Sequence[Episode]) -> np.ndarray:
    """(N, A) learner action minus expert label on every step of `episodes`, each rolled
    through the policy in order from a reset (its recurrent state as at run time)."""
    errors = []
    for ep in episodes:
        policy.reset()
        keys = policy.obs_keys
        for t in range(ep.num_samples):
            obs = {k: ep.obs[k][t] for k in keys}
            errors.append(policy.act(obs) - ep.actions[t])
    policy.reset()
    if not errors:
        raise ApprenticeError("DART noise fit: no expert steps to measure the learner on")
    return np.stack(errors).astype(np.float64)


def fit_noise(
    errors: np.ndarray, *, scale: float = 1.0, frozen: tuple[int, ...] = ()
) -> NoiseModel:
    """DART's noise from learner errors (N, A): their second moment E[e e^T] (eq. 6)."""
    errors = np.asarray(errors, dtype=np.float64)
    if errors.ndim != 2 or errors.shape[0] == 0:
        raise ApprenticeError(f"DART noise fit: errors must be (N, A), got {errors.shape}")
    cov = errors.T @ errors / errors.shape[0]  # (A, A)
    return NoiseModel(cov=cov, scale=scale, frozen=frozen)
