"""Seed ranges that keep evaluation honest.

Collection and training draw initial states from seeds below HELD_OUT_SEED_BASE;
evaluation draws them from at or above it, so a policy is never scored on an initial
state it was trained on.
"""

HELD_OUT_SEED_BASE = 1_000_000_000


def collection_seeds(start: int, n: int) -> list[int]:
    if start < 0 or start + n > HELD_OUT_SEED_BASE:
        raise ValueError(f"collection seeds must lie in [0, {HELD_OUT_SEED_BASE})")
    return list(range(start, start + n))


def held_out_seeds(n: int, offset: int = 0) -> list[int]:
    return [HELD_OUT_SEED_BASE + offset + i for i in range(n)]
