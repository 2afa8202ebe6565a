"""DAgger end to end (lift with its oracle, a gym task with an SB3 expert), resume, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from apprentice.cli.main import main
from apprentice.data.reader import DemoFile
from apprentice.errors import ApprenticeError
from apprentice.interactive import dagger as dagger_module
from apprentice.interactive.dagger import DaggerConfig, round_training, run_dagger
from apprentice.overrides import parse_overrides
from apprentice.policies.base import policy_config_from_dict
from apprentice.policies.mlp import MLPConfig

TINY_TRAIN = {"epochs": 1, "steps_per_epoch": 5, "batch_size": 32, "threads": 1}
TINY = {"eval_episodes": 2, "train": round_training(**TINY_TRAIN)}
MLP16 = MLPConfig(hidden_dims=(16,))


def demo_attrs(path: Path) -> list[dict[str, Any]]:
    with DemoFile(path) as f:
        return [f.attrs(n) | {"num_samples": f.num_samples(n)} for n in f.demo_names]


def tiny_lift(out: Path, **kw: Any) -> DaggerConfig:
    """One DAgger round on lift with its oracle, a tiny MLP and 2 expert demos first."""
    base: dict[str, Any] = {"rounds": 1, "init_episodes": 2, "episodes_per_round": 2}
    train = round_training(policy=MLP16, **TINY_TRAIN)
    return DaggerConfig(task="lift", out=str(out), **(TINY | base | {"train": train} | kw))


def test_tiny_dagger_on_lift_aggregates_labelled_rounds(tmp_path: Path) -> None:
    result = run_dagger(tiny_lift(tmp_path / "run"))
    assert [h["round"] for h in result.history] == [0, 1]
    attrs = demo_attrs(result.dataset)
    assert [(a["source"], a["round"]) for a in attrs] == [("oracle", 0)] * 2 + [("dagger", 1)] * 2
    assert all(a["beta"] == 0.0 for a in attrs[2:])  # linear schedule, last round: learner only
    labels = sum(a["num_samples"] for a in attrs)
    assert result.history[-1]["labels"] == labels
    assert result.history[0]["labels"] == sum(a["num_samples"] for a in attrs[:2])
    assert 0.0 <= result.history[-1]["success_rate"] <= 1.0
    # Round 1 trained from round 0's weights (warm start) and left its own learner.
    cfg_1 = json.loads((result.run_dir / "round_1" / "config.json").read_text())
    assert cfg_1["init_checkpoint"].endswith("round_0/final.pt")
    assert (result.run_dir / "round_1" / "final.pt").is_file()


def test_selection_returns_the_best_round_on_validation_later_on_ties() -> None:
    def h(r: int, val: float, test: float) -> dict[str, Any]:
        return {"round": r, "validation": val, "success_rate": test, "mean_return": 0.0}

    history = [h(0, 0.2, 0.3), h(1, 0.9, 0.8), h(2, 0.5, 0.95), h(3, 0.9, 0.7)]
    picked = dagger_module._selection(history[:3])
    # Round 2's better test score is not looked at: only validation picks.
    assert picked == {
        "selected_round": 1,
        "selected": {"success_rate": 0.8, "mean_return": 0.0},
    }
    assert dagger_module._selection(history)["selected_round"] == 3


def test_validation_rollouts_pick_the_returned_learner(tmp_path: Path) -> None:
    result = run_dagger(tiny_lift(tmp_path / "run", episodes_per_round=1, validation_episodes=2))
    for i, h in enumerate(result.history):
        assert 0.0 <= h["validation"] <= 1.0
        best = max(result.history[: i + 1], key=lambda e: (e["validation"], e["round"]))
        assert h["selected_round"] == best["round"]
        assert h["selected"]["success_rate"] == best["success_rate"]
    chosen = result.history[-1]["selected_round"]
    assert result.policy == result.run_dir / f"round_{chosen}" / "final.pt"
    with pytest.raises(ApprenticeError, match="validation_episodes"):
        DaggerConfig(task="lift", out="x", validation_episodes=-1)


@pytest.mark.parametrize("policy", ["mlp", "rnn", "gmm"])
@pytest.mark.parametrize("method", ["dagger", "hg-dagger", "dart"])
def test_every_method_and_policy_kind_runs_against_an_sb3_expert(
    tmp_path: Path, pendulum_expert: Path, method: str, policy: str
) -> None:
    args = {
        "mlp": ("hidden_dims=[16]",),
        "rnn": ("hidden_dim=8", "num_layers=1", "seq_len=4"),
        "gmm": ("hidden_dims=[16]", "num_modes=2"),
    }[policy]
    policy_config = policy_config_from_dict({"name": policy, **parse_overrides(args)})
    cfg = DaggerConfig(
        task="gym/InvertedPendulum-v5",
        out=str(tmp_path / "run"),
        expert=str(pendulum_expert),
        method=method,
        rounds=1,
        init_episodes=1,
        labels_per_round=12,
        gate_threshold=0.05,
        **(TINY | {"train": round_training(policy=policy_config, **TINY_TRAIN)}),
    )
    result = run_dagger(cfg)
    last = result.history[-1]
    assert "normalized_return" in last
    assert last["normalized_return"] == pytest.approx((last["mean_return"] - 5.0) / 95.0)
    round_1 = [a for a in demo_attrs(result.dataset) if a["round"] == 1]
    assert sum(a["num_samples"] for a in round_1) == last["round_labels"]
    if method == "hg-dagger":
        # Each stored segment is one takeover: the count the history reports.
        assert last["interventions"] == len(round_1) >= 1
        assert last["round_labels"] <= 12
    else:
        assert last["round_labels"] == 12  # the exact label budget
        assert {a["source"] for a in round_1} == {method}
    if method == "dart":
        assert last["noise_std"] is not None and last["noise_std"][0] > 0


def test_a_killed_run_resumes_without_redoing_stored_episodes(
    tmp_path: Path, pendulum_expert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = DaggerConfig(
        task="gym/InvertedPendulum-v5",
        out=str(tmp_path / "run"),
        expert=str(pendulum_expert),
        rounds=2,
        init_episodes=1,
        episodes_per_round=3,
        **(TINY | {"train": round_training(policy=MLP16, **TINY_TRAIN)}),
    )
    real = dagger_module.run_episode
    calls = {"n": 0}

    def dies_in_round_2(*args: Any, **kwargs: Any) -> Any:
        if kwargs["attrs"]["round"] == 2 and kwargs["attrs"]["rollout"] == 1:
            raise KeyboardInterrupt
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(dagger_module, "run_episode", dies_in_round_2)
    with pytest.raises(KeyboardInterrupt):
        run_dagger(cfg)
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["rounds_done"] == 1
    assert calls["n"] == 1 + 3 + 1  # round 0, round 1, the first episode of round 2
    monkeypatch.setattr(dagger_module, "run_episode", real)
    result = run_dagger(cfg)
    assert result.resumed_from_round == 1
    assert [h["round"] for h in result.history] == [0, 1, 2]
    rollouts = [(a["round"], a["rollout"]) for a in demo_attrs(result.dataset)]
    assert rollouts == [(0, 0), (1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)]
    # A rerun of a finished run does nothing more; a changed config is refused.
    assert run_dagger(cfg).resumed_from_round == 2
    with pytest.raises(ApprenticeError, match=r"different config .*rounds"):
        run_dagger(DaggerConfig(**{**cfg.__dict__, "rounds": 3}))


def test_an_expert_that_cannot_label_is_one_clear_error(
    tmp_path: Path, pendulum_expert: Path
) -> None:
    with pytest.raises(ApprenticeError, match="gym/Reacher-v5 has no scripted oracle"):
        run_dagger(DaggerConfig(task="gym/Reacher-v5", out=str(tmp_path / "a")))
    with pytest.raises(
        ApprenticeError, match="trained for task 'gym/InvertedPendulum-v5', not 'gym/Reacher-v5'"
    ):
        run_dagger(
            DaggerConfig(
                task="gym/Reacher-v5", out=str(tmp_path / "b"), expert=str(pendulum_expert)
            )
        )
    with pytest.raises(ApprenticeError, match="devices found: browser"):
        run_dagger(
            DaggerConfig(task="lift", out=str(tmp_path / "c"), expert="teleop", device="spacemouse")
        )
    with pytest.raises(ApprenticeError, match="does not exist"):
        run_dagger(DaggerConfig(task="lift", out=str(tmp_path / "d"), expert="nope.zip"))


def test_a_dataset_that_does_not_fit_the_task_is_one_clear_error(
    tmp_path: Path, synthetic: Any
) -> None:
    other = synthetic.write_demo_file(tmp_path / "stack.hdf5", env_name="stack")
    with pytest.raises(ApprenticeError, match="demos of task 'stack', not 'lift'"):
        run_dagger(
            DaggerConfig(task="lift", out=str(tmp_path / "a"), dataset=str(other), rounds=0, **TINY)
        )
    wrong_keys = synthetic.write_demo_file(tmp_path / "lift.hdf5", env_name="lift")
    with h5py.File(wrong_keys, "r+") as f:  # the cube's observation under another name
        for demo in f["data"].values():
            demo.move("obs/object", "obs/cube")
    with pytest.raises(ApprenticeError, match=r"has observation keys .*task 'lift' gives"):
        run_dagger(
            DaggerConfig(
                task="lift", out=str(tmp_path / "b"), dataset=str(wrong_keys), rounds=0, **TINY
            )
        )


def test_cli_prints_one_line_and_exits_2_on_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["dagger", "--task", "gym/Reacher-v5", "--out", str(tmp_path / "r")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "has no scripted oracle" in err


def test_bad_config_values_are_named() -> None:
    with pytest.raises(ApprenticeError, match="method must be one of"):
        DaggerConfig(task="lift", out="x", method="gail")
    with pytest.raises(ApprenticeError, match="beta_schedule"):
        DaggerConfig(task="lift", out="x", beta_schedule="cosine")
    with pytest.raises(ApprenticeError, match="max_rollouts must be >= 0"):
        DaggerConfig(task="lift", out="x", max_rollouts=-1)
    assert np.isclose(DaggerConfig(task="lift", out="x").beta_decay, 0.5)


def test_wandb_gets_the_config_and_each_rounds_scores(tmp_path: Path, wandb_offline: Any) -> None:
    from apprentice.tracking import STEP

    result = run_dagger(tiny_lift(tmp_path / "run", wandb="proj"))
    (run,) = wandb_offline.read_offline_runs(result.run_dir)
    assert run.project == "proj" and run.job_type == "dagger"
    assert run.config["method"] == "dagger" and run.config["train"]["epochs"] == 1
    assert [row[STEP] for row in run.history] == [h["round"] for h in result.history] == [0, 1]
    for row, h in zip(run.history, result.history, strict=True):
        for key in ("success_rate", "mean_return", "labels", "round_labels", "beta"):
            assert row[f"round/{key}"] == h[key]
    assert not (result.run_dir / "round_1" / "wandb").exists()  # one W&B run, not one a round
