"""Merging demo files: every demo of several stores, in order, in one new store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from apprentice.data.reader import DemoFile
from apprentice.data.store import DemoWriter, write_mask


def merge_demos(
    sources: Sequence[Path], out: Path, *, env_args: dict[str, Any]
) -> list[dict[str, str]]:
    """Every demo of `sources`, in order, appended to `out` as demo_0, demo_1, ... (their
    observations, actions, states and attrs, with attr `origin` the source's file name), and
    each source's masks under their names (a mask of several sources lists the demos of all).
    Returns, per source, its demo names -> their names in `out`.

    Resumable: a killed merge left the first demos of the sources in `out`, which a rerun
    keeps, appending the rest."""
    done = 0
    if out.exists():
        with DemoFile(out) as merged:
            done = len(merged.demo_names)
    renames: list[dict[str, str]] = []
    masks: dict[str, list[str]] = {}
    index = 0
    with DemoWriter(out, env_args=env_args) as writer:
        for source in sources:
            renames.append({})
            with DemoFile(source) as f:
                for name in f.demo_names:
                    if index >= done:
                        episode = f.read(name)
                        writer.append(
                            replace(episode, attrs={**episode.attrs, "origin": source.name})
                        )
                    renames[-1][name] = f"demo_{index}"
                    index += 1
                for mask, members in f.masks.items():
                    masks.setdefault(mask, []).extend(renames[-1][m] for m in members)
    for mask, members in masks.items():
        write_mask(out, mask, members)
    return renames
