"""What a command module gives `apprentice.cli.main`: its name, help, config, function, extras."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, NamedTuple


class Command(NamedTuple):
    """One `apprentice <name>` command; main builds its flags from `config`'s fields."""

    name: str
    help: str
    config: type
    run: Callable[[argparse.Namespace], None]
    """Builds the config from the parsed flags, does the work, prints the result."""
    extras: dict[str, Any]
    """Keyword arguments of `add_dataclass_args` (positional, skip, choices)."""
    flag_help: dict[str, str] | None = None
    """Help of a flag (by field name) that the command words itself instead of the field's
    docstring, e.g. where the choices come from a registry."""
