"""Train robomimic 0.3.0 BC / BC-RNN through robomimic's own entry point and time it.

Run with the robomimic venv (see setup_robomimic.sh):

    .venv-robomimic/bin/python benchmarks/peers/robomimic_train.py \
        --dataset benchmarks/out/peers/fixture.hdf5 --algo bc_rnn \
        --obs-keys eef_pos eef_quat gripper_qpos object --epochs 3 --steps-per-epoch 100 \
        --batch-size 100 --out benchmarks/out/peers/rm_runs \
        --json benchmarks/out/peers/rm_bc_rnn.json --seed 1

What it runs: robomimic.scripts.train.train(config, device) in this process, i.e. robomimic's real
training script minus its argparse main() (main() catches every exception and exits 0; calling
train() directly lets a failure raise and exit non-zero). So this is also the compatibility check
"a file apprentice writes trains unchanged in robomimic's own train script".

Config: config_factory("bc"), then robomimic's own paper-config code from
robomimic/scripts/generate_paper_configs.py: modify_config_for_default_low_dim_exp() and
modify_bc_config_for_dataset() / modify_bc_rnn_config_for_dataset() for a ("lift", "ph", "low_dim")
dataset, which gives
    bc:     actor_layer_dims (1024, 1024), lr 1e-4, GMM enabled (5 modes)
            [--gmm off for plain MSE BC]
    bc_rnn: rnn enabled, LSTM, horizon 10, hidden_dim 400, num_layers 2, actor_layer_dims (),
            train.seq_length 10, lr 1e-4, GMM enabled (5 modes)
    both:   batch 100, hdf5_cache_mode "all", num_data_workers 0.
Then for this benchmark: cuda off; rollouts OFF (config.experiment.rollout.enabled=False; we
evaluate separately), render_video off; train.hdf5_filter_key "train" when mask/train exists;
validation off unless --validate (then on mask/valid, like the paper's ph runs);
epoch_every_n_steps = --steps-per-epoch; num_epochs = --epochs; one checkpoint saved at the last
epoch (config.experiment.save.epochs = [E]).

Env: with rollouts off, train() never creates an environment: it only reads data.attrs["env_args"]
(FileUtils.get_env_metadata_from_dataset, a json.loads) and stores that dict in the checkpoint as
"env_metadata". So our env_args {"env_name", "env_type": "apprentice", "env_kwargs"} passes
training untouched; no override is needed. (robomimic's env code reads env_meta["type"], an int
EnvType, only when an env is created: rollouts in train() or env_from_checkpoint(); see README.)

Output folder: robomimic's train() asks "overwrite? (y/n)" on stdin if <output_dir>/<name> exists;
each run here gets a fresh name <algo>_seed<S>_<timestamp>_<pid>, so it never prompts.

Timing: robomimic.utils.train_utils.run_epoch is wrapped (train.py calls it through the module)
to time each training epoch; steps/s = gradient steps / time inside training run_epoch calls
(each includes robomimic's batch fetch + process_batch + forward/backward + log_info). Dataset
load, model build, per-epoch logging/checkpointing are excluded from that number but reported.
Also reported: the rate after the first (warm-up) epoch and the median per-epoch rate. robomimic's
train() pins torch.set_num_threads(2); --threads N overrides that (documented in the JSON).
On a shared 2-core machine epochs vary several-fold: compare with apprentice only in one script,
alternating runs, as ratios (see /work/shared/BENCHMARKING.md).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import statistics
import sys
import time


def build_config(args):
    import h5py
    from robomimic.config import config_factory
    from robomimic.scripts.generate_paper_configs import (
        modify_bc_config_for_dataset,
        modify_bc_rnn_config_for_dataset,
        modify_config_for_default_low_dim_exp,
    )

    with h5py.File(args.dataset, "r") as f:
        has_train = "mask/train" in f
        has_valid = "mask/valid" in f

    config = config_factory("bc")
    config = modify_config_for_default_low_dim_exp(config)
    if args.algo == "bc":
        config = modify_bc_config_for_dataset(config, "lift", "ph", "low_dim")
    else:
        config = modify_bc_rnn_config_for_dataset(config, "lift", "ph", "low_dim")

    name = "{}_seed{}_{}_{}".format(
        args.algo, args.seed, time.strftime("%Y%m%d-%H%M%S"), os.getpid()
    )
    with config.values_unlocked():
        if args.gmm != "paper":
            config.algo.gmm.enabled = args.gmm == "on"
        if args.lr is not None:  # default: the paper config's 1e-4
            config.algo.optim_params.policy.learning_rate.initial = args.lr
        config.experiment.name = name
        config.experiment.rollout.enabled = False  # no env is created (see docstring)
        config.experiment.render_video = False
        config.experiment.validate = bool(args.validate)
        config.experiment.epoch_every_n_steps = args.steps_per_epoch
        config.experiment.validation_epoch_every_n_steps = args.valid_steps
        config.experiment.save.enabled = True
        config.experiment.save.every_n_epochs = None
        config.experiment.save.every_n_seconds = None
        # one checkpoint after the last epoch, plus any --save-epochs (for learning curves)
        config.experiment.save.epochs = sorted({args.epochs, *args.save_epochs})
        config.experiment.save.on_best_validation = False
        config.experiment.save.on_best_rollout_return = False
        config.experiment.save.on_best_rollout_success_rate = False
        config.experiment.logging.log_tb = not args.no_tb
        config.train.data = os.path.abspath(args.dataset)
        config.train.output_dir = os.path.abspath(args.out)
        config.train.num_epochs = args.epochs
        config.train.batch_size = args.batch_size
        config.train.seed = args.seed
        config.train.cuda = False
        config.train.num_data_workers = args.num_workers
        if args.validate:
            if not (has_train and has_valid):
                raise SystemExit("--validate needs mask/train and mask/valid in the file")
            config.train.hdf5_filter_key = "train"
            config.train.hdf5_validation_filter_key = "valid"
        else:
            config.train.hdf5_filter_key = "train" if has_train else None
            config.train.hdf5_validation_filter_key = None
        config.observation.modalities.obs.low_dim = list(args.obs_keys)
        config.observation.modalities.obs.rgb = []
        config.observation.modalities.goal.low_dim = []
        config.observation.modalities.goal.rgb = []
    config.lock()
    return config


def check_checkpoint(ckpt_path: str, dataset: str, obs_keys) -> dict:
    """Reload the checkpoint the robomimic way and run the policy on one dataset frame."""
    import h5py
    import numpy as np
    import robomimic.utils.file_utils as FileUtils
    import torch

    info = {}
    try:
        policy, ckpt = FileUtils.policy_from_checkpoint(
            ckpt_path=ckpt_path, device=torch.device("cpu")
        )
        info["policy_from_checkpoint"] = "ok"
    except Exception as e:  # e.g. torch>=2.6 torch.load(weights_only=True) on robomimic's dict
        info["policy_from_checkpoint"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        policy, ckpt = FileUtils.policy_from_checkpoint(ckpt_dict=ckpt, device=torch.device("cpu"))
        info["policy_from_checkpoint_with_weights_only_False"] = "ok"
    with h5py.File(dataset, "r") as f:
        demo = sorted(f["data"].keys(), key=lambda n: int(n[5:]))[0]
        ob = {k: np.asarray(f[f"data/{demo}/obs/{k}"][0], dtype=np.float32) for k in obs_keys}
    policy.start_episode()
    act = policy(ob=ob)
    info["action_shape"] = list(np.shape(act))
    info["env_metadata_in_ckpt"] = ckpt.get("env_metadata")
    return info


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dataset", required=True)
    p.add_argument("--algo", choices=["bc", "bc_rnn"], required=True)
    p.add_argument("--obs-keys", nargs="+", required=True)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument(
        "--save-epochs", type=int, nargs="*", default=[], help="also save after these epochs"
    )
    p.add_argument("--steps-per-epoch", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument(
        "--out", required=True, help="robomimic output_dir (a fresh run folder goes inside)"
    )
    p.add_argument("--json", required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--gmm",
        choices=["paper", "on", "off"],
        default="paper",
        help="GMM head: robomimic's paper setting (on for ph data, both algos), or force",
    )
    p.add_argument("--lr", type=float, default=None, help="override the paper config's 1e-4")
    p.add_argument("--validate", action="store_true", help="validate on mask/valid each epoch")
    p.add_argument("--valid-steps", type=int, default=10)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--no-tb", action="store_true", help="turn off robomimic's tensorboardX logging")
    p.add_argument("--skip-ckpt-check", action="store_true")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads; default: what robomimic's train() sets (2)",
    )
    args = p.parse_args()

    import robomimic
    import robomimic.utils.train_utils as TrainUtils
    import torch
    from robomimic.scripts.train import train

    config = build_config(args)

    # time robomimic's own run_epoch calls (train.py calls TrainUtils.run_epoch via the module)
    epochs = []
    orig_run_epoch = TrainUtils.run_epoch
    marks = {}

    def timed_run_epoch(*a, **kw):
        marks.setdefault("first_epoch_start", time.perf_counter())
        t0 = time.perf_counter()
        out = orig_run_epoch(*a, **kw)
        dt = time.perf_counter() - t0
        steps = kw.get("num_steps")
        epochs.append(
            {
                "validate": bool(kw.get("validate", False)),
                "steps": steps,
                "seconds": dt,
                "loss": out.get("Loss"),
            }
        )
        return out

    TrainUtils.run_epoch = timed_run_epoch
    orig_set_threads = torch.set_num_threads
    if args.threads is not None:
        # robomimic's train() calls torch.set_num_threads(2) unconditionally; use --threads instead
        orig_set_threads(args.threads)
        torch.set_num_threads = lambda n: None
    stdout, stderr = (
        sys.stdout,
        sys.stderr,
    )  # train() redirects both to a PrintLogger; restore after
    t_start = time.perf_counter()
    try:
        train(config, device=torch.device("cpu"))
    finally:
        sys.stdout, sys.stderr = stdout, stderr
        TrainUtils.run_epoch = orig_run_epoch
        torch.set_num_threads = orig_set_threads
    t_end = time.perf_counter()

    run_dirs = sorted(
        glob.glob(os.path.join(os.path.abspath(args.out), config.experiment.name, "*"))
    )
    run_dir = run_dirs[-1]
    ckpts = sorted(glob.glob(os.path.join(run_dir, "models", "*.pth")))
    if not ckpts:
        raise SystemExit(f"robomimic saved no checkpoint under {run_dir}/models")

    train_ep = [e for e in epochs if not e["validate"]]
    steps = sum(e["steps"] for e in train_ep)
    secs = sum(e["seconds"] for e in train_ep)
    warm = train_ep[1:]
    out = {
        "peer": "robomimic",
        "robomimic_version": robomimic.__version__,
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),  # robomimic's train() sets 2 unless --threads
        "algo": args.algo,
        "steps_per_s": steps / secs,
        "steps_per_s_after_first_epoch": (
            sum(e["steps"] for e in warm) / sum(e["seconds"] for e in warm)
        )
        if warm
        else None,
        "steps_per_s_median_epoch": statistics.median(e["steps"] / e["seconds"] for e in train_ep),
        "train_steps": steps,
        "train_seconds": secs,
        "setup_seconds": marks["first_epoch_start"]
        - t_start,  # dataset load + model build + logging setup
        "loop_seconds": t_end
        - marks["first_epoch_start"],  # epochs incl. validation, logging, checkpoint
        "total_seconds": t_end - t_start,
        "epochs": epochs,
        "final_train_loss": train_ep[-1]["loss"],
        "checkpoint": os.path.join(run_dir, "models", f"model_epoch_{args.epochs}.pth"),
        "checkpoints": ckpts,
        "run_dir": run_dir,
        "log": os.path.join(run_dir, "logs", "log.txt"),
        "settings": {
            "dataset": os.path.abspath(args.dataset),
            "obs_keys": list(args.obs_keys),
            "epochs": args.epochs,
            "steps_per_epoch": args.steps_per_epoch,
            "batch_size": args.batch_size,
            "seed": args.seed,
            "validate": bool(args.validate),
            "rollouts": False,
            "seq_length": config.train.seq_length,
            "hdf5_cache_mode": config.train.hdf5_cache_mode,
            "hdf5_filter_key": config.train.hdf5_filter_key,
            "num_data_workers": config.train.num_data_workers,
            "actor_layer_dims": list(config.algo.actor_layer_dims),
            "gmm": {"enabled": config.algo.gmm.enabled, "num_modes": config.algo.gmm.num_modes},
            "rnn": {
                "enabled": config.algo.rnn.enabled,
                "horizon": config.algo.rnn.horizon,
                "hidden_dim": config.algo.rnn.hidden_dim,
                "num_layers": config.algo.rnn.num_layers,
                "type": config.algo.rnn.rnn_type,
            },
            "lr": config.algo.optim_params.policy.learning_rate.initial,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
    }
    if not args.skip_ckpt_check:
        out["checkpoint_check"] = check_checkpoint(out["checkpoint"], args.dataset, args.obs_keys)
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(out, f, indent=2, default=str)
    print(
        json.dumps(
            {
                k: out[k]
                for k in (
                    "algo",
                    "steps_per_s",
                    "steps_per_s_after_first_epoch",
                    "final_train_loss",
                    "checkpoint",
                )
            }
        )
    )


if __name__ == "__main__":
    main()
