"""Command-line flags from config dataclasses: the field's docstring is its --help."""

from __future__ import annotations

import argparse
import dataclasses
import types
from typing import Any, Union, get_args, get_origin, get_type_hints

from apprentice.policies.base import config_field_docs


def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings of a dataclass's fields, each folded onto one line for --help."""
    return {name: " ".join(doc.split()) for name, doc in config_field_docs(cls).items()}


def _scalar_type(tp: Any) -> tuple[Any, bool]:
    """(the scalar type, optional?) of a field annotation such as `int | None`."""
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        return args[0], True
    return tp, False


def add_dataclass_args(
    parser: argparse.ArgumentParser,
    cls: type,
    *,
    positional: tuple[str, ...] = (),
    skip: tuple[str, ...] = (),
    choices: dict[str, list[str]] | None = None,
) -> None:
    docs = field_docs(cls)
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        tp, optional = _scalar_type(hints[f.name])
        # argparse formats help with %: a literal one (e.g. "10%") must be doubled.
        help_text = docs.get(f.name, "").replace("%", "%%")
        has_default = f.default is not dataclasses.MISSING
        kwargs: dict[str, Any] = {"help": help_text}
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif tp in (int, float, str):
            kwargs["type"] = tp
        elif get_origin(tp) is tuple:
            kwargs["type"] = str
            kwargs["nargs"] = "*"
        else:
            continue  # nested configs are set by their own flags
        if choices and f.name in choices:
            kwargs["choices"] = choices[f.name]
        if f.name in positional:
            parser.add_argument(f.name, **kwargs)
            continue
        if has_default:
            kwargs["default"] = f.default
            if f.default not in (None, "") and tp is not bool:
                default = str(f.default).replace("%", "%%")
                kwargs["help"] = f"{help_text} (default: {default})"
        elif not optional:
            kwargs["required"] = True
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, **kwargs)


def dataclass_from_args(cls: type, ns: argparse.Namespace, **overrides: Any) -> Any:
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in overrides:
            values[f.name] = overrides[f.name]
        elif hasattr(ns, f.name):
            v = getattr(ns, f.name)
            if get_origin(_scalar_type(hints[f.name])[0]) is tuple and v is not None:
                v = tuple(v)
            values[f.name] = v
    return cls(**values)
