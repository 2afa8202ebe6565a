"""Input-to-simulator-command latency of the browser teleop device on loopback.

A real `apprentice teleop` session (`run_teleop` with a `BrowserDevice`, the lift task at its
20 Hz control rate, camera frames streamed to the page) is driven by two kinds of page:

- **python**: a websockets client standing in for the page. It presses "start", then sends
  `--inputs` commands at random instants (gaps uniform in [25, 75] ms: 20 Hz on average, at a
  random phase to the control loop), each stamped with time.time() when "the input fires".
- **chromium**: the real page (`static/teleop.js`) in headless Chromium, driven by Playwright
  key presses; the page stamps each key event with its `event.timeStamp` moved onto the
  server's clock by its ping/pong offset estimate.

For every stamped input the session records the delay from the stamp to the moment the
command carrying it is handed to `task.step` (`TeleopResult.latencies_s`), and the device
records the delay to the moment the server received it (`transport`). The difference is the
wait for the next control tick: a 20 Hz loop steps every 50 ms, so an input arriving at a
random instant waits uniformly 0-50 ms. That wait is the bound no transport can beat: its
p50 is 25 ms and its p99 49.5 ms. The table reports both measured delays, the bound, and
the control ticks that started late (more than 5 ms: the CPU was busy elsewhere, or a frame
render overran), which push inputs past the bound.

    nice -n 10 .venv/bin/python benchmarks/bench_teleop_latency.py [--inputs 1000]
        [--chromium-inputs 300] [--frame-size 256] [--quick]

Prints a markdown table, writes benchmarks/out/teleop_latency.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import random
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from websockets.asyncio.client import connect

os.environ.setdefault("MUJOCO_GL", "egl")

from apprentice.teleop.browser import HEADLESS_CHROMIUM_FLAGS, BrowserDevice, find_chromium
from apprentice.teleop.devices import Device
from apprentice.teleop.run import TeleopConfig, run_teleop
from harness import OUT, add_out, add_quick, markdown_table, parser, write_json

TARGET_P99_MS = 50.0
"""The issue's target: input-to-command p99 at most 50 ms on loopback."""


def run_session(
    frame_size: int, drive: Callable[[str], None], work: Path
) -> tuple[list[float], list[float], int, int]:
    """Run a teleop session, `drive(url)` as the page: (input->step s, input->server s,
    late control ticks, steps)."""
    device = BrowserDevice(port=0)
    cfg = TeleopConfig(
        task="lift",
        out=str(work / f"bench-{time.monotonic_ns()}.hdf5"),
        operator="bench",
        frame_size=frame_size,
        max_steps=1_000_000,  # never "full": every input reaches a step
        wait_s=60.0,
    )
    ready = threading.Event()
    box: list[Any] = []

    def on_ready(_: Device) -> None:
        ready.set()

    def body() -> None:
        try:
            box.append(run_teleop(cfg, device, on_ready=on_ready))
        except BaseException as exc:
            box.append(exc)
            ready.set()

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    ready.wait(120)
    if box:
        raise RuntimeError(f"the session failed to start: {box[0]!r}")
    drive(device.url)
    thread.join(120)
    result = box[0]
    if isinstance(result, BaseException):
        raise result
    return list(result.latencies_s), list(device.transport_s), result.late_ticks, result.steps


def python_page(n: int, seed: int) -> Callable[[str], None]:
    """A websockets client as the page: start, n stamped inputs at random instants, quit."""

    async def main(url: str) -> None:
        rng = random.Random(seed)
        ws_url = url.replace("http://", "ws://") + "ws"
        async with connect(ws_url, max_size=None, compression=None) as ws:

            async def drain() -> None:
                async for _ in ws:  # status and frames: read, as a page would
                    pass

            reader = asyncio.create_task(drain())
            seq = 0

            async def send(pos: list[float], buttons: list[str], stamped: bool) -> None:
                nonlocal seq
                msg: dict[str, Any] = {"type": "command", "seq": seq, "pos": pos}
                msg["buttons"] = buttons
                if stamped:
                    msg["t"] = time.time() * 1e3
                seq += 1
                await ws.send(json.dumps(msg))

            await asyncio.sleep(0.5)  # the session's first tick sees the page
            await send([0.0, 0.0, 0.0], ["start"], stamped=False)
            await asyncio.sleep(0.2)
            for _ in range(n):
                await asyncio.sleep(rng.uniform(0.025, 0.075))
                pos = [rng.uniform(-0.2, 0.2) for _ in range(3)]
                await send(pos, [], stamped=True)
            await asyncio.sleep(0.2)  # let the last input reach a step
            await send([0.0, 0.0, 0.0], ["quit"], stamped=False)
            await asyncio.sleep(0.3)
            reader.cancel()

    return lambda url: asyncio.run(main(url))


