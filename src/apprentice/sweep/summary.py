"""A sweep's results per cell group (task x observations x policy or recipe x demos): the
seeds' successes pooled, with the 95% Wilson interval, each seed's, and their spread."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich import box
from rich.table import Table

from apprentice.evaluate.metrics import success_rate
from apprentice.files import write_text_atomic

SUMMARY_FILE = "summary.json"


@dataclass(frozen=True)
class SeedResult:
    """One cell of a group: its training seed's successes."""

    seed: int
    successes: int
    episodes: int

    @property
    def rate(self) -> float:
        return self.successes / self.episodes


@dataclass(frozen=True)
class GroupSummary:
    """The cells of one group (one per training seed), pooled."""

    task: str
    obs: str
    method: str
    """The recipe, or the policy kind."""
    demos: int
    seeds: tuple[SeedResult, ...]
    """In seed order."""
    mean_max_reward: float | None
    """The mean over the cells of their mean best reward (Push-T's coverage score); None
    where a cell has none."""
    train_s: float
    """Mean training seconds of a cell."""

    @property
    def successes(self) -> int:
        return sum(s.successes for s in self.seeds)

    @property
    def episodes(self) -> int:
        return sum(s.episodes for s in self.seeds)

    @property
    def seed_spread(self) -> float:
        """Best minus worst seed's success rate."""
        rates = [s.rate for s in self.seeds]
        return max(rates) - min(rates)

    def to_dict(self) -> dict[str, Any]:
        pooled = success_rate(self.successes, self.episodes)
        return {
            "task": self.task,
            "obs": self.obs,
            "method": self.method,
            "demos": self.demos,
            "successes": pooled.successes,
            "episodes": pooled.trials,
            "success_rate": pooled.rate,
            "ci_low": pooled.ci_low,
            "ci_high": pooled.ci_high,
            "seeds": [{**asdict(s), "success_rate": s.rate} for s in self.seeds],
            "seed_spread": self.seed_spread,
            "mean_max_reward": self.mean_max_reward,
            "train_s": self.train_s,
        }


def summarize(records: Iterable[dict[str, Any]]) -> list[GroupSummary]:
    """The groups of finished cell `records` (cells.jsonl's latest line per cell), sorted by
    task, observations, method and demos."""
    groups: dict[tuple[str, str, str, int], list[dict[str, Any]]] = {}
    for r in records:
        c = r["cell"]
        method = c.get("recipe") or c["policy"]
        groups.setdefault((c["task"], c["obs"], method, int(c["demos"])), []).append(r)
    out = []
    for (task, obs, method, demos), cells in sorted(groups.items()):
        cells.sort(key=lambda r: r["cell"]["seed"])
        seeds = tuple(
            SeedResult(int(r["cell"]["seed"]), int(r["successes"]), int(r["episodes"]))
            for r in cells
        )
        rewards = [
            float(r["mean_max_reward"]) for r in cells if r.get("mean_max_reward") is not None
        ]
        reward = sum(rewards) / len(rewards) if len(rewards) == len(cells) else None
        train_s = sum(float(r.get("train_s", 0.0)) for r in cells) / len(cells)
        out.append(GroupSummary(task, obs, method, demos, seeds, reward, train_s))
    return out


def write_summary(out: Path, groups: list[GroupSummary], failed: list[dict[str, Any]]) -> Path:
    """OUT/summary.json: the groups, and the cells whose latest run failed, with their
    errors."""
    path = out / SUMMARY_FILE
    summary = {
        "groups": [g.to_dict() for g in groups],
        "cells": sum(len(g.seeds) for g in groups),
        "failed": [{"key": r["key"], "error": r["error"]} for r in failed],
    }
    write_text_atomic(path, json.dumps(summary, indent=2) + "\n")
    return path


COLUMNS = ("task", "obs", "method", "demos", "success", "95% CI", "per seed", "spread", "train s")
"""The summary table's columns: success pooled over the seeds with its Wilson interval, each
seed's successes, the best minus the worst seed's rate (points), mean training seconds."""


def table_rows(groups: list[GroupSummary]) -> list[list[str]]:
    """The summary table's rows: what the command prints and the report shows."""
    rows = []
    for g in groups:
        pooled = success_rate(g.successes, g.episodes)
        rows.append(
            [
                g.task,
                g.obs,
                g.method,
                str(g.demos),
                f"{g.successes}/{g.episodes} ({pooled.rate:.1%})",
                f"{100 * pooled.ci_low:.1f}-{100 * pooled.ci_high:.1f}%",
                " ".join(f"{s.successes}/{s.episodes}" for s in g.seeds),
                f"{100 * g.seed_spread:.0f}",
                f"{g.train_s:.0f}",
            ]
        )
    return rows


def rich_table(groups: list[GroupSummary], title: str) -> Table:
    """The summary as a rich table."""
    table = Table(title=title, box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)
    for column in COLUMNS:
        numeric = column in ("demos", "spread", "train s")
        table.add_column(column, justify="right" if numeric else "left", overflow="fold")
    for row in table_rows(groups):
        table.add_row(*row)
    return table
