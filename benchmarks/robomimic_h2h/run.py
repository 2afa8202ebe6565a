"""Head-to-head with robomimic 0.3.0 on robomimic's own tasks: BC-RNN, same data, same budget.

For each robosuite task (Lift, PickPlaceCan, NutAssemblySquare, Stack):

1. data   one 200-demo oracle dataset (`apprentice collect`, seeds 0.., action noise 0.05),
          robomimic's low-dim layout; both sides train on this very file.
2. train  per seed, apprentice BC-RNN and robomimic BC-RNN (robomimic's paper config for
          low-dim ph data via its own generate_paper_configs code: LSTM 2x400, seq 10, GMM 5
          modes, lr 1e-4, batch 100, fp32; trained by robomimic's own train()), the same
          epochs x 100 gradient steps, 1 torch thread each. apprentice uses the same LSTM
          (2x400, seq 10, batch 100, all 200 demos) with its own recommended settings, each a
          flag: a deterministic head (--app-head; oracle data is unimodal), lr 1e-3 (--app-lr)
          and bf16 autocast (--app-precision; the CPU's bf16 units). The two runs of a seed go
          side by side, one per core, so both see the same machine load; the start order
          flips every seed. Each keeps a checkpoint every --save-every epochs; its time is the
          checkpoint file's mtime minus the launch time of its process (imports, data loading
          and logging included, for both); training time is that of the final checkpoint.
3. eval   every checkpoint is scored by benchmarks/robomimic_h2h/rollout.py on the same
          held-out seeds (1e9 + i) of apprentice's robosuite Task: the final one on --episodes
          (50), the earlier ones in epoch order with --stop-below 0.9 until one reaches 90%.
4. report success of the final checkpoints side by side (successes over 3 seeds x 50, Wilson
          95%), the training wall-clock ratio robomimic / apprentice per seed (median, min-max),
          and the ratio of times to the first checkpoint with >= 90% success.

Two virtual environments, made by this script when missing:
    .venv-robosuite      apprentice with the robosuite extra (`make robosuite`)
    .venv-robomimic-rs   robomimic 0.3.0 + robosuite 1.5.2 + torch 2.13.0 (CPU)
                         (`ROBOMIMIC_VENV=.venv-robomimic-rs WITH_ROBOSUITE=1
                         bash benchmarks/peers/setup_robomimic.sh`)

    python3 benchmarks/robomimic_h2h/run.py                          # everything (hours)
    python3 benchmarks/robomimic_h2h/run.py --tasks Lift --seeds 0   # one pair
    python3 benchmarks/robomimic_h2h/run.py --smoke                  # minutes: the plumbing

Every step writes its JSON under --work and is skipped when that JSON exists, so a killed run
resumes where it stopped. The report goes to stdout and <work>/h2h.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
APP_PY = ROOT / ".venv-robosuite" / "bin" / "python"
RM_VENV = ROOT / ".venv-robomimic-rs"
RM_PY = RM_VENV / "bin" / "python"
TASKS = ["Lift", "PickPlaceCan", "NutAssemblySquare", "Stack"]
OBS_KEYS = ["robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos", "object"]
THRESHOLD = 0.9

APPRENTICE_TRAIN = r"""
import json, sys
from apprentice.algos.trainer import TrainConfig, train
from apprentice.policies import RNNConfig
a = json.loads(sys.argv[1])
policy = RNNConfig(obs_keys=tuple(a["obs_keys"]), head=a["head"])  # LSTM 2x400, seq 10
train(TrainConfig(dataset=a["dataset"], out=a["out_dir"], policy=policy,
    epochs=a["epochs"], steps_per_epoch=a["steps"], batch_size=100, lr=a["lr"], seed=a["seed"],
    valid_fraction=0.0, threads=1, progress=False, save_every=a["save_every"],
    precision=a["precision"], overwrite=True))
