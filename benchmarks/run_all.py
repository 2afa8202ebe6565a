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
    ]
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
