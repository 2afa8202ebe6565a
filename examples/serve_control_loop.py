"""Drive a built-in task through the policy server at 20 Hz, as a robot would.

    apprentice serve runs/lift/best.pt --port 8765 &
    python examples/serve_control_loop.py --url ws://127.0.0.1:8765 --episodes 50

or let the script start and stop the server itself:

    python examples/serve_control_loop.py --serve runs/lift/best.pt --episodes 50 \
        --compare runs/lift/eval_lift.json

The task is the one the server's checkpoint was trained for (from the server's hello), the
initial states are the held-out seeds `apprentice eval` uses (same --episodes and
--seed-offset give the same episodes), and success is counted as evaluation counts it (the
first step whose info reports success ends the episode). `--compare` reads an `apprentice eval`
results JSON and reports, seed by seed, where the two disagree.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from apprentice.cli.args import add_dataclass_args, dataclass_from_args
from apprentice.deploy.client import Client, ServerUnavailable
from apprentice.deploy.control_loop import EpisodeLog, LoopConfig, run_episode
from apprentice.deploy.server import load_shield_config
from apprentice.deploy.shield import Shield
from apprentice.envs.base import make_task_from_env_args
from apprentice.envs.seeds import held_out_seeds
from apprentice.errors import ApprenticeError
from apprentice.evaluate.metrics import success_rate


@dataclass(frozen=True)
class ControlLoopConfig:
    """Run held-out episodes of the served policy's task through the server."""

    url: str | None = None
    """Server to connect to, e.g. ws://127.0.0.1:8765."""
    serve: str | None = None
    """A checkpoint: start `apprentice serve` on a free port for this run, stop it after."""
    token: str | None = None
    """The server's token (default: the APPRENTICE_TOKEN environment variable)."""
    episodes: int = 50
    """Episodes, each from its own held-out seed (as `apprentice eval --episodes`)."""
    seed_offset: int = 0
    """Offset into the held-out seeds (as `apprentice eval --seed-offset`)."""
    rate_hz: float = 20.0
    """Control rate."""
    reply_timeout: float | None = None
    """Seconds to wait for each action (default: the rest of the period)."""
    shield: str | None = None
    """Robot-side shield: a shipped robot name (sim_gripper) or a config file."""
    compare: str | None = None
    """An `apprentice eval` results JSON to compare seed by seed."""
    out: str | None = None
    """Results JSON (default: print only)."""


