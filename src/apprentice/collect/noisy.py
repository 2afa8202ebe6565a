"""Human-like demonstrations: a task's scripted oracle with the defects people put in demos.

A person teleoperating a robot pauses to think, trembles, stops and goes, drops a cube and
grasps it again, and taps the gripper button by mistake. `HumanLikeOracle` wraps any
oracle and injects those defects at configurable per-episode rates, so that curation
(`apprentice.data.quality`) can be measured against a known answer: every episode records
in its attrs what was injected (`injected`, `noisy`), and a clean episode is exactly the
oracle's (the defects draw from their own random stream).

    pause         the hand stops (zero motion, grasp held) for `pause_steps` steps
    hesitation    stop-and-go: a few cycles of 2-3 steps still, 2-3 steps moving
    jitter        tremor: Gaussian noise of std `jitter_std` on the motion for a while
    failed_grasp  the hand opens a few steps after its first grasp and drops the object;
                  the oracle, which replans from the state, reaches and grasps again
    chatter       the grasp command flips to closed for 1-2 steps, 2-3 times, in free space

The defects act on the task's action arm by arm (`teleop.arms`): motion is each arm's delta
pose, and a grasp is a level (-1 open ... +1 closed) that the task maps to its grasp dims, so
a pause holds a hand's fingers where they are and a failed grasp opens all of them, on a
gripper, hand_grasp's 20 finger targets or either arm of a two-arm task alike.

`apprentice collect --task lift --noise human` records such demos with the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import numpy as np

from apprentice.collect.record import record_episode
from apprentice.data.episode import Episode
from apprentice.envs.base import Oracle, Task
from apprentice.errors import ApprenticeError
from apprentice.teleop.arms import arm_layout, hold_action

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
    """Steps at which the grasp command is flipped to closed."""
    chatter_arm: int = 0
    """The arm whose grasp chatters."""
    drop: bool = False
    drop_delay: int = 0
    drop_steps: int = 0


class HumanLikeOracle:
    """An oracle with injected human defects; `labels` says what this episode got.

    It satisfies the `Oracle` protocol, so `record_episode` records it like any actor.
    While the hand is held still the wrapped oracle is not asked (its phase timers stop,
    as a person's plan does); otherwise its action is taken and then altered. `task` is the
    task the oracle is bound to: its mapping turns held and changed grasp levels into
    actions.
    """

    def __init__(
        self, task: Task, oracle: Oracle, noise: HumanNoise, rng: np.random.Generator
    ) -> None:
        self.task = task
        self.layout = arm_layout(task)
        self.oracle = oracle
        self.noise = noise
        self.rng = rng
        self._plan = _Plan()
        self._t = 0
        self._levels = [-1.0] * len(self.layout.arms)  # each arm's grasp level, as held
        self._closed_at: int | None = None
        self._closed_arm = 0
        self.still = False
        """Whether the last action held the hand still (no exploration noise goes on it)."""

    def reset(self) -> None:
        self.oracle.reset()
        self._plan = self._draw()
        self._t = 0
        self._levels = [-1.0] * len(self.layout.arms)
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
            if len(self.layout.arms) > 1:  # drawn only then: one arm's plans stay the same
                plan.chatter_arm = int(rng.integers(len(self.layout.arms)))
        plan.injected = [name for name in DEFECTS if hits[name]]
        return plan

    @property
    def labels(self) -> dict[str, object]:
        """Episode attrs: `injected` (comma-separated defects, '' if none) and `noisy`."""
        return {"injected": ",".join(self._plan.injected), "noisy": bool(self._plan.injected)}

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        t, plan, layout = self._t, self._plan, self.layout
        self._t += 1
        self.still = t in plan.still
        if self.still:  # the pose held, each grasp at its level
            return hold_action(self.task, layout, self._levels).astype(np.float32)
        action = np.asarray(self.oracle.act(obs), dtype=np.float32).copy()
        levels = layout.levels(action)
        if self._closed_at is None:
            closed = [arm for arm, level in enumerate(levels) if level > 0]
            if closed:
                self._closed_at, self._closed_arm = t, closed[0]
        if t in plan.jitter:
            eef = list(layout.eef_dims)
            action[eef] += self.noise.jitter_std * self.rng.standard_normal(len(eef))
        if plan.drop and self._closed_at is not None:
            since = t - self._closed_at
            if plan.drop_delay <= since < plan.drop_delay + plan.drop_steps:
                self._set_level(action, self._closed_arm, -1.0)
        self._levels = layout.levels(action)
        if t in plan.chatter and self._closed_at is None:
            # A tap of the button; the held command stays open.
            self._set_level(action, plan.chatter_arm, 1.0)
        return np.clip(action, -1.0, 1.0)

    def _set_level(self, action: np.ndarray, arm: int, level: float) -> None:
        """Set arm `arm`'s grasp dims in `action` (A,) to the task's mapping of `level`."""
        levels = self.layout.levels(action)
        levels[arm] = level
        grasp = hold_action(self.task, self.layout, levels)
        block = self.layout.blocks[arm]
        eef = self.layout.eef(arm)
        action[eef.stop : block.stop] = grasp[eef.stop : block.stop]


def motion_dims(task: Task) -> list[int]:
    """The action dims that `--action-noise` perturbs: every arm's delta pose on an
    end-effector task (not its grippers, nor a hand's finger targets); on any other task
    (Push-T's planar target) every dim but the last, as before arms had layouts."""
    try:
        return list(arm_layout(task).eef_dims)
    except ApprenticeError:
        return list(range(int(task.action_space.shape[0]) - 1))


def add_motion_noise(
    action: np.ndarray, dims: list[int], std: float, rng: np.random.Generator
) -> np.ndarray:
    """A copy of `action` (A,) with Gaussian noise of `std` on `dims`, drawn from `rng`."""
    action = np.array(action, dtype=np.float64)
    action[dims] += std * rng.standard_normal(len(dims))
    return action


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
    human = HumanLikeOracle(task, oracle, noise, np.random.default_rng([seed, 2]))
    noise_rng = np.random.default_rng([seed, 1])
    dims = motion_dims(task)

    def act(obs: dict[str, np.ndarray]) -> np.ndarray:
        action = human.act(obs)
        if action_noise > 0 and not human.still:
            action = add_motion_noise(action, dims, action_noise, noise_rng)
        return action

    episode = record_episode(
        task, act, seed=seed, source="oracle:human", on_reset=human.reset, steps_after_success=after
    )
    return replace(episode, attrs={**episode.attrs, **human.labels})
