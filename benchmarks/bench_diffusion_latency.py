"""Diffusion and flow policy inference latency per action chunk (batch 1, torch threads 1).

Targets: a DDIM chunk (diffusion) in at most 20 ms on this CPU (issue 7), an Euler chunk (flow)
in at most 10 ms, with the step count reported. Diffusion's two denoisers at their defaults
(U-Net channels 64/128/256, step embedding 64; transformer E=128, 4 layers, 4 heads) and a
half-width U-Net (32/64/128), for DDIM steps S in 4/8/10/16; the flow policy's default
(transformer E=128, 2 layers, 4 heads), a small U-Net (32/64) and the pusht-state
recipe's MLP (3x1024), for Euler steps S in 2/4/8 (`--nets` keeps some nets only).
All with Tp=16, To=2, Ta=8, on the lift task's observations (eef_pos 3, eef_quat 4,
gripper_qpos 2, object 10; action 7).

A chunk is timed through the run-time API a robot loop calls: `policy.reset()` (not timed)
then `policy.act(obs)`, which plans a fresh chunk (S network passes) and returns its first
action. Every call gets a fresh random observation. Also timed: one bare network pass at
batch 1 (the floor of a chunk is S of them, so the ratio chunk / (S x pass) is the sampling
loop's overhead), and the next act, which only pops the queue (the other Ta - 1 steps).
After a warm-up, the configurations take turns in rounds (order rotating per round) so a
busy machine slows them alike. Reported: p50 / p99 wall ms per chunk, the calling thread's
CPU ms per chunk (a busy machine inflates wall time, not CPU time), the overhead ratio's
median over rounds, and whether the p99 meets the target. Weights are untrained: latency
does not depend on their values. Prints a markdown table, writes
benchmarks/out/diffusion_latency.json.

    nice -n 10 .venv/bin/python benchmarks/bench_diffusion_latency.py [--chunks 40] [--rounds 5]
"""

from __future__ import annotations

import os
import platform
import time
from typing import Any

import numpy as np
import torch

from apprentice.data.spec import ObsActSpec
from apprentice.policies import DiffusionConfig, DiffusionPolicy, FlowConfig, FlowPolicy
from harness import OUT, Ratio, add_out, add_quick, markdown_table, parser, write_json

SPEC = ObsActSpec({"eef_pos": (3,), "eef_quat": (4,), "gripper_qpos": (2,), "object": (10,)}, 7)
TARGET_MS = {"diffusion": 20.0, "flow": 10.0}
"""The targets: one DDIM chunk in at most 20 ms, one flow chunk in at most 10 ms."""
NETS: dict[str, tuple[type[DiffusionConfig | FlowConfig], dict[str, Any]]] = {
    "diffusion unet 64/128/256 (default)": (DiffusionConfig, {"denoiser": "unet"}),
    "diffusion unet 32/64/128": (
        DiffusionConfig,
        {"denoiser": "unet", "unet_channels": (32, 64, 128)},
    ),
    "diffusion transformer E128 x4 (default)": (DiffusionConfig, {"denoiser": "transformer"}),
    "flow transformer E128 x2 (default)": (FlowConfig, {}),
    "flow unet 32/64": (FlowConfig, {"denoiser": "unet", "unet_channels": (32, 64)}),
    "flow mlp 3x1024 (pusht-state recipe)": (FlowConfig, {"denoiser": "mlp"}),
}
QUICK: dict[str, Any] = {
    "unet_channels": (8, 16),
    "embed_dim": 16,
    "num_layers": 1,
    "mlp_hidden_dims": (16,),
}

Policy = DiffusionPolicy | FlowPolicy


def build(net: str, steps: int, quick: bool) -> Policy:
    torch.manual_seed(0)
    config_cls, overrides = NETS[net]
    overrides = {**overrides, **(QUICK if quick else {})}
    policy = config_cls(inference_steps=steps, **overrides).build(SPEC, {})
    assert isinstance(policy, DiffusionPolicy | FlowPolicy)
    return policy.eval()


