"""`apprentice sweep`: a tiny grid end to end, resumed cell by cell; bad input refused in one
line before anything runs; a failing cell recorded while the others go on."""

from __future__ import annotations

import base64
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from apprentice.algos.trainer import Trainer
from apprentice.cli.main import build_parser, given_flags, main
from apprentice.cli.sweep import sweep_config
from apprentice.data import DemoFile
from apprentice.evaluate.metrics import wilson_interval
from apprentice.sweep import SweepConfig, load_spec

TINY = (
    *("--tasks", "lift", "--policies", "mlp", "--episodes", "1"),
    *("--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "8"),
    *("--policy-args", "hidden_dims=16", "--eval-envs", "1"),
)
"""A cell collects a few lift demos, trains an MLP of 16 units for 2 steps, scores 1 episode."""


def sweep(out: Path, *args: str) -> int:
    return main(["sweep", *TINY, "--out", str(out), *args])


def cells(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "cells.jsonl").read_text().splitlines()]


def run_files(out: Path) -> dict[str, int]:
    """Every file under the cells' run folders, with its modification time."""
    return {str(p): p.stat().st_mtime_ns for p in (out / "runs").rglob("*") if p.is_file()}


def actions(path: Path) -> list[np.ndarray]:
    with DemoFile(path) as f:
        return [f.read_actions(n) for n in f.demo_names]


