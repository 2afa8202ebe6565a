"""Run every benchmark of the foundation in sequence (what `make bench` does).

Each script prints a markdown table and writes JSON under benchmarks/out/; the numbers
and the exact commands are collected in benchmarks/RESULTS.md. Pass --quick for a small
version of each that only checks the scripts still work.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    args = p.parse_args()
    q = args.quick
    quality_quick = ["--tasks", "lift", "--demos", "10", "--seeds", "0", "--episodes", "4"]
    runs = [
        ["bench_envs.py", "--episodes", "5" if q else "200", "--steps", "200" if q else "3000"],
        ["bench_sampler.py", *(["--seconds", "0.5"] if q else [])],
        ["bench_train.py", *(["--quick"] if q else [])],
        ["bench_eval.py", "--episodes", "4" if q else "20", "--repeats", "1" if q else "3"],
        ["bench_quality.py", *([*quality_quick, "--epochs", "1"] if q else [])],
        ["bench_deploy_latency.py", *(["--quick"] if q else [])],
        ["bench_serve.py", *(["--quick"] if q else [])],
        ["soak_serve.py", *(["--seconds", "10"] if q else ["--minutes", "10"])],
    ]
    # Interactive imitation: SB3 experts first (the gym tasks' teachers), then the curves.
    dagger_quick = ["--tasks", "lift", "--seeds", "0", "--rounds", "1", "--episodes", "2"]
    dagger_quick += ["--labels-per-round", "20", "--steps-per-epoch", "3", "--epochs", "1"]
    dagger_quick += ["--policy-args", "hidden_dims=[8]"]
    dagger_lift = ["--tasks", "lift", "--policy", "rnn", "--policy-args", "hidden_dim=64"]
    dagger_gym = ["--tasks", "gym/InvertedPendulum-v5", "gym/Reacher-v5"]
    if q:
        quick_out = str(HERE / "out" / "dagger_quick")
        runs.append(["bench_dagger.py", *dagger_quick, "--out", quick_out, "--fresh"])
        runs[-1] += ["--work", f"{quick_out}/runs"]
    else:
        runs.append(["train_experts.py", "--env", "InvertedPendulum-v5", "Reacher-v5"])
        runs.append(["bench_dagger.py", *dagger_lift, "--epochs", "5"])
        runs.append(["bench_dagger.py", *dagger_gym, "--epochs", "5"])
    if (HERE.parent / ".venv-robomimic").exists():
        runs.append(["bench_vs_robomimic.py", *(["--smoke"] if q else [])])
    else:
        print("skipping bench_vs_robomimic.py: run benchmarks/peers/setup_robomimic.sh first")
    # The robosuite tasks need their own venv (robosuite 1.5 needs mujoco < 3.10; the main one
    # has the newest): their smoke test and benchmark run there, and only if it was built.
    robosuite_python = HERE.parent / ".venv-robosuite" / "bin" / "python"
    if robosuite_python.exists():
        runs.append(["bench_robosuite_oracles.py", "--smoke"])
        if not q:
            runs.append(["bench_robosuite_oracles.py", "--episodes", "200"])
        # Head-to-head with robomimic 0.3.0 (makes its own venv); the full run takes hours.
        h2h = ["--smoke", "--tasks", "Lift"] if q else ["--epochs", "20", "--save-every", "5"]
        runs.append(["robomimic_h2h/run.py", *h2h])
    else:
        print("skipping bench_robosuite_oracles.py: run `make robosuite` first")
    failed = []
    for cmd in runs:
        print(f"\n## {' '.join(cmd)}\n", flush=True)
        python = robosuite_python if cmd[0] == "bench_robosuite_oracles.py" else sys.executable
        if subprocess.call([str(python), str(HERE / cmd[0]), *cmd[1:]]) != 0:
            failed.append(cmd[0])
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
