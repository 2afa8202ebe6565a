import argparse
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from apprentice.algos.config import TrainConfig
from apprentice.cli.args import add_dataclass_args, dataclass_from_args, field_docs
from apprentice.cli.main import build_parser, main
from apprentice.interactive.dagger import DaggerConfig
from apprentice.pipelines.quickstart import QuickstartConfig
from apprentice.policies.mlp import MLPConfig
from apprentice.policies.rnn import RNNConfig


@dataclass(frozen=True)
class _Example:
    """An example config."""

    path: str
    """Where the data lives."""
    n: int = 3
    """How many."""
    fast: bool = False
    """Go fast."""
    name: str | None = None
    """An optional name."""


def test_field_docstrings_become_help_text() -> None:
    assert field_docs(_Example) == {
        "path": "Where the data lives.",
        "n": "How many.",
        "fast": "Go fast.",
        "name": "An optional name.",
    }
    parser = argparse.ArgumentParser()
    add_dataclass_args(parser, _Example)
    assert "How many. (default: 3)" in parser.format_help()


def test_flags_round_trip_into_the_dataclass() -> None:
    parser = argparse.ArgumentParser()
    add_dataclass_args(parser, _Example, positional=("path",))
    cfg = dataclass_from_args(_Example, parser.parse_args(["d.hdf5", "--n", "7", "--fast"]))
    assert cfg == _Example(path="d.hdf5", n=7, fast=True, name=None)


@dataclass(frozen=True)
class _Inner:
    """Training settings."""

    lr: float = 1e-4
    """Learning rate."""
    steps_per_epoch: int = 100
    """Steps."""
    progress: bool = True
    """Show bars."""
    dataset: str = ""
    """Set by the command."""


@dataclass(frozen=True)
class _Outer:
    """A command that nests a config."""

    inner: _Inner = field(default_factory=lambda: _Inner(lr=1e-3), metadata={"fixed": ("dataset",)})
    """How to train."""
    seed: int = 0
    """Seed."""


def test_nested_dataclasses_give_dotted_flags_with_the_commands_defaults() -> None:
    parser = argparse.ArgumentParser()
    add_dataclass_args(parser, _Outer)
    text = " ".join(parser.format_help().split())
    assert "--inner.lr INNER.LR Learning rate. (default: 0.001)" in text  # the nested default
    assert "inner settings (--inner.*): How to train." in text
    assert "--inner.dataset" not in text  # fixed by the command: no flag
    assert dataclass_from_args(_Outer, parser.parse_args([])) == _Outer()
    ns = parser.parse_args(["--inner.steps-per-epoch", "7", "--no-inner.progress", "--seed", "3"])
    assert dataclass_from_args(_Outer, ns) == _Outer(
        inner=_Inner(lr=1e-3, steps_per_epoch=7, progress=False), seed=3
    )


def _parse(*argv: str) -> Any:
    """The config a command's flags build, without running the command."""
    ns = build_parser().parse_args(list(argv))
    cls = {"train": TrainConfig, "dagger": DaggerConfig, "quickstart": QuickstartConfig}[argv[0]]
    return dataclass_from_args(cls, ns)


def test_train_flags_are_flat_and_build_one_train_config() -> None:
    cfg = _parse("train", "--dataset", "d.hdf5", "--out", "r", "--lr", "1e-3", "--epochs", "3")
    assert cfg == TrainConfig(dataset="d.hdf5", out="r", lr=1e-3, epochs=3)
    assert cfg.policy == RNNConfig()  # one default per setting: TrainConfig's
    with pytest.raises(SystemExit):  # --out is required
        build_parser().parse_args(["train", "--dataset", "d.hdf5"])


def test_train_needs_a_dataset_or_a_hub_id(capsys: pytest.CaptureFixture[str]) -> None:
    from apprentice.cli.main import main

    assert main(["train", "--out", "r"]) == 2
    assert (
        "give the demos to train on: --dataset FILE (or --hub REPO_ID)" in capsys.readouterr().err
    )
    assert main(["train", "--out", "r", "--dataset", "d.hdf5", "--hub", "a/b"]) == 2
    assert "give --dataset or --hub, not both" in capsys.readouterr().err


