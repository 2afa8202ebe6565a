"""The shipped recipes: one contract over every entry, the dataset check, the measured rows."""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path
from typing import Any

import pytest

from apprentice.algos.config import TrainConfig
from apprentice.cli.main import build_parser
from apprentice.data.normalize import Normalizer
from apprentice.envs import task_names
from apprentice.envs.base import make_task, task_available, task_spec
from apprentice.errors import ApprenticeError
from apprentice.evaluate.metrics import wilson_interval
from apprentice.policies import MLPConfig
from apprentice.recipes import RECIPES, Measured, Recipe, check_dataset, describe, get_recipe


def _recipes() -> list[Any]:
    return [pytest.param(r, id=r.name) for r in RECIPES.values()]


def test_recipe_names_are_unique_and_their_keys() -> None:
    recipes = [r for r in RECIPES.values()]
    assert len({r.name for r in recipes}) == len(recipes) == len(RECIPES)
    assert all(name == r.name for name, r in RECIPES.items())


@pytest.mark.parametrize("recipe", list(RECIPES.values()), ids=list(RECIPES))
def test_every_recipe_builds_its_train_config(recipe: Recipe) -> None:
    config = recipe.config(dataset="demos.hdf5", out="runs/x")
    assert config.dataset == "demos.hdf5" and config.out == "runs/x"
    assert config.policy == recipe.policy
    for name, value in recipe.train.items():
        assert getattr(config, name) == value, name
    # The saved config.json rebuilds it (the run folder's resume check compares these).
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert recipe.task in task_names(), f"{recipe.name}: task {recipe.task!r} is not registered"
    assert recipe.min_demos == recipe.collect.n > 0
    # Its data command is a command line `apprentice collect` takes, for that data.
    ns = build_parser().parse_args(shlex.split(recipe.data)[1:])
    assert (ns.task, ns.n, ns.action_noise, ns.camera) == (
        recipe.collect.task,
        recipe.collect.n,
        recipe.collect.action_noise,
        recipe.collect.camera,
    )


@pytest.mark.parametrize("recipe", _recipes())
def test_every_recipe_policy_builds_on_its_task(recipe: Recipe) -> None:
    """The policy reads keys and cameras its task offers (with the cameras its data is
    collected with), and builds on them."""
    if not task_available(recipe.task):
        pytest.skip(f"task {recipe.task} needs the extra(s) {', '.join(recipe.extras)}")
    assert recipe.extras or recipe.task in task_names("builtin")
    task = make_task(recipe.task, **({"camera": True} if recipe.collect.camera else {}))
    spec = task_spec(task)
    task.close()
    policy = recipe.policy
    assert set(policy.obs_keys) <= set(spec.low_dim_keys), recipe.name
    assert set(policy.image_keys) <= set(spec.obs_shapes) - set(spec.low_dim_keys), recipe.name
    built = policy.build(spec, Normalizer.identity(spec).state_dict())
    assert built.config == policy
    assert sum(p.numel() for p in built.parameters()) > 0


def test_get_recipe_names_the_recipes_when_unknown() -> None:
    assert get_recipe("lift-lowdim").task == "lift"
    with pytest.raises(ApprenticeError, match="unknown recipe 'nope'") as info:
        get_recipe("nope")
    assert all(name in str(info.value) for name in RECIPES)


def test_data_command_names_what_differs_from_collect_defaults() -> None:
    assert get_recipe("lift-lowdim").data == (
        "apprentice collect --task lift --n 200 --action-noise 0.1 --out demos.hdf5"
    )
    assert get_recipe("lift-image").data == (
        "apprentice collect --task lift --n 200 --camera --out demos.hdf5"
    )


# ---- the dataset check --------------------------------------------------------------------


def test_a_fitting_dataset_passes(synthetic: Any, tmp_path: Path) -> None:
    recipe = dataclasses.replace(
        get_recipe("lift-lowdim"),
        collect=dataclasses.replace(get_recipe("lift-lowdim").collect, n=3),
    )
    check_dataset(recipe, synthetic.write_demo_file(tmp_path / "d.hdf5", num_demos=3))


