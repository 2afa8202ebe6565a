"""apprentice vs robomimic 0.3.0, side by side on the same collected lift demos.

Run with the project venv; robomimic runs in its own venv (.venv-robomimic, made by
`bash benchmarks/peers/setup_robomimic.sh`) through the scripts in benchmarks/peers/:

    .venv/bin/python benchmarks/bench_vs_robomimic.py --phase all          # full (~15-25 min)
    .venv/bin/python benchmarks/bench_vs_robomimic.py --phase all --smoke  # ~1-2 min check
    .venv/bin/python benchmarks/bench_vs_robomimic.py --phase train --threads 1 2

Phases (each selectable, each sized by flags):

sampler  batches/s of apprentice's WindowSampler.sample() (numpy batch; also timed with the
         conversion to torch tensors, since robomimic's loader yields tensors) vs robomimic's
         SequenceDataset(hdf5_cache_mode="all") + DataLoader(batch 100, shuffle, num_workers=0)
         (benchmarks/peers/robomimic_sampler.py), seq_len 10 and 1, frame_stack 1, batch 100.
train    gradient steps/s of a whole training run on the file (apprentice's trainer vs robomimic's
         own train(), rollouts off), MLP 2x1024 batch 100: apprentice "gmm" vs robomimic BC paper
         config (GMM 5 modes), apprentice "mlp" vs robomimic BC with --gmm off. Steps/s counts
         only time inside the training epochs (each side's data fetch + forward/backward + Adam);
         epoch 1 (warm-up) is dropped when there are >= 2 epochs. Also the fraction of the matmul
         bound (benchmarks/bench_train.bare_matmul_step for the same layer shapes, timed in this
         process between the runs, same thread count). `--precisions fp32 bf16` also times
         apprentice with TrainConfig(precision="bf16") (CPU autocast) against the same
         robomimic (fp32) runs.
quality  both MLP-GMM BC trained on the same file for the same epochs x steps, then rolled out on
         the same held-out seeds (1e9 + i) of apprentice's lift task: apprentice via
         apprentice.evaluate.run.evaluate on final.pt (and best.pt), robomimic via
         benchmarks/peers/robomimic_rollout.py. Success with 95% Wilson intervals.

Timing rules (/work/shared/BENCHMARKING.md): both sides run in the same invocation, alternating
(the order flips every repeat), each repeat gives one paired ratio; the median ratio and its
min-max over repeats are reported. Each side runs with the same torch thread count (--threads).
Markdown tables go to stdout; results to benchmarks/out/vs_robomimic.json (phases merged into the
existing file, so phases can be run separately).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from apprentice.evaluate.metrics import wilson_interval
from harness import OUT, alternate, markdown_table, write_json

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

PEERS = HERE / "peers"
WORK = OUT / "vsrm"
OBS_KEYS = ["eef_pos", "eef_quat", "gripper_qpos", "object"]
BATCH = 100

APPRENTICE_TRAIN = r"""
import json, sys, time
from apprentice.algos.trainer import TrainConfig, train
from apprentice.policies.base import policy_config_from_dict
a = json.loads(sys.argv[1])
cfg = TrainConfig(dataset=a["dataset"], out=a["out_dir"],
    policy=policy_config_from_dict(a["policy"]), epochs=a["epochs"],
    steps_per_epoch=a["steps_per_epoch"], batch_size=a["batch_size"], lr=a.get("lr", 1e-4),
    seed=a["seed"],
    threads=a["threads"], progress=False, eval_every=0, overwrite=True,
    precision=a.get("precision", "fp32"))
