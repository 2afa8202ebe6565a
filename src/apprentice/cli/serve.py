"""`apprentice serve`: a checkpoint served to robots over WebSocket."""

from __future__ import annotations

import argparse

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

    server.run(ready)
    m = server.metrics
    print_table(
        "policy server stopped",
        [
            ("sessions", m.sessions_opened),
            ("act requests", m.requests["act"]),
            ("error replies", sum(m.errors.values())),
            ("refused connections and frames", sum(m.rejected.values())),
        ],
    )


def command() -> Command:
    return Command(
        "serve",
        "serve a checkpoint to robots over WebSocket: sessions, health, metrics, token auth",
        ServeConfig,
        run,
        {"positional": ("checkpoint",)},
    )
