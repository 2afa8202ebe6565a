"""A human-readable summary of a store: what `apprentice inspect FILE` prints."""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from apprentice.data.source import open_source

MAX_DEMO_ROWS = 20
"""Demos listed one per row; beyond this, the first and last few, so a 10k-demo file stays short."""


@dataclass
class _KeyStats:
    """Running min/max/sum/sum of squares over every element of one array field."""

    shape: tuple[int, ...]
    dtype: str
    count: int = 0
    lo: float = np.inf
    hi: float = -np.inf
    total: float = 0.0
    total_sq: float = 0.0
    demos: int = field(default=0)

    def add(self, x: np.ndarray) -> None:
        x64 = x.astype(np.float64, copy=False)
        if x64.size == 0:  # the (T, 0) actions of a state-only file
            return
        self.count += x64.size
        self.lo = min(self.lo, float(x64.min()))
        self.hi = max(self.hi, float(x64.max()))
        self.total += float(x64.sum())
        self.total_sq += float(np.square(x64).sum())

    def row(self, name: str) -> list[str]:
        if self.count == 0:
            return [name, str(self.shape), self.dtype, "-", "-", "-", "-"]
        mean = self.total / max(self.count, 1)
        std = float(np.sqrt(max(self.total_sq / max(self.count, 1) - mean**2, 0.0)))
        return [name, str(self.shape), self.dtype] + [
            f"{v:.4g}" for v in (self.lo, mean, self.hi, std)
        ]


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, ["-" * w for w in widths], *rows]
    ]
    return "\n".join(lines)


def summarize(path: str | os.PathLike[str]) -> str:
    """File-level info, per-demo rows (truncated) and per-key statistics over all steps."""
    with open_source(path) as f:
        names = f.demo_names
        attrs = {n: f.attrs(n) for n in names}
        lengths = [f.num_samples(n) for n in names]
        masks = f.masks
        stats: dict[str, _KeyStats] = {}
        fields = [f"obs/{k}" for k in f.obs_keys] + ["actions"]
        for name in names:
            for fld in fields:
                x = f.read_actions(name) if fld == "actions" else f.read_obs(name, fld[4:])
                if fld not in stats:
                    stats[fld] = _KeyStats(tuple(x.shape[1:]), str(x.dtype))
                stats[fld].add(x)
        env_args = f.env_args

    successes = sum(bool(a.get("success", True)) for a in attrs.values())
    sources = Counter(str(a.get("source", "unknown")) for a in attrs.values())
    out = [
        f"file: {path}",
        f"env_args: {json.dumps(env_args)}",
        f"demos: {len(names)}   samples: {sum(lengths)}   successful: {successes}/{len(names)}",
    ]
    if lengths:
        out.append(f"length: min {min(lengths)}  mean {np.mean(lengths):.1f}  max {max(lengths)}")
    out.append("sources: " + (", ".join(f"{s} ({n})" for s, n in sources.most_common()) or "-"))
    out.append(
        "masks: " + (", ".join(f"{m} ({len(d)})" for m, d in sorted(masks.items())) or "none")
    )

    rows = [
        [n, str(t), str(a.get("success", "-")), str(a.get("seed", "-")), str(a.get("source", "-"))]
        for n, t, a in zip(names, lengths, attrs.values(), strict=True)
    ]
    if len(rows) > MAX_DEMO_ROWS:
        half = MAX_DEMO_ROWS // 2
        rows = [*rows[:half], [f"... {len(rows) - 2 * half} more", "", "", "", ""], *rows[-half:]]
    out += ["", _table(["demo", "length", "success", "seed", "source"], rows)]
    key_rows = [s.row(k) for k, s in stats.items()]
    out += ["", _table(["field", "step shape", "dtype", "min", "mean", "max", "std"], key_rows)]
    return "\n".join(out)
