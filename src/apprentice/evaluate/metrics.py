"""Success rates with their uncertainty."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class SuccessRate:
    """successes / trials with a Wilson score interval (Wilson 1927)."""

    successes: int
    trials: int
    ci_low: float
    ci_high: float

    @property
    def rate(self) -> float:
        return self.successes / self.trials if self.trials else 0.0

    def __str__(self) -> str:
        return (
            f"{self.rate:.1%} ({self.successes}/{self.trials}, "
            f"95% CI {self.ci_low:.1%}-{self.ci_high:.1%})"
        )


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """The 95% Wilson score interval of a binomial proportion.

    Unlike the normal approximation it stays inside [0, 1] and is sensible at 0 or n
    successes, which is where policies often are.
    """
    if trials <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= trials:
        raise ValueError(f"successes={successes} outside [0, trials={trials}]")
    p = successes / trials
    denom = 1.0 + z * z / trials
    center = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return max(0.0, center - half), min(1.0, center + half)


def success_rate(successes: int, trials: int) -> SuccessRate:
    low, high = wilson_interval(successes, trials)
    return SuccessRate(successes, trials, low, high)
