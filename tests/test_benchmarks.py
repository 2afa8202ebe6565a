"""Small versions of the benchmark scripts: they still run and write their results.

The full-size runs live outside CI (see benchmarks/results/ for the commands).
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from apprentice.envs.robosuite import robosuite_available
from apprentice.evaluate.metrics import wilson_interval

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))
import harness  # noqa: E402  (benchmarks/ is no package: its scripts import it from there)


def run(script: str, *args: str) -> str:
    r = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def test_env_benchmark(tmp_path: Path) -> None:
    out = tmp_path / "envs.json"
    stdout = run(
        "bench_envs.py", "--episodes", "2", "--steps", "100", "--tasks", "lift", "--out", str(out)
    )
    assert "| lift |" in stdout
    assert json.loads(out.read_text())


def test_eval_benchmark(tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    run("bench_eval.py", "--episodes", "2", "--repeats", "1", "--json", str(out))
    result = json.loads(out.read_text())
    assert result["speedup_median"] > 0


@pytest.mark.slow
def test_quality_benchmark(tmp_path: Path) -> None:
    out = tmp_path / "quality.json"
    run(
        "bench_quality.py",
        *("--tasks", "lift", "--demos", "4", "--seeds", "0", "--episodes", "2"),
        *("--epochs", "1", "--steps-per-epoch", "5", "--workers", "1"),
        *("--policy-args", "hidden_dim=16", "--work", str(tmp_path), "--json", str(out)),
    )
    result = json.loads(out.read_text())
    assert result["tasks"]["lift"]["episodes"] == 2


@pytest.mark.slow
def test_encoder_pretraining_benchmark(tmp_path: Path) -> None:
    """Scratch and pretrained+frozen encoders, trained and evaluated at the tiniest size."""
    out = tmp_path / "pre.json"
    stdout = run(
        "bench_encoder_pretraining.py", "--quick", "--work", str(tmp_path), "--json", str(out)
    )
    results = json.loads(out.read_text())["results"]["4"]
    assert {arm: r["episodes"] for arm, r in results.items()} == {"scratch": 2, "pretrained": 2}
    assert "| 4 | pretrained |" in stdout


@pytest.mark.slow
def test_recipes_benchmark(tmp_path: Path) -> None:
    """The recipe's data (200 lift demos), `apprentice train --recipe` with the flags after
    `--` overriding it, and the held-out score, in one JSON."""
    stdout = run(
        "bench_recipes.py",
        *("--recipe", "lift-lowdim", "--seeds", "0", "--episodes", "2", "--workers", "1"),
        *("--work", str(tmp_path), "--", "--epochs", "1", "--steps-per-epoch", "5"),
        *("--policy-args", "hidden_dim=16", "--eval-every", "0"),
    )
    result = json.loads((tmp_path / "lift-lowdim.json").read_text())
    assert result["recipe"] == "lift-lowdim" and result["episodes"] == 2
    assert result["train_flags"][-2:] == ["--eval-every", "0"]
    (seed_run,) = result["runs"]
    assert seed_run["seed"] == 0 and seed_run["episodes"] == 2
    assert result["successes"] == seed_run["successes"] and 0 <= seed_run["successes"] <= 2
    assert 0.0 <= result["mean_max_reward"] <= 1.0 and seed_run["train_seconds"] > 0
    config = json.loads((tmp_path / "lift-lowdim" / "s0" / "config.json").read_text())
    assert (config["lr"], config["batch_size"], config["steps_per_epoch"]) == (1e-3, 100, 5)
    assert config["policy"]["hidden_dim"] == 16
    assert "| lift-lowdim |" in stdout
    # Fewer demos than the recipe takes are refused before any is collected.
    r = subprocess.run(
        [
            *(sys.executable, str(BENCH / "bench_recipes.py"), "--recipe", "lift-lowdim"),
            *("--demos", "10", "--work", str(tmp_path / "few")),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "needs at least 200" in r.stderr
    assert not (tmp_path / "few").exists()


@pytest.mark.skipif(not robosuite_available(), reason="needs the robosuite extra (make robosuite)")
def test_robosuite_benchmark_smoke() -> None:
    stdout = run("bench_robosuite_oracles.py", "--smoke")
    for name in ("Lift", "PickPlaceCan", "NutAssemblySquare", "Stack", "TwoArmTransport"):
        assert f"{name}: ok" in stdout


def test_generate_benchmark(tmp_path: Path) -> None:
    stdout = run(
        "bench_generate.py",
        *("--phase", "dgr", "--tasks", "lift", "--n", "3", "--seeds", "0"),
        *("--variants", "D0", "--work", str(tmp_path)),
    )
    assert "| lift | D0 |" in stdout
    rows = json.loads((tmp_path / "dgr_lift.json").read_text())["rows"]
    assert rows[0]["successes"] == 3 and 0 < rows[0]["dgr"] <= 1


def test_zoo_grid_benchmark_resumes_and_tabulates(tmp_path: Path) -> None:
    args = ("--quick", "--policies", "mlp", "act", "--jobs", "1", "--out", str(tmp_path))
    stdout = run("bench_zoo.py", *args)
    cells = [json.loads(line) for line in (tmp_path / "cells.jsonl").read_text().splitlines()]
    # 2 policies x 2 observation kinds x 2 demo counts x 1 seed, none failed.
    assert len(cells) == 8 and not [c for c in cells if "error" in c]
    assert "| lift | images | act | 2 |" in stdout
    again = run("bench_zoo.py", *args)
    assert "8 cells done, 0 to run" in again
    assert len((tmp_path / "cells.jsonl").read_text().splitlines()) == 8


def test_sweep_benchmark_times_one_and_two_workers(tmp_path: Path) -> None:
    out = tmp_path / "sweep.json"
    stdout = run("bench_sweep.py", "--quick", "--out", str(out), "--work", str(tmp_path / "runs"))
    result = json.loads(out.read_text())
    (pair,) = result["rounds"]
    assert {w: (r["workers"], r["cells"]) for w, r in pair.items()} == {"1": (1, 2), "2": (2, 2)}
    assert all(r["cells_per_hour"] > 0 for r in pair.values())
    speedup = pair["2"]["cells_per_hour"] / pair["1"]["cells_per_hour"]
    assert result["ratio"]["median"] == pytest.approx(speedup)
    assert "2 workers / 1 worker: " in stdout and "| 0 | " in stdout


def test_gpu_share_benchmark_times_both_steps(tmp_path: Path) -> None:
    out = tmp_path / "share.json"
    stdout = run("bench_gpu_share.py", "--quick", "--policies", "mlp", "--out", str(out))
    rows = json.loads(out.read_text())["rows"]
    assert {(r["procs"], r["mode"]) for r in rows} == {
        (1, "sync"),
        (1, "async"),
        (2, "sync"),
        (2, "async"),
    }
    assert all(len(r["rates"]) == r["procs"] and min(r["rates"]) > 0 for r in rows)
    assert "| mlp | 2 | async |" in stdout


def test_zoo_grid_runs_named_cells_in_order_and_refuses_a_bad_one(tmp_path: Path) -> None:
    cells = ("lift/low_dim/act/d3/s0", "lift/low_dim/mlp/d2/s0")
    stdout = run(
        "bench_zoo.py", "--quick", "--jobs", "1", "--out", str(tmp_path), "--cells", *cells
    )
    lines = (tmp_path / "cells.jsonl").read_text().splitlines()
    ran = [json.loads(line)["cell"] for line in lines]
    assert [(c["policy"], c["demos"]) for c in ran] == [("act", 3), ("mlp", 2)]
    assert "| lift | low_dim | mlp | 2 |" in stdout
    # No cell starts once --deadline has passed and --stop-by has no finished cell to go by.
    late = ("--deadline", "0", "--stop-by", "1000", "--cells", "lift/low_dim/gmm/d2/s0")
    assert "1 cells not started" in run("bench_zoo.py", "--quick", "--out", str(tmp_path), *late)
    r = subprocess.run(
        [sys.executable, str(BENCH / "bench_zoo.py"), "--cells", "lift/images/rnn/d50"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "'lift/images/rnn/d50' is not task/obs/policy/dN/sN" in r.stderr


def test_pusht_expert_and_zoo_cell(tmp_path: Path) -> None:
    out = tmp_path / "expert.json"
    stdout = run("bench_pusht_expert.py", "--episodes", "2", "--out", str(out))
    expert = json.loads(out.read_text())
    assert expert["episodes"] == 2 and "expert: " in stdout
    for e in expert["episodes_detail"]:
        assert e["seed"] >= 10**9  # held-out seeds, never a demo's
        assert (e["max_reward"] == 1.0) == e["success"]
    # A Push-T cell of the grid: demos from the expert, a policy, its score in the table.
    zoo = tmp_path / "zoo"
    cell = "pusht/low_dim/mlp/d2/s0"
    stdout = run("bench_zoo.py", "--quick", "--eval-envs", "1", "--out", str(zoo), "--cells", cell)
    (line,) = (zoo / "cells.jsonl").read_text().splitlines()
    result = json.loads(line)
    assert "error" not in result, result.get("trace")
    assert 0.0 <= result["mean_max_reward"] <= 1.0
    row = next(r for r in stdout.splitlines() if r.startswith("| pusht | low_dim | mlp | 2 |"))
    assert row.rstrip(" |").rsplit("| ", 1)[1] == f"{result['mean_max_reward']:.3f}"


def test_harness_alternates_fixed_calls_and_reports_ratios() -> None:
    order: list[str] = []
    rounds = harness.alternate(
        {"a": lambda: order.append("a"), "b": lambda: order.append("b")},
        rounds=3,
        calls={"a": 2, "b": 1},
        warmup=1,
    )
    # Warm-up once each, then per round 2 calls of a and 1 of b, in turns.
    assert order == ["a", "b"] + ["a", "a", "b"] * 3
    assert rounds.calls == {"a": 6, "b": 3}
    assert all(len(v) == 3 and min(v) > 0 for v in (*rounds.wall.values(), *rounds.cpu.values()))
    r = harness.ratio([2.0, 3.0, 4.0], [1.0, 1.0, 1.0])
    assert (r.median, r.low, r.high) == (3.0, 2.0, 4.0) and str(r) == "3.00 (2.00-4.00)"
    with pytest.raises(ValueError, match="either seconds or calls"):
        harness.alternate({"a": lambda: None}, rounds=1)


def test_harness_tables_and_success_cells(tmp_path: Path) -> None:
    table = harness.markdown_table(["task", "success"], [["lift", harness.success_cell(3, 4)]])
    assert table.splitlines() == ["| task | success |", "|---|---|", "| lift | 3/4 (75.0%) |"]
    low, high = wilson_interval(3, 4)
    assert harness.wilson_cell(3, 4) == f"[{low:.3f}, {high:.3f}]"
    assert harness.success_cell(1, 3, digits=0) == "1/3 (33%)"
    assert harness.wilson_cell(3, 4, percent=1) == f"{low:.1%}-{high:.1%}"
    runs = [{"successes": 1, "episodes": 2}, {"successes": 2, "episodes": 2}]
    assert harness.per_seed_cell(runs) == "1/2, 2/2"
    out = harness.write_json(tmp_path / "a" / "r.json", {"x": 1, "out": tmp_path})
    assert json.loads(out.read_text()) == {"x": 1, "out": str(tmp_path)}


@pytest.mark.parametrize("mode", [[], ["--quick"]])
def test_run_all_covers_every_script(mode: list[str]) -> None:
    stdout = run("run_all.py", "--list", *mode)
    assert "not covered" not in stdout
    scripts = [
        str(p.relative_to(BENCH))
        for p in (*BENCH.rglob("*.py"), *BENCH.rglob("*.sh"))
        if "out" not in p.relative_to(BENCH).parts and p.name != "run_all.py"
    ]
    runs, left = stdout.split("left out:")
    for script in scripts:
        assert f"  {script} " in runs or f"  {script}\n" in runs or f"  {script}: " in left


def test_ddp_benchmark_times_both_arms_of_every_setup(tmp_path: Path) -> None:
    out = tmp_path / "ddp.json"
    stdout = run("bench_ddp.py", "--quick", "--out", str(out))
    rows = json.loads(out.read_text())["rows"]
    assert [r["setup"] for r in rows] == [
        "bc-rnn lift-lowdim",
        "bc-rnn stack-lowdim",
        "mlp 2x1024 lift",
    ]
    for r in rows:
        assert r["global_batch"] == 100
        for arm in ("ddp", "threads", "bound"):
            assert len(r[f"{arm}_samples_per_s"]) == 2 and min(r[f"{arm}_samples_per_s"]) > 0
        for label in ("ddp_over_threads", "bound_over_threads", "ddp_over_bound"):
            assert r[label]["min"] <= r[label]["median"] <= r[label]["max"]
    assert "| bc-rnn stack-lowdim | 100 |" in stdout


def test_sampler_benchmark_reports_both_windows() -> None:
    stdout = run("bench_sampler.py", "--seconds", "0.05")
    for window in ("seq_len=10", "seq_len=1,"):
        row = next(r for r in stdout.splitlines() if r.startswith(f"| {window}"))
        assert float(row.split("|")[2]) > 0  # batches/s


def test_imitation_peer_scores_on_the_held_out_seeds() -> None:
    # The peer runs in the imitation venv, without apprentice: it keeps a copy of the base.
    from apprentice.envs.seeds import HELD_OUT_SEED_BASE

    spec = importlib.util.spec_from_file_location("imitation_run", BENCH / "peers/imitation_run.py")
    assert spec is not None and spec.loader is not None
    peer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peer)
    assert peer.HELD_OUT_SEED_BASE == HELD_OUT_SEED_BASE


def test_encoder_probe_benchmark(tmp_path: Path) -> None:
    out = tmp_path / "probe.json"
    stdout = run("bench_encoder_probe.py", "--quick", "--json", str(out))
    result = json.loads(out.read_text())
    assert len(result) == 2 and "| keypoints |" in stdout
    targets = sorted(r["target"] for r in result.values())
    assert targets == ["frame (autoencoder)", "keypoints"]
    for r in result.values():
        assert r["frames"] > 0 and r["keypoints"]["rmse"] > 0 and r["keypoints"]["std"] > 0


def test_interop_benchmark(tmp_path: Path) -> None:
    out = tmp_path / "interop.json"
    stdout = run("bench_interop.py", "--quick", "--work", str(tmp_path), "--out", str(out))
    result = json.loads(out.read_text())
    assert (
        result["convert"]["lossless"]["exact_frames"]
        == result["convert"]["lossless"]["frames_compared"]
    )
    assert result["convert"]["default"]["psnr_min"] > 25
    assert result["train"]["steps_per_s"]["lerobot"] > 0
    assert "to LeRobot, default" in stdout


def test_serve_benchmark_compares_batched_and_unbatched_serving(tmp_path: Path) -> None:
    """bench_serve.py in small: latency, throughput, and the batching server against one
    with --max-batch 1, in turns (the full run: benchmarks/results/deploy-and-serve.md)."""
    out = tmp_path / "serve.json"
    r = subprocess.run(
        [
            *(sys.executable, str(BENCH / "bench_serve.py")),
            *("--quick", "--policies", "mlp", "--out", str(out)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    entry = json.loads(out.read_text())["policies"]["mlp"]
    assert entry["latency"]["requests"] == 100
    assert entry["server_exit_code"] == {"batched": 0, "unbatched": 0}
    assert [t["clients"] for t in entry["throughput"]] == [2, 2]
    assert all(t["actions"] > 0 for t in entry["throughput"])
    rows = {row["clients"]: row for row in entry["batched_vs_unbatched"]}
    assert sorted(rows) == [1, 8]
    for row in rows.values():
        assert row["unbatched"]["mean_batch"] == 1.0 and row["batched"]["actions"] > 0
        assert row["actions_per_s_ratio"]["median"] > 0
    assert rows[1]["batched"]["mean_batch"] == 1.0  # a lone client never waits for company
    assert rows[8]["batched"]["mean_batch"] > 1.0
    assert "| mlp | 2 | 20 Hz |" in r.stdout and "| mlp | 8 | batched |" in r.stdout
    assert "mlp, 8 clients: batched p99" in r.stdout