t0 = time.perf_counter()
res = train(cfg)
total = time.perf_counter() - t0
print(json.dumps({"metrics": res.metrics, "total_seconds": total, "run_dir": a["out_dir"]}))
"""

# Same held-out seeds and success rule as apprentice's evaluate(), with the GMM's act mode
# switched to robomimic's (sample the mixture, low-noise stds) instead of the default
# deterministic_act=True (mean of the most likely mode). Checkpoint untouched.
APPRENTICE_EVAL_SAMPLED = r"""
import dataclasses, json, sys, torch
from apprentice.data.spec import ObsActSpec
from apprentice.envs import make_task
from apprentice.envs.seeds import held_out_seeds
from apprentice.evaluate.rollout import rollout_batch
from apprentice.policies.base import policy_config_from_dict
from apprentice.policies.checkpoint import load_checkpoint
torch.set_num_threads(1)
a = json.loads(sys.argv[1])
ck = load_checkpoint(a["checkpoint"])
cfg = dataclasses.replace(policy_config_from_dict(ck["policy_config"]), deterministic_act=False)
pol = cfg.build(ObsActSpec.from_dict(ck["spec"]), ck["normalizer_state"])
pol.load_state_dict(ck["state_dict"]); pol.eval()
n = a["episodes"]
res = rollout_batch(pol, [make_task("lift") for _ in range(n)], held_out_seeds(n))
k = sum(bool(r.success) for r in res)
print(json.dumps({"successes": k, "success_rate": k / len(res)}))
"""

APPRENTICE_EVAL = r"""
import json, sys
from apprentice.evaluate.run import EvalConfig, evaluate
a = json.loads(sys.argv[1])
r = evaluate(EvalConfig(checkpoint=a["checkpoint"], episodes=a["episodes"], workers=a["workers"],
    out=a["out"]))
print(json.dumps({k: r[k] for k in ("success_rate", "ci_low", "ci_high", "successes")}))
"""


# ---------------------------------------------------------------- helpers


def spread(xs: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "all": xs}


def run_json(cmd: list[str], *, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a command, return the JSON object on its last stdout line (raise with stderr)."""
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[:3]}... exit {p.returncode}\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def thread_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    return env


def ensure_dataset(args: argparse.Namespace) -> Path:
    path = Path(args.dataset)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        exe = Path(sys.executable).with_name("apprentice")
        cmd = [
            str(exe),
            "collect",
            "--task",
            "lift",
            "--n",
            str(args.collect_n),
            "--out",
            str(path),
            "--workers",
            "2",
            "--no-progress",
        ]
        print("collecting:", " ".join(cmd), file=sys.stderr)
        subprocess.run(cmd, check=True)
    return path


def fmt_spread(s: dict[str, Any], digits: int = 1, suffix: str = "") -> str:
    f = f"{{:.{digits}f}}"
    return f"{f.format(s['median'])}{suffix} ({f.format(s['min'])}-{f.format(s['max'])})"


# ---------------------------------------------------------------- sampler


def apprentice_sampler_rates(ds: Any, seq_len: int, seconds: float, seed: int) -> dict[str, float]:
    from apprentice.algos.bc import batch_to_tensors
    from apprentice.data.dataset import WindowSampler
    from bench_sampler import time_sampler  # the project's own sampler benchmark

    numpy_rate = time_sampler(ds, seq_len, 1, seconds)["batches_per_s"]
    sampler = WindowSampler(
        ds, seq_len=seq_len, frame_stack=1, batch_size=BATCH, rng=np.random.default_rng(seed)
    )
    for _ in range(20):
        batch_to_tensors(sampler.sample())
    n, t0 = 0, time.perf_counter()
    while (el := time.perf_counter() - t0) < seconds:
        for _ in range(20):
            batch_to_tensors(sampler.sample())
        n += 20
    return {"numpy": numpy_rate, "tensors": n / el}


