"""A sweep's cells and the demos they share.

A cell is one (task, observations, policy or recipe, demo count, training seed): one
training run and its evaluation. Cells whose demos are made alike (task, cameras, action
noise) share the demo files: each count is collected once, and a smaller file is the first
demos of a larger one. Collection is seeded by attempt, so a larger file grown from a copy
of a smaller one holds the demos a fresh collection of it would.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from apprentice.algos.config import TrainConfig
from apprentice.collect.oracle import CollectConfig, collect_demos
from apprentice.recipes import get_recipe

OBS_KINDS = ("low_dim", "images")
"""What a cell's policy reads: low-dim states, or cameras (plus the robot's own state)."""


@dataclass(frozen=True)
class Cell:
    """One cell of the grid; `key` names it in cells.jsonl and in its run folder's name."""

    task: str
    obs: str
    """One of `OBS_KINDS`."""
    policy: str
    """The policy kind trained (a recipe's own, in a recipe cell)."""
    demos: int
    seed: int
    """Training seed."""
    recipe: str = ""
    """The recipe trained; "" in a policy cell."""

    @property
    def method(self) -> str:
        """What the cell trains: its recipe, else its policy kind."""
        return self.recipe or self.policy

    @property
    def key(self) -> str:
        """`task/obs/method/dN/sN`, e.g. lift/low_dim/mlp/d200/s1."""
        return f"{self.task}/{self.obs}/{self.method}/d{self.demos}/s{self.seed}"

    def run_dir(self, out: Path) -> Path:
        """The cell's run folder in the sweep folder `out`."""
        return out / "runs" / self.key.replace("/", "_")


@dataclass(frozen=True)
class DemoSpec:
    """How a cell's demos are made, all but their number: `apprentice collect` settings."""

    task: str
    camera: bool = False
    """Record the cameras too."""
    action_noise: float = 0.0
    """Std of the noise on the oracle's motion actions (a recipe's data may have some)."""

    def path(self, folder: Path, n: int) -> Path:
        """The file of `n` demos in `folder`: task_{lowdim|cam}[_noiseX]_N.hdf5."""
        name = f"{self.task.replace('/', '-')}_{'cam' if self.camera else 'lowdim'}"
        if self.action_noise:
            name += f"_noise{self.action_noise:g}"
        return folder / f"{name}_{n}.hdf5"

    def collect(self, folder: Path, sizes: list[int], workers: int) -> dict[int, Path]:
        """The demo files of `sizes` demos in `folder`, collected where missing, smallest
        first, each larger one grown from a copy of the smaller. A file is marked done (a
        `.done` file beside it) once complete; one left by a killed run is resumed."""
        files: dict[int, Path] = {}
        previous: Path | None = None
        for n in sorted(set(sizes)):
            path = self.path(folder, n)
            done = path.with_suffix(".done")
            if not done.exists():
                folder.mkdir(parents=True, exist_ok=True)
                if previous is not None and not path.exists():
                    shutil.copyfile(previous, path)
                collect_demos(
                    CollectConfig(
                        task=self.task,
                        n=n,
                        out=str(path),
                        workers=workers,
                        camera=self.camera,
                        action_noise=self.action_noise,
                        progress=False,
                    )
                )
                done.touch()
            files[n] = previous = path
        return files


CHECKPOINT_FILES = {"final": "final.pt", "best": "best.pt"}
"""The file in a run folder of each `SweepConfig.checkpoint` choice."""

FREE_TRAIN_FIELDS = frozenset(
    {"dataset", "out", "resume", "overwrite", "progress", "threads", "device", "log_every", "wandb"}
)
"""Training settings that do not decide a cell's result (paths, logging, the hardware it
ran on): a finished cell is kept when only they changed."""


@dataclass(frozen=True)
class CellJob:
    """One cell's whole work, picklable for a worker process or a Ray task: collect (done
    beforehand, by the sweep), train `train`, score `checkpoint` on `episodes` rollouts."""

    cell: Cell
    demos: DemoSpec
    train: TrainConfig
    """Its dataset is set once the demos exist; its out is the cell's run folder."""
    episodes: int
    eval_envs: int = 10
    checkpoint: str = "final"

    def settings(self) -> dict[str, Any]:
        """What decides the cell's result, recorded with it (JSON values): a rerun keeps a
        finished cell only where these are the same."""
        train = {k: v for k, v in self.train.to_dict().items() if k not in FREE_TRAIN_FIELDS}
        settings: dict[str, Any] = {
            "train": train,
            "demos": asdict(self.demos),
            "episodes": self.episodes,
            "checkpoint": self.checkpoint,
        }
        if self.cell.recipe:
            stage = get_recipe(self.cell.recipe).pretrain
            settings["pretrain"] = None if stage is None else asdict(stage)
        return json.loads(json.dumps(settings))
