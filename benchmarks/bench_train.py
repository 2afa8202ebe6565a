"""Training throughput of the BC policies on CPU, next to what the hardware allows.

For robomimic's BC MLP (2x1024 ReLU) at batch 100 on low-dim data (D=23 obs, A=7 actions):

- trainer steps/s: the real training step, `Trainer.step` (WindowSampler batch -> policy(batch)
  -> Adam), at torch threads 2 and 1, with optimizer variants (for-loop / foreach /
  fused Adam), bf16 autocast and torch.compile;
- matmul bound: forward + backward of the same Linear stack written with bare torch matmuls
  (no sampler, no normalization, no optimizer), the rate the step could reach if everything
  but the GEMMs were free;
- FLOP bound: 6 * params * batch FLOPs per step over the peak GEMM FLOP/s torch.mm reaches
  at 1024x1024 (float32 and bfloat16) on this CPU;
- BC-RNN (LSTM 2x400, seq 10, batch 100) trainer steps/s.

Run: .venv/bin/python benchmarks/bench_train.py [--quick]
Prints a markdown table and writes benchmarks/out/train.json.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from apprentice.algos import TrainConfig, Trainer
from apprentice.algos.bc import batch_to_tensors
from apprentice.data.dataset import DemoDataset, WindowSampler
from apprentice.policies import MLPConfig, Policy, PolicyConfig, RNNConfig
from harness import (
    OUT,
    add_out,
    add_quick,
    alternate,
    cpu_name,
    markdown_table,
    parser,
    write_json,
)

OBS = {"eef_pos": 3, "eef_quat": 4, "gripper_qpos": 2, "object": 14}  # D = 23
ACTION_DIM = 7
BATCH = 100


def synthetic_dataset(num_demos: int = 50, length: int = 200, seed: int = 0) -> DemoDataset:
    """Demos of a smooth obs -> action map, built in memory (no file needed to time steps)."""
    # The map is fixed (seed 0) so datasets of any seed or size share it.
    w = np.random.default_rng(0).normal(size=(sum(OBS.values()), ACTION_DIM)) * 0.3
    rng = np.random.default_rng(seed)
    n = num_demos * length
    obs = {k: rng.normal(size=(n, d)).astype(np.float32) for k, d in OBS.items()}
    actions = np.tanh(np.concatenate(list(obs.values()), axis=1) @ w).astype(np.float32)
    lengths = np.full(num_demos, length, dtype=np.int64)
    starts = np.arange(num_demos, dtype=np.int64) * length
    names = [f"demo_{i}" for i in range(num_demos)]
    return DemoDataset(obs, actions, starts, lengths, names, {"env_name": "bench"})


def gemm_step(dtype: torch.dtype, n: int = 1024) -> Callable[[], Any]:
    """One n x n x n torch.mm (2 n^3 FLOPs)."""
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    return lambda: torch.mm(a, b)


def bare_matmul_step(dims: list[int]) -> Callable[[], None]:
    """fwd+bwd of the Linear stack with torch.addmm only: the GEMM-bound step."""
    torch.manual_seed(0)
    ws = [(torch.randn(i, o) / i**0.5).requires_grad_() for i, o in itertools.pairwise(dims)]
    bs = [torch.zeros(o, requires_grad=True) for o in dims[1:]]
    x = torch.randn(BATCH, dims[0])  # (B, D)
    y = torch.rand(BATCH, dims[-1]) * 2 - 1  # (B, A)

    def step() -> None:
        h = x
        for i, (w, b) in enumerate(zip(ws, bs, strict=True)):
            h = torch.addmm(b, h, w)  # (B, D_i+1)
            h = h.relu() if i < len(ws) - 1 else h.tanh()
        loss = (h - y).pow(2).mean()
        for p in (*ws, *bs):
            p.grad = None
        loss.backward()

    return step


def trainer_step(
    config: PolicyConfig,
    dataset: DemoDataset,
    *,
    optimizer: str = "foreach",
    autocast: bool = False,
    compile_loss: bool = False,
    lr: float = 1e-4,
) -> tuple[Callable[[], Any], Policy]:
    """The trainer's step, `Trainer.step` (sample -> policy(batch) -> backward -> Adam), for
    one setting: bf16 autocast is the trainer's precision="bf16"; "fused" is its own Adam."""
    torch.manual_seed(0)
    policy = config.build(dataset.spec, {})
    policy.train()
    train_config = TrainConfig(lr=lr, precision="bf16" if autocast else "fp32")
    kw: dict[str, Any] | None = {
        "foreach": {"foreach": True},
        "fused": None,  # the trainer's optimizer
        "for-loop": {"foreach": False},
    }[optimizer]
    opt = None if kw is None else torch.optim.Adam(policy.parameters(), lr=lr, **kw)
    trainer = Trainer.for_policy(policy, train_config, optimizer=opt)
    sampler = WindowSampler.for_policy(
        dataset, config, batch_size=BATCH, rng=np.random.default_rng(0)
    )
    if compile_loss:
        # Compiles the module call, the loss (forward); the step around it stays eager.
        policy.compile()

    def step() -> Tensor:
        loss, _ = trainer.step(sampler.sample())
        return loss

    return step, policy