def phase_sampler(args: argparse.Namespace, dataset: Path) -> dict[str, Any]:
    import torch

    from apprentice.data.dataset import DemoDataset

    out: dict[str, Any] = {"threads": {}}
    for threads in args.threads:
        torch.set_num_threads(threads)
        t0 = time.perf_counter()
        ds = DemoDataset.load(dataset, mask="train")
        app_load = time.perf_counter() - t0
        per_cfg: dict[str, Any] = {}
        for seq_len in args.seq_lens:
            per_cfg[str(seq_len)] = {"app": [], "app_tensors": [], "rm": [], "rm_load_s": []}
        for r in range(args.repeats):
            for seq_len in args.seq_lens:
                rec = per_cfg[str(seq_len)]

                def rm() -> None:
                    with tempfile.TemporaryDirectory() as tmp:
                        res = run_json(
                            [
                                args.robomimic_python,
                                str(PEERS / "robomimic_sampler.py"),
                                "--dataset",
                                str(dataset),
                                "--seq-len",
                                str(seq_len),
                                "--frame-stack",
                                "1",
                                "--batch-size",
                                str(BATCH),
                                "--obs-keys",
                                *OBS_KEYS,
                                "--seconds",
                                str(args.sampler_seconds),
                                "--warmup",
                                "1",
                                "--repeats",
                                "1",
                                "--no-workers2",
                                "--threads",
                                str(threads),
                                "--seed",
                                str(r),
                                "--json",
                                f"{tmp}/rm.json",
                            ],
                            env=thread_env(threads),
                        )
                    rec["rm"].append(res["batches_per_s"])
                    rec["rm_load_s"].append(res["load_seconds"])

                def app() -> None:
                    rates = apprentice_sampler_rates(ds, seq_len, args.sampler_seconds, r)
                    rec["app"].append(rates["numpy"])
                    rec["app_tensors"].append(rates["tensors"])

                for fn in (rm, app) if r % 2 == 0 else (app, rm):
                    fn()
                print(
                    f"[sampler t={threads} seq={seq_len} rep {r}] apprentice "
                    f"{rec['app'][-1]:.0f} b/s, robomimic {rec['rm'][-1]:.0f} b/s",
                    file=sys.stderr,
                )
        for rec in per_cfg.values():
            rec["ratio"] = spread([a / b for a, b in zip(rec["app"], rec["rm"], strict=True)])
            rec["ratio_tensors"] = spread(
                [a / b for a, b in zip(rec["app_tensors"], rec["rm"], strict=True)]
            )
            rec["app_median"] = statistics.median(rec["app"])
            rec["app_tensors_median"] = statistics.median(rec["app_tensors"])
            rec["rm_median"] = statistics.median(rec["rm"])
        out["threads"][str(threads)] = {"apprentice_load_s": app_load, "by_seq_len": per_cfg}
    rows = []
    for threads, d in out["threads"].items():
        for seq_len, rec in d["by_seq_len"].items():
            rows.append(
                [
                    threads,
                    f"{seq_len}",
                    f"{rec['app_median']:.0f}",
                    f"{rec['app_tensors_median']:.0f}",
                    f"{rec['rm_median']:.0f}",
                    fmt_spread(rec["ratio"], 1, "x"),
                    fmt_spread(rec["ratio_tensors"], 1, "x"),
                ]
            )
    print("\n### Sampler: batches/s, batch 100, frame_stack 1 (median; ratio median (min-max))\n")
    print(
        markdown_table(
            [
                "threads",
                "seq_len",
                "apprentice (numpy)",
                "apprentice (+to tensors)",
                "robomimic (DataLoader nw=0)",
                "ratio",
                "ratio (+to tensors)",
            ],
            rows,
        )
    )
    return out


# ---------------------------------------------------------------- train


PAIRS = {
    # name: (apprentice policy dict, robomimic --gmm, matmul-bound output width)
    "mlp2x1024+gmm5": ({"name": "gmm"}, "paper", None),
    "mlp2x1024 mse": ({"name": "mlp"}, "off", None),
}


def apprentice_rates(metrics: list[dict[str, Any]]) -> tuple[float, float]:
    """(steps/s over all epochs, steps/s after the first epoch), train time only."""
    steps = [m["steps"] for m in metrics]
    secs = [m["steps"] / m["steps_per_s"] for m in metrics]
    after = sum(steps[1:]) / sum(secs[1:]) if len(steps) > 1 else sum(steps) / sum(secs)
    return sum(steps) / sum(secs), after


