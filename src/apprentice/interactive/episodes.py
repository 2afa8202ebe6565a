"""One interactive episode: who drives each step, and which steps the expert labels.

Every method of this package is this loop with a different driver:

| mode     | executed action                              | steps labelled           |
|----------|----------------------------------------------|--------------------------|
| expert   | the expert's                                 | all (plain demos, BC)    |
| dart     | the expert's plus DART noise                 | all, with the clean label|
| dagger   | the expert's with probability beta, else the learner's | all            |
| hg       | the learner's until the gate hands the expert the controls | takeover steps only |

The expert labels every state in shadow (its `label` is called each step whoever drives, so
a phase-machine oracle follows the episode), and the learner acts every step when it is in
the loop (so a recurrent learner's state follows the episode even on steps it does not
drive). What is stored as `actions` is always the expert's label, never the executed action.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from apprentice.collect.record import episode_from_steps
from apprentice.data.episode import Episode
from apprentice.envs.base import Task
from apprentice.evaluate.rollout import EpisodeResult, Step, rollout_batch
from apprentice.interactive.dart import NoiseModel
from apprentice.interactive.experts import Expert
from apprentice.interactive.gates import Gate
from apprentice.policies.base import Policy

Mode = Literal["expert", "dart", "dagger", "hg"]


@dataclass
class EpisodeRecord:
    """What one interactive episode produced: labelled segments and its outcome."""

    result: EpisodeResult
    """The episode as the rollout loop scores it (success, length, return up to success)."""
    segments: list[Episode] = field(default_factory=list)
    """Labelled stretches (one for every mode but hg, one per takeover for hg)."""
    interventions: int = 0
    learner_steps: int = 0
    """Steps on which the learner's action was executed."""

    @property
    def success(self) -> bool:
        return self.result.success

    @property
    def steps(self) -> int:
        return self.result.length

    @property
    def labels(self) -> int:
        return sum(s.num_samples for s in self.segments)


class _Segment:
    """Steps being gathered into one Episode."""

    def __init__(self) -> None:
        self.steps: list[Step] = []
        self.labels: list[np.ndarray] = []
        self.dones: list[bool] = []
        self.states: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self.labels)

    def build(self, seed: int, success: bool, source: str, attrs: dict[str, Any]) -> Episode:
        dones = list(self.dones)
        dones[-1] = True  # a segment ends its stretch of data, as robomimic marks an end
        return episode_from_steps(
            self.steps,
            actions=np.stack(self.labels).astype(np.float32),
            dones=dones,
            states=self.states,
            seed=seed,
            success=success,
            source=source,
            attrs=attrs,
        )


class _Driver:
    """Who drives one episode and what the expert labels: the rollout loop's policy (a batch
    of one env) and its recorder."""

    def __init__(
        self,
        task: Task,
        expert: Expert,
        mode: Mode,
        rng: np.random.Generator,
        learner: Policy | None,
        beta: float,
        gate: Gate | None,
        noise: NoiseModel | None,
        max_labels: int | None,
    ) -> None:
        self.task, self.expert, self.mode, self.rng = task, expert, mode, rng
        self.learner, self.beta, self.gate, self.noise = learner, beta, gate, noise
        self.max_labels = max_labels
        self.learner_steps = 0
        self.interventions_before = 0
        self.labelled_steps = 0
        self.segment = _Segment()
        self.finished: list[_Segment] = []
        # What the step in flight was chosen from: the expert's label, whether it is kept.
        self.label = np.zeros(0, dtype=np.float32)
        self.labelled = True
        self.state = np.zeros(0)

    def reset(self) -> None:
        self.expert.reset()
        if self.learner is not None:
            self.learner.reset()
        if self.gate is not None:
            self.gate.reset()
            self.interventions_before = self.gate.interventions

    def act_batch(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """(1, A) the executed action for the batch of one observation."""
        ob = {k: v[0] for k, v in obs.items()}
        label = self.expert.label(ob)  # (A,) the expert's action in this state, whoever drives
        learner, mode = self.learner, self.mode
        proposal = learner.act(ob) if (learner is not None and mode != "expert") else None
        labelled = True
        if mode == "expert":
            executed = label
        elif mode == "dart":
            assert self.noise is not None
            executed = label + self.noise.sample(self.rng)
        elif mode == "dagger":
            assert proposal is not None
            use_expert = bool(self.rng.random() < self.beta)
            executed = label if use_expert else proposal
            self.learner_steps += not use_expert
        else:  # hg
            assert proposal is not None and self.gate is not None
            labelled = self.gate.expert_drives(proposal, label)
            executed = label if labelled else proposal
            self.learner_steps += not labelled
        self.label, self.labelled = label, labelled
        return np.clip(np.asarray(executed, dtype=np.float32), -1.0, 1.0)[None]

    def before_step(self, env: int, action: np.ndarray) -> None:
        self.state = self.task.get_state()

    def after_step(self, env: int, step: Step) -> bool:
        self.labelled_steps += self.labelled
        stop = self.max_labels is not None and self.labelled_steps >= self.max_labels
        if self.labelled:
            self.segment.steps.append(step)
            self.segment.labels.append(self.label)
            self.segment.dones.append(step.done or stop)
            self.segment.states.append(self.state)
        elif len(self.segment):
            self.finished.append(self.segment)  # the expert handed back: a takeover ends
            self.segment = _Segment()
        return stop

    def segments(self) -> list[_Segment]:
        return [*self.finished, self.segment] if len(self.segment) else list(self.finished)


def run_episode(
    task: Task,
    expert: Expert,
    *,
    seed: int,
    mode: Mode,
    rng: np.random.Generator,
    learner: Policy | None = None,
    beta: float = 1.0,
    gate: Gate | None = None,
    noise: NoiseModel | None = None,
    max_labels: int | None = None,
    steps_after_success: int = 10,
    source: str = "dagger",
    attrs: dict[str, Any] | None = None,
) -> EpisodeRecord:
    """Run one episode from the initial state of `seed`; see the module docstring.

    `max_labels` ends the episode once that many steps are labelled (an exact label budget);
    `steps_after_success` keeps going that many steps past the first success (let go, back
    away), as oracle collection does (a negative value: the success does not end it).
    """
    if mode in ("dagger", "hg") and learner is None:
        raise ValueError(f"mode {mode!r} needs a learner")
    if mode == "hg" and gate is None:
        raise ValueError("mode 'hg' needs a gate")
    driver = _Driver(task, expert, mode, rng, learner, beta, gate, noise, max_labels)
    (result,) = rollout_batch(
        driver,
        [task],
        [seed],
        steps_after_success=steps_after_success if steps_after_success >= 0 else None,
        recorder=driver,
    )
    base = dict(attrs or {})
    record = EpisodeRecord(result, learner_steps=driver.learner_steps)
    record.segments = [
        s.build(seed, result.success, source, {**base, "segment": i})
        for i, s in enumerate(driver.segments())
    ]
    if gate is not None:
        record.interventions = gate.interventions - driver.interventions_before
    return record
