"""Atomic file replacement: temporary file, fsync, rename, fsync the directory.

The temporary file lies next to its destination, hidden and named
``.NAME.XXXXXXXX.keychords-tmp`` (:data:`TMP_SUFFIX`), so that a crash
leaves either the old file or the new one, plus at worst a stale temporary
file that :func:`tagger.tags.remove_tmp_files` recognises. Torch-free.
"""

from __future__ import annotations

import os
import secrets
import stat
from typing import Callable

TMP_SUFFIX = ".keychords-tmp"
_PATH_MAX = 4096
_TRIES = 100


def create_tmp(directory, base: str, mode: int = 0o666) -> tuple[int, str]:
    """``(fd, path)`` of a new, empty ``.BASE.XXXXXXXX.keychords-tmp`` in
    ``directory``, opened read-write with ``mode`` (less the umask). BASE is
    cut to at most 64 bytes, less when the path would pass PATH_MAX."""
    d = os.fsencode(directory)
    room = _PATH_MAX - 1 - len(d) - 1 - len(b"..XXXXXXXX" + TMP_SUFFIX.encode())
    name = os.fsencode(base)[:max(0, min(64, room))]
    for _ in range(_TRIES):
        tmp = os.path.join(d, b"." + name + b"." + secrets.token_hex(4).encode()
                           + TMP_SUFFIX.encode())
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, mode)
        except FileExistsError:
            continue
        return fd, os.fsdecode(tmp)
    raise FileExistsError(f"cannot create a temporary file in {os.fsdecode(d)}")


def fsync_file(path) -> None:
    """Flush ``path``'s data and metadata to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(directory) -> None:
    """Flush ``directory`` (a rename in it) to disk, where the system allows it."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # e.g. Windows cannot open directories
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path, write: Callable[[str], None], *, keep_mode: bool = True,
                 open_tmp: Callable[[str, str], tuple[int, str]] | None = None) -> None:
    """Replace ``path`` by what ``write(tmp_path)`` writes, atomically.

    ``write`` fills the temporary file (by path; it exists, empty). Then it
    gets ``path``'s permission bits when ``keep_mode`` and ``path`` exists (a
    new file has 0666 less the umask), is fsynced, renamed over ``path``, and
    the directory is fsynced. On any failure the temporary file is removed,
    ``path`` is left as it was and the error propagates. ``open_tmp(directory,
    base)`` replaces :func:`create_tmp`; its descriptor stays open (with any
    lock on it) until the temporary file is gone.
    """
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    fd, tmp = (open_tmp or create_tmp)(directory, os.path.basename(path))
    try:
        write(tmp)
        if keep_mode:
            _copy_mode(path, tmp)
        fsync_file(tmp)
        os.replace(tmp, path)
        tmp = None
        fsync_dir(directory)
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        os.close(fd)


def _copy_mode(src: str, dst: str) -> None:
    try:
        os.chmod(dst, stat.S_IMODE(os.stat(src).st_mode))
    except FileNotFoundError:
        pass
