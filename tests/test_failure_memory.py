"""Files that failed for a lasting reason (not audio, read-only, cannot be
tagged) are skipped, with that reason, until they change or --force;
transient failures (a lock held by another process) are retried."""

import json
import os
import sqlite3
import time

import pytest

from tagger import cli, locking
from tagger.failures import is_lasting
from tagger.state import State
from tests.audio_fixtures import make_audio_file
from test_safety import SECONDS, TINY_ARGS, lock_held, tiny_env, tiny_models  # noqa: F401


@pytest.fixture
def lib(tiny_env, monkeypatch):
    monkeypatch.setattr(locking, "LOCK_WAIT", 0.2)
    lib = tiny_env / "lib"
    lib.mkdir()
    (lib / "notes.flac").write_text("just text\n" * 100)
    os.chmod(make_audio_file(lib / "read-only.ogg", "ogg", seconds=SECONDS), 0o444)
    make_audio_file(lib / "locked.flac", "flac", seconds=SECONDS)
    make_audio_file(lib / "good.wav", "wav", seconds=SECONDS)
    return lib


def tag(capsys, lib, *extra):
    """exit code, {file name: (status, error)}, stderr lines."""
    code = cli.main(["tag", str(lib), "--json", "--workers", "0", *TINY_ARGS, *extra])
    out = capsys.readouterr()
    rows = {os.path.basename(r["path"]): (r["status"], r["error"])
            for r in map(json.loads, out.out.splitlines())}
    return code, rows, out.err.splitlines()


@pytest.mark.slow
def test_lasting_failures_are_skipped_until_the_file_changes(lib, capsys):
    with lock_held(lib / "locked.flac", "flock-ex"):
        code, rows, _ = tag(capsys, lib)
        assert code == 1 and rows["good.wav"] == ("ok", None)
        assert rows["notes.flac"] == ("failed", "not an audio file")
        assert rows["read-only.ogg"] == ("failed", "permission denied: the file is read-only")
        assert rows["locked.flac"][0] == "failed" and "locked" in rows["locked.flac"][1]

        code, rows, err = tag(capsys, lib)
    assert code == 1
    for name, reason in (("notes.flac", "not an audio file"),
                         ("read-only.ogg", "permission denied: the file is read-only")):
        why = f"failed before: {reason}; --force to retry"
        assert rows[name] == ("skipped", why)
        assert [ln for ln in err if name in ln] == [f"keychords: {lib / name}: skipped ({why})"]
    assert rows["locked.flac"][0] == "failed"                    # transient: tried again
    assert "1 analysed before, 2 failed before; --force to redo" in err[-1]

    code, rows, _ = tag(capsys, lib)                              # the lock is gone
    assert rows["locked.flac"] == ("ok", None) and rows["notes.flac"][0] == "skipped"
    assert tag(capsys, lib, "--force")[1]["notes.flac"] == ("failed", "not an audio file")
    os.chmod(lib / "read-only.ogg", 0o644)                        # fixed: retried
    (lib / "notes.flac").write_text("still text\n" * 100)         # changed: retried
    code, rows, _ = tag(capsys, lib)
    assert rows["read-only.ogg"] == ("ok", None)
    assert rows["notes.flac"] == ("failed", "not an audio file")


def test_failure_reasons_that_last():
    assert is_lasting("not an audio file") and is_lasting("empty file (0 bytes)")
    assert is_lasting("cannot be tagged: mutagen writes no tags into AC3 files")
    assert is_lasting("permission denied: the file is read-only")
    assert not is_lasting("file is locked by another process (waited 5 s)")
    assert not is_lasting("file changed since it was analysed: /a.flac")
    assert not is_lasting("analysis failed (RuntimeError: CUDA out of memory)")


def test_state_without_the_failed_table_keeps_working(tmp_path):
    """A database written before failures were remembered opens, keeps its
    done marks and gains the new table."""
    song = tmp_path / "a.wav"
    song.write_bytes(b"x" * 10)
    st = os.stat(song)
    db = sqlite3.connect(tmp_path / "old.sqlite")
    db.execute("CREATE TABLE done (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER,"
               " models TEXT, finished REAL)")
    db.execute("INSERT INTO done VALUES (?, ?, ?, ?, ?)",
               (str(song), st.st_size, st.st_mtime_ns, "chord=c", time.time()))
    db.commit()
    db.close()
    state = State(tmp_path / "old.sqlite")
    assert state.is_done(str(song), {"chord": "c"}) and state.failed_before(str(song)) is None
    state.mark_failed(str(song), "not an audio file")
    assert state.failed_before(str(song)) == "not an audio file"
    state.mark_done(str(song), {"chord": "c"})                   # a success clears it
    assert state.failed_before(str(song)) is None
    state.close()
