"""What the benchmark scripts share: the command line, timing in alternated rounds, success
rates with their 95% Wilson interval, markdown tables and the JSON each run writes.

The scripts run as `python benchmarks/<script>.py`, which puts this folder on `sys.path`:
they import it as `harness`.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apprentice.evaluate.metrics import wilson_interval

OUT = Path(__file__).resolve().parent / "out"
"""Where the scripts write their JSON by default (not committed)."""


def parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser described by the first line of the script's docstring `doc`."""
    return argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0])


def add_quick(p: argparse.ArgumentParser, help: str = "tiny sizes: a smoke test") -> None:
    p.add_argument("--quick", action="store_true", help=help)


def add_seeds(
    p: argparse.ArgumentParser,
    default: Sequence[int] = (0, 1, 2),
    help: str = "training seeds",
    nargs: str = "+",
) -> None:
    p.add_argument("--seeds", type=int, nargs=nargs, default=list(default), help=help)


def add_out(
    p: argparse.ArgumentParser,
    default: Path,
    flag: str = "--out",
    help: str = "where the JSON results go",
) -> None:
    p.add_argument(flag, type=Path, default=default, help=help)


@dataclass(frozen=True)
class Rounds:
    """Calls per second of each step, one value per round, in wall-clock and CPU time."""

    wall: dict[str, list[float]]
    """Calls per wall-clock second, per round."""
    cpu: dict[str, list[float]]
    """Calls per CPU second of the calling thread, per round: leaves out the wait for a core,
    which on a loaded machine is most of the wall-clock time."""
    calls: dict[str, int]
    """Timed calls of each step over all rounds (warm-up excluded)."""

    def median(self, name: str) -> float:
        return statistics.median(self.wall[name])


def alternate(
    steps: Mapping[str, Callable[[], object]],
    *,
    rounds: int,
    seconds: float | None = None,
    calls: Mapping[str, int] | int | None = None,
    warmup: int = 1,
    min_calls: int = 1,
) -> Rounds:
    """Time each step in turn, round after round: a window of `seconds` (and at least
    `min_calls` calls) or a fixed number of `calls` per step and round, after `warmup`
    untimed calls of each.

    In turns rather than one after the other: on a shared machine the load changes from
    minute to minute, and a ratio between two steps is only fair if both saw the same load.
    """
    if (seconds is None) == (calls is None):
        raise ValueError("give either seconds or calls")
    fixed = dict.fromkeys(steps, calls) if isinstance(calls, int) else dict(calls or {})
    for step in steps.values():
        for _ in range(warmup):
            step()
    wall: dict[str, list[float]] = {name: [] for name in steps}
    cpu: dict[str, list[float]] = {name: [] for name in steps}
    total = dict.fromkeys(steps, 0)
    for _ in range(rounds):
        for name, step in steps.items():
            t0, c0 = time.perf_counter(), time.thread_time()
            if seconds is not None:
                count = 0
                while time.perf_counter() - t0 < seconds or count < min_calls:
                    step()
                    count += 1
            else:
                count = fixed[name]
                for _ in range(count):
                    step()
            elapsed, cpu_s = time.perf_counter() - t0, time.thread_time() - c0
            wall[name].append(count / elapsed)
            cpu[name].append(count / cpu_s if cpu_s > 0 else float("inf"))
            total[name] += count
    return Rounds(wall, cpu, total)


@dataclass(frozen=True)
class Ratio:
    """The ratio of two measures taken in the same rounds: median and spread over rounds."""

    values: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)

    def __str__(self) -> str:
        return f"{self.median:.2f} ({self.low:.2f}-{self.high:.2f})"


def ratio(numerator: Sequence[float], denominator: Sequence[float]) -> Ratio:
    """Round by round `numerator / denominator` (both from the same rounds)."""
    return Ratio([a / b for a, b in zip(numerator, denominator, strict=True)])


def success_cell(successes: int, trials: int, digits: int = 1) -> str:
    """`k/n (rate%)`, as the tables print a success count, the rate to `digits` decimals."""
    return f"{successes}/{trials} ({successes / trials:.{digits}%})"


def wilson_cell(successes: int, trials: int, percent: int | None = None) -> str:
    """The 95% Wilson interval of `successes` in `trials`: `[low, high]` to 3 decimals, or
    with `percent` as `low%-high%` to that many decimals."""
    low, high = wilson_interval(successes, trials)
    if percent is None:
        return f"[{low:.3f}, {high:.3f}]"
    return f"{low:.{percent}%}-{high:.{percent}%}"


def per_seed_cell(runs: Iterable[Mapping[str, Any]], sep: str = ", ") -> str:
    """Each run's `successes/episodes`, joined by `sep`: one per training seed."""
    return sep.join(f"{r['successes']}/{r['episodes']}" for r in runs)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A markdown table: `header` then one line per row, cells as given (str() of each)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(
    path: Path | str,
    result: Any,
    *,
    quiet: bool = False,
    default: Callable[[Any], Any] | None = None,
) -> Path:
    """Write `result` as indented JSON to `path` (its folder made) and, unless `quiet` (for
    a file rewritten after every step), say so. Paths (as `vars(args)` holds them) are
    written as strings; `default` turns anything else JSON cannot hold into what it can (as
    in `json.dumps`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=default or _path_as_str) + "\n")
    if not quiet:
        print(f"wrote {path}")
    return path


def _path_as_str(value: Any) -> str:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one), for the tables' headers."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