def run_apprentice_train(
    dataset: Path,
    out_dir: Path,
    policy: dict[str, Any],
    epochs: int,
    steps: int,
    threads: int,
    seed: int,
    precision: str = "fp32",
) -> dict[str, Any]:
    spec = {
        "dataset": str(dataset),
        "out_dir": str(out_dir),
        "policy": policy,
        "epochs": epochs,
        "steps_per_epoch": steps,
        "batch_size": BATCH,
        "threads": threads,
        "seed": seed,
        "precision": precision,
    }
    return run_json(
        [sys.executable, "-c", APPRENTICE_TRAIN, json.dumps(spec)], env=thread_env(threads)
    )


def run_robomimic_train(
    args: argparse.Namespace,
    dataset: Path,
    out_dir: Path,
    gmm: str,
    epochs: int,
    steps: int,
    threads: int,
    seed: int,
    json_path: Path,
    ckpt_check: bool = False,
    lr: float | None = None,
) -> dict[str, Any]:
    cmd = [
        args.robomimic_python,
        str(PEERS / "robomimic_train.py"),
        "--dataset",
        str(dataset),
        "--algo",
        "bc",
        "--gmm",
        gmm,
        "--obs-keys",
        *OBS_KEYS,
        "--epochs",
        str(epochs),
        "--steps-per-epoch",
        str(steps),
        "--batch-size",
        str(BATCH),
        "--out",
        str(out_dir),
        "--json",
        str(json_path),
        "--seed",
        str(seed),
        "--threads",
        str(threads),
        "--no-tb",
    ]
    if not ckpt_check:
        cmd.append("--skip-ckpt-check")
    if lr is not None:
        cmd += ["--lr", str(lr)]
    run_json(cmd, env=thread_env(threads))
    return json.loads(json_path.read_text())


def matmul_bound(out_width: int, obs_dim: int, seconds: float) -> float:
    from bench_train import bare_matmul_step

    step = bare_matmul_step([obs_dim, 1024, 1024, out_width])
    return alternate({"bare": step}, rounds=1, seconds=seconds, warmup=2).median("bare")


