"""The share of demos held out for validation: one rule for every command that splits demos.

A leaf module (no torch, no data layer), so that `collect`, `generate` and `teleop`, whose
worker processes import them, check the share before any work without paying for imports.
"""

from __future__ import annotations

from apprentice.errors import ApprenticeError


def check_valid_fraction(fraction: float, what: str) -> None:
    """In [0, 1), so that some demos are left to train on; `what` names the flag or field."""
    if not 0.0 <= fraction < 1.0:
        raise ApprenticeError(
            f"{what} must be in [0, 1) (the share of demos held out for validation), not {fraction}"
        )
