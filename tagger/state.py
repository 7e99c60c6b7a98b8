"""Resume state: which files were already analysed, by which models.

A small SQLite database (in the platformdirs cache, or ``--state``) keyed by
path, with the file's size and mtime and the model ids; a re-run skips a file
whose entry matches, ``--force`` redoes it. SQLite's locking makes
concurrent runs safe (a database busy with another run is waited for, never
mistaken for a damaged one); a damaged database is moved aside and started
afresh. A path that is not valid UTF-8 (bytes a Linux file name may hold)
is stored as a BLOB of its bytes, so it never collides with a text path.

A second table remembers files that failed for a lasting reason (see
:mod:`tagger.failures`) with their size, mtime and ctime: they are skipped
until the file changes (ctime also moves on ``chmod``, so making a read-only
file writable retries it) or ``--force``. Databases without it get it on open.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

ENV_STATE = "KEYCHORDS_STATE"


def default_state_path() -> Path:
    env = os.environ.get(ENV_STATE)
    if env:
        return Path(env)
    import platformdirs
    return Path(platformdirs.user_cache_dir("keychords", appauthor=False)) / "state.sqlite"


def file_stat(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


class State:
    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path else default_state_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = self._open()
        except sqlite3.OperationalError:
            raise  # busy, locked, unwritable: not damage
        except sqlite3.DatabaseError:
            self.path.replace(self.path.with_suffix(f".corrupt-{int(time.time())}"))
            self.db = self._open()

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        # No fsync per mark: in WAL mode a crash of the program loses nothing and a
        # power cut at worst the last marks, which only means analysing those again.
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE IF NOT EXISTS done (path TEXT PRIMARY KEY, size INTEGER,"
                   " mtime_ns INTEGER, models TEXT, finished REAL)")
        db.execute("CREATE TABLE IF NOT EXISTS failed (path TEXT PRIMARY KEY, size INTEGER,"
                   " mtime_ns INTEGER, ctime_ns INTEGER, reason TEXT, failed REAL)")
        db.execute("SELECT count(*) FROM done").fetchone()
        return db

    @staticmethod
    def _key(path: str) -> str | bytes:
        key = os.path.abspath(path)
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:  # undecodable bytes in the name (surrogateescape)
            return os.fsencode(key)
        return key

    @staticmethod
    def _models(models: dict[str, str]) -> str:
        return ",".join(f"{k}={v}" for k, v in sorted(models.items()))

    def is_done(self, path: str, models: dict[str, str]) -> bool:
        try:
            size, mtime = file_stat(path)
        except OSError:
            return False
        row = self.db.execute("SELECT size, mtime_ns, models FROM done WHERE path = ?",
                              (self._key(path),)).fetchone()
        return row is not None and row == (size, mtime, self._models(models))

    def mark_done(self, path: str, models: dict[str, str],
                  stat: tuple[int, int] | None = None) -> None:
        """Remember ``path`` as done, as it is now, or as ``stat = (size,
        mtime_ns)`` (what the process that wrote it saw)."""
        try:
            size, mtime = stat if stat is not None else file_stat(path)
        except OSError:  # gone (or renamed) since it was tagged: nothing to remember
            return
        self.db.execute("INSERT OR REPLACE INTO done VALUES (?, ?, ?, ?, ?)",
                        (self._key(path), size, mtime, self._models(models), time.time()))
        self.db.execute("DELETE FROM failed WHERE path = ?", (self._key(path),))

    def mark_failed(self, path: str, reason: str) -> None:
        """Remember that ``path``, as it is now, failed for ``reason``."""
        try:
            st = os.stat(path)
        except OSError:
            return
        self.db.execute("INSERT OR REPLACE INTO failed VALUES (?, ?, ?, ?, ?, ?)",
                        (self._key(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, reason,
                         time.time()))

    def failed_before(self, path: str) -> str | None:
        """The reason ``path`` failed before, if it has not changed since."""
        try:
            st = os.stat(path)
        except OSError:
            return None
        row = self.db.execute("SELECT size, mtime_ns, ctime_ns, reason FROM failed"
                              " WHERE path = ?", (self._key(path),)).fetchone()
        if row is None or row[:3] != (st.st_size, st.st_mtime_ns, st.st_ctime_ns):
            return None
        return row[3]

    def forget(self, path: str) -> None:
        for table in ("done", "failed"):
            self.db.execute(f"DELETE FROM {table} WHERE path = ?", (self._key(path),))

    def close(self) -> None:
        self.db.close()
