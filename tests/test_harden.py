"""`apprentice harden` end to end on lift, tiny: a policy trained for one short epoch, one axis
at two levels, two episodes a level, two new demos, one epoch of retraining.

A policy that small never succeeds, so no level can fall below its nominal rate: the test of
the full loop scripts the first sweep's outcome (nominal success, failure at the perturbed
level) over the real sweep's files, and every other stage runs for real.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import apprentice.harden as harden_module
from apprentice.algos.config import load_train_config
from apprentice.algos.trainer import TrainConfig, train
from apprentice.cli.main import main
from apprentice.collect.oracle import CollectConfig, collect_demos
from apprentice.data.reader import DemoFile
from apprentice.evaluate.robustness import sweep_policy
from apprentice.harden import STAGES, HardenConfig, failing_levels, harden
from apprentice.policies.base import policy_config_from_dict
from apprentice.policies.checkpoint import resolve_checkpoint

DATASET_DEMOS = 3


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(run folder, its demos): a tiny MLP trained for one epoch of two steps on lift."""
    root = tmp_path_factory.mktemp("harden")
    demos = root / "lift.hdf5"
    collect_demos(
        CollectConfig(task="lift", n=DATASET_DEMOS, out=str(demos), workers=1, progress=False)
    )
    train(
        TrainConfig(
            dataset=str(demos),
            out=str(root / "run"),
            policy=policy_config_from_dict({"name": "mlp", "hidden_dims": [16]}),
            epochs=1,
            steps_per_epoch=2,
            batch_size=4,
            eval_every=0,
            threads=1,
            progress=False,
        )
    )
    return root / "run", demos


class ScriptedSweeps:
    """The real sweep, whose rates, for the checkpoint `scripted`, become `rates` (level ->
    success rate); counts its calls."""

    def __init__(self, scripted: Path, rates: dict[float, float]) -> None:
        self.scripted, self.rates, self.calls = scripted.resolve(), rates, 0

    def __call__(self, cfg: Any, sweeps: Any, **kwargs: Any) -> dict[str, Any]:
        self.calls += 1
        s = sweep_policy(cfg, sweeps, **kwargs)
        if Path(s["checkpoint"]).resolve() != self.scripted:
            return s
        for rows in s["axes"].values():
            for r in rows:
                r["success_rate"] = self.rates[r["level"]]
                r["successes"] = round(self.rates[r["level"]] * r["episodes"])
        return s


def _argv(run: Path, demos: Path, out: Path, *extra: str) -> list[str]:
    return [
        "harden", str(run), "--dataset", str(demos), "--out", str(out), "--sweep", "light=0.5",
        "--episodes", "2", "--demos", "2", "--epochs", "1", "--workers", "1", "--no-progress",
        *extra,
    ]  # fmt: skip


def _config(run: Path, demos: Path, out: Path) -> HardenConfig:
    return HardenConfig(
        checkpoint=str(run),
        dataset=str(demos),
        out=str(out),
        sweep=("light=0.5",),
        episodes=2,
        demos=2,
        epochs=1,
        workers=1,
        progress=False,
    )


