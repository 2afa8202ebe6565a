"""`apprentice train --recipe NAME` (flags given beside it override it) and `apprentice recipes`."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest

from apprentice.algos.config import TrainConfig
from apprentice.cli.main import build_parser, given_flags, main
from apprentice.cli.train import train_config
from apprentice.collect.oracle import collect_demos
from apprentice.policies import FlowConfig, MLPConfig, RNNConfig
from apprentice.recipes import RECIPES, get_recipe


def _config(*argv: str) -> tuple[TrainConfig, str]:
    """The run's config from `apprentice train ARGV`, as `main` makes it, without training."""
    full = ["train", "--dataset", "demos.hdf5", "--out", "runs/x", *argv]
    ns = build_parser().parse_args(full)
    ns.given = given_flags(full)
    return train_config(ns)


# ---- which values a run takes ---------------------------------------------------------------


def test_a_recipe_alone_gives_exactly_its_config() -> None:
    config, recipe = _config("--recipe", "lift-lowdim")
    assert recipe == "lift-lowdim"
    assert config == get_recipe("lift-lowdim").config(dataset="demos.hdf5", out="runs/x")


def test_a_flag_beside_the_recipe_overrides_it_even_at_the_default_value() -> None:
    # 1e-4 is TrainConfig's own default: given on the line, it still wins over the 1e-3.
    assert TrainConfig().lr == 1e-4 and get_recipe("lift-lowdim").train["lr"] == 1e-3
    config, _ = _config("--recipe", "lift-lowdim", "--lr", "1e-4")
    assert config.lr == 1e-4
    expected = get_recipe("lift-lowdim").config(dataset="demos.hdf5", out="runs/x", lr=1e-4)
    assert config == expected


def test_a_flag_left_out_keeps_the_recipes_value_not_the_default() -> None:
    config, _ = _config("--recipe", "lift-lowdim", "--seed", "3", "--no-progress")
    assert (config.epochs, TrainConfig().epochs) == (60, 100)
    assert (config.eval_episodes, config.batch_size, config.lr) == (20, 100, 1e-3)
    assert (config.seed, config.progress) == (3, False)


def test_policy_args_change_only_their_fields_of_the_recipes_policy() -> None:
    config, _ = _config("--recipe", "lift-lowdim", "--policy-args", "hidden_dim=64")
    assert config.policy == dataclasses.replace(get_recipe("lift-lowdim").policy, hidden_dim=64)
    # On a recipe whose policy is not the flag's default kind (flow), the same holds, and a
    # camera field given by name changes that field of the recipe's camera alone.
    config, _ = _config(
        "--recipe", "pusht-image", "--policy-args", "inference_steps=4", "random_shift=2"
    )
    shipped = get_recipe("pusht-image").policy
    assert isinstance(shipped, FlowConfig)
    camera = dataclasses.replace(shipped.camera, random_shift=2)
    assert config.policy == dataclasses.replace(shipped, inference_steps=4, camera=camera)
    assert config.policy.camera.freeze_encoder


def test_another_policy_kind_starts_from_its_defaults() -> None:
    config, _ = _config("--recipe", "lift-lowdim", "--policy", "mlp")
    assert config.policy == MLPConfig()
    assert config.lr == 1e-3  # the rest of the recipe stays


def test_without_a_recipe_the_flags_and_defaults_are_as_before() -> None:
    config, recipe = _config()
    assert recipe == ""
    assert config == TrainConfig(dataset="demos.hdf5", out="runs/x")
    config, _ = _config("--lr", "1e-3", "--policy-args", "hidden_dim=64")
    assert config == TrainConfig(
        dataset="demos.hdf5", out="runs/x", lr=1e-3, policy=RNNConfig(hidden_dim=64)
    )


# ---- data the recipe refuses: one line, exit 2, nothing written --------------------------


