"""Crash safety for the HDF5 store: a byte-level undo journal under the HDF5 library.

HDF5 is not crash-safe: a process killed while the library writes can leave B-trees, heaps and
the superblock half updated, and the whole file unreadable. Instead of copying the file before
each append (O(file size)), the writer hands HDF5 a file object (`JournaledFile`) through
h5py's ``fileobj`` driver, so every byte HDF5 writes passes through Python first:

- The file is *committed* after each `DemoWriter.append` (HDF5 flushed; nothing dirty in memory).
  The journal `<path>.journal` then holds only a header: the committed file size.
- Before HDF5 overwrites bytes below the committed size, their old content is appended to the
  journal as a checksummed record. Writes past the committed size need no record: rolling back
  truncates them away.
- Committing empties the journal (truncate, then a fresh header), so an empty or torn header
  means "nothing to undo".
- Recovery (on the next open, by writer or reader) writes the recorded old bytes back, newest
  first, and truncates to the committed size: the file is byte-for-byte its last committed state.
  A torn last record is ignored: its overwrite had not started, because records are written (and,
  with ``durable``, synced) before the write they protect.

The cost per append is the size of the metadata HDF5 rewrites (a few KiB), not the file size.
A lock (``flock`` on the journal) tells a live writer from a dead one: the kernel releases it when
the writer dies, so recovery never rolls back a file that another process is still writing.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import struct
import zlib
from pathlib import Path

from apprentice.errors import ApprenticeError

_MAGIC = b"APJ1"
_HEADER = struct.Struct("<4sQI")  # magic, committed size, crc32 of the first two
_RECORD = struct.Struct("<QII")  # offset, length, crc32 of (offset, length, old bytes)


def journal_path(path: Path) -> Path:
    """`<name>.journal` beside the store; a name too long for that gets a hash of it instead."""
    name = path.name + ".journal"
    if len(name.encode()) > 255:  # NAME_MAX of the common file systems
        name = f".{hashlib.sha256(path.name.encode()).hexdigest()[:24]}.journal"
    return path.with_name(name)


def _header(size: int) -> bytes:
    head = _MAGIC + struct.pack("<Q", size)
    return _HEADER.pack(_MAGIC, size, zlib.crc32(head))


def _record(offset: int, old: bytes) -> bytes:
    head = struct.pack("<QI", offset, len(old))
    return _RECORD.pack(offset, len(old), zlib.crc32(old, zlib.crc32(head))) + old


def _lock(fd: int, path: Path) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ApprenticeError(
            f"{path}: another process is writing this file (its journal is locked); "
            "wait for it to finish or stop it"
        ) from None


def recover(path: Path) -> bool:
    """Roll `path` back to its last committed state if a writer died mid-append.

    Returns True if a rollback happened. Raises ApprenticeError if a live writer holds the file.
    """
    jpath = journal_path(path)
    try:
        jfd = os.open(jpath, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        _lock(jfd, path)
        data = os.pread(jfd, os.fstat(jfd).st_size, 0)
        rolled_back = False
        if len(data) >= _HEADER.size:
            magic, size, crc = _HEADER.unpack_from(data, 0)
            if magic == _MAGIC and crc == zlib.crc32(_MAGIC + struct.pack("<Q", size)):
                _rollback(path, data, size)
                rolled_back = True
        # Unlink while holding the lock, and only the journal we locked: a writer that closed
        # cleanly meanwhile removed it, one that started since owns a new file at that name.
        try:
            if os.stat(jpath).st_ino == os.fstat(jfd).st_ino:
                os.unlink(jpath)
        except FileNotFoundError:
            pass
        return rolled_back
    finally:
        os.close(jfd)


def _rollback(path: Path, data: bytes, size: int) -> None:
    records: list[tuple[int, bytes]] = []
    pos = _HEADER.size
    while pos + _RECORD.size <= len(data):
        offset, length, crc = _RECORD.unpack_from(data, pos)
        old = data[pos + _RECORD.size : pos + _RECORD.size + length]
        head = struct.pack("<QI", offset, length)
        if len(old) != length or zlib.crc32(old, zlib.crc32(head)) != crc:
            break  # torn tail: the write it would protect never started
        records.append((offset, old))
        pos += _RECORD.size + length
    fd = os.open(path, os.O_RDWR)
    try:
        for offset, old in reversed(records):  # newest first, so the oldest content wins
            os.pwrite(fd, old, offset)
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)


class JournaledFile:
    """A binary file object for h5py's ``fileobj`` driver that journals overwrites.

    Open with `JournaledFile.open(path)` (after `recover`), use ``h5py.File(jf, "r+")``,
    call `commit()` after each ``h5file.flush()``, and `close()` after the h5py file is closed.
    durable=True also syncs to disk (power loss); without it the guarantee covers process death.
    """

    def __init__(self, path: Path, fd: int, jfd: int, durable: bool) -> None:
        self.path = path
        self._fd = fd
        self._jfd = jfd
        self._durable = durable
        self._pos = 0
        self._committed = os.fstat(fd).st_size
        # Byte ranges already saved in this transaction: HDF5 rewrites the same metadata blocks
        # many times per append and the oldest copy is the only one rollback needs.
        self._saved: set[tuple[int, int]] = set()

    @classmethod
    def open(cls, path: Path, *, durable: bool = True) -> JournaledFile:
        jfd = os.open(journal_path(path), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock(jfd, path)
            fd = os.open(path, os.O_RDWR)
        except BaseException:
            os.close(jfd)
            raise
        jf = cls(path, fd, jfd, durable)
        jf._reset_journal()
        return jf

    # -- the file-object protocol h5py's fileobj driver uses --------------------------------

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_SET:
            self._pos = offset
        elif whence == os.SEEK_CUR:
            self._pos += offset
        else:
            self._pos = os.fstat(self._fd).st_size + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def seekable(self) -> bool:
        return True

    def readinto(self, buf: memoryview | bytearray) -> int:
        n = os.preadv(self._fd, [buf], self._pos)
        self._pos += n
        return n

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            size = os.fstat(self._fd).st_size - self._pos
        data = os.pread(self._fd, size, self._pos)
        self._pos += len(data)
        return data

    def write(self, data: bytes | memoryview) -> int:
        buf = memoryview(data).cast("B")
        self._save(self._pos, self._pos + len(buf))
        done = 0
        while done < len(buf):
            done += os.pwrite(self._fd, buf[done:], self._pos + done)
        self._pos += done
        return done

    def truncate(self, size: int | None = None) -> int:
        size = self._pos if size is None else size
        self._save(size, os.fstat(self._fd).st_size)
        os.ftruncate(self._fd, size)
        return size

    def flush(self) -> None:
        """Nothing buffered here: every write is a syscall, so the kernel already has it."""

    # -- transactions ------------------------------------------------------------------------

    def _save(self, start: int, stop: int) -> None:
        """Journal the committed bytes in [start, stop) before they are overwritten."""
        stop = min(stop, self._committed)
        if start >= stop or (start, stop) in self._saved:
            return
        old = os.pread(self._fd, stop - start, start)
        rec = _record(start, old)
        done = 0
        while done < len(rec):
            done += os.write(self._jfd, rec[done:])
        if self._durable:
            os.fdatasync(self._jfd)
        self._saved.add((start, stop))

    def commit(self) -> None:
        """Make the current content the state a crash rolls back to (call after h5 flush)."""
        if self._durable:
            os.fsync(self._fd)
        self._committed = os.fstat(self._fd).st_size
        self._reset_journal()

    def _reset_journal(self) -> None:
        # Truncate before writing the new header: a crash in between leaves an empty journal
        # (= nothing to undo), never a new header followed by the previous transaction's records.
        os.ftruncate(self._jfd, 0)
        os.pwrite(self._jfd, _header(self._committed), 0)
        os.lseek(self._jfd, _HEADER.size, os.SEEK_SET)
        if self._durable:
            os.fdatasync(self._jfd)
        self._saved.clear()

    def close(self) -> None:
        """Close after a final commit; removes the journal (the file is consistent)."""
        if self._fd < 0:
            return
        os.close(self._fd)
        os.unlink(journal_path(self.path))
        os.close(self._jfd)  # releases the lock after the journal is gone
        self._fd = self._jfd = -1

    def abandon(self) -> None:
        """Close without committing: leave the journal so the next open rolls back."""
        if self._fd < 0:
            return
        os.close(self._fd)
        os.close(self._jfd)
        self._fd = self._jfd = -1