def phase_train(args: argparse.Namespace, dataset: Path) -> dict[str, Any]:
    import torch

    from apprentice.data.dataset import DemoDataset
    from apprentice.policies.base import policy_config_from_dict

    ds = DemoDataset.load(dataset, mask="train")
    obs_dim = sum(int(np.prod(ds.spec.obs_shapes[k])) for k in OBS_KEYS)
    act = ds.spec.action_dim
    out: dict[str, Any] = {
        "epochs": args.train_epochs,
        "steps_per_epoch": args.steps_per_epoch,
        "batch": BATCH,
        "obs_dim": obs_dim,
        "precisions": args.precisions,
        "matmul_bound": "bench_train.bare_matmul_step([obs_dim, 1024, 1024, "
        "out_width]) fwd+bwd fp32, no optimizer; out_width 7 (mse) or "
        "5*(2*7+1)=75 (gmm5)",
        "threads": {},
    }
    work = WORK / "train"
    for threads in args.threads:
        torch.set_num_threads(threads)
        res: dict[str, Any] = {}
        for name, (pol, _gmm, _) in PAIRS.items():
            cfg = policy_config_from_dict(pol)
            width = act if pol["name"] == "mlp" else cfg.num_modes * (2 * act + 1)
            res[name] = {
                "rm": [],
                "rm_all": [],
                "bound": [],
                "bound_out_width": width,
                "rm_loss": [],
            }
            for prec in args.precisions:
                res[name][prec] = {"app": [], "app_all": [], "app_loss": []}
        for r in range(args.repeats):
            for name, (pol, gmm, _) in PAIRS.items():
                rec = res[name]

                def rm() -> None:
                    j = run_robomimic_train(
                        args,
                        dataset,
                        work / "rm_runs",
                        gmm,
                        args.train_epochs,
                        args.steps_per_epoch,
                        threads,
                        1 + r,
                        work / f"rm_{r}.json",
                    )
                    after = j["steps_per_s_after_first_epoch"] if args.train_epochs > 1 else None
                    rec["rm"].append(after or j["steps_per_s"])
                    rec["rm_all"].append(j["steps_per_s"])
                    rec["rm_loss"].append(j.get("final_train_loss"))

                def app() -> None:
                    for prec in args.precisions:
                        j = run_apprentice_train(
                            dataset,
                            work / f"app_{pol['name']}_{prec}_t{threads}",
                            pol,
                            args.train_epochs,
                            args.steps_per_epoch,
                            threads,
                            1 + r,
                            prec,
                        )
                        all_, after = apprentice_rates(j["metrics"])
                        rec[prec]["app"].append(after)
                        rec[prec]["app_all"].append(all_)
                        rec[prec]["app_loss"].append(j["metrics"][-1]["train_loss"])

                def bound() -> None:
                    rec["bound"].append(
                        matmul_bound(rec["bound_out_width"], obs_dim, args.bound_seconds)
                    )

                for fn in (rm, bound, app) if r % 2 == 0 else (app, bound, rm):
                    fn()
                apps = ", ".join(f"{p} {rec[p]['app'][-1]:.1f}" for p in args.precisions)
                print(
                    f"[train t={threads} {name} rep {r}] apprentice {apps} steps/s, "
                    f"robomimic {rec['rm'][-1]:.1f}, matmul bound {rec['bound'][-1]:.1f}",
                    file=sys.stderr,
                )
        for rec in res.values():
            rec["rm_frac_bound"] = spread(
                [a / b for a, b in zip(rec["rm"], rec["bound"], strict=True)]
            )
            for k in ("rm", "bound"):
                rec[k + "_median"] = statistics.median(rec[k])
            for prec in args.precisions:
                a = rec[prec]
                a["ratio"] = spread([x / y for x, y in zip(a["app"], rec["rm"], strict=True)])
                a["ratio_all_epochs"] = spread(
                    [x / y for x, y in zip(a["app_all"], rec["rm_all"], strict=True)]
                )
                a["app_frac_bound"] = spread(
                    [x / y for x, y in zip(a["app"], rec["bound"], strict=True)]
                )
                a["app_median"] = statistics.median(a["app"])
        out["threads"][str(threads)] = res
    rows = []
    for threads, res in out["threads"].items():
        for name, rec in res.items():
            for prec in args.precisions:
                a = rec[prec]
                rows.append(
                    [
                        threads,
                        name,
                        prec,
                        f"{a['app_median']:.1f}",
                        f"{rec['rm_median']:.1f}",
                        fmt_spread(a["ratio"], 2, "x"),
                        f"{rec['bound_median']:.0f}",
                        fmt_spread(a["app_frac_bound"], 2),
                        fmt_spread(rec["rm_frac_bound"], 2),
                    ]
                )
    after = " after epoch 1" if args.train_epochs > 1 else ""
    print(
        f"\n### Training steps/s{after}, "
        f"{args.train_epochs} epochs x {args.steps_per_epoch} steps, "
        f"batch {BATCH} (median; ratio and bound fractions median (min-max))\n"
    )
    print(
        markdown_table(
            [
                "threads",
                "policy",
                "apprentice precision",
                "apprentice",
                "robomimic (fp32)",
                "ratio",
                "matmul bound (fp32)",
                "apprentice / bound",
                "robomimic / bound",
            ],
            rows,
        )
    )
    return out


# ---------------------------------------------------------------- quality


