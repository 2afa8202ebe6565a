"""Human-like demonstrations: a task's scripted oracle with the defects people put in demos.

A person teleoperating a robot pauses to think, trembles, stops and goes, drops a cube and
grasps it again, and taps the gripper button by mistake. `HumanLikeOracle` wraps any
oracle and injects those defects at configurable per-episode rates, so that curation
(`apprentice.data.quality`) can be measured against a known answer: every episode records
in its attrs what was injected (`injected`, `noisy`), and a clean episode is exactly the
oracle's (the defects draw from their own random stream).

    pause         the hand stops (zero motion, gripper held) for `pause_steps` steps
    hesitation    stop-and-go: a few cycles of 2-3 steps still, 2-3 steps moving
    jitter        tremor: Gaussian noise of std `jitter_std` on the motion for a while
    failed_grasp  the hand opens a few steps after its first grasp and drops the object;
                  the oracle, which replans from the state, reaches and grasps again
    chatter       the gripper command flips to closed for 1-2 steps, 2-3 times, in free space

`apprentice collect --task lift --noise human` records such demos with the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import numpy as np

from apprentice.collect.record import record_episode
from apprentice.data.episode import Episode
from apprentice.envs.base import Oracle, Task
from apprentice.errors import ApprenticeError

DEFECTS = ("pause", "hesitation", "jitter", "failed_grasp", "chatter")


@dataclass(frozen=True)
class HumanNoise:
    """Per-episode probabilities and sizes of the injected defects (each drawn independently).

    With the default rates about 44% of episodes get at least one defect.
    """

    pause: float = 0.12
    """Probability that an episode holds one pause."""
    hesitation: float = 0.1
    """Probability of a stop-and-go stretch."""
    jitter: float = 0.12
    """Probability of a stretch of tremor."""
    failed_grasp: float = 0.1
    """Probability that the first grasp is let go and redone."""
    chatter: float = 0.1
    """Probability of gripper chatter in free space."""
    pause_steps: tuple[int, int] = (12, 25)
    """Length of a pause (steps, inclusive range)."""
    jitter_std: float = 0.4
    """Std of the tremor added to the motion actions."""
    jitter_steps: tuple[int, int] = (15, 30)
    """Length of the tremor stretch (steps)."""
    start_steps: tuple[int, int] = (3, 20)
    """Step at which a pause, hesitation or tremor starts."""

    def __post_init__(self) -> None:
        for name in DEFECTS:
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ApprenticeError(f"human noise: {name} rate must be in [0, 1], got {p}")
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, tuple) and not (0 <= v[0] <= v[1]):
                raise ApprenticeError(f"human noise: {f.name} must be a range lo <= hi, got {v}")


NOISE_PRESETS: dict[str, HumanNoise | None] = {"none": None, "human": HumanNoise()}
"""What `apprentice collect --noise NAME` injects."""


def noise_preset(name: str) -> HumanNoise | None:
    if name not in NOISE_PRESETS:
        raise ApprenticeError(f"unknown --noise {name!r}; choose one of {', '.join(NOISE_PRESETS)}")
    return NOISE_PRESETS[name]


@dataclass
class _Plan:
    """This episode's defects: which, and the steps at which each acts."""

    injected: list[str] = field(default_factory=list)
    still: set[int] = field(default_factory=set)
    """Steps at which the hand is held still (pause, hesitation)."""
    jitter: set[int] = field(default_factory=set)
    chatter: set[int] = field(default_factory=set)
    """Steps at which the gripper command is flipped to closed."""
    drop: bool = False
    drop_delay: int = 0
    drop_steps: int = 0