def test_too_few_demos_are_refused_with_the_command_that_makes_enough(
    synthetic: Any, tmp_path: Path
) -> None:
    path = synthetic.write_demo_file(tmp_path / "d.hdf5", num_demos=4)
    with pytest.raises(ApprenticeError) as info:
        check_dataset(get_recipe("lift-lowdim"), path)
    message = str(info.value)
    assert "it has 4 demos, the recipe needs at least 200" in message
    assert get_recipe("lift-lowdim").data in message and "recorded on task" not in message


def test_every_defect_is_named_in_one_error(synthetic: Any, tmp_path: Path) -> None:
    stack = synthetic.write_demo_file(tmp_path / "stack.hdf5", num_demos=2, env_name="stack")
    with pytest.raises(ApprenticeError) as info:
        check_dataset(get_recipe("lift-image"), stack)
    message = str(info.value)
    assert "recorded on task 'stack', the recipe is for 'lift'" in message
    assert "it has 2 demos, the recipe needs at least 200" in message
    assert "camera(s) agentview_image, eye_in_hand_image are absent" in message
    assert "observation key" not in message  # the low-dim keys are there
    assert "\n" not in message


def test_the_check_reads_the_policy_the_run_trains(synthetic: Any, tmp_path: Path) -> None:
    """A policy changed beside the recipe (`--policy mlp`) reads no camera: none is asked
    for; one that reads a key the file lacks is told so."""
    lift = synthetic.write_demo_file(tmp_path / "lift.hdf5", num_demos=2)
    recipe = get_recipe("lift-image")
    with pytest.raises(ApprenticeError) as info:
        check_dataset(recipe, lift, MLPConfig())
    assert "absent" not in str(info.value) and "it has 2 demos" in str(info.value)
    with pytest.raises(ApprenticeError, match=r"observation key\(s\) joint_pos are absent"):
        check_dataset(recipe, lift, MLPConfig(obs_keys=("eef_pos", "joint_pos")))


def test_a_missing_dataset_is_named(tmp_path: Path) -> None:
    with pytest.raises(ApprenticeError, match=r"dataset .*nope\.hdf5 does not exist"):
        check_dataset(get_recipe("lift-lowdim"), tmp_path / "nope.hdf5")


# ---- what a recipe reached ----------------------------------------------------------------


def test_measured_summary_and_spread() -> None:
    m = Measured(
        successes=(48, 50, 45),
        episodes=50,
        command="python benchmarks/bench_recipes.py --recipe lift-lowdim",
        train_time="10 min",
    )
    low, high = wilson_interval(143, 150)
    assert m.summary == (f"143/150 = 95.3% ({100 * low:.1f}-{100 * high:.1f}%); seeds 48/50/45")
    assert (f"{100 * low:.1f}", f"{100 * high:.1f}") == ("90.7", "97.7")
    assert m.spread == pytest.approx(10.0)  # 50 - 45 of 50 episodes
    pusht = dataclasses.replace(m, successes=(10, 12), mean_max_reward=0.9123)
    assert pusht.summary.endswith("; seeds 10/12; mean best reward 0.912")
    assert pusht.spread == pytest.approx(4.0)


def test_describe_shows_the_settings_data_and_measurement() -> None:
    recipe = get_recipe("lift-lowdim")
    lines = dict(describe(recipe))
    assert lines["policy"] == "rnn: hidden_dim=128"
    assert lines["data"] == f"{recipe.data} (at least 200 demos)"
    assert "lr=0.001" in lines["training"] and "epochs=60" in lines["training"]
    unmeasured = dict(describe(dataclasses.replace(recipe, measured=None)))
    assert unmeasured["measured"] == "not yet" and "reproduce" not in unmeasured
    measured = Measured((49,), 50, "cmd", "5 min", note="best.pt")
    lines = dict(describe(dataclasses.replace(recipe, measured=measured)))
    assert lines["measured"] == measured.summary
    assert (lines["reproduce"], lines["train time"], lines["note"]) == ("cmd", "5 min", "best.pt")
    assert "(extra: pusht)" in dict(describe(get_recipe("pusht-state")))["task"]