def accuracy_check(dataset: DemoDataset, steps: int, autocast: bool) -> float:
    """Held-out MSE of the MLP after `steps` Adam steps at lr 1e-3, fp32 or bf16 autocast."""
    step, policy = trainer_step(MLPConfig(), dataset, autocast=autocast, lr=1e-3)
    for _ in range(steps):
        step()
    held_out = synthetic_dataset(num_demos=5, seed=1)  # same map, unseen observations
    sampler = WindowSampler(held_out, batch_size=1000, rng=np.random.default_rng(1))
    with torch.no_grad():
        loss, _ = policy(batch_to_tensors(sampler.sample()))
    return float(loss)


MLP_VARIANTS: dict[str, dict[str, Any]] = {
    "adam for-loop": {"optimizer": "for-loop"},
    "adam foreach": {"optimizer": "foreach"},
    "adam fused (trainer)": {"optimizer": "fused"},
    "fused + bf16 autocast": {"optimizer": "fused", "autocast": True},
    "fused + torch.compile(forward)": {"optimizer": "fused", "compile_loss": True},
}


def main() -> None:
    p = parser(__doc__)
    add_quick(p, help="shorter timing windows")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    p.add_argument("--threads", default="2,1", help="torch thread counts to time")
    add_out(p, OUT / "train.json")
    args = p.parse_args()
    seconds, repeats = (0.4, 3) if args.quick else (1.0, 5)
    dataset = synthetic_dataset()
    mlp, rnn = MLPConfig(), RNNConfig()
    dims = [sum(OBS.values()), *mlp.hidden_dims, ACTION_DIM]
    params = sum(i * o + o for i, o in itertools.pairwise(dims))
    flops_per_step = 6 * params * BATCH
    results: dict[str, Any] = {
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "load_avg_start": os.getloadavg(),
        "mlp_params": params,
        "flops_per_step": flops_per_step,
        "batch": BATCH,
        "obs_dim": dims[0],
        "rows": [],
    }
    rows: list[dict[str, Any]] = results["rows"]
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        steps: dict[str, Callable[[], Any]] = {
            "gemm fp32": gemm_step(torch.float32),
            "gemm bf16": gemm_step(torch.bfloat16),
            "bare": bare_matmul_step(dims),
        }
        errors: dict[str, str] = {}
        for name, kw in MLP_VARIANTS.items():
            if args.no_compile and kw.get("compile_loss"):
                continue
            try:
                step, _ = trainer_step(mlp, dataset, **kw)
                step()  # compilation, if any, fails here rather than mid-timing
                steps[name] = step
            except Exception as exc:  # torch.compile may lack a toolchain; record, go on
                errors[name] = str(exc).splitlines()[0]
        rnn_steps, rnn_policy = trainer_step(rnn, dataset, optimizer="fused")
        steps["rnn"] = rnn_steps
        rounds = alternate(steps, rounds=repeats, seconds=seconds, warmup=2)
        measured = {name: rounds.median(name) for name in steps}
        peak32 = measured["gemm fp32"] * 2 * 1024**3
        peak16 = measured["gemm bf16"] * 2 * 1024**3
        bare = measured["bare"]
        common = {
            "threads": threads,
            "peak_gflops_fp32": peak32 / 1e9,
            "peak_gflops_bf16": peak16 / 1e9,
            "matmul_bound_steps_s": bare,
            "flop_bound_steps_s_fp32": peak32 / flops_per_step,
            "flop_bound_steps_s_bf16": peak16 / flops_per_step,
        }
        for name in MLP_VARIANTS:
            if name in errors:
                rows.append(
                    {"policy": "mlp 2x1024", "variant": name, **common, "error": errors[name]}
                )
            elif name in measured:
                steps_s = measured[name]
                rows.append(
                    {
                        "policy": "mlp 2x1024",
                        "variant": name,
                        **common,
                        "steps_s": steps_s,
                        "fraction_of_matmul_bound": steps_s / bare,
                        "fraction_of_flop_bound_fp32": steps_s / common["flop_bound_steps_s_fp32"],
                    }
                )
        # LSTM weights are applied at every one of the seq_len steps.
        rnn_params = sum(p.numel() for p in rnn_policy.parameters())
        rnn_bound = peak32 / (6 * rnn_params * BATCH * rnn.seq_len)
        rows.append(
            {
                "policy": "rnn lstm 2x400 seq10",
                "variant": "adam fused (trainer)",
                "threads": threads,
                "steps_s": measured["rnn"],
                "flop_bound_steps_s_fp32": rnn_bound,
                "fraction_of_flop_bound_fp32": measured["rnn"] / rnn_bound,
            }
        )
    steps_acc = 150 if args.quick else 400
    results["bf16_accuracy"] = {
        "steps": steps_acc,
        "held_out_mse_fp32": accuracy_check(dataset, steps_acc, autocast=False),
        "held_out_mse_bf16": accuracy_check(dataset, steps_acc, autocast=True),
    }
    results["load_avg_end"] = os.getloadavg()
    write_json(args.out, results)
    print_table(results)


