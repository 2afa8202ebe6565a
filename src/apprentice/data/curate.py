"""`apprentice filter`: keep the demos worth learning from, as a mask; never touch the demos.

Demos are dropped when their combined quality score (`apprentice.data.quality`) is below
`min_score`, or when any per-criterion limit given is exceeded. What is kept goes to
`mask/<name>` (default `mask/curated`); with `split`, also `mask/<name>_train` and
`mask/<name>_valid`, so that training on the curated set (`TrainConfig(train_mask=
"curated_train", valid_mask="curated_valid")`) validates on curated demos only. Where the
file already has a train/valid split, the curated split keeps each demo on its side, so a
curated run never trains on a demo the uncurated run validated on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from apprentice.data.quality import QualityScores
from apprentice.data.reader import DemoFile, sorted_demos
from apprentice.data.store import write_mask
from apprentice.errors import ApprenticeError

_PROTECTED_MASKS = ("train", "valid")


@dataclass(frozen=True)
class FilterConfig:
    """Drop low-quality demos from a dataset by writing a mask of the ones to keep."""

    file: str = "demos.hdf5"
    """The demo file (its demos are never modified)."""
    min_score: float = 0.8
    """Keep demos whose combined quality score (in [0, 1]) is at least this."""
    max_idle: float | None = None
    """Also drop demos idle for more than this fraction of the steps before success."""
    max_jerk: float | None = None
    """Also drop demos whose jerk exceeds this multiple of the dataset median."""
    max_path_ratio: float | None = None
    """Also drop demos whose path is longer than this multiple of the oracle's."""
    max_chatter: int | None = None
    """Also drop demos with more extra gripper flips than this."""
    max_extra_grasps: int | None = None
    """Also drop demos with more grasp attempts beyond the usual than this."""
    max_failed_grasps: int | None = None
    """Also drop demos with more grasps that lifted nothing than this."""
    max_outlier: float | None = None
    """Also drop demos whose robust z-score against the dataset exceeds this."""
    from_mask: str | None = None
    """Consider only the demos of this mask (e.g. success); default: every demo."""
    name: str = "curated"
    """Write the kept demos to mask/<name>."""
    split: bool = False
    """Also write mask/<name>_train and mask/<name>_valid (the file's split where it has one)."""
    valid_fraction: float = 0.1
    """With split and no split in the file: fraction of kept demos in <name>_valid."""
    seed: int = 0
    """Seed of that split."""
    oracle: bool = True
    """Compare path lengths with the task oracle's, replayed from each demo's first state."""
    dry_run: bool = False
    """Print what would be dropped; write nothing."""
    progress: bool = True
    """Show progress bars."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_score <= 1.0:
            raise ApprenticeError(f"--min-score must be in [0, 1], got {self.min_score}")
        if not self.name or "/" in self.name:
            raise ApprenticeError(f"--name must be a mask name without '/', got {self.name!r}")
        if self.name in _PROTECTED_MASKS:
            raise ApprenticeError(
                f"--name {self.name!r} would overwrite the file's own split; choose another "
                "name (train on it with TrainConfig.train_mask)"
            )
        if not 0.0 <= self.valid_fraction < 1.0:
            raise ApprenticeError(f"--valid-fraction must be in [0, 1), got {self.valid_fraction}")
        limits = {
            "max_idle": self.max_idle,
            "max_jerk": self.max_jerk,
            "max_path_ratio": self.max_path_ratio,
            "max_chatter": self.max_chatter,
            "max_extra_grasps": self.max_extra_grasps,
            "max_failed_grasps": self.max_failed_grasps,
            "max_outlier": self.max_outlier,
        }
        for key, value in limits.items():
            if value is not None and value < 0:
                flag = "--" + key.replace("_", "-")
                raise ApprenticeError(f"{flag} must be >= 0, got {value}")


@dataclass
class FilterResult:
    path: Path
    kept: list[str]
    dropped: dict[str, list[str]]
    """demo -> why it was dropped."""
    masks: dict[str, int] = field(default_factory=dict)
    """Masks written -> demos in each (empty on a dry run)."""


def drop_reasons(scores: QualityScores, cfg: FilterConfig) -> dict[str, list[str]]:
    """demo -> the reasons it fails `cfg` (only demos that fail appear)."""
    median_jerk = float(np.nanmedian(scores.jerk)) if np.any(~np.isnan(scores.jerk)) else np.nan
    checks: list[tuple[float | None, np.ndarray, str]] = [
        (cfg.max_idle, scores.idle_fraction, "idle {:.2f} > {}"),
        (cfg.max_jerk, scores.jerk / median_jerk, "jerk x{:.2f} of the median > {}"),
        (cfg.max_path_ratio, scores.path_ratio, "path x{:.2f} of the oracle's > {}"),
        (cfg.max_chatter, scores.chatter.astype(float), "chatter {:.0f} > {}"),
        (cfg.max_extra_grasps, scores.extra_grasps.astype(float), "extra grasps {:.0f} > {}"),
        (cfg.max_failed_grasps, scores.failed_grasps, "failed grasps {:.0f} > {}"),
        (cfg.max_outlier, scores.outlier, "outlier z {:.1f} > {}"),
    ]
    out: dict[str, list[str]] = {}
    for i, name in enumerate(scores.names):
        why = []
        if scores.score[i] < cfg.min_score:
            detail = ", ".join(scores.reasons(i)) or "several small defects"
            why.append(f"score {scores.score[i]:.2f} < {cfg.min_score} ({detail})")
        for limit, values, text in checks:
            # An unmeasured criterion (NaN) cannot fail a limit.
            if limit is not None and values[i] > limit:
                why.append(text.format(values[i], limit))
        if why:
            out[name] = why
    return out


def curate(cfg: FilterConfig, scores: QualityScores) -> FilterResult:
    """Decide which scored demos to keep and write the masks (unless a dry run)."""
    path = Path(cfg.file)
    dropped = drop_reasons(scores, cfg)
    kept = sorted_demos([n for n in scores.names if n not in dropped])
    result = FilterResult(path, kept, dropped)
    if cfg.dry_run:
        return result
    masks = {cfg.name: kept}
    if cfg.split:
        masks.update(_split(path, kept, cfg))
    for mask, demos in masks.items():
        write_mask(path, mask, demos)
        result.masks[mask] = len(demos)
    return result


def _split(path: Path, kept: list[str], cfg: FilterConfig) -> dict[str, list[str]]:
    with DemoFile(path) as f:
        existing = f.masks
    train = set(existing.get("train", []))
    valid = set(existing.get("valid", []))
    kept_train = [n for n in kept if n in train]
    kept_valid = [n for n in kept if n in valid]
    if kept_train and kept_valid:
        return {f"{cfg.name}_train": kept_train, f"{cfg.name}_valid": kept_valid}
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(kept))
    n_valid = round(cfg.valid_fraction * len(kept))
    if cfg.valid_fraction > 0 and len(kept) > 1:
        n_valid = min(max(n_valid, 1), len(kept) - 1)
    return {
        f"{cfg.name}_train": sorted_demos([kept[i] for i in order[n_valid:]]),
        f"{cfg.name}_valid": sorted_demos([kept[i] for i in order[:n_valid]]),
    }


def demos_to_score(path: str, from_mask: str | None) -> list[str]:
    """The demos a filter considers: those of `from_mask`, or all of them."""
    with DemoFile(path) as f:
        if from_mask is None:
            return f.demo_names
        masks = f.masks
    if from_mask not in masks:
        raise ApprenticeError(
            f"{path}: no mask {from_mask!r} (it has: {', '.join(sorted(masks)) or 'none'})"
        )
    return sorted_demos(masks[from_mask])