"""


def ensure_venvs() -> None:
    if not APP_PY.exists():
        subprocess.run(["make", "robosuite"], cwd=ROOT, check=True)
    if not RM_PY.exists() or not (RM_VENV / "lib").exists():
        env = {**os.environ, "ROBOMIMIC_VENV": str(RM_VENV), "WITH_ROBOSUITE": "1"}
        subprocess.run(
            ["bash", str(ROOT / "benchmarks/peers/setup_robomimic.sh")], env=env, check=True
        )


def run_env() -> dict[str, str]:
    return {**os.environ, "MUJOCO_GL": "egl", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def collect(task: str, path: Path, n: int, seed: int) -> None:
    """Collect, or finish collecting (apprentice collect resumes a partial file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [str(APP_PY), "-m", "apprentice.cli.main", "collect", "--task", task, "--n", str(n)]
    cmd += ["--out", str(path), "--seed", str(seed), "--action-noise", "0.05"]
    cmd += ["--valid-fraction", "0", "--workers", "2", "--no-progress"]
    subprocess.run(cmd, check=True, env=run_env())


def _launch(cmd: list[str], log: Path) -> tuple[subprocess.Popen[bytes], float]:
    log.parent.mkdir(parents=True, exist_ok=True)
    f = log.open("wb")
    t0 = time.time()
    return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=run_env()), t0


def train_pair(task: str, seed: int, data: Path, work: Path, a: argparse.Namespace) -> dict:
    out = work / "train" / f"{task}_s{seed}.json"
    if out.exists():
        return json.loads(out.read_text())
    save_epochs = list(range(a.save_every, a.epochs, a.save_every)) if a.save_every else []
    app_dir = work / "runs" / f"app_{task}_s{seed}"
    rm_dir = work / "runs" / f"rm_{task}_s{seed}"
    rm_json = work / "train" / f"{task}_s{seed}_robomimic.json"
    app_args = {
        "dataset": str(data),
        "out_dir": str(app_dir),
        "obs_keys": OBS_KEYS,
        "epochs": a.epochs,
        "seed": seed,
        "save_every": a.save_every,
        "steps": a.steps_per_epoch,
        "head": a.app_head,
        "lr": a.app_lr,
        "precision": a.app_precision,
    }
    cmds = {
        "apprentice": [str(APP_PY), "-c", APPRENTICE_TRAIN, json.dumps(app_args)],
        "robomimic": [
            str(RM_PY), str(ROOT / "benchmarks/peers/robomimic_train.py"),
            "--dataset", str(data), "--algo", "bc_rnn", "--obs-keys", *OBS_KEYS,
            "--epochs", str(a.epochs), "--steps-per-epoch", str(a.steps_per_epoch),
            "--batch-size", "100", "--out", str(rm_dir), "--json", str(rm_json),
            "--seed", str(seed), "--threads", "1", "--save-epochs", *map(str, save_epochs),
            *(["--lr", str(a.rm_lr)] if a.rm_lr is not None else []),
        ],
    }  # fmt: skip
    order = ["apprentice", "robomimic"] if seed % 2 == 0 else ["robomimic", "apprentice"]
    procs = {side: _launch(cmds[side], work / "logs" / f"train_{task}_s{seed}_{side}.log")
             for side in order}  # fmt: skip
    result: dict[str, Any] = {"task": task, "seed": seed, "order": order, "epochs": a.epochs}
    running = dict(procs)
    while running:  # note each side's exit time as it happens
        for side, (proc, t0) in list(running.items()):
            if proc.poll() is None:
                continue
            if proc.returncode != 0:
                raise SystemExit(f"{side} training failed ({task}, seed {seed}): see {work}/logs")
            result[side] = {"process_s": time.time() - t0, "launched": t0}
            del running[side]
        time.sleep(0.2)
    result["apprentice"]["checkpoints"] = {
        e: str(app_dir / f"epoch_{e}.pt") for e in [*save_epochs]
    } | {a.epochs: str(app_dir / "final.pt")}
    rm_info = json.loads(rm_json.read_text())
    models = Path(rm_info["run_dir"]) / "models"
    result["robomimic"]["checkpoints"] = {
        e: str(models / f"model_epoch_{e}.pth") for e in [*save_epochs, a.epochs]
    }
    result["robomimic"]["steps_per_s"] = rm_info["steps_per_s"]
    for side in ("apprentice", "robomimic"):
        r = result[side]
        r["checkpoint_s"] = {
            str(e): os.path.getmtime(p) - r["launched"] for e, p in r["checkpoints"].items()
        }
        r["checkpoints"] = {str(e): p for e, p in r["checkpoints"].items()}
        # Training time: launch to the final checkpoint on disk (what each process does after
        # it, such as robomimic_train.py's checkpoint reload check, is not training).
        r["wall_s"] = r["checkpoint_s"][str(a.epochs)]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(
        f"trained {task} seed {seed}: apprentice {result['apprentice']['wall_s']:.0f} s, "
        f"robomimic {result['robomimic']['wall_s']:.0f} s",
        flush=True,
    )
    return result