def chromium_page(n: int, seed: int, chromium: str) -> Callable[[str], None]:
    """The real page in headless Chromium: "b" to start, n key presses and releases, finish."""

    def drive(url: str) -> None:
        from playwright.sync_api import sync_playwright

        rng = random.Random(seed)
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=chromium, args=list(HEADLESS_CHROMIUM_FLAGS)
            )
            try:
                page = browser.new_page()
                page.goto(url)
                # Wait for the page's clock offset: its stamps are on the server's clock after.
                page.wait_for_function("document.getElementById('offset').textContent !== '-'")
                page.keyboard.press("b")
                page.wait_for_function(
                    "document.getElementById('state').textContent === 'recording'"
                )
                keys = "wasdrf"
                for i in range(n):
                    time.sleep(rng.uniform(0.025, 0.075))
                    key = keys[(i // 2) % len(keys)]
                    if i % 2 == 0:
                        page.keyboard.down(key)
                    else:
                        page.keyboard.up(key)
                time.sleep(0.2)
                page.click("#quit")
                page.wait_for_timeout(300)
            finally:
                browser.close()

    return drive


def summarize(latencies: list[float], transport: list[float]) -> dict[str, Any]:
    lat = np.asarray(latencies) * 1e3
    tr = np.asarray(transport) * 1e3
    return {
        "inputs": int(lat.size),
        "p50_ms": float(np.percentile(lat, 50)),
        "p90_ms": float(np.percentile(lat, 90)),
        "p99_ms": float(np.percentile(lat, 99)),
        "max_ms": float(lat.max()),
        "transport_p50_ms": float(np.percentile(tr, 50)),
        "transport_p99_ms": float(np.percentile(tr, 99)),
        "meets_target": bool(np.percentile(lat, 99) <= TARGET_P99_MS),
    }


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--inputs", type=int, default=1000, help="inputs sent by the python page")
    p.add_argument("--chromium-inputs", type=int, default=300, help="key events in Chromium")
    p.add_argument("--frame-size", type=int, default=256, help="camera frame side streamed")
    p.add_argument("--seed", type=int, default=0)
    add_quick(p, help="40 + 20 inputs: a smoke test")
    add_out(p, OUT / "teleop_latency.json", flag="--json")
    args = p.parse_args()
    if args.quick:
        args.inputs, args.chromium_inputs = 40, 20
    pages: dict[str, Callable[[str], None]] = {"python": python_page(args.inputs, args.seed)}
    chromium = find_chromium()
    if args.chromium_inputs > 0:
        if chromium is None:
            print("skipping the chromium page: no chromium on PATH")
        else:
            pages["chromium"] = chromium_page(args.chromium_inputs, args.seed, chromium)
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, drive in pages.items():
            lat, tr, late, steps = run_session(args.frame_size, drive, Path(tmp))
            if not lat:
                raise SystemExit(f"{name}: no stamped input reached task.step")
            rows[name] = {**summarize(lat, tr), "late_ticks": late, "steps": steps}
    period_ms = 1e3 / 20.0
    bound = {"p50_ms": 0.5 * period_ms, "p99_ms": 0.99 * period_ms}
    print(f"\nbrowser teleop on loopback, lift at 20 Hz, {args.frame_size}px frames streamed\n")
    header = ["page", "inputs", "p50 ms", "p90 ms", "p99 ms", "max ms"]
    header += ["transport p50 / p99 ms", "late ticks / steps"]
    cells = [
        [
            name,
            r["inputs"],
            f"{r['p50_ms']:.1f}",
            f"{r['p90_ms']:.1f}",
            f"{r['p99_ms']:.1f}",
            f"{r['max_ms']:.1f}",
            f"{r['transport_p50_ms']:.2f} / {r['transport_p99_ms']:.2f}",
            f"{r['late_ticks']} / {r['steps']}",
        ]
        for name, r in rows.items()
    ]
    bound_row = ["bound: tick wait alone", "-", f"{bound['p50_ms']:.1f}", f"{0.9 * period_ms:.1f}"]
    bound_row += [f"{bound['p99_ms']:.1f}", f"{period_ms:.1f}", 0, 0]
    print(markdown_table(header, [*cells, bound_row]))
    print(f"\ntarget p99 <= {TARGET_P99_MS:g} ms")
    record = {
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "frame_size": args.frame_size,
        "rate_hz": 20.0,
        "bound": bound,
        "pages": rows,
        "target_p99_ms": TARGET_P99_MS,
    }
    write_json(args.json, record)


if __name__ == "__main__":
    main()
