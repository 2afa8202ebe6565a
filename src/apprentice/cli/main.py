"""`apprentice <command>`: quickstart, collect, annotate, generate, train, eval, inspect."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from apprentice.cli.args import add_dataclass_args, dataclass_from_args
from apprentice.errors import ApprenticeError

console = Console(stderr=False)


def print_table(title: str, rows: Sequence[tuple[str, Any]]) -> None:
    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, str(value))
    console.print(table)


def _task_names() -> list[str]:
    from apprentice.envs import task_names

    return task_names()


def cmd_collect(ns: argparse.Namespace) -> None:
    from apprentice.collect.oracle import CollectConfig, collect_demos

    cfg = dataclass_from_args(CollectConfig, ns)
    r = collect_demos(cfg)
    print_table(
        f"collected {cfg.task} demos",
        [
            ("file", r.path),
            ("successful demos", r.successes),
            ("resumed from", r.resumed_from),
            ("attempts this run", r.attempts),
            ("failed kept", r.kept_failed),
        ],
    )


def cmd_annotate(ns: argparse.Namespace) -> None:
    from apprentice.generate.annotate import AnnotateConfig, annotate

    cfg = dataclass_from_args(AnnotateConfig, ns)
    r = annotate(cfg)
    print_table(
        f"annotated {r.path}",
        [("demos annotated", r.annotated), ("demos kept as they were", r.kept)],
    )


def cmd_generate(ns: argparse.Namespace) -> None:
    from apprentice.generate.run import GenerateConfig, run_generate

    cfg = dataclass_from_args(GenerateConfig, ns)
    r = run_generate(cfg)
    failures = ", ".join(f"subtask {i} {kind}: {c}" for (i, kind), c in r.failures.most_common())
    rows: list[tuple[str, object]] = [
        ("file", r.path),
        ("generated demos", r.successes),
        ("attempts", r.attempts),
        ("data generation rate", f"{r.dgr:.1%}"),
        ("this run", f"{r.new_successes} demos in {r.new_attempts} attempts, {r.seconds:.1f} s"),
        ("failures this run", failures or "none"),
    ]
    if r.skipped_sources:
        rows.append(("source demos skipped", len(r.skipped_sources)))
    print_table(f"generated {cfg.n} demos from {cfg.source}", rows)


def cmd_eval(ns: argparse.Namespace) -> None:
    from apprentice.evaluate.rollout import EvalConfig, evaluate

    cfg = dataclass_from_args(EvalConfig, ns)
    s = evaluate(cfg)
    print_table(
        f"evaluation on {s['task']}",
        [
            ("checkpoint", s["checkpoint"]),
            ("success rate", f"{s['success_rate']:.1%} ({s['successes']}/{s['episodes']})"),
            ("95% Wilson interval", f"{s['ci_low']:.1%} - {s['ci_high']:.1%}"),
            ("mean episode length", f"{s['mean_episode_length']:.1f}"),
            ("mean best reward", f"{s['mean_max_reward']:.3f}"),
            ("results", s["results_path"]),
            ("videos", len(s["videos"])),
        ],
    )


def cmd_train(ns: argparse.Namespace) -> None:
    from apprentice.algos.config import TrainConfig
    from apprentice.pipelines.train import run_train

    cfg = dataclass_from_args(TrainConfig, ns)
    result = run_train(cfg)
    print_table(f"trained {cfg.policy.name} on {cfg.dataset}", list(result.items()))


def cmd_quickstart(ns: argparse.Namespace) -> None:
    from apprentice.pipelines.quickstart import QuickstartConfig, quickstart

    cfg = dataclass_from_args(QuickstartConfig, ns)
    result = quickstart(cfg)
    print_table("quickstart", list(result.items()))


def cmd_export(ns: argparse.Namespace) -> None:
    from apprentice.deploy.export import ExportConfig, export_checkpoint

    cfg = dataclass_from_args(ExportConfig, ns)
    r = export_checkpoint(cfg)
    print_table(
        f"exported {r.meta.policy_kind} policy to {r.meta.format}",
        [
            ("file", r.path),
            ("description", r.sidecar),
            ("inputs", ", ".join(r.meta.input_names)),
            ("outputs", ", ".join(r.meta.output_names)),
            ("max abs diff vs PyTorch", f"{r.max_abs_diff:.2e} over {r.samples} observations"),
            ("tolerance", f"{r.tolerance:g}"),
        ],
    )


def cmd_serve(ns: argparse.Namespace) -> None:
    from apprentice.deploy.server import PolicyServer, ServeConfig

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


def build_parser() -> argparse.ArgumentParser:
    from apprentice.algos.config import TrainConfig
    from apprentice.collect.oracle import CollectConfig
    from apprentice.deploy.export import EXPORT_FORMATS, ExportConfig
    from apprentice.deploy.server import ServeConfig
    from apprentice.evaluate.rollout import EvalConfig
    from apprentice.generate.annotate import AnnotateConfig
    from apprentice.generate.attempt import SELECTIONS
    from apprentice.generate.backends import BACKENDS
    from apprentice.generate.run import GenerateConfig
    from apprentice.pipelines.quickstart import QuickstartConfig

    parser = argparse.ArgumentParser(
        prog="apprentice", description="Teach robots skills from demonstrations."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    commands: list[
        tuple[str, str, type | None, Callable[[argparse.Namespace], None], dict[str, Any]]
    ] = [
        (
            "quickstart",
            "collect lift demos, train BC-RNN, evaluate, write a report",
            QuickstartConfig,
            cmd_quickstart,
            {},
        ),
        (
            "collect",
            "record scripted-oracle demonstrations",
            CollectConfig,
            cmd_collect,
            {"choices": {"task": _task_names()}},
        ),
        (
            "annotate",
            "recompute a dataset's datagen_info (poses, subtask signals) by replaying its states",
            AnnotateConfig,
            cmd_annotate,
            {"positional": ("source",)},
        ),
        (
            "generate",
            "generate synthetic demos from a few source demos (MimicGen-style)",
            GenerateConfig,
            cmd_generate,
            {"choices": {"backend": list(BACKENDS), "selection": list(SELECTIONS)}},
        ),
        (
            "train",
            "train a behavioral-cloning policy on a dataset",
            TrainConfig,
            cmd_train,
            {"required": ("dataset", "out")},
        ),
        (
            "eval",
            "evaluate a policy on held-out initial states",
            EvalConfig,
            cmd_eval,
            {"positional": ("checkpoint",)},
        ),
        (
            "export",
            "export a checkpoint to ONNX or TorchScript and check it against PyTorch",
            ExportConfig,
            cmd_export,
            {"positional": ("checkpoint",), "choices": {"format": list(EXPORT_FORMATS)}},
        ),
        (
            "serve",
            "serve a checkpoint to robots over WebSocket: sessions, health, metrics, token auth",
            ServeConfig,
            cmd_serve,
            {"positional": ("checkpoint",)},
        ),
    ]
    # Each package below owns its command's (name, help, config, function, extra) tuple.
    from apprentice.cli.curate import filter_command, inspect_command, replay_command
    from apprentice.interactive.cli import dagger_command
    from apprentice.irl.cli import irl_command
    from apprentice.irl.label import label_actions_command
    from apprentice.teleop.cli import teleop_command

    commands += [
        inspect_command(),
        replay_command(),
        filter_command(),
        teleop_command(),
        dagger_command(),
        irl_command(),
        label_actions_command(),
    ]
    for name, help_text, cfg_cls, fn, extra in commands:
        p = sub.add_parser(name, help=help_text, description=help_text)
        if cfg_cls is not None:
            add_dataclass_args(p, cfg_cls, **extra)
        p.set_defaults(fn=fn)
    sub.choices["inspect"].add_argument("file", help="an HDF5 dataset")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    try:
        ns.fn(ns)
    except ApprenticeError as e:
        print(f"apprentice {ns.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"apprentice {ns.command}: interrupted; rerun the same command to resume",
            file=sys.stderr,
        )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