def random_obs(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {k: rng.normal(size=s).astype(np.float32) for k, s in SPEC.obs_shapes.items()}


def time_chunk(policy: Policy, rng: np.random.Generator) -> tuple[float, float, float]:
    """(wall, thread CPU) seconds of one planning act, and the wall seconds of the next act
    (a queue pop)."""
    obs, next_obs = random_obs(rng), random_obs(rng)
    policy.reset()
    wall, cpu = time.perf_counter(), time.thread_time()
    policy.act(obs)
    wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    pop = time.perf_counter()
    policy.act(next_obs)
    return wall, cpu, time.perf_counter() - pop


@torch.no_grad()
def time_pass(policy: Policy, rng: np.random.Generator) -> float:
    """Wall seconds of one network pass at batch 1 (EMA copy or not: the same network)."""
    cfg = policy.config
    sample = rng.normal(size=(1, cfg.seq_len, policy.action_dim)).astype(np.float32)
    obs = rng.normal(size=(1, cfg.frame_stack, policy.obs_dim)).astype(np.float32)
    if isinstance(policy, DiffusionPolicy):
        step = torch.tensor([int(rng.integers(policy.config.num_train_steps))])
    else:
        step = torch.tensor([float(rng.uniform(0, 1000))])  # the scaled flow time
    wall = time.perf_counter()
    policy.denoise(torch.from_numpy(sample), step, torch.from_numpy(obs))
    return time.perf_counter() - wall


def kind(net: str) -> str:
    return "diffusion" if NETS[net][0] is DiffusionConfig else "flow"


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--chunks", type=int, default=50, help="timed chunks per config per round")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--steps", type=int, nargs="+", default=[4, 8, 10, 16], help="DDIM steps")
    p.add_argument("--flow-steps", type=int, nargs="+", default=[2, 4, 8], help="Euler steps")
    p.add_argument(
        "--nets", nargs="+", default=None, help="only the nets whose name holds one of these"
    )
    add_quick(p, help="tiny nets and sizes: a smoke test")
    add_out(p, OUT / "diffusion_latency.json", flag="--json")
    args = p.parse_args()
    if args.quick:
        args.chunks, args.rounds, args.steps, args.flow_steps = 3, 2, [2], [2]
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    steps_of = {"diffusion": args.steps, "flow": args.flow_steps}
    nets = [n for n in NETS if args.nets is None or any(part in n for part in args.nets)]
    if not nets:
        p.error(f"--nets {' '.join(args.nets)} matches none of: {', '.join(NETS)}")
    configs = [(net, s) for net in nets for s in steps_of[kind(net)]]
    policies = {c: build(*c, args.quick) for c in configs}
    for policy in policies.values():  # warm-up: allocator, first-call dispatch
        for _ in range(3):
            time_chunk(policy, rng)
    chunk: dict[Any, list[float]] = {c: [] for c in configs}
    cpu: dict[Any, list[float]] = {c: [] for c in configs}
    passes: dict[Any, list[float]] = {c: [] for c in configs}
    pops: dict[Any, list[float]] = {c: [] for c in configs}
    overhead: dict[Any, list[float]] = {c: [] for c in configs}
    for r in range(args.rounds):
        for c in configs[r % len(configs) :] + configs[: r % len(configs)]:
            policy, steps = policies[c], c[1]
            walls, passes_r = [], []
            for _ in range(args.chunks):
                wall, thread, pop = time_chunk(policy, rng)
                walls.append(wall)
                cpu[c].append(thread)
                pops[c].append(pop)
                passes_r.append(time_pass(policy, rng))
            chunk[c] += walls
            passes[c] += passes_r
            overhead[c].append(float(np.median(walls) / (steps * np.median(passes_r))))

    rows = []
    for c in configs:
        ms = np.array(chunk[c]) * 1e3
        per_round = Ratio(overhead[c])
        target = TARGET_MS[kind(c[0])]
        rows.append(
            {
                "policy": kind(c[0]),
                "net": c[0],
                "steps": c[1],
                "target_ms": target,
                "chunk_p50_ms": float(np.percentile(ms, 50)),
                "chunk_p99_ms": float(np.percentile(ms, 99)),
                "chunk_cpu_p50_ms": float(np.median(cpu[c]) * 1e3),
                "pass_p50_ms": float(np.median(passes[c]) * 1e3),
                "pop_p50_ms": float(np.median(pops[c]) * 1e3),
                "overhead_median": per_round.median,
                "overhead_range": [per_round.low, per_round.high],
                "wall_p99_meets_target": bool(np.percentile(ms, 99) <= target),
                "cpu_p50_meets_target": bool(np.median(cpu[c]) * 1e3 <= target),
                "chunks": len(ms),
            }
        )
    params = {
        n: sum(p.numel() for p in policies[(n, steps_of[kind(n)][0])].parameters()) for n in nets
    }
    print(f"threads 1, {args.rounds} rounds x {args.chunks} chunks, loadavg {os.getloadavg()}")
    print("parameters: " + ", ".join(f"{n} {k:,}" for n, k in params.items()))
    header = ["network", "steps", "chunk p50 ms", "chunk p99 ms", "chunk CPU p50 ms"]
    header += ["pass p50 ms", "chunk / (S x pass)", "queue pop p50 ms"]
    yes = {True: "yes", False: "no"}
    cells = [
        [
            row["net"],
            row["steps"],
            f"{row['chunk_p50_ms']:.2f}",
            f"{row['chunk_p99_ms']:.2f}",
            f"{row['chunk_cpu_p50_ms']:.2f}",
            f"{row['pass_p50_ms']:.3f}",
            Ratio(overhead[(row["net"], row["steps"])]),
            f"{row['pop_p50_ms']:.3f}",
            f"<= {row['target_ms']:g} ms: "
            f"{yes[row['wall_p99_meets_target']]} / {yes[row['cpu_p50_meets_target']]}",
        ]
        for row in rows
    ]
    print(markdown_table([*header, "target: wall p99 / CPU p50"], cells))
    meta = {
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "loadavg": os.getloadavg(),
        "torch": torch.__version__,
        "params": params,
        "quick": args.quick,
    }
    write_json(args.json, {"meta": meta, "rows": rows})


if __name__ == "__main__":
    main()