class HumanLikeOracle:
    """An oracle with injected human defects; `labels` says what this episode got.

    It satisfies the `Oracle` protocol, so `record_episode` records it like any actor.
    While the hand is held still the wrapped oracle is not asked (its phase timers stop,
    as a person's plan does); otherwise its action is taken and then altered.
    """

    def __init__(self, oracle: Oracle, noise: HumanNoise, rng: np.random.Generator) -> None:
        self.oracle = oracle
        self.noise = noise
        self.rng = rng
        self._plan = _Plan()
        self._t = 0
        self._gripper = -1.0
        self._dim = 7
        self._closed_at: int | None = None
        self.still = False
        """Whether the last action held the hand still (no exploration noise goes on it)."""

    def reset(self) -> None:
        self.oracle.reset()
        self._plan = self._draw()
        self._t = 0
        self._gripper = -1.0
        self._closed_at = None

    def _window(self, steps: tuple[int, int]) -> range:
        start = int(self.rng.integers(self.noise.start_steps[0], self.noise.start_steps[1] + 1))
        return range(start, start + int(self.rng.integers(steps[0], steps[1] + 1)))

    def _draw(self) -> _Plan:
        nz, rng = self.noise, self.rng
        plan = _Plan()
        # One uniform per defect, always drawn, so an episode's plan depends only on the seed.
        hits = {
            name: bool(u < getattr(nz, name))
            for name, u in zip(DEFECTS, rng.random(len(DEFECTS)), strict=True)
        }
        if hits["pause"]:
            plan.still.update(self._window(nz.pause_steps))
        if hits["hesitation"]:
            t = int(rng.integers(nz.start_steps[0], nz.start_steps[1] + 1))
            for _ in range(int(rng.integers(3, 6))):
                stop = int(rng.integers(2, 4))
                plan.still.update(range(t, t + stop))
                t += stop + int(rng.integers(2, 4))
        if hits["jitter"]:
            plan.jitter.update(self._window(nz.jitter_steps))
        if hits["failed_grasp"]:
            plan.drop = True
            plan.drop_delay = int(rng.integers(7, 11))
            plan.drop_steps = int(rng.integers(5, 9))
        if hits["chatter"]:
            t = int(rng.integers(2, 8))
            for _ in range(int(rng.integers(2, 4))):
                flip = int(rng.integers(1, 3))
                plan.chatter.update(range(t, t + flip))
                t += flip + int(rng.integers(1, 4))
        plan.injected = [name for name in DEFECTS if hits[name]]
        return plan

    @property
    def labels(self) -> dict[str, object]:
        """Episode attrs: `injected` (comma-separated defects, '' if none) and `noisy`."""
        return {"injected": ",".join(self._plan.injected), "noisy": bool(self._plan.injected)}

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        t, plan = self._t, self._plan
        self._t += 1
        self.still = t in plan.still
        if self.still:
            action = np.zeros(self._dim, dtype=np.float32)
            action[-1] = self._gripper
            return action
        action = np.asarray(self.oracle.act(obs), dtype=np.float32).copy()
        self._dim = len(action)
        if action[-1] > 0 and self._closed_at is None:
            self._closed_at = t
        if t in plan.jitter:
            action[:-1] += self.noise.jitter_std * self.rng.standard_normal(len(action) - 1)
        if plan.drop and self._closed_at is not None:
            since = t - self._closed_at
            if plan.drop_delay <= since < plan.drop_delay + plan.drop_steps:
                action[-1] = -1.0
        self._gripper = float(action[-1])
        if t in plan.chatter and self._closed_at is None:
            action[-1] = 1.0  # a tap of the button; the held command stays open
        return np.clip(action, -1.0, 1.0)


def collect_human_like(
    task: Task,
    oracle: Oracle,
    noise: HumanNoise,
    *,
    seed: int,
    after: int = 10,
    action_noise: float = 0.0,
) -> Episode:
    """One episode of `oracle` with human-like defects, recorded with its labels in attrs.

    The defects draw from the stream (seed, 2) and the optional Gaussian action noise from
    (seed, 1), as plain collection does, so the oracle's own draws are those of a clean run.
    """
    human = HumanLikeOracle(oracle, noise, np.random.default_rng([seed, 2]))
    noise_rng = np.random.default_rng([seed, 1])

    def act(obs: dict[str, np.ndarray]) -> np.ndarray:
        action = human.act(obs)
        if action_noise > 0 and not human.still:
            action = action.copy()
            action[:-1] += action_noise * noise_rng.standard_normal(len(action) - 1)
        return action

    episode = record_episode(
        task, act, seed=seed, source="oracle:human", on_reset=human.reset, steps_after_success=after
    )
    return replace(episode, attrs={**episode.attrs, **human.labels})
