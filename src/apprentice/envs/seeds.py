"""Seed ranges that keep evaluation honest, and every block carved out of them.

An initial state is drawn from a seed; the seed ranges below keep apart the states a policy
learns from and the states it is scored on.

    [0, HELD_OUT_SEED_BASE)        collection and training: `collect --seed`, generation's
                                   scenes, DAgger's rounds, IDM exploration, expert demos
    [HELD_OUT_SEED_BASE, ...)      held out, by offset:
        + EVAL_SEED_OFFSET         `apprentice eval`, DAgger's per-round scores, IRL scores
        + TRAINER_SEED_OFFSET      the trainer's periodic rollouts that pick best.pt
        + VALIDATION_SEED_OFFSET   DAgger's validation rollouts (best round by validation)

A policy is never scored on an initial state it was trained on, and model selection never
peeks at the states of the final evaluation.
"""

from __future__ import annotations

from apprentice.errors import ApprenticeError

HELD_OUT_SEED_BASE = 1_000_000_000
"""The first held-out seed; every seed below it may be used for collection and training."""

EVAL_SEED_OFFSET = 0
"""Held-out offset of the final evaluation (`apprentice eval`, DAgger's rounds, IRL scores)."""
TRAINER_SEED_OFFSET = 100_000
"""Held-out offset of the trainer's periodic rollouts (model selection)."""
VALIDATION_SEED_OFFSET = 200_000
"""Held-out offset of DAgger's validation rollouts."""

DAGGER_RUN_BLOCK = 1_000_000
"""Collection seeds of one DAgger run seed: [seed * DAGGER_RUN_BLOCK, + DAGGER_RUN_BLOCK)."""
DAGGER_ROUND_BLOCK = 10_000
"""Collection seeds of one DAgger round inside its run's block (its most episodes)."""

EXPLORATION_SEED_BASE = 500_000_000
"""IDM exploration (BCO, label-actions): the upper half of the collection range."""
EXPLORATION_RUN_BLOCK = 100_000
"""Exploration seeds of one exploration seed: [base + seed * block, + block)."""

EXPERT_DEMO_RUN_BLOCK = 100_000
"""Expert demos recorded for IRL (`record_expert_demos`) start at seed * this block."""


def collection_seeds(start: int, n: int) -> list[int]:
    """Seeds start .. start + n - 1, refused where they reach the held-out range."""
    if start < 0 or start + n > HELD_OUT_SEED_BASE:
        raise ValueError(f"collection seeds must lie in [0, {HELD_OUT_SEED_BASE})")
    return list(range(start, start + n))


def held_out_seeds(n: int, offset: int = EVAL_SEED_OFFSET) -> list[int]:
    """The first `n` held-out seeds at `offset` (one of the *_SEED_OFFSET blocks)."""
    return [HELD_OUT_SEED_BASE + offset + i for i in range(n)]


def dagger_seed(seed: int, round_index: int, episode: int) -> int:
    """Initial-state seed of episode `episode` of DAgger round `round_index` of run `seed`:
    disjoint blocks per (seed, round), all below the held-out range."""
    s = seed * DAGGER_RUN_BLOCK + round_index * DAGGER_ROUND_BLOCK + episode
    if episode >= DAGGER_ROUND_BLOCK or s >= HELD_OUT_SEED_BASE:
        raise ApprenticeError(f"dagger: too many episodes in round {round_index} ({episode})")
    return s


def exploration_seed(seed: int, episode: int) -> int:
    """Initial-state seed of IDM exploration episode `episode` under exploration seed `seed`."""
    return EXPLORATION_SEED_BASE + EXPLORATION_RUN_BLOCK * seed + episode


def expert_demo_seeds(seed: int, n: int) -> list[int]:
    """The initial-state seeds of `n` expert demos recorded with `seed` for IRL."""
    return collection_seeds(seed * EXPERT_DEMO_RUN_BLOCK, n)
