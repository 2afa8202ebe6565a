"""The latency benchmark's small version: it still runs a session and writes its numbers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_teleop_latency.py"


def test_latency_benchmark_runs(tmp_path: Path) -> None:
    out = tmp_path / "latency.json"
    args = ["--inputs", "20", "--chromium-inputs", "0", "--frame-size", "64", "--json", str(out)]
    r = subprocess.run(
        [sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "| python | 20 |" in r.stdout
    page = json.loads(out.read_text())["pages"]["python"]
    # Every input reached a step, no sooner than it was sent.
    assert page["inputs"] == 20 and 0 < page["p50_ms"] <= page["p99_ms"] <= page["max_ms"]
