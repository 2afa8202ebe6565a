"""`apprentice serve`: a checkpoint served to robots over WebSocket."""

from __future__ import annotations

import argparse
from collections import Counter

from apprentice.cli.args import dataclass_from_args
from apprentice.cli.command import Command
from apprentice.console import print_table
from apprentice.deploy.server import PolicyServer, ServeConfig


def run(ns: argparse.Namespace) -> None:
    cfg = dataclass_from_args(ServeConfig, ns)
    server = PolicyServer(cfg)
    health = server.health()

    def ready(port: int) -> None:
        print(
            f"serving {health['policy']} policy for {health['task']!r} on "
            f"ws://{cfg.host}:{port} (health: http://{cfg.host}:{port}/healthz); "
            "SIGTERM or Ctrl-C stops it",
            flush=True,
        )
        if not server.inference.refused:  # a refusal is logged as a warning already
            print(server.inference.description, flush=True)

    server.run(ready)
    m = server.metrics
    print_table(
        "policy server stopped",
        [
            ("sessions", m.sessions_opened),
            ("act requests", m.requests["act"]),
            ("act requests per batch (mean)", _mean_batch(m.batches)),
            ("error replies", sum(m.errors.values())),
            ("refused connections and frames", sum(m.rejected.values())),
        ],
    )


def _mean_batch(batches: Counter[int]) -> str:
    runs = sum(batches.values())
    return f"{sum(size * n for size, n in batches.items()) / runs:.2f}" if runs else "-"


def command() -> Command:
    return Command(
        "serve",
        "serve a checkpoint to robots over WebSocket: sessions, health, metrics, token auth",
        ServeConfig,
        run,
        {"positional": ("checkpoint",)},
    )