def test_a_failing_axis_gets_demos_a_warm_started_retraining_and_a_second_sweep(
    trained: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, demos = trained
    out = tmp_path / "harden"
    checkpoint = resolve_checkpoint(run)  # best.pt, by validation loss
    sweeps = ScriptedSweeps(checkpoint, {0.0: 1.0, 0.5: 0.0})
    monkeypatch.setattr(harden_module, "sweep_policy", sweeps)
    assert main(_argv(run, demos, out)) == 0
    state = json.loads((out / "state.json").read_text())
    assert state["done"] == list(STAGES)
    summary = json.loads((out / "harden.json").read_text())
    assert summary["failing"] == {"light": 0.5}
    assert [(r["level"], r["before"]["fails"]) for r in summary["axes"]["light"]] == [
        (0.0, False),
        (0.5, True),
    ]
    assert summary["axes"]["light"][1]["before"]["success_rate"] == 0.0
    after = summary["axes"]["light"][1]["after"]
    assert after["episodes"] == 2 and after["ci_low"] <= after["success_rate"] <= after["ci_high"]

    # The new demos: the oracle's, with the failing axis drawn from its lowest failing level.
    with DemoFile(out / "demos_new.hdf5") as f:
        assert len(f.demo_names) == 2
        assert f.env_args["env_kwargs"]["perturb"] == {"light": [0.5, 1.0]}
    # The training set: the dataset's demos and the new ones, the range widened to nominal.
    with DemoFile(out / "demos_train.hdf5") as f, DemoFile(demos) as original:
        assert len(f.demo_names) == DATASET_DEMOS + 2
        assert f.env_args["env_kwargs"]["perturb"] == {"light": [0.0, 1.0]}
        assert [f.attrs(n)["origin"] for n in f.demo_names] == ["lift.hdf5"] * DATASET_DEMOS + [
            "demos_new.hdf5"
        ] * 2
        assert (f.read_actions("demo_0") == original.read_actions("demo_0")).all()
        assert sorted(f.masks["train"] + f.masks["valid"]) == sorted(f.demo_names)
    # Retrained from the checkpoint, with its run's settings but the new data.
    retrain = load_train_config(out / "run" / "config.json")
    assert retrain.init_checkpoint == str(checkpoint.resolve())
    assert retrain.dataset == str(out / "demos_train.hdf5")
    assert retrain.steps_per_epoch == 2 and retrain.epochs == 1
    assert summary["hardened_checkpoint"] == str(resolve_checkpoint(out / "run"))
    report = (out / "harden.md").read_text()
    assert "| light | 0.5 | 0.0% (0/2" in report and "fails" in report
    assert "data:image/png;base64" in (out / "report.html").read_text()

    # The same command again does nothing new; a stage left undone resumes its own work.
    calls, stamps = sweeps.calls, {p: p.stat().st_mtime_ns for p in out.rglob("*.hdf5")}
    result = harden(_config(run, demos, out))
    assert result.stages_run == [] and sweeps.calls == calls
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.hdf5")} == stamps
    state["done"] = ["before", "collect", "merge"]
    (out / "state.json").write_text(json.dumps(state))
    result = harden(_config(run, demos, out))
    assert result.stages_run == ["train", "after", "report"]
    assert len((out / "run" / "metrics.jsonl").read_text().splitlines()) == 1  # no new epoch
    assert result.summary == summary


@pytest.mark.parametrize(
    ("rates", "outcome"),
    [
        (None, "never succeeds at nominal"),  # the real sweep: the tiny policy never succeeds
        ({0.0: 1.0, 0.5: 1.0}, "no level falls below 0.8 x the nominal success rate"),
    ],
)
def test_nothing_failing_stops_after_the_sweep(
    trained: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    rates: dict[float, float] | None,
    outcome: str,
) -> None:
    run, demos = trained
    out = tmp_path / "harden"
    if rates is not None:
        monkeypatch.setattr(
            harden_module, "sweep_policy", ScriptedSweeps(resolve_checkpoint(run), rates)
        )
    assert main(_argv(run, demos, out)) == 0
    summary = json.loads((out / "harden.json").read_text())
    assert summary["failing"] == {} and outcome in summary["outcome"]
    assert summary["axes"]["light"][0]["after"] is None
    assert not (out / "demos_new.hdf5").exists() and not (out / "run").exists()
    assert json.loads((out / "state.json").read_text())["done"] == ["before", "report"]
    assert outcome in capsys.readouterr().out


def test_failing_levels_are_those_below_keep_times_nominal() -> None:
    def rows(*rates: float) -> list[dict[str, float]]:
        return [{"level": i / 2, "success_rate": r} for i, r in enumerate(rates)]

    axes = {"light": rows(0.9, 0.8, 0.1), "camera": rows(0.9, 0.5, 0.8), "colors": rows(0, 0, 0)}
    assert failing_levels(axes, keep=0.8) == {"light": 1.0, "camera": 0.5}
    assert failing_levels(axes, keep=0.5) == {"light": 1.0}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--sweep": "gravity=0,1"}, "--sweep gravity: no such axis; task 'lift' takes the axes"),
        ({"--sweep": "light=0,2"}, "light=2.0: a level must lie in [0, 1]"),
        ({"--dataset": "missing.hdf5"}, "missing.hdf5: no such file"),
        ({"--dataset": "stack.hdf5"}, "holds demos of task 'stack', but checkpoint"),
        ({"--keep": "0.9"}, "holds a harden run with other settings (keep differ)"),
        ({"--episodes": "0"}, "--episodes must be >= 1"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_loses_nothing(
    trained: tuple[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
    synthetic: Any,
    capsys: pytest.CaptureFixture[str],
    change: dict[str, str],
    message: str,
) -> None:
    run, demos = trained
    root = tmp_path_factory.getbasetemp() / "harden-bad-input"
    out = root / "harden"
    if not (out / "harden.json").exists():  # a finished run the bad reruns must not touch
        root.mkdir(exist_ok=True)
        synthetic.write_demo_file(root / "stack.hdf5", num_demos=2, env_name="stack")
        assert main(_argv(run, demos, out)) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    argv = _argv(run, demos, out)
    for flag, value in change.items():
        value = str(root / value) if value.endswith(".hdf5") else value
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("apprentice harden: error:")
    assert err.strip().count("\n") == 0
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
