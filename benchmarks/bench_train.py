"""Training throughput of the BC policies on CPU, next to what the hardware allows.

For robomimic's BC MLP (2x1024 ReLU) at batch 100 on low-dim data (D=23 obs, A=7 actions):

- trainer steps/s: the real training step (WindowSampler batch -> policy.loss -> Adam), as the
  trainer runs it, at torch threads 2 and 1, with optimizer variants (for-loop / foreach /
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

import argparse
import itertools
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from apprentice.algos.bc import batch_to_tensors, bc_update
from apprentice.data.dataset import DemoDataset, WindowSampler
from apprentice.policies import MLPConfig, Policy, PolicyConfig, RNNConfig

OBS = {"eef_pos": 3, "eef_quat": 4, "gripper_qpos": 2, "object": 14}  # D = 23
ACTION_DIM = 7
BATCH = 100
OUT = Path(__file__).parent / "out" / "train.json"


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


def rate(step: Callable[[], Any], *, seconds: float, warmup: int = 5, repeats: int = 3) -> float:
    """Median calls/s over `repeats` windows of about `seconds` each (after warm-up calls)."""
    for _ in range(warmup):
        step()
    rates = []
    for _ in range(repeats):
        count, t0 = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - t0) < seconds:
            step()
            count += 1
        rates.append(count / elapsed)
    return statistics.median(rates)


def peak_gemm_flops(dtype: torch.dtype, seconds: float, n: int = 1024) -> float:
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    return 2 * n**3 * rate(lambda: torch.mm(a, b), seconds=seconds)


def bare_matmul_step(dims: list[int], seconds: float) -> float:
    """fwd+bwd of the Linear stack with torch.addmm only: the GEMM-bound step rate."""
    torch.manual_seed(0)
    ws = [(torch.randn(i, o) / i**0.5).requires_grad_() for i, o in itertools.pairwise(dims)]
    bs = [torch.zeros(o, requires_grad=True) for o in dims[1:]]
    x = torch.randn(BATCH, dims[0])  # (B, D)
    y = torch.rand(BATCH, dims[-1]) * 2 - 1  # (B, A)

    def step() -> None:
        h = x
        for i, (w, b) in enumerate(zip(ws, bs, strict=True)):
            h = torch.addmm(b, h, w)
            h = h.relu() if i < len(ws) - 1 else h.tanh()
        loss = (h - y).pow(2).mean()
        for p in (*ws, *bs):
            p.grad = None
        loss.backward()

    return rate(step, seconds=seconds)


def trainer_step(
    config: PolicyConfig,
    dataset: DemoDataset,
    *,
    optimizer: str = "foreach",
    autocast: bool = False,
    compile_loss: bool = False,
    lr: float = 1e-4,
) -> tuple[Callable[[], Any], Policy]:
    """The trainer's step (sample -> loss -> backward -> Adam) for one setting."""
    torch.manual_seed(0)
    policy = config.build(dataset.spec, {})
    policy.train()
    kw: dict[str, Any] = {
        "foreach": {"foreach": True},
        "fused": {"fused": True},
        "for-loop": {"foreach": False},
    }[optimizer]
    opt = torch.optim.Adam(policy.parameters(), lr=lr, **kw)
    sampler = WindowSampler(
        dataset,
        seq_len=config.seq_len,
        frame_stack=config.frame_stack,
        batch_size=BATCH,
        rng=np.random.default_rng(0),
    )
    if compile_loss:
        # Compile forward only: loss() returns Python floats for logging (a graph break).
        policy.compile()

    def ctx() -> AbstractContextManager[Any]:
        return torch.autocast("cpu", dtype=torch.bfloat16) if autocast else nullcontext()

    def step() -> float:
        with ctx():
            loss, _ = bc_update(policy, opt, sampler.sample())
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
        loss, _ = policy.loss(batch_to_tensors(sampler.sample()))
    return float(loss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter timing windows")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    args = parser.parse_args()
    seconds = 0.5 if args.quick else 1.5
    dataset = synthetic_dataset()
    mlp = MLPConfig()
    dims = [sum(OBS.values()), *mlp.hidden_dims, ACTION_DIM]
    params = sum(i * o + o for i, o in itertools.pairwise(dims))
    flops_per_step = 6 * params * BATCH
    results: dict[str, Any] = {
        "cpu": platform.processor() or platform.machine(),
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
    for threads in (2, 1):
        torch.set_num_threads(threads)
        peak32 = peak_gemm_flops(torch.float32, seconds)
        peak16 = peak_gemm_flops(torch.bfloat16, seconds)
        bare = bare_matmul_step(dims, seconds)
        common = {
            "threads": threads,
            "peak_gflops_fp32": peak32 / 1e9,
            "peak_gflops_bf16": peak16 / 1e9,
            "matmul_bound_steps_s": bare,
            "flop_bound_steps_s_fp32": peak32 / flops_per_step,
            "flop_bound_steps_s_bf16": peak16 / flops_per_step,
        }
        variants: list[tuple[str, dict[str, Any]]] = [
            ("adam for-loop", {"optimizer": "for-loop"}),
            ("adam foreach", {"optimizer": "foreach"}),
            ("adam fused (trainer)", {"optimizer": "fused"}),
            ("fused + bf16 autocast", {"optimizer": "fused", "autocast": True}),
        ]
        if not args.no_compile:
            variants.append(
                ("fused + torch.compile(forward)", {"optimizer": "fused", "compile_loss": True})
            )
        for name, kw in variants:
            try:
                step, _ = trainer_step(mlp, dataset, **kw)
                t0 = time.perf_counter()
                step()  # compile (if any) happens here
                first = time.perf_counter() - t0
                steps_s = rate(step, seconds=seconds)
            except Exception as exc:  # torch.compile may lack a toolchain; record, go on
                rows.append({"policy": "mlp 2x1024", "variant": name, **common, "error": str(exc)})
                continue
            rows.append(
                {
                    "policy": "mlp 2x1024",
                    "variant": name,
                    **common,
                    "steps_s": steps_s,
                    "first_step_s": first,
                    "fraction_of_matmul_bound": steps_s / bare,
                    "fraction_of_flop_bound_fp32": steps_s / (peak32 / flops_per_step),
                }
            )
        rnn = RNNConfig()
        for name, kw in [("adam foreach", {}), ("adam fused (trainer)", {"optimizer": "fused"})]:
            step, policy = trainer_step(rnn, dataset, **kw)
            steps_s = rate(step, seconds=seconds, warmup=2)
            # LSTM weights are applied at every one of the seq_len steps.
            rnn_flops = 6 * sum(p.numel() for p in policy.parameters()) * BATCH * rnn.seq_len
            rows.append(
                {
                    "policy": "rnn lstm 2x400 seq10",
                    "variant": name,
                    "threads": threads,
                    "steps_s": steps_s,
                    "flop_bound_steps_s_fp32": peak32 / rnn_flops,
                    "fraction_of_flop_bound_fp32": steps_s / (peak32 / rnn_flops),
                }
            )
    torch.set_num_threads(2)
    steps = 150 if args.quick else 400
    results["bf16_accuracy"] = {
        "steps": steps,
        "held_out_mse_fp32": accuracy_check(dataset, steps, autocast=False),
        "held_out_mse_bf16": accuracy_check(dataset, steps, autocast=True),
    }
    results["load_avg_end"] = os.getloadavg()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)


def print_table(results: dict[str, Any]) -> None:
    print(f"torch {results['torch']}, {results['cpu_count']} CPUs, batch {results['batch']}, ")
    print(f"MLP params {results['mlp_params']:,}, {results['flops_per_step'] / 1e6:.0f} MFLOP/step")
    print(f"load average at start {results['load_avg_start']}, end {results['load_avg_end']}\n")
    print("| policy | variant | threads | steps/s | matmul bound | frac | FLOP bound fp32 | frac |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results["rows"]:
        if "error" in r:
            print(
                f"| {r['policy']} | {r['variant']} | {r['threads']} | failed: {r['error'][:60]} |"
            )
            continue
        bound = r.get("matmul_bound_steps_s")
        flop = r.get("flop_bound_steps_s_fp32")
        print(
            f"| {r['policy']} | {r['variant']} | {r['threads']} | {r['steps_s']:.0f} | "
            + (f"{bound:.0f} | {r['fraction_of_matmul_bound']:.2f} | " if bound else "| | ")
            + (f"{flop:.0f} | {r['fraction_of_flop_bound_fp32']:.2f} |" if flop else "| |")
        )
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
