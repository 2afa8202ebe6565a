"""An asyncio server on a daemon thread, for the two places that serve WebSockets from
synchronous code: the policy server (`apprentice.deploy.server`) and the teleop browser page
(`apprentice.teleop.browser`)."""

from __future__ import annotations

import asyncio
import errno
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from apprentice.errors import ApprenticeError

T = TypeVar("T")


def run_in_thread(
    loop: asyncio.AbstractEventLoop, name: str, setup: Callable[[], Awaitable[T]]
) -> tuple[threading.Thread, T]:
    """Run `setup()` (e.g. bind a server) on `loop` in a new daemon thread, then keep the loop
    running there until someone stops it; returns the thread and what `setup` returned.

    If `setup` raises, the loop is closed, the thread joined, and the error raised here, in
    the caller's thread. The caller makes `loop` (and keeps it) before the thread starts, so
    anything served on it can reach the loop from the first connection on.
    """
    outcome: list[Any] = []
    ready = threading.Event()

    def body() -> None:
        try:
            outcome.append(loop.run_until_complete(setup()))
        except BaseException as exc:  # handed to the caller's thread below
            outcome.append(exc)
            ready.set()
            loop.close()
            return
        ready.set()
        loop.run_forever()
        loop.close()

    thread = threading.Thread(target=body, name=name, daemon=True)
    thread.start()
    ready.wait()
    if isinstance(outcome[0], BaseException):
        thread.join()
        raise outcome[0]
    return thread, outcome[0]


def listen_error(exc: OSError, host: str, port: int) -> ApprenticeError:
    """One clear error for a socket that could not be bound; a port in use names the port."""
    if exc.errno == errno.EADDRINUSE:
        return ApprenticeError(
            f"port {port} on {host} is already in use; choose another --port or stop the "
            "process listening there"
        )
    return ApprenticeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
