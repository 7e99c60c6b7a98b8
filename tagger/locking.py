"""Advisory file locks: how keychords' writes stay out of each other's way.

Linux has two independent kinds of advisory lock, BSD ``flock`` and POSIX
record locks (``fcntl``/``lockf``); programs that lock audio files use one
or the other. keychords

- takes an exclusive ``flock`` on a file for the whole of its
  copy -> tag -> rename (:func:`tagger.tags.write_tags`), so two keychords
  runs, or keychords and another program that uses ``flock``, never
  interleave their writes to the same file;
- waits up to :data:`LOCK_WAIT` seconds for a file on which another process
  holds a ``flock`` (shared or exclusive) or an exclusive POSIX lock, then
  gives up on it: "file is locked by another process" (the file is left as
  it is; the next run tries again);
- holds an exclusive ``flock`` on its temporary file while writing, so that
  the stale-file cleanup of a concurrent run (:func:`remove_if_unlocked`)
  can tell a temporary file in use from one a crash left behind.

The kernel releases a process's locks when it dies, SIGKILL included, so a
crash never leaves a stale lock. Advisory locks only bind programs that ask
for them; a program that writes without locking is caught by the
size/mtime/inode checks :func:`~tagger.tags.write_tags` makes just before
its rename instead. On systems without ``fcntl`` (Windows) locking is a
no-op.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_WAIT = 5.0          # seconds to wait for another process's lock
_POLL = 0.02


class Locked(Exception):
    """Another process holds a lock on the file."""


def _busy(e: OSError) -> bool:
    return e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK)


def _try_lock(fd: int) -> bool:
    """Exclusive ``flock`` on ``fd``, taken only when no other process holds
    an exclusive POSIX lock on the file either."""
    try:
        # A shared POSIX lock conflicts only with another process's exclusive
        # one. It is a probe, dropped at once (and taken before the flock,
        # which NFS emulates with a POSIX lock): POSIX locks belong to the
        # process and vanish when any descriptor of the file is closed, as
        # mutagen and shutil do.
        fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.lockf(fd, fcntl.LOCK_UN)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if _busy(e):
            return False
        raise
    return True


def lock_fd(fd: int, wait: float | None = None) -> None:
    """Lock the open file ``fd`` (see :func:`_try_lock`), waiting up to
    ``wait`` seconds (default :data:`LOCK_WAIT`); raises :class:`Locked`."""
    if fcntl is None:  # pragma: no cover
        return
    deadline = time.monotonic() + (LOCK_WAIT if wait is None else wait)
    while not _try_lock(fd):
        if time.monotonic() >= deadline:
            raise Locked("file is locked by another process")
        time.sleep(_POLL)


@contextmanager
def locked(path: str, wait: float | None = None) -> Iterator[int]:
    """Hold an exclusive lock on ``path`` (opened read-only); yields the descriptor.

    The lock belongs to the file (inode) opened: a caller that is about to
    replace ``path`` should check, once locked, that ``path`` still names
    that inode (``os.fstat(fd).st_ino``).
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0))
    try:
        lock_fd(fd, wait)
        yield fd
    finally:
        os.close(fd)  # releases the lock


def remove_if_unlocked(path: str) -> bool:
    """Delete ``path`` unless another process holds a ``flock`` on it (a
    temporary file still being written); True when it was removed."""
    if fcntl is None:  # pragma: no cover - no advisory locks (Windows)
        os.unlink(path)
        return True
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if _busy(e):
                return False
            raise
        # Still the file we locked (not one created under the same name since)?
        if os.fstat(fd).st_ino != os.lstat(path).st_ino:
            return False
        os.unlink(path)
        return True
    finally:
        os.close(fd)
