"""`apprentice train`: a behavioral-cloning policy trained on a dataset, from the flags or
from a shipped recipe (`--recipe NAME`, whose values the flags given beside it override)."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import Any

from apprentice.algos.config import TrainConfig
from apprentice.algos.launch import main_process
from apprentice.cli.args import dataclass_from_args
from apprentice.cli.command import Command
from apprentice.console import print_table
from apprentice.errors import ApprenticeError
from apprentice.files import check_writable
from apprentice.pipelines.train import run_train
from apprentice.recipes import check_dataset, get_recipe, recipe_names
from apprentice.tracking import check_tracking


@dataclass(frozen=True)
class TrainCommandConfig(TrainConfig):
    """TrainConfig plus the recipe it may start from."""

    recipe: str = ""
    """A shipped recipe to train with: its policy, training settings and checks of the data
    (`apprentice recipes` lists them with what they reached). Flags given beside it override
    its values."""
    hub: str = ""
    """Train on this Hugging Face Hub dataset (OWNER/NAME, a LeRobot dataset) instead of
    --dataset: fetched into huggingface_hub's cache first."""


def train_config(ns: argparse.Namespace) -> tuple[TrainConfig, str]:
    """(the run's TrainConfig, its recipe's name or "") from the parsed flags."""
    base = None
    if ns.recipe:
        recipe = get_recipe(ns.recipe)
        base = TrainCommandConfig(**_fields(recipe.config()), recipe=recipe.name)
    cfg = dataclass_from_args(TrainCommandConfig, ns, base=base)
    fields = _fields(cfg)
    fields.pop("recipe")
    hub = fields.pop("hub")
    if hub:
        if fields["dataset"]:
            raise ApprenticeError(f"give --dataset or --hub, not both (--hub {hub})")
        from apprentice.data.hub import fetch_hub

        fields["dataset"] = str(fetch_hub(hub))
    if not fields["dataset"]:
        raise ApprenticeError("give the demos to train on: --dataset FILE (or --hub REPO_ID)")
    return TrainConfig(**fields), cfg.recipe


def _fields(config: TrainConfig) -> dict[str, Any]:
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


def run(ns: argparse.Namespace) -> None:
    cfg, recipe = train_config(ns)
    check_writable(cfg.out, folder=True)
    check_tracking(cfg.wandb)  # before a recipe's stages
    stages = None
    if recipe:
        check_dataset(get_recipe(recipe), cfg.dataset, cfg.policy)
        stages = get_recipe(recipe).run_stages
    result = run_train(cfg, stages=stages)
    if not main_process():  # under torchrun, rank 0 alone prints
        return
    title = f"trained {cfg.policy.name} on {cfg.dataset}" + (
        f" (recipe {recipe})" if recipe else ""
    )
    print_table(title, list(result.items()))


def command() -> Command:
    return Command(
        "train",
        "train a behavioral-cloning policy on a dataset",
        TrainCommandConfig,
        run,
        {"required": ("out",)},
        {
            "recipe": f"A shipped recipe to train with ({', '.join(recipe_names())}): its policy, "
            "training settings and data checks; flags given beside it override its values. "
            "`apprentice recipes` lists what each reached."
        },
    )
