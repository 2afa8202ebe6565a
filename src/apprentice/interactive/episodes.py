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

from apprentice.data.episode import Episode
from apprentice.envs.base import Task
from apprentice.interactive.dart import NoiseModel
from apprentice.interactive.experts import Expert
from apprentice.interactive.gates import Gate
from apprentice.policies.base import Policy

Mode = Literal["expert", "dart", "dagger", "hg"]


@dataclass
class EpisodeRecord:
    """What one interactive episode produced: labelled segments and its outcome."""

    segments: list[Episode] = field(default_factory=list)
    """Labelled stretches (one for every mode but hg, one per takeover for hg)."""
    episode_return: float = 0.0
    scored_return: float = 0.0
    """The return as evaluation (`rollout_batch`) scores it: the rewards up to and including
    the first success (all of them in an episode that never succeeds)."""
    success: bool = False
    steps: int = 0
    interventions: int = 0
    learner_steps: int = 0
    """Steps on which the learner's action was executed."""

    @property
    def labels(self) -> int:
        return sum(s.num_samples for s in self.segments)


class _Segment:
    """Steps being gathered into one Episode."""

    def __init__(self) -> None:
        self.obs: list[dict[str, np.ndarray]] = []
        self.next_obs: list[dict[str, np.ndarray]] = []
        self.actions: list[np.ndarray] = []
        self.rewards: list[float] = []
        self.dones: list[bool] = []
        self.states: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self.actions)

    def build(self, seed: int, success: bool, source: str, attrs: dict[str, Any]) -> Episode:
        dones = list(self.dones)
        dones[-1] = True  # a segment ends its stretch of data, as robomimic marks an end
        return Episode(
            obs={k: np.stack([o[k] for o in self.obs]) for k in self.obs[0]},
            next_obs={k: np.stack([o[k] for o in self.next_obs]) for k in self.next_obs[0]},
            actions=np.stack(self.actions).astype(np.float32),
            rewards=np.asarray(self.rewards, dtype=np.float32),
            dones=np.asarray(dones, dtype=np.float32),
            states=np.stack(self.states),
            seed=seed,
            success=success,
            source=source,
            attrs=dict(attrs),
        )


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
    away), as oracle collection does.
    """
    if mode in ("dagger", "hg") and learner is None:
        raise ValueError(f"mode {mode!r} needs a learner")
    if mode == "hg" and gate is None:
        raise ValueError("mode 'hg' needs a gate")
    obs, _ = task.reset(seed=seed)
    expert.reset()
    if learner is not None:
        learner.reset()
    if gate is not None:
        gate.reset()
    record = EpisodeRecord()
    interventions_before = gate.interventions if gate is not None else 0
    segment = _Segment()
    finished: list[_Segment] = []
    since_success = -1
    labels = 0
    for _ in range(task.horizon):
        label = expert.label(obs)  # (A,) the expert's action in this state, whoever drives
        proposal = learner.act(obs) if (learner is not None and mode != "expert") else None
        labelled = True
        if mode == "expert":
            executed = label
        elif mode == "dart":
            assert noise is not None
            executed = label + noise.sample(rng)
        elif mode == "dagger":
            assert proposal is not None
            use_expert = bool(rng.random() < beta)
            executed = label if use_expert else proposal
            record.learner_steps += not use_expert
        else:  # hg
            assert proposal is not None and gate is not None
            labelled = gate.expert_drives(proposal, label)
            executed = label if labelled else proposal
            record.learner_steps += not labelled
        executed = np.clip(np.asarray(executed, dtype=np.float32), -1.0, 1.0)
        state = task.get_state()
        next_obs, reward, terminated, truncated, info = task.step(executed)
        record.episode_return += float(reward)
        if not record.success:
            record.scored_return += float(reward)
        record.steps += 1
        if since_success >= 0:
            since_success += 1
        elif info.get("success", False):
            record.success, since_success = True, 0
        labels += labelled
        end = terminated or truncated or 0 <= steps_after_success <= since_success
        end = end or (max_labels is not None and labels >= max_labels)
        if labelled:
            segment.obs.append(obs)
            segment.next_obs.append(next_obs)
            segment.actions.append(label)
            segment.rewards.append(float(reward))
            segment.dones.append(bool(end))
            segment.states.append(state)
        elif len(segment):
            finished.append(segment)  # the expert handed back: a takeover segment ends
            segment = _Segment()
        obs = next_obs
        if end:
            break
    if len(segment):
        finished.append(segment)
    base = dict(attrs or {})
    record.segments = [
        s.build(seed, record.success, source, {**base, "segment": i})
        for i, s in enumerate(finished)
    ]
    if gate is not None:
        record.interventions = gate.interventions - interventions_before
    return record
