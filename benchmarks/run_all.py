"""Run every benchmark of the foundation in sequence (what `make bench` does).

Each script prints a markdown table and writes JSON under benchmarks/out/; the numbers
and the exact commands are collected in benchmarks/results/ (index: benchmarks/RESULTS.md).
Pass --quick for a small version of each that only checks the scripts still work, and
--list to print what would run and which scripts are left out, and why, without running.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness import add_quick, parser

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
ROBOSUITE_PYTHON = HERE.parent / ".venv-robosuite" / "bin" / "python"
ROBOMIMIC_VENV = HERE.parent / ".venv-robomimic"
LEROBOT_PYTHON = HERE.parent / ".venv-lerobot" / "bin" / "python"
"""LeRobot 0.6.1's venv (`make lerobot`): bench_interop.py times LeRobot's own loader there."""

LEFT_OUT = {
    "harness.py": "the module the scripts share, not a benchmark",
    "gpu_zoo.sh": "needs a lent GPU machine (the zoo grid's GPU half, hours of cells)",
    "peers/setup_robomimic.sh": "builds .venv-robomimic (downloads); bench_vs_robomimic.py "
    "runs once it exists",
    "peers/setup_imitation.sh": "builds .venv-imitation (downloads)",
    "peers/venv_common.sh": "sourced by the peers' setup scripts",
    "peers/robomimic_sampler.py": "run by bench_vs_robomimic.py in the robomimic venv",
    "peers/robomimic_train.py": "run by bench_vs_robomimic.py in the robomimic venv",
    "peers/robomimic_rollout.py": "run by bench_vs_robomimic.py in the robomimic venv",
    "peers/make_fixture.py": "writes the peers' fixture file by hand (peers/README.md)",
    "peers/imitation_run.py": "needs .venv-imitation (imitation 1.0.1 pins gymnasium 0.29); "
    "its commands are in results/irl.md",
    "robomimic_h2h/rollout.py": "run by robomimic_h2h/run.py in each side's venv",
    "lerobot_loader.py": "run by bench_interop.py in LeRobot's venv (--lerobot-python)",
    "check_trainer_identity.py": "compares two source trees (a base commit's and this one's): "
    "a recorded check run by hand when the trainer changes",
}
"""Scripts in benchmarks/ that run_all never runs, with the reason."""

FULL_ONLY_REASONS = {
    "bench_zoo.py": "the full grid takes hours per task (GPU: gpu_zoo.sh); --quick runs here",
    "bench_gpu_share.py": "its measurement needs a GPU (gpu_zoo.sh SHARE=1); --quick runs here",
    "bench_recipes.py": "hours per recipe; each measured recipe names its command "
    "(`apprentice recipes NAME`); --quick runs here",
    "bench_encoder_pretraining.py": "hours (3 demo counts x seeds x 2 encoders, each trained "
    "and evaluated); --quick runs here",
    "bench_encoder_probe.py": "probes the encoder files of full recipe runs (results/recipes.md "
    "names them); --quick runs here",
}
"""Scripts whose small version runs under --quick but whose full run does not, with why."""


def plan(quick: bool) -> tuple[list[list[str]], dict[str, str]]:
    """The commands to run (script path relative to benchmarks/, then its arguments) and the
    scripts left out of this mode, with the reason."""
    q = quick
    left_out = dict(LEFT_OUT)
    quality_quick = ["--tasks", "lift", "--demos", "10", "--seeds", "0", "--episodes", "4"]
    runs = [
        ["bench_envs.py", "--episodes", "5" if q else "200", "--steps", "200" if q else "3000"],
        ["bench_sampler.py", *(["--seconds", "0.5"] if q else [])],
        ["bench_train.py", *(["--quick"] if q else [])],
        ["bench_ddp.py", *(["--quick", "--out", str(OUT / "ddp_quick.json")] if q else [])],
        ["bench_policies.py", *(["--quick"] if q else [])],
        ["bench_diffusion_latency.py", *(["--quick"] if q else [])],
        ["bench_images.py", "--speed", *(["--quick"] if q else ["--success"])],
        ["bench_eval.py", "--episodes", "4" if q else "20", "--repeats", "1" if q else "3"],
        [
            "bench_robustness.py",
            "cost",
            *(["--steps", "100", "--camera-steps", "10", "--rounds", "1"] if q else []),
            *(["--out", str(OUT / "robustness_cost_quick.json")] if q else []),
        ],
        [
            "bench_retarget.py",
            *(["--tasks", "lift", "--demos", "2", "--noise", "1", "--workers", "1"] if q else []),
        ],
        [
            "bench_sweep.py",
            *(["--quick", "--out", str(OUT / "sweep_quick.json")] if q else []),
            *(["--work", str(OUT / "sweep_quick_runs")] if q else []),
        ],
        ["bench_quality.py", *([*quality_quick, "--epochs", "1"] if q else [])],
        [
            "bench_curation.py",
            *(["--demos", "8", "--seeds", "0", "--episodes", "2", "--epochs", "1"] if q else []),
            *(["--eval-every", "0", "--policy-args", "hidden_dim=8"] if q else []),
            *(["--work", str(OUT / "curation_quick")] if q else []),
            *(["--json", str(OUT / "curation_quick.json")] if q else []),
        ],
        ["bench_deploy_latency.py", *(["--quick"] if q else [])],
        ["bench_serve.py", *(["--quick"] if q else [])],
        ["soak_serve.py", *(["--seconds", "10"] if q else ["--minutes", "10"])],
        ["bench_teleop_latency.py", *(["--quick"] if q else [])],
        ["bench_pusht_expert.py", "--episodes", "2" if q else "50"],
        [
            "bench_interop.py",
            *(["--quick"] if q else []),
            *(["--lerobot-python", str(LEROBOT_PYTHON)] if LEROBOT_PYTHON.exists() else []),
        ],
    ]
    # Generation: the data generation rate and 1 -> 2 worker scaling (the policy phase, hours
    # of training, is run by hand: its commands are in results/generation.md).
    if q:
        gen = ["--phase", "dgr", "--tasks", "lift", "--n", "3", "--seeds", "0", "--variants"]
        runs.append(["bench_generate.py", *gen, "D0", "--work", str(OUT / "generate_quick")])
    else:
        runs.append(["bench_generate.py", "--phase", "dgr", "--n", "1000"])
        runs.append(["bench_generate.py", "--phase", "scale", "--tasks", "stack", "--n", "600"])
    if q:
        zoo = ["--quick", "--policies", "mlp", "act", "--jobs", "1"]
        runs.append(["bench_zoo.py", *zoo, "--out", str(OUT / "zoo_quick")])
        share = ["--quick", "--policies", "mlp", "--out", str(OUT / "gpu_share_quick.json")]
        runs.append(["bench_gpu_share.py", *share])
        recipe = ["--recipe", "lift-lowdim", "--seeds", "0", "--episodes", "2", "--workers", "1"]
        recipe += ["--work", str(OUT / "recipes_quick"), "--", "--epochs", "1"]
        recipe += ["--steps-per-epoch", "5", "--policy-args", "hidden_dim=16", "--eval-every", "0"]
        runs.append(["bench_recipes.py", *recipe])
        runs.append(["bench_encoder_pretraining.py", "--quick"])
        runs.append(["bench_encoder_probe.py", "--quick"])
    else:
        left_out.update(FULL_ONLY_REASONS)
    # Interactive imitation: SB3 experts first (the gym tasks' teachers), then the curves.
    dagger_quick = ["--tasks", "lift", "--seeds", "0", "--rounds", "1", "--episodes", "2"]
    dagger_quick += ["--labels-per-round", "20", "--steps-per-epoch", "3", "--epochs", "1"]
    dagger_quick += ["--policy-args", "hidden_dims=[8]"]
    dagger_lift = ["--tasks", "lift", "--policy", "rnn", "--policy-args", "hidden_dim=64"]
    dagger_gym = ["--tasks", "gym/InvertedPendulum-v5", "gym/Reacher-v5"]
    if q:
        quick_out = str(OUT / "dagger_quick")
        runs.append(["bench_dagger.py", *dagger_quick, "--out", quick_out, "--fresh"])
        runs[-1] += ["--work", f"{quick_out}/runs"]
        left_out["train_experts.py"] = "trains SB3 experts for minutes; the full run has it"
    else:
        runs.append(["train_experts.py", "--env", "InvertedPendulum-v5", "Reacher-v5"])
        runs.append(["bench_dagger.py", *dagger_lift, "--epochs", "5"])
        runs.append(["bench_dagger.py", *dagger_gym, "--epochs", "5"])
    # Tabular IRL (exact checks' sizes); the continuous apprenticeship run is in results/irl.md.
    runs.append(["bench_irl_tabular.py", *(["--quick"] if q else [])])
    # Learning from observation and BC+RL (the bco and bcrl parts need the SB3 expert above).
    lfo_quick = ["--parts", "label", "--lift-demos", "3", "--exploration-steps", "1000"]
    lfo_quick += ["--idm-steps", "200", "--out", str(OUT / "lfo_quick"), "--fresh"]
    runs.append(["bench_lfo.py", *(lfo_quick if q else [])])
    # Video labelling: the latent-action route against the IDM route at equal labelled steps.
    latent_quick = ["--quick", "--work", str(OUT / "latent_actions_quick")]
    latent_quick += ["--out", str(OUT / "latent_actions_quick.json")]
    runs.append(["bench_latent_actions.py", *(latent_quick if q else [])])
    # GAIL and AIRL (and BC on the same demos): normalized return against environment steps.
    irl_quick = ["--algos", "bc", "gail", "--seeds", "0", "--env-steps", "1024"]
    irl_quick += ["--demo-episodes", "2", "--eval-every", "512", "--eval-episodes", "2"]
    irl_quick += ["--bc-epochs", "1", "--out", str(OUT / "irl_quick"), "--algo-args"]
    irl_quick += ["rollout_steps=512", "n_envs=2", "policy_hidden=[16]", "disc_hidden=[16]"]
    irl_full = ["--algos", "bc", "gail", "airl", "--env-steps", "61440", "--eval-every", "15000"]
    runs.append(["bench_irl.py", *(irl_quick if q else irl_full)])
    if ROBOMIMIC_VENV.exists():
        runs.append(["bench_vs_robomimic.py", *(["--smoke"] if q else [])])
    else:
        left_out["bench_vs_robomimic.py"] = "needs .venv-robomimic: run peers/setup_robomimic.sh"
    # The robosuite tasks need their own venv (robosuite 1.5 needs mujoco < 3.10; the main one
    # has the newest): their smoke test and benchmark run there, and only if it was built.
    if ROBOSUITE_PYTHON.exists():
        runs.append(["bench_robosuite_oracles.py", "--smoke"])
        if not q:
            runs.append(["bench_robosuite_oracles.py", "--episodes", "200"])
        # Head-to-head with robomimic 0.3.0 (makes its own venv); the full run takes hours.
        h2h = ["--smoke", "--tasks", "Lift"] if q else ["--epochs", "20", "--save-every", "5"]
        runs.append(["robomimic_h2h/run.py", *h2h])
    else:
        why = "needs .venv-robosuite: run `make robosuite`"
        left_out["bench_robosuite_oracles.py"] = why
        left_out["robomimic_h2h/run.py"] = why
    return runs, left_out


def scripts() -> list[str]:
    """Every script in benchmarks/ (Python and shell), as paths relative to it."""
    found = [*HERE.rglob("*.py"), *HERE.rglob("*.sh")]
    return sorted(str(p.relative_to(HERE)) for p in found if "out" not in p.relative_to(HERE).parts)


def uncovered(runs: list[list[str]], left_out: dict[str, str]) -> list[str]:
    """Scripts neither run nor left out with a reason (should be none)."""
    ran = {cmd[0] for cmd in runs}
    return [s for s in scripts() if s not in ran and s not in left_out and s != "run_all.py"]


def main() -> None:
    p = parser(__doc__)
    add_quick(p)
    p.add_argument("--list", action="store_true", help="print the plan and the left-out scripts")
    args = p.parse_args()
    runs, left_out = plan(args.quick)
    missing = uncovered(runs, left_out)
    if args.list:
        print("runs:")
        for cmd in runs:
            print(f"  {' '.join(cmd)}")
        print("left out:")
        for script, why in sorted(left_out.items()):
            print(f"  {script}: {why}")
        if missing:
            print(f"not covered: {', '.join(missing)}")
        sys.exit(1 if missing else 0)
    for script, why in sorted(left_out.items()):
        print(f"skipping {script}: {why}")
    failed = []
    for cmd in runs:
        print(f"\n## {' '.join(cmd)}\n", flush=True)
        python = ROBOSUITE_PYTHON if cmd[0] == "bench_robosuite_oracles.py" else sys.executable
        if subprocess.call([str(python), str(HERE / cmd[0]), *cmd[1:]]) != 0:
            failed.append(cmd[0])
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
