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
        ["bench_policies.py", *(["--quick"] if q else [])],
        ["bench_diffusion_latency.py", *(["--quick"] if q else [])],
        ["bench_images.py", "--speed", *(["--quick"] if q else ["--success"])],
        ["bench_eval.py", "--episodes", "4" if q else "20", "--repeats", "1" if q else "3"],
        ["bench_quality.py", *([*quality_quick, "--epochs", "1"] if q else [])],
        [
            "bench_curation.py",
            *(["--demos", "8", "--seeds", "0", "--episodes", "2", "--epochs", "1"] if q else []),
            *(["--eval-every", "0", "--policy-args", "hidden_dim=8"] if q else []),
            *(["--work", str(HERE / "out" / "curation_quick")] if q else []),
            *(["--json", str(HERE / "out" / "curation_quick.json")] if q else []),
        ],
        ["bench_deploy_latency.py", *(["--quick"] if q else [])],
        ["bench_serve.py", *(["--quick"] if q else [])],
        ["soak_serve.py", *(["--seconds", "10"] if q else ["--minutes", "10"])],
        ["bench_teleop_latency.py", *(["--quick"] if q else [])],
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
    # Tabular IRL (exact checks' sizes); the continuous apprenticeship run is in RESULTS.md.
    runs.append(["bench_irl_tabular.py", *(["--quick"] if q else [])])
    # Learning from observation and BC+RL (the bco and bcrl parts need the SB3 expert above).
    lfo_quick = ["--parts", "label", "--lift-demos", "3", "--exploration-steps", "1000"]
    lfo_quick += ["--idm-steps", "200", "--out", str(HERE / "out" / "lfo_quick"), "--fresh"]
    runs.append(["bench_lfo.py", *(lfo_quick if q else [])])
    # GAIL and AIRL (and BC on the same demos): normalized return against environment steps.
    irl_quick = ["--algos", "bc", "gail", "--seeds", "0", "--env-steps", "1024"]
    irl_quick += ["--demo-episodes", "2", "--eval-every", "512", "--eval-episodes", "2"]
    irl_quick += ["--bc-epochs", "1", "--out", str(HERE / "out" / "irl_quick"), "--algo-args"]
    irl_quick += ["rollout_steps=512", "n_envs=2", "policy_hidden=[16]", "disc_hidden=[16]"]
    irl_full = ["--algos", "bc", "gail", "airl", "--env-steps", "61440", "--eval-every", "15000"]
    runs.append(["bench_irl.py", *(irl_quick if q else irl_full)])
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
