"""Policy server on loopback: latency per action and throughput, against in-process `act`,
and batched against unbatched serving.

For an MLP (robomimic BC: 1024x1024) and an RNN (BC-RNN: LSTM 2x400) with random weights and
the lift task's observation spec:

- latency: one client sends one observation at a time to `apprentice serve` (its own process)
  and waits for the action; in the same rounds, alternating, the same process calls the
  policy's `act` directly. The in-process time is the bound the server adds its overhead to.
- throughput: 1, 8 and 32 client *processes* (not threads: each has its own interpreter, as
  separate robots would), each for --seconds, in a closed loop (the next request as soon as
  the reply is in: the server saturated) and paced at 20 Hz (robots' control loops); actions/s
  over all of them and the latency percentiles of every request.
- batched vs unbatched: two servers of the same checkpoint, one batching the requests that
  wait (up to --max-batch per `act_batch` call) and one with `--max-batch 1` (each request
  alone). 1 and 8 closed-loop client processes drive them in turns, --rounds rounds of
  --fleet-seconds each, the order swapped every round; per server: actions/s, latency
  percentiles, the server's CPU per action and its mean batch; and the ratio of actions/s,
  round by round. Targets with 8 clients: batched p99 <= 5 ms, >= 3x unbatched actions/s.

The latency and throughput sections run against the batching server. Fresh random
observations every request. Prints markdown; JSON to benchmarks/out/serve.json.

    python benchmarks/bench_serve.py            # full
    python benchmarks/bench_serve.py --quick    # smoke
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from apprentice.deploy.client import Client
from harness import OUT, add_out, add_quick, markdown_table, parser, ratio, write_json

TOKEN = "bench-token"
OBS_SHAPES: dict[str, tuple[int, ...]] = {
    "eef_pos": (3,),
    "eef_quat": (4,),
    "gripper_qpos": (2,),
    "object": (10,),
}
POLICIES: dict[str, dict[str, Any]] = {
    "mlp": {"hidden_dims": (1024, 1024)},
    "rnn": {"hidden_dim": 400, "num_layers": 2},
}


def make_checkpoint(folder: Path, kind: str) -> Path:
    import torch

    from apprentice.data.spec import ObsActSpec
    from apprentice.policies import policy_config_class, save_checkpoint

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    norm = {
        "obs": {
            k: {"mean": rng.normal(size=s).tolist(), "std": rng.uniform(0.5, 2, s).tolist()}
            for k, s in OBS_SHAPES.items()
        },
        "actions": {"mean": [0.0] * 7, "std": [1.0] * 7},
    }
    policy = policy_config_class(kind)(**POLICIES[kind]).build(ObsActSpec(OBS_SHAPES, 7), norm)
    path = folder / f"{kind}.pt"
    save_checkpoint(path, policy, env_args={"env_name": "lift", "env_type": "apprentice"})
    return path


def start_server(checkpoint: Path, max_batch: int) -> tuple[subprocess.Popen[str], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "apprentice.cli.main",
            "serve",
            str(checkpoint),
            *("--port", str(port), "--max-batch", str(max_batch)),
        ],
        env={**os.environ, "APPRENTICE_TOKEN": TOKEN, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    if "serving" not in proc.stdout.readline():
        proc.kill()
        raise SystemExit("apprentice serve did not start")
    return proc, f"ws://127.0.0.1:{port}"


def random_obs(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {k: rng.normal(size=s).astype(np.float32) for k, s in OBS_SHAPES.items()}


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/<pid>/stat), all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def latency(url: str, checkpoint: Path, server_pid: int, requests: int, rounds: int) -> dict:
    """Server round trip vs in-process act, alternating in `rounds` blocks.

    Wall-clock times on a loaded machine mostly measure the wait for a core, so the CPU time
    per action is measured too: the server process's and this (client) process's during the
    served blocks, and this thread's during the in-process blocks.
    """
    import torch

    from apprentice.policies import load_policy

    torch.set_num_threads(1)
    policy = load_policy(checkpoint)
    rng = np.random.default_rng(1)
    served: list[float] = []
    local: list[float] = []
    server_cpu = client_cpu = local_cpu = 0.0
    with Client(url, token=TOKEN, timeout=5.0) as client:
        for _ in range(20):  # warm-up: first calls allocate
            client.act(random_obs(rng))
            policy.act(random_obs(rng))
        per_round = max(requests // rounds, 1)
        for _ in range(rounds):
            cpu0, proc0 = process_cpu_s(server_pid), time.process_time()
            for _ in range(per_round):
                obs = random_obs(rng)
                t = time.perf_counter()
                client.act(obs)
                served.append(time.perf_counter() - t)
            server_cpu += process_cpu_s(server_pid) - cpu0
            client_cpu += time.process_time() - proc0
            thread0 = time.thread_time()
            for _ in range(per_round):
                obs = random_obs(rng)
                t = time.perf_counter()
                policy.act(obs)
                local.append(time.perf_counter() - t)
            local_cpu += time.thread_time() - thread0
    s, loc = np.asarray(served) * 1e3, np.asarray(local) * 1e3
    n = len(served)
    return {
        "requests": n,
        "server_cpu_ms_per_action": server_cpu / n * 1e3,
        "client_cpu_ms_per_action": client_cpu / n * 1e3,
        "in_process_cpu_ms_per_action": local_cpu / len(local) * 1e3,
        "server_p50_ms": float(np.percentile(s, 50)),
        "server_p99_ms": float(np.percentile(s, 99)),
        "in_process_p50_ms": float(np.percentile(loc, 50)),
        "in_process_p99_ms": float(np.percentile(loc, 99)),
        "overhead_p50_ms": float(np.percentile(s, 50) - np.percentile(loc, 50)),
        "ratio_p50": float(np.percentile(s, 50) / np.percentile(loc, 50)),
    }


_start_barrier: Any = None  # set in each client process by the pool's initializer


def _init_client(barrier: Any) -> None:
    global _start_barrier
    _start_barrier = barrier


def client_worker(url: str, seconds: float, seed: int, rate_hz: float) -> list[float]:
    """One client process: connect, warm up, wait for all, then act for `seconds`, in a
    closed loop (rate_hz 0: the next request as soon as the reply is in) or paced at rate_hz."""
    rng = np.random.default_rng(seed)
    times: list[float] = []
    with Client(url, token=TOKEN, timeout=10.0) as client:
        for _ in range(5):
            client.act(random_obs(rng))
        _start_barrier.wait()
        # Paced clients start spread over one period, as independent robots would be.
        if rate_hz:
            time.sleep(rng.uniform(0, 1 / rate_hz))
        end = time.perf_counter() + seconds
        next_at = time.perf_counter()
        while time.perf_counter() < end:
            obs = random_obs(rng)
            t = time.perf_counter()
            client.act(obs)
            times.append(time.perf_counter() - t)
            if rate_hz:
                next_at += 1 / rate_hz
                time.sleep(max(next_at - time.perf_counter(), 0.0))
    return times


class Fleet:
    """`clients` client processes, started once and driven through several runs."""

    def __init__(self, clients: int) -> None:
        ctx = mp.get_context("spawn")
        self.clients = clients
        # Reused by every run: a Barrier lets its parties through, then waits for them anew.
        barrier = ctx.Barrier(clients)
        self.pool = ctx.Pool(clients, initializer=_init_client, initargs=(barrier,))
        self.runs = 0

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.terminate()
        self.pool.join()

    def run(self, url: str, seconds: float, rate_hz: float) -> np.ndarray:
        """Latencies (ms) of every request of every client over one run of `seconds`."""
        # One task per process: each blocks at the barrier until all have one. Fresh
        # observations every run: each run seeds its clients anew.
        self.runs += 1
        seeds = [100 + 1000 * self.runs + i for i in range(self.clients)]
        args = [(url, seconds, seed, rate_hz) for seed in seeds]
        results = self.pool.starmap(client_worker, args, chunksize=1)
        return np.concatenate([np.asarray(r) for r in results]) * 1e3


def summary(times_ms: np.ndarray, seconds: float) -> dict[str, float]:
    return {
        "actions": int(times_ms.size),
        "actions_per_s": float(times_ms.size / seconds),
        "p50_ms": float(np.percentile(times_ms, 50)),
        "p99_ms": float(np.percentile(times_ms, 99)),
        "max_ms": float(times_ms.max()),
    }


def throughput(fleet: Fleet, url: str, seconds: float, rate_hz: float) -> dict[str, Any]:
    return {
        "clients": fleet.clients,
        "rate_hz": rate_hz or "closed loop",
        **summary(fleet.run(url, seconds, rate_hz), seconds),
    }


def batches_run(url: str) -> Counter[int]:
    """The server's act_batch calls so far, by number of requests (its /metrics)."""
    with Client(url, token=TOKEN) as probe:
        return Counter({int(k): n for k, n in probe.metrics()["batches"].items()})