def start_server(checkpoint: str, token: str | None) -> tuple[subprocess.Popen[bytes], str]:
    """`apprentice serve` on a free loopback port, once its health endpoint answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, **({"APPRENTICE_TOKEN": token} if token else {})}
    proc = subprocess.Popen(
        [sys.executable, "-m", "apprentice.cli.main", "serve", checkpoint, "--port", str(port)],
        env=env,
    )
    url = f"ws://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ApprenticeError(f"apprentice serve {checkpoint} exited with {proc.returncode}")
        try:
            Client(url, token=token).close()
            return proc, url
        except ServerUnavailable:
            time.sleep(0.2)
    proc.kill()
    raise ApprenticeError(f"apprentice serve {checkpoint} did not start within 60 s")


def run(cfg: ControlLoopConfig) -> dict[str, Any]:
    if (cfg.url is None) == (cfg.serve is None):
        raise ApprenticeError("give exactly one of --url (a running server) or --serve CHECKPOINT")
    token = cfg.token if cfg.token is not None else os.environ.get("APPRENTICE_TOKEN")
    proc = None
    url = cfg.url
    if cfg.serve is not None:
        proc, url = start_server(cfg.serve, token)
    assert url is not None
    try:
        with Client(url, token=token, timeout=1.0) as client:
            env_args = dict(client.hello["env_args"])
            kwargs = env_args.get("env_kwargs", {})
            if "camera" in kwargs:  # as `apprentice eval` builds the task
                kwargs["camera"] = bool(kwargs["camera"])
            task = make_task_from_env_args(env_args)
            shield = None
            if cfg.shield is not None:
                shield = Shield(load_shield_config(cfg.shield), client.action_dim)
            loop = LoopConfig(
                rate_hz=cfg.rate_hz, reply_timeout=cfg.reply_timeout, max_steps=task.horizon
            )
            logs: list[EpisodeLog] = []
            aborted = 0
            start = time.perf_counter()
            for seed in held_out_seeds(cfg.episodes, cfg.seed_offset):
                try:
                    logs.append(run_episode(client, task, seed, loop, shield=shield))
                except ServerUnavailable as exc:
                    # The episode is lost (the policy's memory with it); count it as a failure.
                    print(f"seed {seed}: {exc}; reconnecting", file=sys.stderr)
                    aborted += 1
                    logs.append(EpisodeLog(seed=seed))
                    client.reconnect()
            wall = time.perf_counter() - start
            server_metrics = client.metrics()
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    return summarize(cfg, str(client.hello["task"]), logs, aborted, wall) | {
        "server": {"url": url, "act_latency": server_metrics["act_latency"]},
        "shield_counts": shield.counts if shield is not None else None,
    }


def summarize(
    cfg: ControlLoopConfig, task: str, logs: list[EpisodeLog], aborted: int, wall: float
) -> dict[str, Any]:
    sr = success_rate(sum(e.success for e in logs), len(logs))
    latencies = np.concatenate([e.latencies_ms for e in logs if e.latencies_ms] or [[np.nan]])
    steps = sum(e.length for e in logs)
    result: dict[str, Any] = {
        "config": asdict(cfg),
        "task": task,
        "success_rate": sr.rate,
        "ci_low": sr.ci_low,
        "ci_high": sr.ci_high,
        "successes": sr.successes,
        "episodes": sr.trials,
        "aborted_episodes": aborted,
        "steps": steps,
        "steps_per_second": steps / wall if wall > 0 else 0.0,
        "deadline_misses": sum(e.deadline_misses for e in logs),
        "late_replies": sum(e.late_replies for e in logs),
        "safe_actions": sum(e.safe_actions for e in logs),
        "round_trip_ms": {
            "p50": float(np.percentile(latencies, 50)),
            "p99": float(np.percentile(latencies, 99)),
            "max": float(np.max(latencies)),
        },
        "seeds": [e.seed for e in logs],
        "per_episode_success": [e.success for e in logs],
        "per_episode_length": [e.length for e in logs],
    }
    if cfg.compare is not None:
        ref = json.loads(Path(cfg.compare).read_text())
        theirs = dict(zip(ref["seeds"], ref["per_episode_success"], strict=True))
        shared = [e for e in logs if e.seed in theirs]
        result["compare"] = {
            "eval_json": cfg.compare,
            "eval_success_rate": ref["success_rate"],
            "eval_successes": ref["successes"],
            "eval_episodes": ref["episodes"],
            "eval_mean_episode_length": ref["mean_episode_length"],
            "mean_episode_length": float(np.mean([e.length for e in logs])),
            "seeds_compared": len(shared),
            "seeds_disagreeing": [e.seed for e in shared if e.success != theirs[e.seed]],
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_dataclass_args(parser, ControlLoopConfig)
    cfg = dataclass_from_args(ControlLoopConfig, parser.parse_args())
    try:
        result = run(cfg)
    except ApprenticeError as exc:
        sys.exit(f"serve_control_loop: error: {exc}")
    rt = result["round_trip_ms"]
    print(
        f"{result['task']}: success {result['successes']}/{result['episodes']} "
        f"({result['success_rate']:.1%}, 95% Wilson {result['ci_low']:.1%}-{result['ci_high']:.1%})"
        f" at {cfg.rate_hz:g} Hz ({result['steps_per_second']:.1f} steps/s with resets); "
        f"deadline misses {result['deadline_misses']}, late replies {result['late_replies']}, "
        f"round trip p50 {rt['p50']:.2f} ms, p99 {rt['p99']:.2f} ms"
    )
    if "compare" in result:
        c = result["compare"]
        print(
            f"apprentice eval: {c['eval_successes']}/{c['eval_episodes']}, mean episode length "
            f"{c['eval_mean_episode_length']:.2f} (here {c['mean_episode_length']:.2f}); "
            f"{len(c['seeds_disagreeing'])} of {c['seeds_compared']} seeds disagree "
            f"{c['seeds_disagreeing']}"
        )
    if cfg.out:
        Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
