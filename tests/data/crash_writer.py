"""Child process of test_crash_safety: appends synthetic demos forever, printing each name.

argv: path [kill_at_write [signal]]. With kill_at_write=k the process sends itself `signal`
(KILL, the default, or INT) at the k-th write HDF5 makes to the file, to hit every write of an
append deterministically. Interrupted (Ctrl-C), it exits 130 as the CLI does.
"""

from __future__ import annotations

import os
import signal
import sys

import numpy as np

from apprentice.data.episode import Episode
from apprentice.data.journal import JournaledFile
from apprentice.data.store import DemoWriter

ENV_ARGS = {"env_name": "Synthetic", "env_type": 0, "env_kwargs": {}}


def make_episode(seed: int) -> Episode:
    """The demo for `seed`; the test regenerates it to check what the file holds."""
    rng = np.random.default_rng(seed)
    t = int(rng.integers(5, 60))
    return Episode(
        obs={
            "eef_pos": rng.normal(size=(t, 3)).astype(np.float32),
            "agentview_image": rng.integers(0, 255, (t, 12, 12, 3), dtype=np.uint8),
        },
        next_obs={"eef_pos": rng.normal(size=(t, 3)).astype(np.float32)},
        actions=rng.uniform(-1, 1, (t, 7)).astype(np.float32),
        rewards=np.zeros(t, dtype=np.float32),
        dones=(np.arange(t) == t - 1).astype(np.int64),
        states=rng.normal(size=(t, 9)),
        seed=seed,
    )


def main() -> None:
    path = sys.argv[1]
    if len(sys.argv) > 2:
        kill_at, count = int(sys.argv[2]), [0]
        sig = signal.Signals[f"SIG{sys.argv[3] if len(sys.argv) > 3 else 'KILL'}"]
        write = JournaledFile.write

        def dying_write(self: JournaledFile, data: bytes | memoryview) -> int:
            count[0] += 1
            if count[0] == kill_at:
                os.kill(os.getpid(), sig)
            return write(self, data)

        JournaledFile.write = dying_write  # type: ignore[method-assign]
    print("ready", flush=True)
    rng = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))
    try:
        with DemoWriter(path, env_args=ENV_ARGS) as writer:
            while True:
                seed = int(rng.integers(1 << 31))
                masks = ["even"] if seed % 2 == 0 else []
                name = writer.append(make_episode(seed), masks=masks)
                print(name, flush=True)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