def _refused(argv: list[str], out: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("apprentice train: error: ") and err.count("\n") == 1, err
    assert not out.exists()
    return err


def _train(recipe: str, dataset: Path, out: Path, *more: str) -> list[str]:
    return ["train", "--recipe", recipe, "--dataset", str(dataset), "--out", str(out), *more]


def test_an_unknown_recipe_lists_the_recipes(
    demo_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    err = _refused(_train("lift-lowdm", demo_file, out), out, capsys)
    assert "unknown recipe 'lift-lowdm'" in err
    assert all(name in err for name in RECIPES)


def test_a_dataset_of_another_task_is_refused_naming_all_it_lacks(
    synthetic: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = synthetic.write_demo_file(tmp_path / "stack.hdf5", num_demos=3, env_name="stack")
    out = tmp_path / "run"
    err = _refused(_train("lift-lowdim", stack, out), out, capsys)
    assert "recorded on task 'stack', the recipe is for 'lift'" in err
    assert "it has 3 demos, the recipe needs at least 200" in err
    assert get_recipe("lift-lowdim").data in err


def test_too_few_demos_are_refused(
    demo_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    err = _refused(_train("lift-lowdim", demo_file, out), out, capsys)
    assert "it has 6 demos, the recipe needs at least 200" in err
    assert "recorded on task" not in err and "absent" not in err


def test_a_missing_camera_is_refused_naming_every_one(
    demo_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    err = _refused(_train("lift-image", demo_file, out), out, capsys)
    assert "camera(s) agentview_image, eye_in_hand_image are absent" in err
    assert "it has 6 demos, the recipe needs at least 200" in err
    assert "--camera" in err


def test_the_check_is_of_the_policy_the_flags_make(
    demo_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--policy mlp` beside an image recipe trains a low-dim MLP: no camera is asked for."""
    out = tmp_path / "run"
    err = _refused(_train("lift-image", demo_file, out, "--policy", "mlp"), out, capsys)
    assert "absent" not in err and "it has 6 demos" in err


def test_a_missing_dataset_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    err = _refused(_train("lift-lowdim", tmp_path / "nope.hdf5", out), out, capsys)
    assert "nope.hdf5 does not exist" in err


@pytest.mark.slow
def test_a_recipe_trains_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The recipe's own data (200 lift demos, ~10 s on one core), then one tiny epoch."""
    recipe = get_recipe("lift-lowdim")
    demos = tmp_path / "demos.hdf5"
    collect_demos(dataclasses.replace(recipe.collect, out=str(demos), workers=1, progress=False))
    out = tmp_path / "runs" / "lift"
    tiny = ["--epochs", "1", "--steps-per-epoch", "3", "--policy-args", "hidden_dim=16"]
    tiny += ["--eval-every", "0", "--threads", "1", "--no-progress"]
    assert main(_train("lift-lowdim", demos, out, *tiny)) == 0
    assert "(recipe lift-lowdim)" in capsys.readouterr().out
    saved = json.loads((out / "config.json").read_text())
    assert (saved["lr"], saved["batch_size"], saved["eval_episodes"]) == (1e-3, 100, 20)
    assert (saved["epochs"], saved["steps_per_epoch"], saved["eval_every"]) == (1, 3, 0)
    assert saved["policy"]["name"] == "rnn" and saved["policy"]["hidden_dim"] == 16
    assert saved["policy"]["seq_len"] == 10  # the recipe's policy, one field changed
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["steps"] for r in records] == [3]
    assert (out / "final.pt").exists()


# ---- apprentice recipes ---------------------------------------------------------------------


def _text(out: str) -> str:
    """Table cells as one line of words: box drawing gone, wrapped cells joined."""
    return " ".join(re.sub("[\u2500-\u257f]", " ", out).split())


def test_recipes_lists_every_recipe(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    for name in RECIPES:
        assert re.search(rf"\s{re.escape(name)}\s", out), name


def test_recipes_name_shows_its_data_command_and_policy(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["recipes", "lift-lowdim"]) == 0
    text = _text(capsys.readouterr().out)
    assert f"data {get_recipe('lift-lowdim').data} (at least 200 demos)" in text
    assert "policy rnn: hidden_dim=128" in text


def test_recipes_of_an_unknown_name_lists_the_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recipes", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("apprentice recipes: error: unknown recipe 'nope'")
    assert err.count("\n") == 1 and all(name in err for name in RECIPES)
