"""Writing files: atomically, under a short temporary name, and into a location checked first.

`atomic_write` is the one way the package replaces a file whole (stores, checkpoints,
exports, run-folder JSON): a process killed at any instant leaves the old file or the new
one, never half. `check_writable` is what every command calls on its output path before
doing any work, so a bad location is one error up front, not a traceback at the end.
"""

from __future__ import annotations

import errno
import itertools
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from apprentice.errors import ApprenticeError

_MAX_SUFFIX = 16
"""Longest suffix of the target kept on the temporary name (np.savez, SB3 add their own)."""

_counter = itertools.count()
_counter_lock = threading.Lock()


def temporary_name(path: Path) -> Path:
    """A fresh hidden name beside `path`, short whatever the length of `path`'s own name.

    A file name may be 255 bytes long; a temporary name built from it (`.<name>.tmp-PID`)
    would not be. This one is at most ~40 bytes: the process id, a counter, and the
    target's suffix when it is short (some writers append theirs if it is missing).
    """
    with _counter_lock:
        n = next(_counter)
    suffix = path.suffix if len(path.suffix.encode()) <= _MAX_SUFFIX else ""
    return path.with_name(f".tmp-{os.getpid()}-{n}{suffix}")


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new file in `folder` survive a power loss."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_write(path: str | os.PathLike[str], *, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write; on a clean exit it replaces `path`.

    On an exception the temporary file is removed and `path` is left as it was. With
    `durable`, the file and the rename are fsynced (they then survive a power loss too).
    The folder of `path` is created if missing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        yield tmp
        if durable:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
        if durable:
            fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike[str], text: str, *, durable: bool = True) -> None:
    """Replace `path` with `text` (UTF-8) through `atomic_write`."""
    with atomic_write(path, durable=durable) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _reason(e: OSError) -> str:
    if e.errno == errno.ENOTDIR:
        return "a part of the path is a file, not a folder"
    return e.strerror or str(e)


def check_writable(
    path: str | os.PathLike[str],
    *,
    flag: str = "--out",
    folder: bool = False,
    hint: str = "choose a writable location",
) -> Path:
    """Check, creating nothing, that a command will be able to write `path`.

    `path` is a file or, with `folder`, a folder; either may not exist yet (the writer
    creates it and any missing folders above it). The check writes and removes a small file
    in the nearest folder that exists, because permission bits alone do not tell (root
    ignores them; a read-only mount overrides them), and opens an existing file at `path`
    for writing. Raises an ApprenticeError naming `flag` and `path`, ending with `hint`.
    """
    path = Path(path)
    where = path if folder else path.parent
    try:
        while not where.exists() and where != where.parent:
            where = where.parent  # a missing folder: its nearest existing ancestor decides
        if not where.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(where))
        probe = temporary_name(where / "probe")
        probe.touch(exist_ok=False)
        probe.unlink()
        if path.exists() and not folder:
            if path.is_dir():
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
            with open(path, "rb+"):
                pass
        elif path.exists() and not path.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path))
    except OSError as e:
        raise ApprenticeError(f"{flag} {path}: cannot write there ({_reason(e)}); {hint}") from None
    return path
