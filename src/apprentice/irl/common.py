"""What every algorithm behind `apprentice irl` takes and returns.

One config for the command line (`--algo` picks the algorithm; `--algo-args key=value`
overrides the algorithm's own settings) and one result, so the CLI, the report and the
benchmarks treat apprenticeship learning, MaxEnt IRL, GAIL, AIRL, GAIfO, BCO and the BC+RL
hybrid alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apprentice.errors import ApprenticeError

ALGOS = ("apprenticeship", "maxent", "gail", "airl", "gaifo", "bco", "bc-rl")
"""Names accepted by `--algo`."""
NEEDS_DEMOS = ("gail", "airl", "gaifo", "bco", "bc-rl")
"""Algorithms that learn from a demo file (the tabular ones sample their expert's demos)."""


@dataclass(frozen=True)
class IRLConfig:
    """An inverse-RL / adversarial-imitation / learning-from-observation run."""

    algo: str = "gail"
    """Algorithm: apprenticeship, maxent, gail, airl, gaifo, bco or bc-rl."""
    task: str = ""
    """Task name (a gridworld for the tabular algorithms, a gym/... or built-in task otherwise)."""
    demos: str = ""
    """Expert demonstrations (HDF5, robomimic layout; state-only files for bco and gaifo)."""
    out: str = "runs/irl"
    """Run folder: config, logs, learned reward and policy, report."""
    env_steps: int = 100_000
    """Environment steps the learner may take (the budget the benchmarks compare at)."""
    seed: int = 0
    """Seed of networks, the RL learner and the environments."""
    rl_algo: str = "auto"
    """RL learner inside the algorithm: ppo, sac, or auto (the algorithm's default)."""
    eval_episodes: int = 20
    """Episodes per evaluation of the learned policy (held-out seeds)."""
    eval_every: int = 0
    """Evaluate every this many environment steps (learning curves); 0 = only at the end."""
    algo_args: tuple[str, ...] = ()
    """key=value overrides of the algorithm's own config (see its docs)."""
    wandb: str | None = None
    """Also log the config and each round's (or iteration's) scalars to this Weights & Biases
    project (offline under out/wandb/ without W&B credentials or network); None = no W&B."""
    resume: bool = True
    """Continue a run found in out with the same config."""
    overwrite: bool = False
    """Delete a previous run in out and start afresh."""

    def __post_init__(self) -> None:
        if self.algo not in ALGOS:
            raise ApprenticeError(f"unknown irl algorithm {self.algo!r}; known: {', '.join(ALGOS)}")
        if self.algo in NEEDS_DEMOS and not self.demos:
            raise ApprenticeError(
                f"irl --algo {self.algo} learns from expert demos: pass --demos with an HDF5 "
                "file of them"
            )
        if self.env_steps < 1:
            raise ApprenticeError(f"irl: env_steps must be >= 1, got {self.env_steps}")
        if self.rl_algo not in ("auto", "ppo", "sac"):
            raise ApprenticeError(f"irl: rl_algo must be auto, ppo or sac, got {self.rl_algo!r}")
        object.__setattr__(self, "algo_args", tuple(self.algo_args))

    def parsed_algo_args(self) -> dict[str, str]:
        """`algo_args` as a dict; a malformed entry is an error that names it."""
        out: dict[str, str] = {}
        for item in self.algo_args:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ApprenticeError(f"irl: --algo-args entry {item!r} is not key=value")
            out[key] = value
        return out


@dataclass
class IRLResult:
    """What a run produced: its folder, a learning curve and the final numbers."""

    run_dir: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    """One row per evaluation: env_steps, mean_return, and where known normalized_return,
    success_rate, and algorithm-specific numbers (e.g. discriminator accuracy)."""
    final: dict[str, Any] = field(default_factory=dict)
    """The last evaluation plus algorithm-specific results (e.g. reward correlation)."""
