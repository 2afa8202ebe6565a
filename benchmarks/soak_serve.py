"""Soak the policy server: clients connect, run episodes, disconnect and reconnect for minutes.

The server runs as `apprentice serve` in its own process; client threads here each loop over
sessions of a few episodes (random length, a reset between episodes, fresh random
observations every step) and close cleanly, so every session the server reports as dropped
or any error is a defect. The server's RSS (/proc/<pid>/status) and /metrics are sampled every
few seconds; the run ends with SIGTERM, whose exit code must be 0.

    python benchmarks/soak_serve.py --checkpoint runs/lift/best.pt --minutes 10
    python benchmarks/soak_serve.py --seconds 10        # a random-weight BC-RNN, briefly

Prints a markdown table; JSON to benchmarks/out/soak_serve.json (or --out).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from apprentice.deploy.client import Client
from harness import OUT, add_out, markdown_table, parser, write_json

TOKEN = "soak-token"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def start_server(checkpoint: str) -> tuple[subprocess.Popen[str], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "apprentice.cli.main", "serve", checkpoint, "--port", str(port)],
        env={**os.environ, "APPRENTICE_TOKEN": TOKEN},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "serving ..." once it listens
    if "serving" not in line:
        proc.kill()
        raise SystemExit(f"apprentice serve did not start: {line!r}")
    return proc, f"ws://127.0.0.1:{port}"


class SoakClient(threading.Thread):
    """Sessions of 1-4 episodes of 10-60 steps each, until `stop` is set."""

    def __init__(self, url: str, seed: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.url, self.stop = url, stop
        self.rng = np.random.default_rng(seed)
        self.sessions = self.episodes = self.steps = 0
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with Client(self.url, token=TOKEN, timeout=5.0) as client:
                    self.sessions += 1
                    for _ in range(int(self.rng.integers(1, 5))):
                        client.reset()
                        for _ in range(int(self.rng.integers(10, 61))):
                            obs = {
                                k: self.rng.normal(size=s).astype(np.float32)
                                for k, s in client.obs_shapes.items()
                            }
                            action = client.act(obs)
                            if action.shape != (client.action_dim,):
                                self.errors.append(f"action of shape {action.shape}")
                            self.steps += 1
                        self.episodes += 1
                        if self.stop.is_set():
                            break
            except Exception as exc:  # every failure counts; the soak goes on
                self.errors.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.5)


def main() -> None:
    p = parser(__doc__)
    p.add_argument(
        "--checkpoint", help="policy checkpoint to serve (default: a random-weight lift BC-RNN)"
    )
    p.add_argument("--minutes", type=float, default=None, help="duration in minutes")
    p.add_argument("--seconds", type=float, default=None, help="duration in seconds (CI)")
    p.add_argument("--clients", type=int, default=8, help="concurrent client threads")
    p.add_argument("--sample-every", type=float, default=5.0, help="seconds between samples")
    add_out(p, OUT / "soak_serve.json")
    args = p.parse_args()
    duration = args.seconds if args.seconds is not None else 60 * (args.minutes or 10)

    if args.checkpoint is None:
        from bench_serve import make_checkpoint  # this script's folder is on sys.path

        args.checkpoint = str(make_checkpoint(Path(tempfile.mkdtemp()), "rnn"))
    proc, url = start_server(args.checkpoint)
    stop = threading.Event()
    clients = [SoakClient(url, seed, stop) for seed in range(args.clients)]
    samples: list[dict[str, Any]] = []
    start = time.monotonic()
    probe = Client(url, token=TOKEN)  # for /metrics; its own session stays open and idle
    for c in clients:
        c.start()
    while True:
        elapsed = time.monotonic() - start
        m = probe.metrics()
        samples.append(
            {
                "t_s": round(elapsed, 1),
                "rss_mb": rss_mb(proc.pid),
                "sessions_open": m["sessions_open"],
                "act_requests": m["requests"].get("act", 0),
            }
        )
        if elapsed >= duration:
            break
        time.sleep(min(args.sample_every, max(duration - elapsed, 0.01)))
    stop.set()
    for c in clients:
        c.join(timeout=30)
    probe.close()
    # Sessions close asynchronously on the server: give them a moment before the last reading.
    final = probe.metrics()
    deadline = time.monotonic() + 10
    while final["sessions_open"] and time.monotonic() < deadline:
        time.sleep(0.1)
        final = probe.metrics()
    proc.send_signal(signal.SIGTERM)
    exit_code = proc.wait(timeout=60)

    rss = np.array([s["rss_mb"] for s in samples])
    t = np.array([s["t_s"] for s in samples])
    half = len(t) // 2
    # Growth after warm-up: slope of RSS over the second half of the run, MB per minute.
    slope = float(np.polyfit(t[half:], rss[half:], 1)[0] * 60) if len(t) - half >= 2 else 0.0
    closed = final["sessions_closed"]
    result = {
        "duration_s": duration,
        "clients": args.clients,
        "checkpoint": args.checkpoint,
        "sessions_client_side": sum(c.sessions for c in clients),
        "episodes": sum(c.episodes for c in clients),
        "act_requests": final["requests"].get("act", 0),
        "sessions_opened": final["sessions_opened"],
        "sessions_closed": sum(closed.values()),
        "sessions_closed_by_reason": closed,
        "sessions_open_at_end": final["sessions_open"],
        "dropped_sessions": closed.get("dropped", 0),
        "client_errors": sum(len(c.errors) for c in clients),
        "client_error_examples": [e for c in clients for e in c.errors][:5],
        "server_error_replies": sum(final["errors"].values()),
        "server_rejected": final["rejected"],
        "server_act_latency_ms": {
            k: final["act_latency"][k] for k in ("p50_ms", "p90_ms", "p99_ms")
        },
        "rss_mb": [float(x) for x in rss],
        "rss_start_mb": float(rss[0]),
        "rss_end_mb": float(rss[-1]),
        "rss_max_mb": float(rss.max()),
        "rss_slope_second_half_mb_per_min": slope,
        "samples": samples,
        "server_exit_code": exit_code,
    }
    write_json(args.out, result, quiet=True)
    header = ["duration", "clients", "sessions", "episodes", "act requests", "errors", "dropped"]
    header += ["RSS start / end / max (MB)", "RSS slope, 2nd half", "exit"]
    row = [
        f"{duration:.0f} s",
        args.clients,
        f"{result['sessions_opened']} opened, {result['sessions_closed']} closed",
        result["episodes"],
        result["act_requests"],
        f"{result['client_errors']} client, {result['server_error_replies']} server",
        result["dropped_sessions"],
        f"{rss[0]:.1f} / {rss[-1]:.1f} / {rss.max():.1f}",
        f"{slope:+.2f} MB/min",
        exit_code,
    ]
    print(markdown_table(header, [row]))
    if result["client_errors"] or result["dropped_sessions"] or exit_code != 0:
        sys.exit("soak found errors, dropped sessions or an unclean exit (see the JSON)")


if __name__ == "__main__":
    main()
