"""A sweep's summary: seeds pooled per group with the Wilson interval, the spread, the plot."""

from __future__ import annotations

import pytest

from apprentice.evaluate.metrics import wilson_interval
from apprentice.sweep.report import success_plot_png
from apprentice.sweep.summary import summarize, table_rows


def cell(method: str, demos: int, seed: int, successes: int, **extra: object) -> dict[str, object]:
    recipe = method if "-" in method else ""
    c = {"task": "lift", "obs": "low_dim", "policy": "rnn" if recipe else method,
         "demos": demos, "seed": seed, "recipe": recipe}  # fmt: skip
    return {"cell": c, "successes": successes, "episodes": 50, "train_s": 10.0, **extra}


def test_groups_pool_their_seeds_with_the_wilson_interval_and_the_spread() -> None:
    records = [
        cell("mlp", 50, 1, 30, mean_max_reward=0.7),
        cell("mlp", 50, 0, 40, mean_max_reward=0.9),
        cell("mlp", 200, 0, 50),
        cell("lift-lowdim", 200, 0, 49),
        cell("lift-lowdim", 200, 2, 45),
    ]
    groups = {(g.method, g.demos): g for g in summarize(records)}
    assert list(groups) == [("lift-lowdim", 200), ("mlp", 50), ("mlp", 200)]
    mlp = groups["mlp", 50].to_dict()
    assert [s["seed"] for s in mlp["seeds"]] == [0, 1]
    assert (mlp["successes"], mlp["episodes"], mlp["success_rate"]) == (70, 100, 0.7)
    assert (mlp["ci_low"], mlp["ci_high"]) == pytest.approx(wilson_interval(70, 100))
    assert mlp["seed_spread"] == pytest.approx(0.2) and mlp["mean_max_reward"] == 0.8
    assert groups["mlp", 200].to_dict()["mean_max_reward"] is None  # none recorded
    row = table_rows([groups["lift-lowdim", 200]])[0]
    assert row[:5] == ["lift", "low_dim", "lift-lowdim", "200", "94/100 (94.0%)"]
    assert row[6:8] == ["49/50 45/50", "8"]
    assert success_plot_png(list(groups.values())).startswith(b"\x89PNG")
