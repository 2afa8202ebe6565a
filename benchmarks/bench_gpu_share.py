"""Training steps/s when several processes share one GPU: the trainer's step as it was (the
host waits for the device every step) against the step it runs now (it does not).

The zoo grid trains many cells side by side, each process with its own CUDA context on one
GPU. There every camera cell ran at 12-19 steps/s whatever its model (benchmarks/results/
policies-zoo.md), which points at a fixed wait per step, not at arithmetic. The step waited
for the device several times: each key's copy from pageable host memory, and each loss or
logged number read back as a Python float. This script times both steps on the same
in-memory camera batches (2 cameras at 84x84 + 9 proprio dims, random uint8 frames):

- `sync`: the earlier step: the batch and the augmentation's draws copied from pageable
  memory, the loss and the policy's info read back every step (`Trainer.step` with
  `host_to_device` swapped for a plain `.to`, each number then read back as a float). The
  diffusion policy's step counter now stays on the host in both modes, so for diffusion
  `sync` waits less than the earlier step did;
- `async`: the trainer's step now (`Trainer.step`): copies from pinned memory, nothing read back
  in the step, the losses read back 32 steps at a time as the trainer does.

For each policy, mode and process count, `procs` processes start together (a barrier after
their warm-up), each times its own steps for `--seconds`, and the table gives the median
process's steps/s and their sum. Modes take turns, so both see the same machine.

    python3 benchmarks/bench_gpu_share.py --procs 1 14 --policies mlp act --seconds 15
    .venv/bin/python benchmarks/bench_gpu_share.py --quick     # CPU smoke run, tiny sizes

Writes `--out` (JSON) and prints a markdown table.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import statistics
import time
from typing import Any

from harness import OUT, add_out, add_quick, markdown_table, parser, write_json

CAMS = ("agentview_image", "eye_in_hand_image")
PROPRIO = ("eef_pos", "eef_quat", "gripper_qpos")


def _worker(
    policy: str, mode: str, args: dict[str, Any], barrier: Any, results: Any, rank: int
) -> None:
    import numpy as np
    import torch

    import apprentice.algos.bc as bc
    from apprentice.algos import TrainConfig, Trainer
    from apprentice.data.dataset import WindowSampler
    from apprentice.policies import policy_config_class, policy_config_from_dict
    from bench_images import camera_dataset  # this folder is on sys.path in the children too

    torch.set_num_threads(1)
    device = torch.device(args["device"])
    kw: dict[str, Any] = {"obs_keys": PROPRIO, "image_keys": CAMS, "encoder": "conv"}
    base = policy_config_class(policy).tiny().to_dict() if args["quick"] else {"name": policy}
    config = policy_config_from_dict({**base, **kw})
    data = camera_dataset(num_demos=4, length=60, size=args["size"], seed=rank)
    torch.manual_seed(rank)
    net = config.build(data.spec, {}).to(device).train()
    trainer = Trainer.for_policy(net, TrainConfig(lr=1e-4, device=args["device"]))
    sampler = WindowSampler.for_policy(
        data, config, batch_size=args["batch"], rng=np.random.default_rng(rank)
    )
    if mode == "sync":
        # The earlier copies, from pageable memory: each makes the host wait for the device.
        import apprentice.policies.augment as augment
        import apprentice.policies.diffusion as diffusion
        import apprentice.policies.flow as flow

        def pageable(t: Any, dev: Any) -> Any:
            return t.to(dev)

        for module in (bc, augment, diffusion, flow):
            module.host_to_device = pageable  # type: ignore[attr-defined]

    from apprentice.algos.trainer import readback_every

    readback = readback_every(torch.device("cuda"))  # the trainer's cadence on a GPU
    pending: list[Any] = []

    def step() -> None:
        loss, info = trainer.step(sampler.sample())
        if mode == "sync":
            [float(v) for v in (loss, *info.values())]  # each a wait for the device
            return
        pending.append(loss)
        if len(pending) >= readback:
            torch.stack(pending).tolist()
            pending.clear()

    for _ in range(args["warmup"]):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    barrier.wait()
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < args["seconds"]:
        step()
        steps += 1
    if pending:
        torch.stack(pending).tolist()
    if device.type == "cuda":
        torch.cuda.synchronize()
    results.put((rank, steps / (time.perf_counter() - t0)))


def measure(policy: str, mode: str, procs: int, args: dict[str, Any]) -> list[float]:
    ctx = mp.get_context("spawn")  # CUDA cannot be used in a forked child
    barrier, results = ctx.Barrier(procs), ctx.Queue()
    workers = [
        ctx.Process(target=_worker, args=(policy, mode, args, barrier, results, r))
        for r in range(procs)
    ]
    for w in workers:
        w.start()
    rates = [results.get(timeout=args["seconds"] + 600)[1] for _ in workers]
    for w in workers:
        w.join()
        if w.exitcode != 0:
            raise RuntimeError(f"{policy}/{mode}/{procs}: a worker exited with {w.exitcode}")
    return sorted(rates)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--policies", nargs="+", default=["mlp", "act"])
    p.add_argument("--procs", nargs="+", type=int, default=[1, 14])
    p.add_argument("--modes", nargs="+", default=["sync", "async"], choices=["sync", "async"])
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--device", default="cuda")
    add_out(p, OUT / "gpu_share.json")
    add_quick(p, help="CPU, tiny nets and images, 1 s each")
    args = p.parse_args()
    if args.quick:
        args.device, args.seconds, args.warmup, args.batch = "cpu", 1.0, 2, 4
        args.procs = [1, 2]
    shared = vars(args) | {"size": 32 if args.quick else 84}
    rows = []
    for policy in args.policies:
        for procs in args.procs:
            for mode in args.modes:
                rates = measure(policy, mode, procs, shared)
                rows.append(
                    {
                        "policy": policy,
                        "procs": procs,
                        "mode": mode,
                        "median_steps_per_s": statistics.median(rates),
                        "total_steps_per_s": sum(rates),
                        "rates": rates,
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    write_json(args.out, {"device": args.device, "batch": args.batch, "rows": rows}, quiet=True)
    cells = [
        [
            r["policy"],
            r["procs"],
            r["mode"],
            f"{r['median_steps_per_s']:.1f}",
            f"{r['total_steps_per_s']:.1f}",
        ]
        for r in rows
    ]
    header = ["policy", "processes", "mode", "steps/s per process (median)", "steps/s, all"]
    print(markdown_table(header, cells))


if __name__ == "__main__":
    main()
