"""`apprentice <command>`: the commands of `apprentice.cli`, one module each, in one parser.

Each module in `COMMAND_MODULES` has a `command()` that returns its `Command` (name, help,
config, function, extras); this module only builds their flags and maps errors to exit codes.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from apprentice.cli.args import add_dataclass_args
from apprentice.cli.command import Command
from apprentice.errors import ApprenticeError, ReportedError

COMMAND_MODULES = (
    "quickstart",
    "collect",
    "annotate",
    "generate",
    "pretrain_encoder",
    "train",
    "recipes",
    "eval",
    "sweep",
    "export",
    "serve",
    "inspect",
    "replay",
    "filter",
    "convert",
    "teleop",
    "dagger",
    "harden",
    "irl",
    "label_actions",
    "retarget",
)
"""Modules of `apprentice.cli`, one per command, in the order `apprentice --help` lists them."""


def commands() -> list[Command]:
    """Every command, from its module."""
    out: list[Command] = []
    for name in COMMAND_MODULES:
        out.append(importlib.import_module(f"apprentice.cli.{name}").command())
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="apprentice", description="Teach robots skills from demonstrations."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for c in commands():
        p = sub.add_parser(c.name, help=c.help, description=c.help)
        add_dataclass_args(p, c.config, **c.extras)
        flag_help = c.flag_help or {}
        for action in p._actions:
            if action.dest in flag_help:
                has_default = action.default not in (None, "", False, argparse.SUPPRESS)
                suffix = " (default: %(default)s)" if has_default else ""
                action.help = flag_help[action.dest] + suffix
        p.set_defaults(fn=c.run)
    return parser


def given_flags(argv: Sequence[str] | None) -> frozenset[str]:
    """The dests of the flags that `argv` gives (not left to their defaults): a recipe's
    values yield to these alone. Parsed again with every default suppressed."""
    parser = build_parser()
    for sub in parser._subparsers._group_actions[0].choices.values():  # type: ignore[union-attr]
        for action in sub._actions:
            action.default = argparse.SUPPRESS
    return frozenset(vars(parser.parse_args(argv)))


TORCHRUN_COMMANDS = ("train",)
"""Commands that run as one run across the processes torchrun starts (`algos/launch.py`);
under torchrun the others stop with one line rather than run once per process."""


def _check_launch(command: str) -> None:
    from apprentice.algos.launch import Launch

    launch = Launch.from_environ()
    if launch is not None and command not in TORCHRUN_COMMANDS:
        raise ApprenticeError(
            f"only `apprentice train` runs under torchrun (WORLD_SIZE={launch.world_size}); "
            f"run `apprentice {command}` as one process"
        )


def _prog(command: str | None) -> str:
    return f"apprentice {command}" if command else "apprentice"


def main(argv: Sequence[str] | None = None) -> int:
    command = None  # known once the flags are parsed
    try:
        # Building the parser imports every command's library: a Ctrl-C there is caught too.
        ns = build_parser().parse_args(argv)
        command = ns.command
        _check_launch(command)
        if getattr(ns, "recipe", "") or getattr(ns, "spec", ""):  # a base the flags override
            ns.given = given_flags(argv)
        ns.fn(ns)
    except ReportedError:  # another process of the run (torchrun's rank 0) printed it
        return 2
    except ApprenticeError as e:
        print(f"{_prog(command)}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{_prog(command)}: interrupted; rerun the same command to resume", file=sys.stderr)
        _forget_unhandled_interrupt()
        return 130
    return 0


def _forget_unhandled_interrupt() -> None:
    """Keep exit status 130 after a Ctrl-C that was handled.

    CPython notes a KeyboardInterrupt that leaves code run from a string (`exec(str)`, as
    dataclasses and namedtuples do while a module is imported) as unhandled, even if an outer
    `except` catches it, and at exit then kills the process with SIGINT instead of returning
    its status (under `python -m`, which torchrun and the tests use). Running any string
    resets that note."""
    exec("pass")  # a constant; see the docstring


if __name__ == "__main__":
    sys.exit(main())
