"""key=value overrides from the command line (policy arguments, task arguments)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from apprentice.errors import ApprenticeError


def parse_overrides(items: Sequence[str], what: str = "argument") -> dict[str, Any]:
    """key=value strings to a dict; values are read as JSON where they parse (1, 0.5, [1,2])."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ApprenticeError(f"{what} {item!r} is not of the form key=value")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out
