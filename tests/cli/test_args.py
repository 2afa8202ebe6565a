import argparse
from dataclasses import dataclass

from apprentice.cli.args import add_dataclass_args, dataclass_from_args, field_docs


@dataclass(frozen=True)
class _Example:
    """An example config."""

    path: str
    """Where the data lives."""
    n: int = 3
    """How many."""
    fast: bool = False
    """Go fast."""
    name: str | None = None
    """An optional name."""


def test_field_docstrings_become_help_text() -> None:
    assert field_docs(_Example) == {
        "path": "Where the data lives.",
        "n": "How many.",
        "fast": "Go fast.",
        "name": "An optional name.",
    }
    parser = argparse.ArgumentParser()
    add_dataclass_args(parser, _Example)
    assert "How many. (default: 3)" in parser.format_help()


def test_flags_round_trip_into_the_dataclass() -> None:
    parser = argparse.ArgumentParser()
    add_dataclass_args(parser, _Example, positional=("path",))
    cfg = dataclass_from_args(_Example, parser.parse_args(["d.hdf5", "--n", "7", "--fast"]))
    assert cfg == _Example(path="d.hdf5", n=7, fast=True, name=None)
