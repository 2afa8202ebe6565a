"""The step interface every loop drives: gymnasium's `reset` and `step` with a dict observation.

Rollouts, collection and the robot-side control loop all step an env through these two calls;
a `Task` offers them and more. A leaf module, so that the robot side imports no simulator.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class StepEnv(Protocol):
    """gymnasium's `reset`/`step`, observations as a dict of arrays."""

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]: ...

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]: ...
