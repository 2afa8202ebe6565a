"""The terminal: one rich console for what commands print, and the two-column result table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(stderr=False)


def print_table(title: str, rows: Sequence[tuple[str, Any]]) -> None:
    """`rows` as a titled table of (name, value) lines."""
    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, str(value))
    console.print(table)
