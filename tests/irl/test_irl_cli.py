"""`apprentice irl`: GAIL, AIRL and GAIfO smoke runs end to end through the command, resume,
and one clear error for each kind of bad input."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from apprentice.cli.main import main
from apprentice.data.episode import Episode
from apprentice.data.reader import DemoFile
from apprentice.data.store import DemoWriter
from apprentice.irl.envs import record_expert_demos

PENDULUM = "gym/InvertedPendulum-v5"
# Tiny: 4 rounds of 512 steps, small nets, 2 evaluation episodes.
TINY = ["rollout_steps=512", "n_envs=2", "policy_hidden=[16]", "disc_hidden=[16]", "ppo_epochs=2"]


@pytest.fixture(scope="session")
def pendulum_demos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The PD law, not an SB3 expert: CI has no trained experts (benchmarks/out is not kept).
    path = tmp_path_factory.mktemp("irl_cli") / "pendulum.hdf5"
    return record_expert_demos(PENDULUM, "pd", 3, path, seed=0)


def _irl(algo: str, demos: Path, out: Path, *extra: str, steps: int = 2048) -> list[str]:
    return [
        "irl",
        "--algo",
        algo,
        "--task",
        PENDULUM,
        "--demos",
        str(demos),
        "--out",
        str(out),
        "--env-steps",
        str(steps),
        "--eval-every",
        "1024",
        "--eval-episodes",
        "2",
        "--algo-args",
        *TINY,
        *extra,
    ]


def test_recorded_demos_carry_the_expert_and_random_returns(pendulum_demos: Path) -> None:
    with DemoFile(pendulum_demos) as f:
        attrs = f.data_attrs
        assert len(f.demo_names) == 3
        assert "next_obs" in f.fields(f.demo_names[0])
    assert attrs["expert_return"] == 1000.0  # the PD law balances every episode
    assert attrs["random_return"] < 50.0


@pytest.fixture(scope="session")
def state_only_demos(pendulum_demos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same demos without actions ((T, 0), the store's state-only layout)."""
    return _rewrite(pendulum_demos, tmp_path_factory.mktemp("irl_cli") / "s.hdf5", strip=True)


@pytest.mark.parametrize("algo", ["gail", "airl", "gaifo"])
def test_smoke_run_through_the_command(
    algo: str,
    pendulum_demos: Path,
    state_only_demos: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / algo
    # GAIfO learns from observation: it gets the demos without their actions.
    demos = state_only_demos if algo == "gaifo" else pendulum_demos
    assert main(_irl(algo, demos, out)) == 0
    printed = capsys.readouterr().out
    assert f"{algo} on {PENDULUM}" in printed and str(out) in printed
    state = json.loads((out / "state.json").read_text())
    assert state["rounds_done"] == 4
    assert [h["env_steps"] for h in state["history"]] == [1024, 2048]
    for row in state["history"]:
        # Pendulum returns are >= 1 per step; the expert's return is 1000.
        assert 1.0 <= row["mean_return"] <= 1000.0
        assert row["normalized_return"] == pytest.approx(
            (row["mean_return"] - _random_return(pendulum_demos))
            / (1000.0 - _random_return(pendulum_demos))
        )
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2, 3, 4]
    assert all(0.0 <= m["acc_expert"] <= 1.0 and np.isfinite(m["disc_loss"]) for m in metrics)
    files = ("policy.zip", "reward.pt", "generator.zip", "vecnormalize.pkl", "report.png")
    for name in (*files, "config.json"):
        assert (out / name).is_file(), name
    assert any((out / "tb").iterdir())


def _random_return(demos: Path) -> float:
    with DemoFile(demos) as f:
        return float(f.data_attrs["random_return"])


def test_a_run_resumes_and_refuses_another_config(pendulum_demos: Path, tmp_path: Path) -> None:
    out = tmp_path / "gail"
    assert main(_irl("gail", pendulum_demos, out, steps=1024)) == 0
    first = json.loads((out / "state.json").read_text())
    assert first["rounds_done"] == 2
    # A larger budget continues the same run from round 3.
    assert main(_irl("gail", pendulum_demos, out, steps=2048)) == 0
    state = json.loads((out / "state.json").read_text())
    assert state["rounds_done"] == 4
    assert state["history"][0] == first["history"][0]
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3, 4]
    # Another seed is another run: refused unless asked to overwrite.
    assert main([*_irl("gail", pendulum_demos, out), "--seed", "1"]) == 2


