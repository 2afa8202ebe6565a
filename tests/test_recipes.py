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
from apprentice.policies.encoders import CameraConfig
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
        "apprentice collect --task lift --n 200 --action-noise 0.05 --camera --out demos.hdf5"
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


# ---- the pretraining stage of camera recipes --------------------------------------------------


@pytest.fixture
def tiny_camera_recipe(monkeypatch: pytest.MonkeyPatch) -> Recipe:
    """lift-image at test size, under its own name: the command line reads it from RECIPES."""
    shipped = get_recipe("lift-image")
    assert shipped.pretrain is not None and shipped.policy.camera.freeze_encoder
    camera = dataclasses.replace(shipped.policy.camera, feature_dim=8, num_keypoints=4)
    policy = dataclasses.replace(
        shipped.policy, obs_keys=("eef_pos",), hidden_dim=8, seq_len=4, camera=camera
    )
    recipe = dataclasses.replace(
        shipped,
        policy=policy,
        train={"epochs": 1, "steps_per_epoch": 2, "batch_size": 4, "eval_every": 0},
        collect=dataclasses.replace(shipped.collect, n=4),
        pretrain=dataclasses.replace(shipped.pretrain, steps=3, batch_size=4),
    )
    monkeypatch.setitem(RECIPES, "lift-image", recipe)
    return recipe


def test_a_camera_recipe_pretrains_its_encoders_then_trains_on_them_frozen(
    tiny_camera_recipe: Recipe, synthetic: Any, tmp_path: Path
) -> None:
    import json

    from apprentice.cli.main import main
    from apprentice.policies.encoder_file import EncoderFile

    data = synthetic.write_camera_demos(tmp_path / "cam.hdf5")
    out = tmp_path / "run"
    argv = ["train", "--recipe", "lift-image", "--dataset", str(data), "--out", str(out)]
    assert main([*argv, "--no-progress", "--threads", "1"]) == 0
    files = [out / "encoders" / f"{key}.pt" for key in tiny_camera_recipe.policy.image_keys]
    for key, f in zip(tiny_camera_recipe.policy.image_keys, files, strict=True):
        saved = EncoderFile.load(f)
        assert (saved.image_key, saved.steps, saved.camera.num_keypoints) == (key, 3, 4)
    camera = json.loads((out / "config.json").read_text())["policy"]["camera"]
    assert camera["encoder_checkpoint"] == ",".join(map(str, files))
    assert camera["freeze_encoder"] is True
    assert (out / "final.pt").exists()

    # Run again: the run resumes (nothing left to do) and the encoders are not pretrained anew.
    stamps = [f.stat().st_mtime_ns for f in files]
    assert main([*argv, "--no-progress", "--threads", "1"]) == 0
    assert [f.stat().st_mtime_ns for f in files] == stamps

    # A damaged encoder file of an interrupted run is named, not silently replaced.
    broken = tmp_path / "broken"
    (broken / "encoders").mkdir(parents=True)
    (broken / "encoders" / "agentview_image.pt").write_bytes(b"half a file")
    argv_broken = [*argv[:-1], str(broken), "--no-progress"]
    assert main(argv_broken) == 2
    assert not (broken / "config.json").exists()


def test_a_policy_given_its_own_encoders_skips_the_stage(
    tiny_camera_recipe: Recipe, synthetic: Any, tmp_path: Path
) -> None:
    data = synthetic.write_camera_demos(tmp_path / "cam.hdf5")
    camera = dataclasses.replace(tiny_camera_recipe.policy.camera, encoder_checkpoint="mine.pt")
    config = tiny_camera_recipe.config(
        dataset=str(data),
        out=str(tmp_path / "run"),
        policy=dataclasses.replace(tiny_camera_recipe.policy, camera=camera),
    )
    assert tiny_camera_recipe.run_stages(config) == config
    assert not (tmp_path / "run").exists()
    # A recipe without a stage leaves every config as it is.
    lowdim = get_recipe("lift-lowdim")
    assert lowdim.pretrain is None
    plain = lowdim.config(dataset=str(data), out=str(tmp_path / "run"))
    assert lowdim.run_stages(plain) == plain


def test_lift_image_was_measured_with_its_own_settings() -> None:
    """lift-image's row comes from the encoder-pretraining benchmark: its command's flags
    and that benchmark's pretraining defaults must be the recipe's settings."""
    import argparse

    recipe = get_recipe("lift-image")
    assert recipe.measured is not None and recipe.pretrain is not None
    tokens = shlex.split(recipe.measured.command)
    assert tokens[1] == "benchmarks/bench_encoder_pretraining.py"
    flags = argparse.ArgumentParser()
    for name in ("--demos", "--epochs", "--batch", "--pretrain-steps", "--pretrain-batch"):
        flags.add_argument(name, type=int)
    flags.add_argument("--lr", type=float)
    flags.add_argument("--action-noise", type=float)
    given, _ = flags.parse_known_args(tokens[2:])
    source = (Path(__file__).parents[1] / tokens[1]).read_text()
    defaults = {
        "pretrain-steps": recipe.pretrain.steps,
        "pretrain-batch": recipe.pretrain.batch_size,
        "action-noise": recipe.collect.action_noise,
    }
    for name, value in defaults.items():  # left to the benchmark's default: it is the recipe's
        assert getattr(given, name.replace("-", "_")) is None
        assert f'"--{name}", type={type(value).__name__}, default={value}' in source, name
    assert given.demos == recipe.min_demos
    assert (given.epochs, given.batch, given.lr) == (
        recipe.train["epochs"],
        recipe.train["batch_size"],
        recipe.train["lr"],
    )
    assert recipe.train["steps_per_epoch"] == 100  # the benchmark's default
    assert '"--steps-per-epoch", type=int, default=100' in source


def test_a_pretraining_target_the_dataset_lacks_is_named(synthetic: Any, tmp_path: Path) -> None:
    shipped = get_recipe("pusht-image")
    assert shipped.pretrain is not None and shipped.pretrain.target_key == "keypoints"
    assert "regressing keypoints" in dict(describe(shipped))["stages"]
    recipe = dataclasses.replace(
        get_recipe("lift-image"),
        collect=dataclasses.replace(get_recipe("lift-image").collect, n=4),
        pretrain=dataclasses.replace(shipped.pretrain),
    )
    policy = dataclasses.replace(recipe.policy, obs_keys=("eef_pos",))
    data = synthetic.write_camera_demos(tmp_path / "cam.hdf5")
    with pytest.raises(ApprenticeError, match=r"key keypoints \(the encoder pretraining"):
        check_dataset(recipe, data, policy)
    check_dataset(dataclasses.replace(recipe, pretrain=None), data, policy)


def test_the_stage_gives_pretraining_the_policys_encoder_settings_unchanged() -> None:
    from apprentice.algos.pretrain import PretrainEncoderConfig
    from apprentice.recipes import encoder_camera_args

    camera = CameraConfig(
        share_encoder=True,
        color_jitter=0.2,
        encoder_norm="batch",
        random_shift=0,
        freeze_encoder=True,
        encoder_checkpoint="x.pt",
    )
    args = encoder_camera_args(camera)
    assert not any(a.startswith(("freeze_encoder", "encoder_checkpoint")) for a in args)
    config = PretrainEncoderConfig(dataset="d", image_key="image", out="e.pt", camera_args=args)
    assert config.camera() == dataclasses.replace(
        camera, freeze_encoder=False, encoder_checkpoint=None
    )
    assert config.camera().share_encoder is True
    assert encoder_camera_args(CameraConfig(freeze_encoder=True)) == ()
