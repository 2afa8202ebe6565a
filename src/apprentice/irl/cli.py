"""`apprentice irl`: one entry point for every algorithm of the irl package.

`--algo` picks the module: apprenticeship and maxent (tabular, on gridworlds) in `tabular`;
gail, airl and gaifo in `adversarial`; bco in `bco`; bc-rl in `hybrid`. Each is imported only
when asked for, so an algorithm whose module (or optional dependency) is missing is one clear
error, and the command's startup does not import stable-baselines3.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from typing import Any

from apprentice.errors import ApprenticeError
from apprentice.irl.common import ALGOS, IRLConfig, IRLResult

RUNNERS: dict[str, tuple[str, str]] = {
    "apprenticeship": ("apprentice.irl.tabular", "run_tabular"),
    "maxent": ("apprentice.irl.tabular", "run_tabular"),
    "gail": ("apprentice.irl.adversarial", "run_adversarial"),
    "airl": ("apprentice.irl.adversarial", "run_adversarial"),
    "gaifo": ("apprentice.irl.adversarial", "run_adversarial"),
    "bco": ("apprentice.irl.bco", "run_bco"),
    "bc-rl": ("apprentice.irl.hybrid", "run_bc_rl"),
}
"""algo -> (module, function) of its `run_*(cfg) -> IRLResult`."""


def resolve_runner(algo: str) -> Callable[[IRLConfig], IRLResult]:
    """The `run_*` function of `algo`, imported now; a missing module is an ApprenticeError."""
    if algo not in RUNNERS:
        raise ApprenticeError(f"unknown irl algorithm {algo!r}; known: {', '.join(ALGOS)}")
    module_name, fn_name = RUNNERS[algo]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name == module_name:
            raise ApprenticeError(
                f"irl --algo {algo}: its module {module_name} is not part of this build"
            ) from None
        if e.name is not None and e.name.split(".")[0] == "stable_baselines3":
            raise ApprenticeError(
                f"irl --algo {algo} needs stable-baselines3: pip install 'apprentice[interactive]'"
            ) from None
        raise
    fn: Callable[[IRLConfig], IRLResult] = getattr(module, fn_name)
    return fn


def run_irl(cfg: IRLConfig) -> IRLResult:
    """Check `cfg` and run its algorithm (what the command and the benchmarks call)."""
    if not cfg.task:
        raise ApprenticeError("irl: --task is required")
    # Each runner checks its own input (a discrete-only algorithm on a continuous task, demos
    # without a field it needs), where the knowledge of what it needs lives.
    return resolve_runner(cfg.algo)(cfg)


def _fmt(row: dict[str, Any], key: str, spec: str) -> str:
    value = row.get(key)
    return "-" if value is None else format(value, spec)


def cmd_irl(ns: argparse.Namespace) -> None:
    from rich.table import Table

    from apprentice.cli.args import dataclass_from_args
    from apprentice.cli.main import console

    cfg = dataclass_from_args(IRLConfig, ns)
    r = run_irl(cfg)
    table = Table(title=f"{cfg.algo} on {cfg.task}: the learner on held-out initial states")
    for col in ("env steps", "return", "normalized", "success", "D(expert) acc", "wall s"):
        table.add_column(col)
    for h in r.history:
        table.add_row(
            _fmt(h, "env_steps", "d"),
            _fmt(h, "mean_return", ".1f"),
            _fmt(h, "normalized_return", ".2f"),
            _fmt(h, "success_rate", ".0%"),
            _fmt(h, "acc_expert", ".2f"),
            _fmt(h, "wall_s", ".0f"),
        )
    console.print(table)
    console.print(f"run folder {r.run_dir}")


def irl_command() -> tuple[str, str, type, Callable[[argparse.Namespace], None], dict[str, Any]]:
    """The (name, help, config, function, extra) tuple of `apprentice irl`."""
    return (
        "irl",
        "inverse RL and adversarial imitation: apprenticeship, MaxEnt, GAIL, AIRL, GAIfO, "
        "BCO, BC+RL",
        IRLConfig,
        cmd_irl,
        {"choices": {"algo": list(ALGOS), "rl_algo": ["auto", "ppo", "sac"]}},
    )