def test_learning_rate_schedule_and_ema_have_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train = ["train", "--dataset", "d", "--out", str(tmp_path / "run")]
    levers = ["--lr-schedule", "cosine", "--warmup-steps", "500", "--ema-decay", "0.999"]
    cfg = _parse(*train, *levers, "--ema-power", "0.5")
    assert cfg == replace(
        _parse(*train), lr_schedule="cosine", warmup_steps=500, ema_decay=0.999, ema_power=0.5
    )
    assert _parse(*train).ema_decay is None  # off unless asked for
    assert _parse("quickstart", "--train.ema-decay", "0.99").train.ema_decay == 0.99
    err = _one_line_error(capsys, [*train, "--lr-schedule", "linear"])
    assert "unknown lr_schedule 'linear'; known: constant, cosine" in err
    err = _one_line_error(capsys, [*train, "--policy", "diffusion", "--ema-decay", "0.99"])
    assert "diffusion policy keeps its own EMA" in err
    assert not (tmp_path / "run").exists()


def test_policy_flags_override_the_commands_default_policy() -> None:
    quick = _parse("quickstart", "--policy-args", "head=gmm", "--train.lr", "3e-4")
    assert quick.train.policy == RNNConfig(hidden_dim=128, head="gmm") and quick.train.lr == 3e-4
    assert _parse("quickstart", "--policy", "mlp").train.policy == MLPConfig()
    assert _parse("dagger", "--task", "lift", "--out", "r").train.policy == MLPConfig()
    # The quickstart's recipe is its nested default, TrainConfig's own defaults elsewhere.
    assert _parse("quickstart").train == replace(
        TrainConfig(), policy=RNNConfig(hidden_dim=128), epochs=20, lr=1e-3, eval_every=5, threads=1
    )


def test_comma_lists_fill_tuple_fields_of_the_policy() -> None:
    """The README's camera command: comma lists for image_keys and obs_keys."""
    args = [
        "image_keys=agentview_image,eye_in_hand_image",
        "obs_keys=eef_pos,eef_quat,gripper_qpos",
    ]
    policy = _parse("train", "--dataset", "d", "--out", "r", "--policy-args", *args).policy
    assert policy.image_keys == ("agentview_image", "eye_in_hand_image")
    assert policy.obs_keys == ("eef_pos", "eef_quat", "gripper_qpos")
    dagger = _parse("dagger", "--task", "lift", "--out", "r", "--policy-args", "obs_keys=a,b")
    assert dagger.train.policy.obs_keys == ("a", "b")
    for form in ("unet_channels=16,32,64", "unet_channels=[16,32,64]"):
        diffusion = _parse("train", "--dataset", "d", "--out", "r", "--policy", "diffusion",
                           "--policy-args", form).policy  # fmt: skip
        assert diffusion.unet_channels == (16, 32, 64)
    assert _parse("train", "--dataset", "d", "--out", "r", "--policy", "mlp",
                  "--policy-args", "hidden_dims=256").policy.hidden_dims == (256,)  # fmt: skip


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    return err


def test_bad_training_values_are_one_line_before_any_work(
    demo_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    train = ["train", "--dataset", str(demo_file), "--out", str(run)]
    err = _one_line_error(capsys, [*train, "--threads", "0"])
    assert "threads must be >= 1" in err and err.startswith("apprentice train: error:")
    dagger = ["dagger", "--task", "lift", "--out", str(run)]
    assert "threads must be >= 1" in _one_line_error(capsys, [*dagger, "--train.threads", "0"])
    err = _one_line_error(capsys, [*dagger, "--eval-episodes", "0"])
    assert "eval_episodes must be >= 1" in err
    err = _one_line_error(capsys, [*train, "--valid-fraction", "2"])
    assert "valid_fraction must be in [0, 1)" in err
    assert not run.exists()  # refused before a run folder was made


def test_valid_fraction_out_of_range_is_refused_by_every_command_that_splits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demos.hdf5"
    collect = ["collect", "--task", "lift", "--n", "2", "--out", str(out), "--no-progress"]
    err = _one_line_error(capsys, [*collect, "--valid-fraction", "2"])
    assert "--valid-fraction must be in [0, 1)" in err and "not 2.0" in err
    assert not out.exists()  # refused before any demo was recorded
    generate = ["generate", "--source", str(tmp_path / "none.hdf5"), "--out", str(out)]
    err = _one_line_error(capsys, [*generate, "--valid-fraction", "-0.5"])
    assert "--valid-fraction must be in [0, 1)" in err
