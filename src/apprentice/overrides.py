"""key=value overrides from the command line (policy arguments, task arguments, algo arguments).

Values are read as JSON where they parse (1, 0.5, true, [16,32]) and kept as strings
otherwise. A tuple field takes a JSON list, a comma list (`a,b` or `16,32,64`) or one value;
its items are converted to the field's item type (`tuple[int, ...]` -> ints).
"""

from __future__ import annotations

import dataclasses
import json
import types
from collections.abc import Sequence
from typing import Any, Union, get_args, get_origin

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


def field_default(f: dataclasses.Field[Any]) -> Any:
    """A dataclass field's default value (a fresh one from its factory); MISSING if none."""
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def strip_optional(annotation: Any) -> tuple[Any, bool]:
    """(the type inside, optional?) of an annotation such as `int | None`."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return (args[0] if len(args) == 1 else annotation), True
    return annotation, False


def tuple_item_type(annotation: Any) -> Any | None:
    """The item type of `tuple[X, ...]` (also inside `| None`); None for any other annotation."""
    inner, _ = strip_optional(annotation)
    if get_origin(inner) is not tuple:
        return None
    args = [a for a in get_args(inner) if a is not Ellipsis]
    return args[0] if args else str


def coerce_tuple(value: Any, item_type: Any, what: str) -> tuple[Any, ...]:
    """A tuple field's value from a list, a comma list ("a,b", "16,32,64", "[a,b]") or one
    value. Items given as text are converted to `item_type`; typed items (from JSON) stay."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        items: list[Any] = [v.strip() for v in text.split(",") if v.strip()]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        items = [value]
    if item_type not in (int, float):
        return tuple(items)
    out = []
    for item in items:
        if not isinstance(item, str):
            out.append(item)
            continue
        try:
            out.append(item_type(item))
        except ValueError:
            raise ApprenticeError(
                f"{what}: {item!r} is not a{'n' if item_type is int else ''} "
                f"{item_type.__name__} (give a comma list such as 16,32,64 or a JSON list)"
            ) from None
    return tuple(out)