def rollout(side: str, ckpt: str, task: str, out: Path, episodes: int, stop: float | None) -> dict:
    if out.exists():
        return json.loads(out.read_text())
    py = APP_PY if side == "apprentice" else RM_PY
    cmd = [str(py), str(HERE / "rollout.py"), "--kind", side, "--checkpoint", ckpt]
    cmd += ["--task", task, "--episodes", str(episodes), "--json", str(out)]
    if stop is not None:
        cmd += ["--stop-below", str(stop)]
    log = out.with_suffix(".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as f:
        if subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=run_env()).returncode:
            raise SystemExit(f"rollout failed: {' '.join(cmd)} (see {log})")
    return json.loads(out.read_text())


def evaluate_side(train: dict, side: str, work: Path, episodes: int) -> dict:
    """Final checkpoint on all episodes; earlier ones in order until one reaches 90%."""
    task, seed = train["task"], train["seed"]
    ckpts = train[side]["checkpoints"]
    epochs = sorted(int(e) for e in ckpts)
    folder = work / "eval" / f"{side}_{task}_s{seed}"
    final = rollout(side, ckpts[str(epochs[-1])], task, folder / f"epoch_{epochs[-1]}.json",
                    episodes, None)  # fmt: skip
    first = None
    for e in epochs[:-1]:
        r = rollout(side, ckpts[str(e)], task, folder / f"epoch_{e}.json", episodes, THRESHOLD)
        if r["reaches_threshold"]:
            first = e
            break
    if first is None and final["successes"] >= THRESHOLD * final["episodes"] - 1e-9:
        first = epochs[-1]
    return {
        "successes": final["successes"],
        "episodes": final["episodes"],
        "first_epoch_90": first,
        "time_to_90_s": None if first is None else train[side]["checkpoint_s"][str(first)],
    }


def spread(xs: list[float]) -> str:
    if not xs:
        return "–"
    return f"{statistics.median(xs):.2f}x ({min(xs):.2f}-{max(xs):.2f}, n={len(xs)})"


