"""A run's report.html: learning curves, success rate with its interval, rollout videos."""

from __future__ import annotations

import base64
import html
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any


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
    out = run_dir / "report.html"
    out.write_text("\n".join(parts))
    return out
