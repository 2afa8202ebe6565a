"""Watching an adversarial run: divergence detection, and the report plot of its rounds.

Why a run is stopped rather than left to train: a discriminator that separates expert from
generator perfectly gives the generator a reward near zero everywhere (GAIL's -log(1 - D)
with D -> 0), so PPO keeps updating on noise while the metrics still look like training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apprentice.errors import ApprenticeError


@dataclass
class DivergenceMonitor:
    """Counts rounds of a perfect discriminator starving the generator (module docstring)."""

    rounds: int
    pinned: int = 0

    def check(self, algo: str, round_index: int, stats: dict[str, float]) -> None:
        fixes = (
            "try a lower disc_lr, fewer disc_updates, grad_penalty=10, or more demos (--algo-args)"
        )
        if not all(math.isfinite(v) for v in stats.values()):
            numbers = ", ".join(f"{k} {v:.4g}" for k, v in stats.items())
            raise ApprenticeError(
                f"{algo}: the discriminator diverged at round {round_index} (not finite: "
                f"{numbers}); {fixes}"
            )
        perfect = stats["acc_expert"] >= 0.99 and stats["acc_generator"] >= 0.99
        self.pinned = self.pinned + 1 if perfect and stats["d_generator"] < 0.01 else 0
        if self.pinned >= self.rounds:
            raise ApprenticeError(
                f"{algo}: the discriminator diverged at round {round_index}: accuracy "
                f"{stats['acc_expert']:.3f} / {stats['acc_generator']:.3f} on expert / "
                f"generator for {self.pinned} rounds while the generator's mean D fell to "
                f"{stats['d_generator']:.2e} (its reward collapsed; loss "
                f"{stats['disc_loss']:.3g}); {fixes}"
            )


def write_report_png(
    run_dir: Path, title: str, history: list[dict[str, Any]], rounds: list[dict[str, Any]]
) -> Path:
    """report.png: the learner's (normalized) return against env steps, and the
    discriminator's accuracies and mean D on the generator's data per round (a run going
    wrong shows there first: accuracy pinned at 1 with D(generator) falling to 0)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_ret, ax_disc) = plt.subplots(1, 2, figsize=(11, 3.8))
    key = "normalized_return" if history and "normalized_return" in history[0] else "mean_return"
    ax_ret.plot([h["env_steps"] for h in history], [h[key] for h in history], marker="o")
    ax_ret.set_xlabel("environment steps")
    ax_ret.set_ylabel(key.replace("_", " "))
    ax_ret.set_title("learner on held-out initial states")
    steps = [r["env_steps"] for r in rounds]
    for name in ("acc_expert", "acc_generator", "d_generator"):
        ax_disc.plot(steps, [r[name] for r in rounds], label=name)
    ax_disc.set_ylim(-0.02, 1.02)
    ax_disc.set_xlabel("environment steps")
    ax_disc.set_title("discriminator per round")
    ax_disc.legend()
    fig.suptitle(title)
    fig.tight_layout()
    out = run_dir / "report.png"
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