def report(results: dict[str, list[dict]], a: argparse.Namespace) -> str:
    lines = [
        f"BC-RNN, LSTM 2x400, seq 10, batch 100, {a.demos} oracle demos, {a.epochs} epochs x "
        f"{a.steps_per_epoch} steps, seeds {' '.join(map(str, a.seeds))}, "
        f"{a.episodes} held-out rollouts per seed; robomimic: paper config (GMM 5 modes, "
        f"lr {a.rm_lr or 1e-4:g}, fp32); apprentice: {a.app_head} head, lr {a.app_lr:g}, "
        f"{a.app_precision}",
        "",
        "| task | apprentice | robomimic 0.3.0 | train wall-clock, robomimic / apprentice "
        "| first ckpt >= 90% (epoch; app / rm) | time to 90%, robomimic / apprentice |",
        "|---|---|---|---|---|---|",
    ]
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    from apprentice.evaluate.metrics import wilson_interval

    for task, rows in results.items():
        cells = []
        for side in ("apprentice", "robomimic"):
            k = sum(r["eval"][side]["successes"] for r in rows)
            n = sum(r["eval"][side]["episodes"] for r in rows)
            lo, hi = wilson_interval(k, n)
            per = "/".join(str(r["eval"][side]["successes"]) for r in rows)
            cells.append(f"{k}/{n} = {100 * k / n:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}] ({per})")
        final = [str(r["epochs"]) for r in rows]
        wall = [
            r["robomimic"]["checkpoint_s"][e] / r["apprentice"]["checkpoint_s"][e]
            for r, e in zip(rows, final, strict=True)
        ]
        firsts = " ".join(
            f"{r['eval']['apprentice']['first_epoch_90'] or '–'}/"
            f"{r['eval']['robomimic']['first_epoch_90'] or '–'}"
            for r in rows
        )
        t90 = [
            r["eval"]["robomimic"]["time_to_90_s"] / r["eval"]["apprentice"]["time_to_90_s"]
            for r in rows
            if r["eval"]["robomimic"]["time_to_90_s"] and r["eval"]["apprentice"]["time_to_90_s"]
        ]
        lines.append(f"| {task} | {cells[0]} | {cells[1]} | {spread(wall)} | {firsts} | "
                     f"{spread(t90)} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--tasks", nargs="+", default=TASKS, choices=TASKS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--demos", type=int, default=200)
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--steps-per-epoch", type=int, default=100)
    p.add_argument("--save-every", type=int, default=10)
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--app-head", default="deterministic", choices=["deterministic", "gmm"])
    p.add_argument("--app-lr", type=float, default=1e-3)
    p.add_argument("--app-precision", default="bf16", choices=["fp32", "bf16"])
    p.add_argument("--rm-lr", type=float, default=None, help="robomimic lr (default: paper 1e-4)")
    p.add_argument("--data-dir", type=Path, default=None, help="default: <work>/data")
    p.add_argument("--work", type=Path, default=ROOT / "benchmarks/out/robomimic_h2h")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks the plumbing")
    a = p.parse_args()
    if a.smoke:
        a.demos, a.epochs, a.steps_per_epoch, a.save_every, a.episodes = 4, 2, 5, 1, 2
        a.seeds = a.seeds[:1]
        a.work = a.work / "smoke"
    ensure_venvs()
    results: dict[str, list[dict]] = {}
    with ThreadPoolExecutor(2) as pool:
        for task in a.tasks:
            data = (a.data_dir or a.work / "data") / f"{task}.hdf5"
            collect(task, data, a.demos, seed=0)
            rows = [train_pair(task, seed, data, a.work, a) for seed in a.seeds]
            for row in rows:
                jobs = {
                    side: pool.submit(evaluate_side, row, side, a.work, a.episodes)
                    for side in ("apprentice", "robomimic")
                }
                row["eval"] = {side: job.result() for side, job in jobs.items()}
            results[task] = rows
            print(report({task: rows}, a), flush=True)
    table = report(results, a)
    # One summary per work folder: tasks run by earlier invocations keep their rows (each
    # with the settings it ran under); this run's tasks replace theirs.
    path = a.work / "h2h.json"
    earlier = json.loads(path.read_text()) if path.exists() else {}
    settings = {k: str(v) for k, v in vars(a).items()}
    summary = {
        "settings_by_task": {
            **earlier.get("settings_by_task", {}),
            **{task: settings for task in results},
        },
        "results": {**earlier.get("results", {}), **results},
    }
    path.write_text(json.dumps(summary, indent=1))
    print("\n" + table)


if __name__ == "__main__":
    main()
