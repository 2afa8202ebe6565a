"""Policy server on loopback: latency per action and throughput, against in-process `act`.

For an MLP (robomimic BC: 1024x1024) and an RNN (BC-RNN: LSTM 2x400) with random weights and
the lift task's observation spec:

- latency: one client sends one observation at a time to `apprentice serve` (its own process)
  and waits for the action; in the same rounds, alternating, the same process calls the
  policy's `act` directly. The in-process time is the bound the server adds its overhead to.
- throughput: 1, 8 and 32 client *processes* (not threads: each has its own interpreter, as
  separate robots would), each for --seconds, in a closed loop (the next request as soon as
  the reply is in: the server saturated) and paced at 20 Hz (robots' control loops); actions/s
  over all of them and the latency percentiles of every request.

Fresh random observations every request. Prints markdown; JSON to benchmarks/out/serve.json.

    python benchmarks/bench_serve.py            # full
    python benchmarks/bench_serve.py --quick    # smoke
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from apprentice.deploy.client import Client
from harness import OUT, add_out, add_quick, markdown_table, parser, write_json

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


def start_server(checkpoint: Path) -> tuple[subprocess.Popen[str], str]:
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
            "--port",
            str(port),
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


def throughput(url: str, clients: int, seconds: float, rate_hz: float) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(clients)
    with ctx.Pool(clients, initializer=_init_client, initargs=(barrier,)) as pool:
        results = pool.starmap(
            client_worker, [(url, seconds, 100 + i, rate_hz) for i in range(clients)]
        )
    times = np.concatenate([np.asarray(r) for r in results]) * 1e3
    return {
        "clients": clients,
        "rate_hz": rate_hz or "closed loop",
        "actions": int(times.size),
        "actions_per_s": float(times.size / seconds),
        "p50_ms": float(np.percentile(times, 50)),
        "p99_ms": float(np.percentile(times, 99)),
        "max_ms": float(times.max()),
    }


def main() -> None:
    p = parser(__doc__)
    add_quick(p, help="a smoke test: few requests, 2 clients")
    p.add_argument("--requests", type=int, default=3000, help="latency requests per policy")
    p.add_argument("--seconds", type=float, default=10.0, help="throughput run per client count")
    p.add_argument("--clients", type=int, nargs="*", default=[1, 8, 32])
    p.add_argument("--policies", nargs="*", default=sorted(POLICIES), choices=sorted(POLICIES))
    add_out(p, OUT / "serve.json")
    args = p.parse_args()
    if args.quick:
        args.requests, args.seconds, args.clients = 100, 1.0, [2]

    result: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "load_avg_start": os.getloadavg(),
        "client_kind": "processes",
        "policies": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.policies:
            checkpoint = make_checkpoint(Path(tmp), kind)
            proc, url = start_server(checkpoint)
            entry: dict[str, Any] = {"config": POLICIES[kind]}
            try:
                entry["latency"] = latency(url, checkpoint, proc.pid, args.requests, rounds=10)
                entry["throughput"] = [
                    throughput(url, n, args.seconds, rate)
                    for rate in (0.0, 20.0)
                    for n in args.clients
                ]
                with Client(url, token=TOKEN) as probe:
                    m = probe.metrics()
                entry["server_errors"] = m["errors"]
                entry["server_act_ms"] = {
                    k: m["act_latency"][k] for k in ("p50_ms", "p90_ms", "p99_ms")
                }
                result["policies"][kind] = entry
            finally:
                proc.send_signal(signal.SIGTERM)
                entry["server_exit_code"] = proc.wait(timeout=60)
    result["load_avg_end"] = os.getloadavg()
    write_json(args.out, result)

    print(f"load average at start {result['load_avg_start'][0]:.2f} on {os.cpu_count()} CPUs\n")
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
        for kind, la in ((k, e["latency"]) for k, e in result["policies"].items())
    ]
    print(markdown_table(header, rows))
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
        for kind, e in result["policies"].items()
        for t in e["throughput"]
    ]
    print("\n" + markdown_table([*header, "max (ms)"], rows))
    errors = {k: e["server_errors"] for k, e in result["policies"].items() if e["server_errors"]}
    if errors:
        sys.exit(f"server error replies during the benchmark: {errors}")


if __name__ == "__main__":
    main()
