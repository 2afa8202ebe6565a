"""Data-parallel training on the CPU: 2 DDP processes x 1 thread against 1 process x 2 threads.

For the low-dim recipes' policies at their batch of 100 windows a step: BC-RNN (LSTM 2x128,
sequence 10) of `lift-lowdim` and of `stack-lowdim`, and the BC MLP (2x1024) on lift at
the same batch, each on random windows of its task's observation and action sizes, with the
same global batch both ways:

- ddp: 2 processes joined as `torchrun --nproc_per_node=2 -m apprentice train` joins them
  (`join_processes`: gloo), 1 torch thread and half the batch each, the gradients
  all-reduced by DistributedDataParallel (`Trainer.for_policy(..., processes=)`);
- threads: 1 process with 2 torch threads and the whole batch (`apprentice train
  --threads 2`);
- bound: 1 process, 1 thread, half the batch, counted twice: what the DDP processes would
  reach if exchanging the gradients cost nothing (the DDP arm's physical bound here).

Both time `Trainer.step` on `WindowSampler` batches (sampling included, the loss read back
each step as the trainer does on a CPU), in alternated rounds of about `--seconds` each
(the DDP processes wait on a queue while the threads arm runs, and the other way round).
Reported: samples/s of each arm per round, the ratio ddp / threads, median (min-max), and
the two that explain it: bound / threads (the most DDP can gain) and ddp / bound (what the
all-reduce leaves of it).

Run: .venv/bin/python benchmarks/bench_ddp.py [--quick]
Prints a markdown table and writes benchmarks/out/ddp.json.
"""

from __future__ import annotations

import os
import queue
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from apprentice.algos import TrainConfig, Trainer
from apprentice.algos.distributed import Processes
from apprentice.algos.launch import join_processes
from apprentice.data.dataset import DemoDataset, WindowSampler
from apprentice.data.normalize import Normalizer
from apprentice.envs.base import make_task, task_spec
from apprentice.policies import MLPConfig, PolicyConfig
from apprentice.recipes import get_recipe
from harness import OUT, add_out, add_quick, cpu_name, markdown_table, parser, ratio, write_json

WORLD = 2
"""DDP processes, each on 1 thread; the threads arm has as many threads in one process."""


@dataclass(frozen=True)
class Setup:
    """A policy, the task whose observation sizes its windows have, the global batch."""

    task: str
    policy: PolicyConfig
    batch: int


def setups() -> dict[str, Setup]:
    lift, stack = get_recipe("lift-lowdim"), get_recipe("stack-lowdim")
    return {
        "bc-rnn lift-lowdim": Setup(lift.task, lift.policy, lift.train["batch_size"]),
        "bc-rnn stack-lowdim": Setup(stack.task, stack.policy, stack.train["batch_size"]),
        "mlp 2x1024 lift": Setup(lift.task, MLPConfig(), lift.train["batch_size"]),
    }


def random_demos(task: str, *, num_demos: int = 50, length: int = 100) -> DemoDataset:
    """Demos with `task`'s low-dim observation and action sizes: random observations, actions
    a fixed smooth map of them (never zeros)."""
    probe = make_task(task)
    spec = task_spec(probe)
    probe.close()
    rng = np.random.default_rng(0)
    n = num_demos * length
    low_dim = {k: s for k, s in spec.obs_shapes.items() if len(s) == 1}
    obs = {k: rng.normal(size=(n, s[0])).astype(np.float32) for k, s in low_dim.items()}
    w = rng.normal(size=(sum(s[0] for s in low_dim.values()), spec.action_dim)) * 0.3
    actions = np.tanh(np.concatenate(list(obs.values()), axis=1) @ w).astype(np.float32)
    starts = np.arange(num_demos, dtype=np.int64) * length
    lengths = np.full(num_demos, length, dtype=np.int64)
    names = [f"demo_{i}" for i in range(num_demos)]
    return DemoDataset(obs, actions, starts, lengths, names, {"env_name": task})


def trainer_step(setup: Setup, dataset: DemoDataset, processes: Processes) -> Callable[[], float]:
    """The trainer's step for `setup`, on this process's share of the global batch."""
    torch.manual_seed(0)
    policy = setup.policy.build(dataset.spec, Normalizer.fit(dataset).state_dict())
    trainer = Trainer.for_policy(policy, TrainConfig(lr=1e-3), processes=processes)
    sampler = WindowSampler.for_policy(
        dataset,
        setup.policy,
        batch_size=setup.batch // processes.world_size,
        rng=processes.sampler_rng(0),
    )

    def step() -> float:
        loss, _ = trainer.step(sampler.sample())
        return float(loss)  # read back every step, as the trainer does on a CPU

    return step


