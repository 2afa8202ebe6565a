"""HG-DAgger gates: who drives this step, the learner or the expert who takes over.

In HG-DAgger (Kelly et al., 2019) a human expert watches the learner and takes the controls
when it drifts towards trouble, hands them back once the system is safe again, and only the
takeover segments are labelled (the human's own actions). A person does that through a
teleop device (`human.HumanGate`: a button press takes over); tests and benchmarks use
`ActionGapGate`, a scripted stand-in that takes over when the learner's action strays from
what the expert would do.

A gate is asked once per step, before the action is applied, and counts its interventions
(learner -> expert hand-overs) so reports can show how often the expert stepped in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Gate(Protocol):
    """Decides, step by step, whether the expert has the controls."""

    interventions: int
    """Hand-overs from learner to expert since construction."""

    def reset(self) -> None:
        """A new episode starts with the learner driving."""

    def expert_drives(self, learner_action: np.ndarray, expert_action: np.ndarray) -> bool:
        """Whether the expert drives this step, given both proposals (A,)."""
        ...


@dataclass
class ActionGapGate:
    """Takes over when |learner - expert| (L2 over `dims`) exceeds `threshold`; gives the
    controls back after at least `min_steps` once the learner's proposal is within
    `release` of the expert's again (hysteresis, so control does not flicker)."""

    threshold: float = 0.3
    """Action gap that makes the expert take over."""
    release: float = 0.15
    """Action gap under which the expert hands back (after min_steps)."""
    min_steps: int = 5
    """Shortest takeover, in steps: a person does not grab and drop the controls at once."""
    dims: tuple[int, ...] | None = None
    """Action dimensions compared; None = all."""
    interventions: int = 0
    _driving: bool = False
    _held: int = 0

    def reset(self) -> None:
        self._driving = False
        self._held = 0

    def _gap(self, learner_action: np.ndarray, expert_action: np.ndarray) -> float:
        diff = np.asarray(learner_action, np.float64) - np.asarray(expert_action, np.float64)
        if self.dims is not None:
            diff = diff[list(self.dims)]
        return float(np.linalg.norm(diff))

    def expert_drives(self, learner_action: np.ndarray, expert_action: np.ndarray) -> bool:
        gap = self._gap(learner_action, expert_action)
        if self._driving:
            self._held += 1
            if self._held >= self.min_steps and gap < self.release:
                self._driving = False
        elif gap > self.threshold:
            self._driving, self._held = True, 0
            self.interventions += 1
        return self._driving
