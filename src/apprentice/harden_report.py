"""The report of `apprentice harden`: harden.json, harden.md and report.html, before and
after side by side."""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from apprentice.algos.run_folder import write_json
from apprentice.evaluate.report import sweep_section
from apprentice.files import write_text_atomic

RATE_KEYS = ("successes", "episodes", "success_rate", "ci_low", "ci_high")


def rate_row(r: Mapping[str, Any] | None, fails: set[float]) -> dict[str, Any] | None:
    """A sweep row's rate and interval, and whether its level fails (None for no row)."""
    return None if r is None else {**{k: r[k] for k in RATE_KEYS}, "fails": r["level"] in fails}


def _rate_text(r: Mapping[str, Any] | None) -> str:
    if r is None:
        return "-"
    return (
        f"{r['success_rate']:.1%} ({r['successes']}/{r['episodes']}, "
        f"{r['ci_low']:.1%}-{r['ci_high']:.1%})" + (" fails" if r["fails"] else "")
    )


def table_rows(summary: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """(axis, level, before, after) per swept level; a failing level is marked "fails"."""
    return [
        (axis, f"{r['level']:g}", _rate_text(r["before"]), _rate_text(r["after"]))
        for axis, rows in summary["axes"].items()
        for r in rows
    ]


def write_report(out: Path, summary: dict[str, Any], sweeps: Mapping[str, Any]) -> None:
    """harden.json, harden.md (the table) and report.html (the table and the plots of
    `sweeps`, by name: before and after)."""
    write_json(out / "harden.json", summary)
    failing = summary["failing"]
    lines = [
        f"# Hardening on {summary['task']}: {summary['checkpoint']}",
        "",
        f"{summary['episodes']} held-out episodes per level; a level fails below "
        f"{summary['keep']:g} x the nominal (level 0) success rate of its sweep (marked fails). "
        "Success rates with their 95% Wilson interval.",
        "",
        f"Outcome: {summary['outcome']}.",
    ]
    if failing:
        ranges = ", ".join(f"{a} {lo:g}:1" if lo < 1 else f"{a} 1" for a, lo in failing.items())
        lines += [
            "",
            f"New oracle demos with {ranges}: {summary['new_demos']}; trained on "
            f"{summary['training_set']}; retrained policy {summary['hardened_checkpoint']}.",
        ]
    lines += ["", "| axis | level | before | after |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(summary)]
    write_text_atomic(out / "harden.md", "\n".join(lines) + "\n", durable=False)
    table = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
        for row in table_rows(summary)
    )
    page = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Hardening on {html.escape(summary['task'])}</title>",
        "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}"
        "td,th{padding:2px 10px;text-align:left}</style></head><body>",
        f"<h1>Hardening on {html.escape(summary['task'])}</h1>",
        f"<p>{html.escape(summary['outcome'])}.</p>",
        f"<table><tr><th>axis</th><th>level</th><th>before</th><th>after</th></tr>{table}</table>",
        *(sweep_section(sweep, name) for name, sweep in sweeps.items()),
        "</body></html>",
    ]
    write_text_atomic(out / "report.html", "\n".join(page), durable=False)
