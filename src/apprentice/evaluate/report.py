"""A run's report.html: learning curves, success rate with its interval, rollout videos, and
the robustness sweeps' curves (success against perturbation level)."""

from __future__ import annotations

import base64
import html
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from apprentice.files import write_text_atomic

REPORT_FILE = "report.html"


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Records of a metrics.jsonl file (a torn last line from a crash is skipped)."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _learning_curve_png(records: list[dict[str, Any]]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_sr) = plt.subplots(1, 2, figsize=(10, 3.6))
    epochs = [r["epoch"] for r in records]
    for key, label in (("train_loss", "train"), ("valid_loss", "valid")):
        pts = [(e, r[key]) for e, r in zip(epochs, records, strict=True) if r.get(key) is not None]
        if pts:
            ax_loss.plot(*zip(*pts, strict=True), label=label)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    ax_loss.set_title("training loss")
    pts = [
        (e, r["success_rate"]) for e, r in zip(epochs, records, strict=True) if "success_rate" in r
    ]
    if pts:
        ax_sr.plot(*zip(*pts, strict=True), marker="o")
    ax_sr.set_ylim(-0.02, 1.02)
    ax_sr.set_xlabel("epoch")
    ax_sr.set_ylabel("success rate")
    ax_sr.set_title("rollout success during training")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def write_report(
    run_dir: Path,
    *,
    title: str,
    evaluation: dict[str, Any],
    metrics: Path | None = None,
    sections: Sequence[tuple[str, str]] = (),
) -> Path:
    """Write run_dir/report.html from a metrics.jsonl (default: run_dir's) and an evaluation.

    `sections` are extra (heading, preformatted text) blocks, e.g. the dataset summary.
    Videos are linked relative to the run folder so the report stays small.
    """
    records = read_metrics(metrics or run_dir / "metrics.jsonl")
    curve = _learning_curve_png(records) if records else ""
    rate = evaluation["success_rate"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}"
        "td,th{padding:2px 10px;text-align:left}pre{background:#f4f4f4;padding:8px}</style>",
        "</head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<h2>Evaluation on held-out initial states</h2>",
        "<table>",
        f"<tr><th>task</th><td>{html.escape(str(evaluation.get('task', '')))}</td></tr>",
        f"<tr><th>success rate</th><td><b>{rate:.1%}</b> ({evaluation['successes']}/"
        f"{evaluation['episodes']})</td></tr>",
        f"<tr><th>95% Wilson interval</th><td>{evaluation['ci_low']:.1%} - "
        f"{evaluation['ci_high']:.1%}</td></tr>",
        f"<tr><th>mean episode length</th><td>{evaluation['mean_episode_length']:.1f} steps"
        "</td></tr>",
        "</table>",
    ]
    if curve:
        parts += ["<h2>Learning curve</h2>", f"<img src='data:image/png;base64,{curve}'/>"]
    videos = evaluation.get("videos", [])
    if videos:
        parts.append("<h2>Rollouts</h2>")
        for v in videos:
            rel = os.path.relpath(v, run_dir)
            parts.append(
                f"<figure><video controls width='320' src='{html.escape(str(rel))}'></video>"
                f"<figcaption>{html.escape(Path(v).name)}</figcaption></figure>"
            )
    for heading, text in sections:
        parts += [f"<h2>{html.escape(heading)}</h2>", f"<pre>{html.escape(text)}</pre>"]
    parts.append("</body></html>")
    out = run_dir / REPORT_FILE
    out.write_text("\n".join(parts))
    return out


def sweep_plot_png(sweep: dict[str, Any]) -> bytes:
    """Success rate against perturbation level, a line per axis of `sweep` (the JSON of
    `evaluate.robustness.sweep_policy`), its 95% Wilson interval as error bars and a band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for i, (axis, rows) in enumerate(sweep["axes"].items()):
        rows = sorted(rows, key=lambda r: r["level"])
        x = [r["level"] for r in rows]
        rate = [r["success_rate"] for r in rows]
        low = [r["ci_low"] for r in rows]
        high = [r["ci_high"] for r in rows]
        # Clipped at 0: at k = n the upper bound is 1 only up to rounding.
        err = [
            [max(r - lo, 0.0) for r, lo in zip(rate, low, strict=True)],
            [max(hi - r, 0.0) for r, hi in zip(rate, high, strict=True)],
        ]
        color = f"C{i % 10}"
        ax.fill_between(x, low, high, color=color, alpha=0.12, linewidth=0)
        ax.errorbar(x, rate, yerr=err, marker="o", capsize=3, color=color, label=axis)
    ax.set_xlim(-0.03, 1.03)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("perturbation level (0 nominal, 1 the task's hardest)")
    ax.set_ylabel("success rate (held-out episodes)")
    ax.set_title(f"robustness on {sweep['task']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def sweep_section(sweep: dict[str, Any], name: str) -> str:
    """The HTML section of a sweep whose JSON is file `name`: its plot and its table."""
    png = base64.b64encode(sweep_plot_png(sweep)).decode()
    rows = "".join(
        f"<tr><td>{html.escape(axis)}</td><td>{r['level']:g}</td>"
        f"<td>{r['success_rate']:.1%} ({r['successes']}/{r['episodes']})</td>"
        f"<td>{r['ci_low']:.1%} - {r['ci_high']:.1%}</td></tr>"
        for axis, levels in sweep["axes"].items()
        for r in levels
    )
    return "\n".join(
        [
            _sweep_opening(name),
            f"<h2>Robustness: success against perturbation level ({html.escape(name)})</h2>",
            f"<p>{sweep['episodes']} held-out episodes per level (seed offset "
            f"{sweep['seed_offset']}), one axis at a time, every other axis nominal.</p>",
            f"<p><img alt='success against perturbation level' "
            f"src='data:image/png;base64,{png}'/></p>",
            "<table><tr><th>axis</th><th>level</th><th>success rate</th>"
            f"<th>95% Wilson interval</th></tr>{rows}</table>",
            "</section>",
        ]
    )


def _sweep_opening(name: str) -> str:
    return f"<section data-sweep='{html.escape(name)}'>"


def write_sweep_report(sweep_json: Path, sweep: dict[str, Any]) -> Path:
    """Put the sweep's section in the report.html beside its JSON: in place of the section of
    an earlier run of the same sweep, else at the end of the report there, else in a page of
    its own."""
    path = sweep_json.parent / REPORT_FILE
    section = sweep_section(sweep, sweep_json.name)
    if path.exists():
        text = path.read_text()
        begin = text.find(_sweep_opening(sweep_json.name))
        end = text.find("</section>", begin) if begin >= 0 else -1
        if end >= 0:
            text = text[:begin] + section + text[end + len("</section>") :]
        else:
            head, body_end, tail = text.rpartition("</body>")
            text = head + section + "\n" + body_end + tail if body_end else text + section
    else:
        title = html.escape(f"Robustness of {sweep['task']}")
        text = "\n".join(
            [
                "<!doctype html><html><head><meta charset='utf-8'>",
                f"<title>{title}</title>",
                "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}"
                "td,th{padding:2px 10px;text-align:left}</style>",
                "</head><body>",
                f"<h1>{title}</h1>",
                section,
                "</body></html>",
            ]
        )
    write_text_atomic(path, text, durable=False)
    return path