def ddp_process(rank: int, port: int, commands: Any, results: Any) -> None:
    """One DDP process: builds every setup's step, then runs (name, steps) commands timed
    between two barriers; rank 0 reports the seconds. None ends it."""
    os.environ.update(
        WORLD_SIZE=str(WORLD),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    found = setups()
    batch = next(iter(found.values())).batch // WORLD
    with join_processes(TrainConfig(batch_size=batch)) as processes:
        steps = {
            name: trainer_step(s, random_demos(s.task), processes) for name, s in found.items()
        }
        while (command := commands.get()) is not None:
            name, count = command
            dist.barrier()
            t0 = time.perf_counter()
            for _ in range(count):
                steps[name]()
            dist.barrier()
            if rank == 0:
                results.put(time.perf_counter() - t0)


class DDPArm:
    """The DDP processes, started once (spawned), driven by commands."""

    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        self.commands = [ctx.Queue() for _ in range(WORLD)]
        self.results = ctx.Queue()
        port = _free_port()
        self.processes = [
            ctx.Process(target=ddp_process, args=(r, port, self.commands[r], self.results))
            for r in range(WORLD)
        ]
        for p in self.processes:
            p.start()

    def run(self, name: str, count: int) -> float:
        """Seconds the processes took for `count` steps of `name`."""
        for q in self.commands:
            q.put((name, count))
        while True:
            try:
                return float(self.results.get(timeout=5))
            except queue.Empty:
                dead = [p.exitcode for p in self.processes if not p.is_alive()]
                if dead:
                    raise RuntimeError(f"a DDP process ended (exit codes {dead})") from None

    def close(self) -> None:
        for q in self.commands:
            q.put(None)
        for p in self.processes:
            p.join(timeout=60)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def timed(step: Callable[[], float], count: int, threads: int) -> float:
    """Seconds of `count` calls of `step` on `threads` torch threads."""
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    for _ in range(count):
        step()
    return time.perf_counter() - t0


def measure(name: str, setup: Setup, ddp: DDPArm, args: Any) -> dict[str, Any]:
    """Alternated rounds of the three arms on `setup`: samples/s per round, and ratios."""
    dataset = random_demos(setup.task)
    threads = trainer_step(setup, dataset, Processes())
    half = trainer_step(replace(setup, batch=setup.batch // WORLD), dataset, Processes())
    timed(threads, 2, WORLD)  # warm-up: first-call allocations, the gloo buffers
    timed(half, 2, 1)
    ddp.run(name, 2)
    count = max(args.min_steps, round(args.seconds * 3 / timed(threads, 3, WORLD)))
    rates: dict[str, list[float]] = {"ddp": [], "threads": [], "bound": []}
    for _ in range(args.rounds):
        rates["ddp"].append(setup.batch * count / ddp.run(name, count))
        rates["threads"].append(setup.batch * count / timed(threads, count, WORLD))
        rates["bound"].append(setup.batch * count / timed(half, count, 1))
    row: dict[str, Any] = {
        "setup": name,
        "task": setup.task,
        "policy": setup.policy.to_dict(),
        "global_batch": setup.batch,
        "steps_per_round": count,
        **{f"{arm}_samples_per_s": values for arm, values in rates.items()},
    }
    for label, (a, b) in RATIOS.items():
        r = ratio(rates[a], rates[b])
        row[label] = {"median": r.median, "min": r.low, "max": r.high}
    return row


RATIOS = {
    "ddp_over_threads": ("ddp", "threads"),
    "bound_over_threads": ("bound", "threads"),
    "ddp_over_bound": ("ddp", "bound"),
}
"""The ratios reported, each (numerator arm, denominator arm) per round."""


def main() -> None:
    p = parser(__doc__)
    add_quick(p, help="short rounds: a smoke test")
    p.add_argument("--rounds", type=int, default=None, help="alternated rounds (5; quick 2)")
    p.add_argument("--seconds", type=float, default=None, help="per arm and round (3; quick 0.3)")
    p.add_argument("--min-steps", type=int, default=3, help="at least this many steps a round")
    add_out(p, OUT / "ddp.json")
    args = p.parse_args()
    args.rounds = args.rounds or (2 if args.quick else 5)
    args.seconds = args.seconds or (0.3 if args.quick else 3.0)
    results: dict[str, Any] = {
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "world": WORLD,
        "rounds": args.rounds,
        "seconds": args.seconds,
        "load_avg_start": os.getloadavg(),
        "rows": [],
    }
    ddp = DDPArm()
    try:
        for name, setup in setups().items():
            results["rows"].append(measure(name, setup, ddp, args))
    finally:
        ddp.close()
    results["load_avg_end"] = os.getloadavg()
    write_json(args.out, results)
    print_table(results)


def print_table(results: dict[str, Any]) -> None:
    print(f"{results['cpu']}, {results['cpu_count']} CPUs, torch {results['torch']}")
    print(
        f"{results['world']} DDP processes x 1 thread vs 1 process x {results['world']} "
        f"threads, {results['rounds']} alternated rounds of ~{results['seconds']} s per arm"
    )
    print(f"load average at start {results['load_avg_start']}, end {results['load_avg_end']}\n")
    rows = [
        [
            r["setup"],
            r["global_batch"],
            *(f"{np.median(r[f'{arm}_samples_per_s']):.0f}" for arm in ("ddp", "threads", "bound")),
            *(_ratio_cell(r[label]) for label in RATIOS),
        ]
        for r in results["rows"]
    ]
    header = ["policy", "global batch", "ddp samples/s", "threads samples/s", "bound samples/s"]
    print(markdown_table([*header, "ddp / threads", "bound / threads", "ddp / bound"], rows))


def _ratio_cell(r: dict[str, float]) -> str:
    return f"{r['median']:.2f} ({r['min']:.2f}-{r['max']:.2f})"


if __name__ == "__main__":
    main()