def phase_quality(args: argparse.Namespace, dataset: Path) -> dict[str, Any]:
    work = WORK / "quality"
    work.mkdir(parents=True, exist_ok=True)
    threads = args.threads[0]
    epochs, steps, seed, lr = (
        args.quality_epochs,
        args.steps_per_epoch,
        args.quality_seed,
        args.quality_lr,
    )
    tag = f"e{epochs}_s{seed}_lr{lr:g}"
    app_dir = work / f"app_gmm_{tag}"
    rm_json = work / f"rm_train_{tag}.json"

    # Both trainings at once (one thread each, 2 cores): wall-clock is only reported, not compared.
    t0 = time.perf_counter()
    app_spec = {
        "dataset": str(dataset),
        "out_dir": str(app_dir),
        "policy": {"name": "gmm"},
        "epochs": epochs,
        "steps_per_epoch": steps,
        "batch_size": BATCH,
        "threads": threads,
        "seed": seed,
        "lr": lr,
    }
    app_p = subprocess.Popen(
        [sys.executable, "-c", APPRENTICE_TRAIN, json.dumps(app_spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=thread_env(threads),
        stdin=subprocess.DEVNULL,
    )
    rm_train = run_robomimic_train(
        args,
        dataset,
        work / "rm_runs",
        "paper",
        epochs,
        steps,
        threads,
        seed,
        rm_json,
        ckpt_check=True,
        lr=lr,
    )
    app_out, app_err = app_p.communicate()
    if app_p.returncode != 0:
        raise RuntimeError(f"apprentice training failed:\n{app_err[-3000:]}")
    app_train = json.loads(app_out.strip().splitlines()[-1])
    train_wall = time.perf_counter() - t0

    # Rollouts, also side by side.
    rm_eval_json = work / f"rm_eval_{tag}.json"
    rm_p = subprocess.Popen(
        [
            args.robomimic_python,
            str(PEERS / "robomimic_rollout.py"),
            "--checkpoint",
            rm_train["checkpoint"],
            "--task",
            "lift",
            "--episodes",
            str(args.episodes),
            "--threads",
            "1",
            "--json",
            str(rm_eval_json),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=thread_env(1),
        stdin=subprocess.DEVNULL,
    )
    app_eval = {}
    for ck in ("final.pt", "best.pt"):
        spec = {
            "checkpoint": str(app_dir / ck),
            "episodes": args.episodes,
            "workers": 1,
            "out": str(work / f"app_eval_{ck[:-3]}_{tag}.json"),
        }
        app_eval[ck] = run_json(
            [sys.executable, "-c", APPRENTICE_EVAL, json.dumps(spec)], env=thread_env(1)
        )
    app_eval["final.pt sampled"] = run_json(
        [
            sys.executable,
            "-c",
            APPRENTICE_EVAL_SAMPLED,
            json.dumps({"checkpoint": str(app_dir / "final.pt"), "episodes": args.episodes}),
        ],
        env=thread_env(1),
    )
    _rm_out, rm_err = rm_p.communicate()
    if rm_p.returncode != 0:
        raise RuntimeError(f"robomimic rollout failed:\n{rm_err[-3000:]}")
    rm_eval = json.loads(rm_eval_json.read_text())

    rows, res = [], {}
    app_metrics = app_train["metrics"]
    for label, ev, tr_s, loss in (
        (
            "apprentice gmm (final.pt)",
            app_eval["final.pt"],
            sum(m["steps"] / m["steps_per_s"] for m in app_metrics),
            app_metrics[-1]["train_loss"],
        ),
        ("apprentice gmm (best.pt, lowest valid loss)", app_eval["best.pt"], None, None),
        (
            "apprentice gmm (final.pt, act samples the mixture, low-noise = robomimic's eval)",
            app_eval["final.pt sampled"],
            None,
            None,
        ),
        (
            "robomimic BC paper config (last epoch)",
            rm_eval,
            rm_train["train_seconds"],
            rm_train.get("final_train_loss"),
        ),
    ):
        k, n = int(ev["successes"]), args.episodes
        lo, hi = wilson_interval(k, n)
        res[label] = {
            "successes": k,
            "episodes": n,
            "success_rate": k / n,
            "wilson_low": lo,
            "wilson_high": hi,
            "train_seconds": tr_s,
            "final_train_loss": loss,
        }
        rows.append(
            [
                label,
                f"{k}/{n}",
                f"{k / n:.2f}",
                f"[{lo:.2f}, {hi:.2f}]",
                "-" if tr_s is None else f"{tr_s:.0f}",
                "-" if loss is None else f"{loss:.3f}",
            ]
        )
    print(
        f"\n### Quality: lift, file "
        f"{dataset.name}, {epochs} epochs x {steps} steps, batch {BATCH}, lr {lr:g}, seed {seed}, "
        f"{args.episodes} held-out seeds (1e9+i), horizon {rm_eval['horizon']}\n"
    )
    print(
        markdown_table(
            [
                "policy",
                "successes",
                "rate",
                "95% Wilson",
                "train s (concurrent)",
                "final train loss",
            ],
            rows,
        )
    )
    return {
        "epochs": epochs,
        "steps_per_epoch": steps,
        "seed": seed,
        "lr": lr,
        "threads": threads,
        "episodes": args.episodes,
        "train_wall_s_both": train_wall,
        "results": res,
        "apprentice_run": str(app_dir),
        "robomimic_checkpoint": rm_train["checkpoint"],
        "robomimic_checkpoint_check": rm_train.get("checkpoint_check"),
        "note": "apprentice and robomimic trained concurrently, 1 thread each; train seconds "
        "are not a speed comparison (see the train phase).",
    }


# ---------------------------------------------------------------- main


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--phase", choices=["sampler", "train", "quality", "all"], default="all")
    p.add_argument(
        "--dataset",
        default=str(WORK / "lift200.hdf5"),
        help="robomimic-layout lift file (collected with apprentice if missing)",
    )
    p.add_argument("--collect-n", type=int, default=200)
    p.add_argument("--robomimic-python", default=str(ROOT / ".venv-robomimic" / "bin" / "python"))
    p.add_argument("--threads", type=int, nargs="+", default=[1], help="torch threads, each side")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sampler-seconds", type=float, default=5.0)
    p.add_argument("--seq-lens", type=int, nargs="+", default=[10, 1])
    p.add_argument("--train-epochs", type=int, default=3)
    p.add_argument("--steps-per-epoch", type=int, default=100)
    p.add_argument("--bound-seconds", type=float, default=3.0)
    p.add_argument(
        "--precisions",
        nargs="+",
        choices=["fp32", "bf16"],
        default=["fp32"],
        help="apprentice TrainConfig.precision values timed in the train phase "
        "(robomimic always fp32)",
    )
    p.add_argument("--quality-epochs", type=int, default=50)
    p.add_argument("--quality-seed", type=int, default=1)
    p.add_argument(
        "--quality-lr",
        type=float,
        default=1e-4,
        help="lr of both sides in the quality phase (robomimic paper config: 1e-4)",
    )
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks that it all runs")
    p.add_argument("--json", default=str(OUT / "vs_robomimic.json"))
    args = p.parse_args()
    if args.smoke:
        args.repeats, args.sampler_seconds, args.bound_seconds = 2, 0.5, 0.3
        args.train_epochs, args.steps_per_epoch = 2, 20
        args.quality_epochs, args.episodes = 1, 4
        args.json = str(OUT / "vs_robomimic_smoke.json")
    if not Path(args.robomimic_python).exists():
        raise SystemExit(
            f"{args.robomimic_python} missing: bash benchmarks/peers/setup_robomimic.sh"
        )
    dataset = ensure_dataset(args)
    phases = ["sampler", "train", "quality"] if args.phase == "all" else [args.phase]
    out_path = Path(args.json)
    result: dict[str, Any] = json.loads(out_path.read_text()) if out_path.exists() else {}
    result.update(
        {
            "dataset": str(dataset),
            "machine": {
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "python": platform.python_version(),
            },
        }
    )
    for phase in phases:
        t0 = time.perf_counter()
        load0 = os.getloadavg()
        fn = {"sampler": phase_sampler, "train": phase_train, "quality": phase_quality}[phase]
        r = fn(args, dataset)
        r["wall_s"] = time.perf_counter() - t0
        r["loadavg_start"], r["loadavg_end"] = load0, os.getloadavg()
        r["command"] = " ".join(sys.argv)
        r["when"] = time.strftime("%Y-%m-%d %H:%M:%S")
        if phase == "quality":
            result.setdefault("quality_runs", {})[
                f"e{args.quality_epochs}_s{args.quality_seed}_lr{args.quality_lr:g}"
            ] = r
        result[phase] = r
        write_json(out_path, result, quiet=True, default=str)
    print(f"\nwrote {out_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