def fleet_round(fleet: Fleet, server: dict[str, Any], seconds: float) -> dict[str, Any]:
    """One closed-loop run of `fleet` against one server: its numbers, CPU and batches."""
    batches0, cpu0 = batches_run(server["url"]), process_cpu_s(server["pid"])
    times = fleet.run(server["url"], seconds, 0.0)
    cpu = process_cpu_s(server["pid"]) - cpu0
    batches = batches_run(server["url"]) - batches0
    rows = sum(size * n for size, n in batches.items())
    return {
        **summary(times, seconds),
        "times_ms": times,
        "server_cpu_ms_per_action": cpu / max(times.size, 1) * 1e3,
        "mean_batch": rows / max(sum(batches.values()), 1),
    }


def batched_vs_unbatched(
    servers: dict[str, dict[str, Any]], clients: list[int], seconds: float, rounds: int
) -> list[dict[str, Any]]:
    """Per client count: the "batched" and the "unbatched" server driven in turns by the
    same client processes, the first of the two swapped every round."""
    rows = []
    for n in clients:
        runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in servers}
        with Fleet(n) as fleet:
            for r in range(rounds):
                for mode in list(servers) if r % 2 == 0 else list(reversed(servers)):
                    runs[mode].append(fleet_round(fleet, servers[mode], seconds))
        per_mode = {mode: over_rounds(done, seconds) for mode, done in runs.items()}
        speedup = ratio(
            per_mode["batched"]["actions_per_s_per_round"],
            per_mode["unbatched"]["actions_per_s_per_round"],
        )
        rows.append(
            {
                "clients": n,
                "rounds": rounds,
                **per_mode,
                "actions_per_s_ratio": {
                    "median": speedup.median,
                    "low": speedup.low,
                    "high": speedup.high,
                    "values": speedup.values,
                },
                "p50_ratio": per_mode["batched"]["p50_ms"] / per_mode["unbatched"]["p50_ms"],
            }
        )
    return rows


