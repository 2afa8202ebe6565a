"""`apprentice recipes`: the shipped recipes with their measured numbers, or one in full."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from rich.table import Table

from apprentice.cli.command import Command
from apprentice.console import console, print_table
from apprentice.recipes import RECIPES, describe, get_recipe


@dataclass(frozen=True)
class RecipesConfig:
    name: str = ""
    """A recipe to show in full (policy, settings, data, the command that measured it);
    none: the table of all of them."""


def run(ns: argparse.Namespace) -> None:
    if ns.name:
        print_table(f"recipe {ns.name}", describe(get_recipe(ns.name)))
        return
    table = Table(title="recipes (apprentice train --recipe NAME --dataset FILE --out DIR)")
    table.add_column("recipe", no_wrap=True)
    for column in ("policy", "demos", "target", "measured"):
        table.add_column(column)
    for r in RECIPES.values():
        measured = r.measured.short if r.measured else "not yet"
        table.add_row(r.name, r.policy.name, str(r.min_demos), r.target, measured)
    console.print(table)
    console.print("`apprentice recipes NAME` shows one recipe's settings and reproducing command.")


def command() -> Command:
    return Command(
        "recipes",
        "list the shipped training recipes and what they reach",
        RecipesConfig,
        run,
        {"positional": ("name",)},
    )
