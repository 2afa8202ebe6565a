"""Ctrl-C held over work that must not be cut in the middle (a store write, a worker start)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


@contextmanager
def sigint_deferred() -> Iterator[None]:
    """Hold SIGINT (Ctrl-C) while the block runs; deliver it to the previous handler after.

    HDF5 writes a `JournaledFile` (data/journal.py) by calling its Python methods from C. A
    KeyboardInterrupt raised inside one of those calls unwinds through HDF5 mid-update: its
    in-memory state is left half changed, and the next flush can crash the process in libhdf5
    or the interrupt is lost. Every use of an h5py file opened on a `JournaledFile` runs inside
    this block, so Ctrl-C lands between appends. A pool starting a worker holds it too (see
    envs/pool.py). Outside the main thread (where Python runs no signal
    handler) and under a handler installed from C, the block runs unchanged.
    """
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous is None:
        yield
        return
    held: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        held.append(signum)

    signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if held:
            signal.raise_signal(signal.SIGINT)