def print_table(results: dict[str, Any]) -> None:
    print(f"{results['cpu']}, {results['cpu_count']} CPUs, torch {results['torch']}")
    print(
        f"batch {results['batch']}, obs dim {results['obs_dim']}, MLP params "
        f"{results['mlp_params']:,}, {results['flops_per_step'] / 1e6:.0f} MFLOP/step"
    )
    print(f"load average at start {results['load_avg_start']}, end {results['load_avg_end']}\n")
    rows = []
    for r in results["rows"]:
        if "error" in r:
            rows.append([r["policy"], r["variant"], r["threads"], f"failed: {r['error'][:60]}"])
            continue
        bound = r.get("matmul_bound_steps_s")
        flop = r.get("flop_bound_steps_s_fp32")
        rows.append(
            [r["policy"], r["variant"], r["threads"], f"{r['steps_s']:.0f}"]
            + ([f"{bound:.0f}", f"{r['fraction_of_matmul_bound']:.2f}"] if bound else ["", ""])
            + ([f"{flop:.0f}", f"{r['fraction_of_flop_bound_fp32']:.2f}"] if flop else ["", ""])
        )
    header = ["policy", "variant", "threads", "steps/s", "matmul bound", "frac"]
    print(markdown_table([*header, "FLOP bound fp32", "frac"], rows))
    peaks = {
        (r["threads"], r.get("peak_gflops_fp32"), r.get("peak_gflops_bf16"))
        for r in results["rows"]
    }
    for threads, p32, p16 in sorted(p for p in peaks if p[1]):
        print(f"\npeak torch.mm 1024^2, {threads} thread(s): ", end="")
        print(f"fp32 {p32:.0f} GFLOP/s, bf16 {p16:.0f} GFLOP/s", end="")
    acc = results["bf16_accuracy"]
    print(
        f"\n\nbf16 autocast accuracy after {acc['steps']} steps: held-out MSE "
        f"fp32 {acc['held_out_mse_fp32']:.4f} vs bf16 {acc['held_out_mse_bf16']:.4f}"
    )


if __name__ == "__main__":
    main()
