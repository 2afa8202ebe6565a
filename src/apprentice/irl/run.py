"""`run_irl`: one entry point for every algorithm of the irl package (`apprentice irl`).

`--algo` picks the module: apprenticeship and maxent (tabular, on gridworlds) in `tabular`;
gail, airl and gaifo in `adversarial`; bco in `bco`; bc-rl in `hybrid`. Each is imported only
when asked for, so an algorithm whose module (or optional dependency) is missing is one clear
error, and the command's startup does not import stable-baselines3.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from apprentice.errors import ApprenticeError
from apprentice.irl.common import ALGOS, IRLConfig, IRLResult
from apprentice.tracking import check_tracking

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
    check_tracking(cfg.wandb)
    # Each runner checks its own input (a discrete-only algorithm on a continuous task, demos
    # without a field it needs), where the knowledge of what it needs lives.
    return resolve_runner(cfg.algo)(cfg)