def test_a_grid_runs_on_two_workers_and_a_rerun_skips_its_finished_cells(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sweep"
    assert sweep(out, "--demos", "2", "3", "--seeds", "0", "1", "--workers", "2") == 0
    records = cells(out)
    keys = {f"lift/low_dim/mlp/d{n}/s{s}" for n in (2, 3) for s in (0, 1)}
    assert {r["key"] for r in records} == keys and not [r for r in records if "error" in r]
    for r in records:
        assert r["episodes"] == 1 and 0 <= r["successes"] <= 1 and r["resumed_from_epoch"] == 0
        assert Path(r["checkpoint"]).name == "final.pt" and r["settings"]["train"]["epochs"] == 1
        config = json.loads((Path(r["run_dir"]) / "config.json").read_text())
        assert (config["threads"], config["seed"]) == (1, r["cell"]["seed"])
    # The 2-demo file is the first demos of the 3-demo one.
    small, large = (actions(out / "data" / f"lift_lowdim_{n}.hdf5") for n in (2, 3))
    assert len(small) == 2 and len(large) == 3
    for a, b in zip(small, large[:2], strict=True):
        np.testing.assert_array_equal(a, b)
    # summary.json: per group the seeds pooled, with their Wilson interval and spread.
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed"] == [] and summary["cells"] == 4
    for group in summary["groups"]:
        by_seed = {s["seed"]: s for s in group["seeds"]}
        mine = [r for r in records if r["cell"]["demos"] == group["demos"]]
        assert sorted(by_seed) == [0, 1]
        assert group["successes"] == sum(r["successes"] for r in mine) and group["episodes"] == 2
        assert (group["ci_low"], group["ci_high"]) == pytest.approx(
            wilson_interval(group["successes"], 2)
        )
        rates = [by_seed[s]["success_rate"] for s in (0, 1)]
        assert group["seed_spread"] == max(rates) - min(rates)
    # report.html: the table and the plot, a PNG inside the page.
    report = (out / "report.html").read_text()
    png = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", report)
    assert png and base64.b64decode(png.group(1)).startswith(b"\x89PNG")
    assert "<td>lift</td><td>low_dim</td><td>mlp</td><td>3</td>" in report
    stdout = capsys.readouterr().out
    assert "0 cells done, 4 to run" in stdout and "lift/low_dim/mlp/d3/s1: " in stdout
    # A rerun trains nothing: no cell line added, no run folder file touched.
    before = run_files(out)
    assert sweep(out, "--demos", "2", "3", "--seeds", "0", "1", "--workers", "2") == 0
    assert "4 cells done, 0 to run" in capsys.readouterr().out
    assert len(cells(out)) == 4 and run_files(out) == before
    # One more seed runs that seed's cells alone; other settings are refused up front.
    assert sweep(out, "--demos", "2", "--seeds", "0", "2", "--workers", "1") == 0
    assert [r["key"] for r in cells(out)[4:]] == ["lift/low_dim/mlp/d2/s2"]
    assert sweep(out, "--demos", "2", "--seeds", "0", "--lr", "0.01") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lift/low_dim/mlp/d2/s0 with other settings (train.lr" in err


def _interrupt_at_epoch(epoch: int) -> Callable[[Trainer, int], None]:
    run_epoch = Trainer.run_epoch

    def interrupted(self: Trainer, e: int) -> None:
        if e == epoch:
            raise KeyboardInterrupt
        run_epoch(self, e)

    return interrupted


def test_an_interrupted_cell_resumes_from_its_last_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sweep"
    args = ("--demos", "2", "--seeds", "0", "--workers", "1", "--epochs", "2")
    with monkeypatch.context() as m:  # Ctrl-C in the cell's second epoch
        m.setattr(Trainer, "run_epoch", _interrupt_at_epoch(2))
        assert sweep(out, *args) == 130
    assert "rerun the same command to resume" in capsys.readouterr().err
    assert not (out / "cells.jsonl").exists()  # the cell did not finish
    run_dir = out / "runs" / "lift_low_dim_mlp_d2_s0"
    assert (run_dir / "last.pt").exists() and not (run_dir / "final.pt").exists()
    epoch_1 = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert sweep(out, *args) == 0
    (record,) = cells(out)
    assert record["resumed_from_epoch"] == 1 and record["epochs"] == 2
    metrics = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert metrics[:1] == epoch_1 and len(metrics) == 2  # epoch 1 kept, epoch 2 trained


def test_a_failing_cell_is_recorded_and_the_others_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import apprentice.sweep.cell as cell_work

    run_train = cell_work.run_train

    def fails_for_seed_1(config: Any) -> dict[str, Any]:
        if config.seed == 1:
            raise RuntimeError("the loss went\nNaN")
        return run_train(config)

    out = tmp_path / "sweep"
    args = ("--demos", "2", "--seeds", "0", "1", "--workers", "1")
    with monkeypatch.context() as m:
        m.setattr(cell_work, "run_train", fails_for_seed_1)
        assert sweep(out, *args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "1 cell(s) failed: lift/low_dim/mlp/d2/s1" in err
    ok, failed = cells(out)
    assert ok["key"].endswith("/s0") and "error" not in ok
    assert failed["key"].endswith("/s1")
    assert (
        failed["error"] == "RuntimeError: the loss went NaN"
        and "fails_for_seed_1" in failed["trace"]
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed"] == [{"key": failed["key"], "error": failed["error"]}]
    assert "Failed cells" in (out / "report.html").read_text()
    # The rerun retries the failed cell alone.
    assert sweep(out, *args) == 0
    assert "1 cells done, 1 to run" in capsys.readouterr().out
    assert [r["key"] for r in cells(out)] == [ok["key"], failed["key"], failed["key"]]
    assert json.loads((out / "summary.json").read_text())["failed"] == []


def test_a_task_whose_demos_cannot_be_made_fails_its_cells_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sweep"
    # gym/HalfCheetah-v5 has no built-in expert to collect its demos with.
    tasks = ("--tasks", "gym/HalfCheetah-v5", "lift")
    assert sweep(out, "--demos", "2", "--seeds", "0", "--workers", "1", *tasks) == 2
    assert "1 cell(s) failed: gym/HalfCheetah-v5/low_dim/mlp/d2/s0" in capsys.readouterr().err
    failed, ok = cells(out)
    assert "has no built-in expert" in failed["error"] and "error" not in ok


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--tasks", "lfit", "--policies", "mlp"), "unknown task 'lfit'; the known tasks are: "),
        (("--recipes", "lift-lowdmi"), "unknown recipe 'lift-lowdmi'; the known recipes are: "),
        (("--policies", "mlp", "gmmm"), "unknown policy 'gmmm'; the known policies are: "),
        ((), "give what to train: --policies NAME"),
        (("--policies", "mlp", "--policy-args", "hidden=3"), "has unknown field(s) hidden"),
        (("--policies", "mlp", "--train-args", "seed=3"), "the sweep sets seed itself"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_before_anything_runs(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flags: tuple[str, ...],
    message: str,
) -> None:
    out = tmp_path / "sweep"
    assert main(["sweep", *flags, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    if "known" in message:
        assert "lift" in err or "lift-lowdim" in err or "mlp" in err  # the list of known ones
    assert not out.exists()


def test_the_ray_backend_without_ray_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails
    assert sweep(tmp_path / "sweep", "--demos", "2", "--backend", "ray") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--backend ray needs Ray: pip install" in err
    assert not (tmp_path / "sweep").exists()


def test_a_camera_cell_reads_the_cameras_and_the_robots_state_not_the_objects(
    tmp_path: Path,
) -> None:
    from apprentice.sweep import plan

    (job,) = plan(SweepConfig(policies=("mlp",), demos=(2,), seeds=(0,), camera=True), tmp_path)
    assert job.cell.key == "lift/images/mlp/d2/s0" and job.demos.camera
    policy = job.train.policy
    assert policy.image_keys == ("agentview_image", "eye_in_hand_image")
    assert set(policy.obs_keys) == {"eef_pos", "eef_quat", "gripper_qpos"}


def _config(*argv: str) -> SweepConfig:
    """The sweep's settings from `apprentice sweep ARGV`, as `main` makes them."""
    full = ["sweep", *argv]
    ns = build_parser().parse_args(full)
    ns.given = given_flags(full)
    return sweep_config(ns)


def test_a_spec_file_gives_the_grid_and_flags_beside_it_override_it(tmp_path: Path) -> None:
    spec = tmp_path / "grid.toml"
    spec.write_text(
        'tasks = ["lift", "stack"]\npolicies = ["mlp", "rnn"]\ndemos = [50, 200]\n'
        "seeds = [0, 1, 2]\nepochs = 20\nworkers = 4\n"
        '[policy_args]\nhidden_dims = [64, 64]\nactivation = "gelu"\n'
    )
    config = _config("--spec", str(spec))
    assert (config.tasks, config.policies, config.demos) == (
        ("lift", "stack"),
        ("mlp", "rnn"),
        (50, 200),
    )
    assert (config.epochs, config.workers, config.episodes) == (20, 4, 50)
    assert config.policy_args == ("hidden_dims=[64, 64]", 'activation="gelu"')
    # A flag given beside the spec wins, even at its default value; the rest stays the spec's.
    config = _config("--spec", str(spec), "--workers", "2", "--demos", "10")
    assert (config.workers, config.demos, config.epochs) == (2, (10,), 20)
    # The same in JSON; a sweep folder's sweep.json is such a file.
    as_json = tmp_path / "grid.json"
    as_json.write_text(json.dumps(load_spec(spec).to_dict()))
    assert load_spec(as_json) == load_spec(spec)
    bad = tmp_path / "bad.toml"
    bad.write_text('tasks = ["lift"]\npolicies = ["mlp"]\nepoch = 3\n')
    assert main(["sweep", "--spec", str(bad)]) == 2


def test_a_recipe_cell_takes_the_recipes_data_and_settings_with_the_flags_over_them(
    tmp_path: Path,
) -> None:
    from apprentice.recipes import get_recipe
    from apprentice.sweep import plan

    config = _config("--recipes", "lift-lowdim", "--policies", "mlp", "--epochs", "3")
    jobs = plan(config, tmp_path)
    recipe = get_recipe("lift-lowdim")
    by_method = {j.cell.method: j for j in jobs if j.cell.seed == 0}
    cell = by_method["lift-lowdim"]
    assert cell.cell.demos == recipe.min_demos and by_method["mlp"].cell.demos == 100
    assert cell.demos.action_noise == recipe.collect.action_noise
    assert cell.train == recipe.config(
        out=str(tmp_path / "runs" / "lift_low_dim_lift-lowdim_d200_s0"),
        epochs=3,
        threads=1,
        progress=False,
    )
    assert by_method["mlp"].train.eval_every == 0 and by_method["mlp"].train.epochs == 3
    # Task by task, then by demo count and seed: the 100-demo mlp cells come first.
    assert [j.cell.key for j in jobs[:2]] == [
        "lift/low_dim/mlp/d100/s0",
        "lift/low_dim/mlp/d100/s1",
    ]


def test_the_ray_backend_runs_the_cells_as_the_process_pool_does(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    args = ("--demos", "2", "--seeds", "0", "1", "--workers", "2")
    assert sweep(tmp_path / "pool", *args) == 0
    try:
        assert sweep(tmp_path / "ray", *args, "--backend", "ray") == 0
    finally:
        ray.shutdown()

    def scores(out: Path) -> dict[str, tuple[int, float]]:
        return {r["key"]: (r["successes"], r["train_loss"]) for r in cells(out)}

    # Same demos, same seeds: the same training curve and score wherever a cell runs.
    assert scores(tmp_path / "ray") == scores(tmp_path / "pool")