def _rewrite(
    src: Path,
    dst: Path,
    *,
    drop_next_obs: bool = False,
    rename_key: bool = False,
    strip: bool = False,
) -> Path:
    with DemoFile(src) as f:
        env_args = f.env_args
        attrs = f.data_attrs  # the expert's and random returns
        episodes = [f.read(n) for n in f.demo_names]
    with DemoWriter(dst, env_args=env_args) as w:
        w.set_data_attrs(attrs)
        for ep in episodes:
            if strip:
                ep = replace(ep, actions=np.zeros((ep.num_samples, 0), dtype=np.float32))
            if drop_next_obs:
                ep = replace(ep, next_obs={})
            if rename_key:
                ep = Episode(
                    obs={"qpos": ep.obs["state"]},
                    next_obs={"qpos": ep.next_obs["state"]},
                    actions=ep.actions,
                    rewards=ep.rewards,
                    dones=ep.dones,
                    states=ep.states,
                )
            w.append(ep)
    return dst


def test_bad_input_gets_one_clear_error(
    pendulum_demos: Path,
    state_only_demos: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    state_only = state_only_demos
    no_next = _rewrite(pendulum_demos, tmp_path / "no_next.hdf5", drop_next_obs=True)
    wrong_key = _rewrite(pendulum_demos, tmp_path / "wrong_key.hdf5", rename_key=True)
    other = _irl("gail", pendulum_demos, tmp_path / "e")  # argv[4] is the task
    cases = [
        # GAIfO's D(s, s') needs next_obs: the error names the algorithm and the field.
        (_irl("gaifo", no_next, tmp_path / "a"), r"no next_obs/state: gaifo .* needs"),
        (_irl("airl", no_next, tmp_path / "b"), r"no next_obs/state: airl"),
        # Demos whose observation keys are not the task's.
        (_irl("gail", wrong_key, tmp_path / "c"), r"no observation key 'state'"),
        # State-only demos for an algorithm that reads the expert's actions.
        (_irl("gail", state_only, tmp_path / "f"), r"state-only \(no actions\): gail needs"),
        # A tabular algorithm on a continuous task.
        (
            ["irl", "--algo", "maxent", "--task", PENDULUM, "--demos", str(pendulum_demos)],
            r"maxent is a tabular \(discrete-state\) algorithm and task 'gym/Inverted",
        ),
        # A misspelt algorithm setting.
        (_irl("gail", pendulum_demos, tmp_path / "d", "disc_lrr=1"), r"unknown key\(s\) disc_lrr"),
        # Demos of another task.
        (
            [*other[:4], "gym/Reacher-v5", *other[5:]],
            r"are of task 'gym/InvertedPendulum-v5', not 'gym/Reacher-v5'",
        ),
    ]
    for argv, pattern in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("apprentice irl: error: ") and err.count("\n") == 1, err
        assert re.search(pattern, err), (pattern, err)


@pytest.mark.slow
def test_benchmark_script_small(tmp_path: Path) -> None:
    """benchmarks/bench_irl.py at toy size: it runs BC and GAIL and writes its rows and table."""
    import subprocess
    import sys

    bench = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_irl.py"
    args = ["--algos", "bc", "gail", "--seeds", "0", "--env-steps", "1024", "--eval-every", "512"]
    args += ["--demo-episodes", "2", "--eval-episodes", "2", "--bc-epochs", "1"]
    args += ["--final-episodes", "3", "--out", str(tmp_path), "--algo-args", *TINY]
    r = subprocess.run(
        [sys.executable, str(bench), *args], capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stderr[-3000:]
    gail = json.loads((tmp_path / "apprentice_InvertedPendulum-v5_gail_s0.json").read_text())
    assert [row["env_steps"] for row in gail["rows"]] == [512, 1024]
    bc = json.loads((tmp_path / "apprentice_InvertedPendulum-v5_bc_s0.json").read_text())
    assert bc["rows"][0]["env_steps"] == 0 and bc["rows"][0]["normalized_return"] is not None
    assert "| gail | 1 | 1024 |" in r.stdout
    assert (tmp_path / "curves_InvertedPendulum-v5.png").is_file()
    # --final-episodes: each run's last policy again, on more held-out episodes.
    for algo in ("bc", "gail"):
        final = json.loads((tmp_path / f"final_InvertedPendulum-v5_{algo}_s0.json").read_text())
        assert final["eval_episodes"] == 3 and np.isfinite(final["normalized_return"])
        assert re.search(rf"\| {algo} \| 0 \| -?\d+\.\d{{3}} \|", r.stdout), r.stdout
