"""OUT/report.html: the summary table and a plot of success against demos, each group's
pooled rate with its 95% Wilson interval and each training seed's rate as a point."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from apprentice.evaluate.metrics import wilson_interval
from apprentice.files import write_text_atomic
from apprentice.sweep.summary import COLUMNS, GroupSummary, table_rows

REPORT_FILE = "report.html"


def success_plot_png(groups: list[GroupSummary]) -> bytes:
    """One panel per (task, observations): x the demo counts, a line per method through its
    pooled success rates, the Wilson interval as error bars, a dot per training seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: dict[tuple[str, str], list[GroupSummary]] = {}
    for g in groups:
        panels.setdefault((g.task, g.obs), []).append(g)
    methods = list(dict.fromkeys(g.method for g in groups))
    colors = {m: f"C{i % 10}" for i, m in enumerate(methods)}  # one color a method, all panels
    fig, axes = plt.subplots(
        1, len(panels), figsize=(1 + 4.2 * len(panels), 3.8), squeeze=False, sharey=True
    )
    for ax, ((task, obs), members) in zip(axes[0], panels.items(), strict=True):
        _panel(ax, members, colors)
        ax.set_title(f"{task} ({obs})")
    axes[0][0].set_ylabel("success rate (held-out episodes)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def _panel(ax: Any, groups: list[GroupSummary], colors: dict[str, str]) -> None:
    counts = sorted({g.demos for g in groups})
    methods = list(dict.fromkeys(g.method for g in groups))
    width = 0.6 / max(len(methods), 1)  # methods side by side around each demo count
    for i, method in enumerate(methods):
        mine = sorted((g for g in groups if g.method == method), key=lambda g: g.demos)
        x = [counts.index(g.demos) + (i - (len(methods) - 1) / 2) * width for g in mine]
        rate = [g.successes / g.episodes for g in mine]
        bounds = [wilson_interval(g.successes, g.episodes) for g in mine]
        # Clipped at 0: at k = n the upper bound is 1 only up to rounding.
        err = [
            [max(r - lo, 0.0) for r, (lo, _) in zip(rate, bounds, strict=True)],
            [max(hi - r, 0.0) for r, (_, hi) in zip(rate, bounds, strict=True)],
        ]
        color = colors[method]
        ax.errorbar(x, rate, yerr=err, marker="o", capsize=3, color=color, label=method)
        for xi, g in zip(x, mine, strict=True):
            seeds = [s.rate for s in g.seeds]
            ax.scatter(
                [xi] * len(seeds), seeds, s=14, facecolors="none", edgecolors=color, zorder=3
            )
    ax.set_xticks(range(len(counts)), [str(n) for n in counts])
    ax.set_xlabel("demos")
    ax.set_ylim(-0.03, 1.03)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small")


def write_report(
    out: Path, groups: list[GroupSummary], failed: list[dict[str, Any]], title: str
) -> Path:
    """Write OUT/report.html: the table, the plot (a PNG inside the page) and the failed
    cells with their errors."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto}"
        "td,th{padding:2px 10px;text-align:left}tr:nth-child(even){background:#f4f4f4}</style>",
        "</head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<p>Each cell trains one policy with one training seed and is scored on held-out "
        "initial states (never used for collecting or training). A group pools its seeds' "
        "episodes; the interval is the 95% Wilson score interval of the pooled rate, the "
        "spread the best minus the worst seed's rate.</p>",
    ]
    if groups:
        png = base64.b64encode(success_plot_png(groups)).decode()
        parts += [
            "<h2>Success rate</h2>",
            _html_table(list(COLUMNS), table_rows(groups)),
            f"<p><img alt='success per cell' src='data:image/png;base64,{png}'/></p>",
        ]
    else:
        parts.append("<p>No cell has finished yet.</p>")
    if failed:
        parts.append("<h2>Failed cells</h2><p>Rerun the sweep to run them again.</p>")
        parts.append(_html_table(["cell", "error"], [[r["key"], r["error"]] for r in failed]))
    parts.append("</body></html>")
    path = out / REPORT_FILE
    write_text_atomic(path, "\n".join(parts), durable=False)
    return path


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"
