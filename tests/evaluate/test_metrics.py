import pytest

from apprentice.evaluate.metrics import success_rate, wilson_interval


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        (8, 10, 0.4902, 0.9433),  # textbook values for the Wilson score interval
        (0, 50, 0.0, 0.0714),
        (50, 50, 0.9286, 1.0),
        (25, 50, 0.3664, 0.6336),
    ],
)
def test_wilson_interval_matches_known_values(k: int, n: int, low: float, high: float) -> None:
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(low, abs=1e-3)
    assert hi == pytest.approx(high, abs=1e-3)


def test_interval_contains_the_rate_and_narrows_with_trials() -> None:
    small, large = success_rate(9, 10), success_rate(900, 1000)
    assert small.ci_low <= small.rate <= small.ci_high
    assert (large.ci_high - large.ci_low) < (small.ci_high - small.ci_low)


def test_impossible_counts_are_rejected() -> None:
    with pytest.raises(ValueError):
        wilson_interval(11, 10)