def over_rounds(done: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """One server's rounds together: latency percentiles of all their requests, actions/s
    of each round, and the median CPU per action and batch size."""
    times = np.concatenate([d["times_ms"] for d in done])
    return {
        **summary(times, seconds * len(done)),
        "actions_per_s_per_round": [d["actions_per_s"] for d in done],
        "server_cpu_ms_per_action": statistics.median(d["server_cpu_ms_per_action"] for d in done),
        "mean_batch": statistics.median(d["mean_batch"] for d in done),
    }


def main() -> None:
    p = parser(__doc__)
    add_quick(p, help="a smoke test: few requests, 2 clients, one 1 s round of the comparison")
    p.add_argument("--requests", type=int, default=3000, help="latency requests per policy")
    p.add_argument("--seconds", type=float, default=10.0, help="throughput run per client count")
    p.add_argument("--clients", type=int, nargs="*", default=[1, 8, 32])
    p.add_argument("--policies", nargs="*", default=sorted(POLICIES), choices=sorted(POLICIES))
    p.add_argument("--max-batch", type=int, default=32, help="the batching server's --max-batch")
    p.add_argument(
        "--fleet-clients",
        type=int,
        nargs="*",
        default=[1, 8],
        help="client counts of the batched vs unbatched comparison",
    )
    p.add_argument("--fleet-seconds", type=float, default=5.0, help="each run of the comparison")
    p.add_argument("--rounds", type=int, default=5, help="rounds of the comparison")
    add_out(p, OUT / "serve.json")
    args = p.parse_args()
    if args.max_batch < 2:
        p.error("--max-batch is the batching server's: 2 or more (the other one has 1)")
    if args.quick:
        args.requests, args.seconds, args.clients = 100, 1.0, [2]
        args.fleet_seconds, args.rounds = 1.0, 1

    result: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "load_avg_start": os.getloadavg(),
        "client_kind": "processes",
        "max_batch": args.max_batch,
        "policies": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.policies:
            result["policies"][kind] = bench_policy(make_checkpoint(Path(tmp), kind), kind, args)
    result["load_avg_end"] = os.getloadavg()
    write_json(args.out, result)
    print_tables(result)
    errors = {k: e["server_errors"] for k, e in result["policies"].items() if e["server_errors"]}
    if errors:
        sys.exit(f"server error replies during the benchmark: {errors}")


def bench_policy(checkpoint: Path, kind: str, args: Any) -> dict[str, Any]:
    """Every section for one policy, with a batching and an unbatched server running."""
    procs: dict[str, tuple[subprocess.Popen[str], str]] = {}
    entry: dict[str, Any] = {"config": POLICIES[kind]}
    try:
        for mode, max_batch in (("batched", args.max_batch), ("unbatched", 1)):
            procs[mode] = start_server(checkpoint, max_batch)
        servers = {mode: {"url": url, "pid": proc.pid} for mode, (proc, url) in procs.items()}
        url, pid = servers["batched"]["url"], servers["batched"]["pid"]
        entry["latency"] = latency(url, checkpoint, pid, args.requests, rounds=10)
        entry["throughput"] = []
        for n in args.clients:
            with Fleet(n) as fleet:
                entry["throughput"] += [
                    throughput(fleet, url, args.seconds, r) for r in (0.0, 20.0)
                ]
        entry["throughput"].sort(key=lambda t: (t["rate_hz"] != "closed loop", t["clients"]))
        entry["batched_vs_unbatched"] = batched_vs_unbatched(
            servers, args.fleet_clients, args.fleet_seconds, args.rounds
        )
        entry["server_errors"], entry["server_act_ms"] = {}, {}
        for mode, server in servers.items():
            with Client(server["url"], token=TOKEN) as probe:
                m = probe.metrics()
            entry["server_errors"].update({f"{mode} {k}": n for k, n in m["errors"].items()})
            entry["server_act_ms"][mode] = {
                k: m["act_latency"][k] for k in ("p50_ms", "p90_ms", "p99_ms")
            }
    finally:
        entry["server_exit_code"] = {}
        for mode, (proc, _) in procs.items():
            proc.send_signal(signal.SIGTERM)
            entry["server_exit_code"][mode] = proc.wait(timeout=60)
    return entry


def print_tables(result: dict[str, Any]) -> None:
    print(f"load average at start {result['load_avg_start'][0]:.2f} on {os.cpu_count()} CPUs\n")
    policies = result["policies"]
    print(markdown_table(*latency_table(policies)))
    print("\n" + markdown_table(*throughput_table(policies)))
    print(
        f"\nbatched (--max-batch {result['max_batch']}) vs unbatched (--max-batch 1), "
        "closed-loop clients, in turns:\n"
    )
    print(markdown_table(*comparison_table(policies)))
    for kind, e in policies.items():
        for row in e["batched_vs_unbatched"]:
            if row["clients"] == 8:
                p99, speedup = row["batched"]["p99_ms"], row["actions_per_s_ratio"]["median"]
                print(
                    f"\n{kind}, 8 clients: batched p99 {p99:.2f} ms (target <= 5: "
                    f"{'met' if p99 <= 5 else 'missed'}), {speedup:.2f}x the unbatched "
                    f"actions/s (target >= 3: {'met' if speedup >= 3 else 'missed'})"
                )


def latency_table(policies: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    header = ["policy", "server p50 / p99 (ms)", "in-process p50 / p99 (ms)", "overhead p50"]
    header += ["ratio", "CPU ms per action: server + client / in-process"]
    rows = [
        [
            kind,
            f"{la['server_p50_ms']:.2f} / {la['server_p99_ms']:.2f}",
            f"{la['in_process_p50_ms']:.2f} / {la['in_process_p99_ms']:.2f}",
            f"{la['overhead_p50_ms']:.2f} ms",
            f"{la['ratio_p50']:.1f}x",
            f"{la['server_cpu_ms_per_action']:.2f} + {la['client_cpu_ms_per_action']:.2f} / "
            f"{la['in_process_cpu_ms_per_action']:.2f}",
        ]
        for kind, la in ((k, e["latency"]) for k, e in policies.items())
    ]
    return header, rows


def throughput_table(policies: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    header = ["policy", "clients (processes)", "each sends", "actions/s", "p50", "p99"]
    rows = [
        [
            kind,
            t["clients"],
            f"{t['rate_hz']:g} Hz" if t["rate_hz"] != "closed loop" else "closed loop",
            f"{t['actions_per_s']:.0f}",
            f"{t['p50_ms']:.2f}",
            f"{t['p99_ms']:.2f}",
            f"{t['max_ms']:.1f}",
        ]
        for kind, e in policies.items()
        for t in e["throughput"]
    ]
    return [*header, "max (ms)"], rows


def comparison_table(policies: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    header = ["policy", "clients", "server", "actions/s (median of rounds)", "p50 / p99 (ms)"]
    header += ["server CPU ms per action", "mean batch", "actions/s batched / unbatched"]
    rows = []
    for kind, e in policies.items():
        for row in e["batched_vs_unbatched"]:
            r = row["actions_per_s_ratio"]
            for mode in ("batched", "unbatched"):
                m = row[mode]
                speedup = f"{r['median']:.2f}x ({r['low']:.2f}-{r['high']:.2f})"
                rows.append(
                    [
                        kind,
                        row["clients"],
                        mode,
                        f"{statistics.median(m['actions_per_s_per_round']):.0f}",
                        f"{m['p50_ms']:.2f} / {m['p99_ms']:.2f}",
                        f"{m['server_cpu_ms_per_action']:.2f}",
                        f"{m['mean_batch']:.2f}",
                        speedup if mode == "batched" else "",
                    ]
                )
    return header, rows


if __name__ == "__main__":
    main()
