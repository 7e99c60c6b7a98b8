"""Never lose or corrupt a user's file (issue 7): SIGKILL and concurrent runs.

2. A crash never breaks a file: ``test_sigkill_during_writes`` kills a
   process that tags 200 files of every format in a loop (thousands of
   writes: most kills land inside ``write_tags``), ``test_sigkill_cli``
   kills the real ``keychords tag`` at random moments while it tags 200
   files, then lets a last run finish. After every kill every file is the
   original byte for byte or the fully tagged version (all three fields of
   one write, the audio packets, raw audio bytes and decoded samples and
   every other tag unchanged), and the next run removes the temporary files
   the kill left. ``benchmarks/soak_kill.py`` runs the same for longer.
5. Concurrent runs: ``test_concurrent_cli_runs`` (two ``keychords tag`` on
   one library and one state database at once: both succeed, every file is
   written by exactly one of them, each field present once, the state
   database complete and sound), ``test_concurrent_writers_and_cleanup``
   (writers in tight loops on the same files while another process keeps
   removing stale temporary files: no write fails except as "changed", no
   file breaks).

The kill moments are random (seeded, but timing makes them land anywhere);
the assertions hold for any moment.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import mutagen
import pytest
from test_safety import (
    REPO,
    TINY_ARGS,
    TINY_TAGS,
    VARIANTS,
    Original,
    check_intact,
    child_env,
    cli_command,
    temp_files,
    templates,
    tiny_models,
)

from tagger.state import State
from tagger.tags import TMP_SUFFIX, remove_tmp_files

__all__ = ["templates", "tiny_models"]   # fixtures used here
MODELS = {"chord": "safety-chord", "key": "safety-key"}


def make_library(templates, directory: Path, n: int, folders: int = 1
                 ) -> dict[str, Original]:
    """``n`` files of every format and tag variant, round robin, in ``folders``
    subfolders; path -> what it was."""
    out = {}
    for i in range(n):
        fmt, variant = VARIANTS[i % len(VARIANTS)]
        src, orig = templates[(fmt, variant)]
        sub = directory / f"cd{i % folders}" if folders > 1 else directory
        sub.mkdir(parents=True, exist_ok=True)
        p = sub / f"{i:03d}-{fmt}-{variant}{src.suffix}"
        shutil.copyfile(src, p)
        out[str(p)] = orig
    return out


def _stat(path: str):
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns


@dataclass
class Soak:
    """What a kill loop did and found."""
    kills: int = 0
    runs: int = 0                 # processes started
    killed_mid_write: int = 0     # kills that landed inside write_tags
    killed_file_old: int = 0      # ... leaving that file as it was
    killed_file_new: int = 0      # ... after the rename: fully written
    temp_files_left: int = 0      # temporary files found right after a kill
    temp_files_removed: int = 0   # ... and removed by the next run's cleanup
    writes: int = 0               # completed write_tags calls
    checks: int = 0               # file states verified
    broken: list[str] = field(default_factory=list)

    def line(self) -> str:
        where = (f" (file left old {self.killed_file_old}, new {self.killed_file_new})"
                 if self.killed_file_old + self.killed_file_new else "")
        return (f"runs {self.runs}, kills {self.kills}, killed mid-write "
                f"{self.killed_mid_write}{where}, temp files left by kills {self.temp_files_left} "
                f"(removed by the next run {self.temp_files_removed}), completed writes "
                f"{self.writes}, file states checked {self.checks}, files broken "
                f"{len(self.broken)}")


def _check(soak: Soak, path: str, orig: Original, want) -> str | None:
    soak.checks += 1
    try:
        return check_intact(path, orig, want=want)
    except Exception as e:  # noqa: BLE001 - any problem is a broken file
        soak.broken.append(f"{path}: {type(e).__name__}: {e}"[:500])
        return None


# --- write_tags in a tight loop, killed ---------------------------------------------

WRITER = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
import tagger.decode                        # imports done before "ready",
from tagger import tags                     # as in a running `keychords tag`
tags._mutagen_kinds()
d, passes, offset = sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
names = sorted(n for n in os.listdir(d) if not n.startswith("."))
names = names[offset:] + names[:offset]
out = sys.stdout
out.write("ready\n"); out.flush()
for values in passes:
    for n in names:
        out.write("start " + n + "\n"); out.flush()
        tags.write_tags(os.path.join(d, n), values, overwrite=True)
        out.write("done " + n + "\n"); out.flush()
"""


def pass_values(k: int) -> dict[str, str]:
    """A complete, recognisable set of values per pass; their size varies so
    that some writes fit the tag's padding and others move the audio."""
    return {"initial_key": "CDEFGAB"[k % 7] + "m",
            "chords": " ".join(["Am F C G"] * (1 + k % 9)) + f" #{k}",
            "progression": f"vi IV I V #{k}"}


def soak_write_tags(templates, directory: Path, seconds: float, n_files: int = 200,
                    min_kills: int = 10, seed: int = 0) -> Soak:
    """Kill a process writing tags to ``n_files`` files in a loop, again and
    again, for about ``seconds`` (and at least ``min_kills`` times); check
    every file each kill touched."""
    rng = random.Random(seed)
    files = make_library(templates, directory, n_files)
    by_name = {os.path.basename(p): p for p in files}
    issued: dict[str, dict[str, str]] = {}        # chords value -> its complete set
    seen = {p: _stat(p) for p in files}
    soak = Soak()
    deadline = time.monotonic() + seconds
    k = 0
    while time.monotonic() < deadline or soak.kills < min_kills:
        before = dict(seen)
        passes = [pass_values(k + i) for i in range(40)]
        k += 40
        for v in passes:
            issued[v["chords"]] = v
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(REPO), str(directory),
                                 json.dumps(passes), str(rng.randrange(n_files))],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        soak.runs += 1
        assert proc.stdout.readline() == "ready\n", proc.stderr.read()
        time.sleep(rng.uniform(0.0, 0.4))
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate()
        assert proc.returncode == -signal.SIGKILL, err   # it was still writing
        soak.kills += 1
        lines = out.splitlines()
        soak.writes += sum(1 for ln in lines if ln.startswith("done "))
        killed = None
        if lines and lines[-1].startswith("start "):
            soak.killed_mid_write += 1
            killed = by_name[lines[-1][6:]]

        soak.temp_files_left += len(temp_files(directory))
        for p, orig in files.items():
            seen[p] = _stat(p)
            if seen[p] != before[p] or p == killed:
                _check(soak, p, orig, want=lambda got: issued.get(got.get("chords")) == got)
        if killed is not None:
            if seen[killed] == before[killed]:
                soak.killed_file_old += 1
            else:
                soak.killed_file_new += 1
        # what the next `keychords tag` does first (pipeline.run)
        soak.temp_files_removed += len(remove_tmp_files(directory))
        if temp_files(directory):
            soak.broken.append(f"temporary files not removed: {temp_files(directory)}")
    for p, orig in files.items():                  # everything, once more
        _check(soak, p, orig, want=lambda got: issued.get(got.get("chords")) == got)
    return soak


@pytest.mark.slow
def test_sigkill_during_writes(templates, tmp_path):
    soak = soak_write_tags(templates, tmp_path / "lib", seconds=15, seed=1)
    print(soak.line())
    assert not soak.broken, soak.broken[:5]
    assert soak.kills >= 10 and soak.killed_mid_write >= soak.kills // 2, soak.line()
    assert soak.temp_files_removed == soak.temp_files_left


# --- the real CLI, killed ---------------------------------------------------------------

class Child:
    """A `keychords tag` process whose stdout lines are collected as they come."""

    def __init__(self, args, env):
        self.proc = subprocess.Popen(cli_command(*args), env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.lines: list[bytes] = []
        self.first = threading.Event()
        self.err = b""
        self._out = threading.Thread(target=self._read, daemon=True)
        self._err = threading.Thread(target=self._read_err, daemon=True)
        self._out.start()
        self._err.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)
            self.first.set()
        self.first.set()

    def _read_err(self):
        self.err = self.proc.stderr.read()

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        return self.wait()

    def wait(self, timeout=600):
        code = self.proc.wait(timeout)
        self._out.join(10)
        self._err.join(10)
        return code

    def rows(self) -> list[dict]:
        return [json.loads(x) for x in self.lines if x.endswith(b"\n")]


def _wait_for_a_write(directory: Path, proc, limit: float) -> bool:
    """Poll until a temporary file shows that a write is under way."""
    dirs = [directory, *(p for p in directory.iterdir() if p.is_dir())]
    end = time.monotonic() + limit
    while time.monotonic() < end and proc.poll() is None:
        for d in dirs:
            with os.scandir(d) as it:
                if any(e.name.endswith(TMP_SUFFIX) for e in it):
                    return True
        time.sleep(0.0005)
    return False


def soak_cli(templates, tiny_models, directory: Path, seconds: float, n_files: int = 200,
             seed: int = 0, max_kill_delay: float = 2.0, min_kills: int = 2
             ) -> tuple[Soak, dict, list]:
    """Kill `keychords tag` over ``n_files`` files for about ``seconds``, then
    let a last run finish (at least ``min_kills`` kills first, unless a run
    finishes before it is killed); returns the soak, the files and the last
    run's rows.

    Half of the kills come at a random moment, half just after a temporary
    file appears (a random 0-10 ms into a write: copy, tag, fsync, verify,
    rename or the folder's fsync)."""
    rng = random.Random(seed)
    lib = directory / "lib"
    files = make_library(templates, lib, n_files, folders=4)
    state = directory / "state.sqlite"
    env = child_env(tiny_models, state)
    args = ["tag", lib, "--workers", "0", "--json", "-q", *TINY_ARGS]
    seen = {p: _stat(p) for p in files}
    soak = Soak()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline or soak.kills < min_kills:
        child = Child(args, env)
        soak.runs += 1
        assert child.first.wait(300), "the CLI printed nothing"
        if rng.random() < 0.5 and _wait_for_a_write(lib, child.proc, 2 * max_kill_delay):
            time.sleep(rng.uniform(0.0, 0.01))
        else:
            time.sleep(rng.uniform(0.0, max_kill_delay))
        code = child.kill()
        rows = child.rows()
        soak.writes += sum(bool(r["written"]) for r in rows)
        assert all(r["status"] in ("ok", "skipped") for r in rows), \
            [r for r in rows if r["status"] == "failed"][:3]
        if code != -signal.SIGKILL:                 # it finished first
            assert code == 0, child.err.decode(errors="replace")
            break
        soak.kills += 1
        left = temp_files(lib)
        soak.temp_files_left += len(left)
        soak.killed_mid_write += bool(left)      # (a kill elsewhere in a write leaves none)
        for p, orig in files.items():
            now = _stat(p)
            if now != seen[p]:
                seen[p] = now
                _check(soak, p, orig, want=TINY_TAGS)
        # the next run removes the temporary files (checked after the last one)
    last = Child(args, env)
    soak.runs += 1
    assert last.wait() == 0, last.err.decode(errors="replace")
    soak.writes += sum(bool(r["written"]) for r in last.rows())
    soak.temp_files_removed = soak.temp_files_left - len(temp_files(lib))
    for p, orig in files.items():
        if _check(soak, p, orig, want=TINY_TAGS) != "tagged":
            soak.broken.append(f"{p}: not tagged after the last run")
    return soak, files, last.rows()


@pytest.mark.slow
def test_sigkill_cli(templates, tiny_models, tmp_path):
    soak, files, rows = soak_cli(templates, tiny_models, tmp_path, seconds=12, seed=2)
    print(soak.line())
    assert not soak.broken, soak.broken[:5]
    assert soak.kills >= 2, soak.line()
    assert not temp_files(tmp_path / "lib")        # the last run cleaned up
    assert sorted(r["path"] for r in rows) == sorted(files)
    assert all(r["status"] in ("ok", "skipped") for r in rows)
    state = State(tmp_path / "state.sqlite")       # every file remembered, as it is now
    assert all(state.is_done(p, MODELS) for p in files)
    state.close()


# --- concurrent runs ------------------------------------------------------------------

def our_field_counts(path) -> dict[str, int]:
    """How many times each keychords field is stored in ``path`` (1 = once)."""
    f = mutagen.File(path)
    t = f.tags
    if isinstance(t, mutagen.id3.ID3):
        txxx = [fr.desc.upper() for fr in t.getall("TXXX")]
        return {"initial_key": len(t.getall("TKEY")), "chords": txxx.count("CHORDS"),
                "progression": txxx.count("PROGRESSION")}
    if isinstance(t, mutagen.mp4.MP4Tags):
        keys = {"initial_key": "initialkey", "chords": "chords", "progression": "progression"}
        return {f: sum(len(v) for k, v in t.items()
                       if k.lower() == "----:com.apple.itunes:" + n) for f, n in keys.items()}
    if isinstance(t, mutagen.apev2.APEv2):
        return {f: len(list(t[n])) if n in t else 0 for f, n in
                (("initial_key", "INITIALKEY"), ("chords", "CHORDS"),
                 ("progression", "PROGRESSION"))}
    keys = [k.upper() for k, _ in t]
    return {"initial_key": keys.count("INITIALKEY"), "chords": keys.count("CHORDS"),
            "progression": keys.count("PROGRESSION")}


@pytest.mark.slow
def test_concurrent_cli_runs(templates, tiny_models, tmp_path):
    lib = tmp_path / "lib"
    files = make_library(templates, lib, 40, folders=2)
    env = child_env(tiny_models, tmp_path / "state.sqlite")
    args = ["tag", lib, "--workers", "0", "--json", "-q", *TINY_ARGS]
    a, b = Child(args, env), Child(args, env)
    codes = (a.wait(), b.wait())
    assert codes == (0, 0), (a.err[-2000:], b.err[-2000:])
    rows_a, rows_b = a.rows(), b.rows()
    for rows in (rows_a, rows_b):
        assert sorted(r["path"] for r in rows) == sorted(files)
        assert all(r["status"] in ("ok", "skipped") for r in rows)
    writers = {p: 0 for p in files}
    for r in rows_a + rows_b:
        writers[r["path"]] += bool(r["written"])
    assert set(writers.values()) == {1}, writers     # each file written by exactly one run
    for p, orig in files.items():
        assert check_intact(p, orig, want=TINY_TAGS) == "tagged"
        assert our_field_counts(p) == {"initial_key": 1, "chords": 1, "progression": 1}, p
    assert not temp_files(lib)
    db = sqlite3.connect(tmp_path / "state.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert db.execute("SELECT count(*) FROM done").fetchone() == (len(files),)
    db.close()
    state = State(tmp_path / "state.sqlite")
    assert all(state.is_done(p, MODELS) for p in files)
    state.close()


HAMMER = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
from tagger import tags
d, role, seconds = sys.argv[2], sys.argv[3], float(sys.argv[4])
names = sorted(n for n in os.listdir(d) if not n.startswith("."))
end = time.monotonic() + seconds
errors, writes, k = {}, 0, 0
while time.monotonic() < end:
    if role == "cleaner":
        tags.remove_tmp_files(d)
        continue
    values = {"initial_key": role, "chords": role + " " + str(k), "progression": role}
    k += 1
    for n in names:
        try:
            writes += bool(tags.write_tags(os.path.join(d, n), values, overwrite=True))
        except tags.FileChangedError:
            errors["changed"] = errors.get("changed", 0) + 1
        except tags.TagError as e:
            errors[str(e)] = errors.get(str(e), 0) + 1
print(json.dumps([writes, errors]))
"""


def test_concurrent_writers_and_cleanup(templates, tmp_path):
    """Two processes rewrite the same 18 files as fast as they can while a
    third keeps running the start-of-run cleanup: the per-file lock keeps the
    writers apart, the temporary-file lock keeps the cleanup off live files."""
    lib = tmp_path / "lib"
    files = make_library(templates, lib, len(VARIANTS))
    procs = [subprocess.Popen([sys.executable, "-c", HAMMER, str(REPO), str(lib), role, "4"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for role in ("A", "B", "cleaner")]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [r[1][-1000:] for r in results]
    for out, _ in results[:2]:
        writes, errors = json.loads(out)
        assert writes > 0 and set(errors) <= {"changed"}, errors
    for p, orig in files.items():
        assert check_intact(p, orig, want=lambda got: got["initial_key"] in ("A", "B")
                            and got["progression"] == got["initial_key"]
                            and got["chords"].startswith(got["initial_key"] + " "))
        assert our_field_counts(p) == {"initial_key": 1, "chords": 1, "progression": 1}
    assert not temp_files(lib)


def test_kill_holding_the_lock_frees_it(templates, tmp_path):
    """A writer killed while it holds a file's lock does not block the file:
    the kernel drops the lock with the process."""
    lib = tmp_path / "lib"
    files = make_library(templates, lib, 1)
    (p, orig), = files.items()
    code = ("import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "time.sleep(600)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, p], stdout=subprocess.PIPE)
    assert holder.stdout.readline() == b"locked\n"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    from tagger.tags import write_tags
    t = time.monotonic()
    assert write_tags(p, TINY_TAGS) == TINY_TAGS
    assert time.monotonic() - t < 2
    assert check_intact(p, orig, want=TINY_TAGS) == "tagged"
    assert TMP_SUFFIX not in "".join(os.listdir(lib))


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(x) for x in fh.read().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[-1][:1] not in ("Z", "X")
    except OSError:
        return False


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux /proc")
@pytest.mark.slow
def test_sigkill_leaves_no_decode_workers(templates, tiny_models, tmp_path):
    """`keychords tag --workers 2` killed mid-run: its decoding processes,
    which SIGKILL gives no chance to stop, notice and exit by themselves."""
    lib = tmp_path / "lib"
    files = make_library(templates, lib, 120)
    env = child_env(tiny_models, tmp_path / "state.sqlite")
    child = Child(["tag", lib, "--workers", "2", "--json", "-q", *TINY_ARGS], env)
    assert child.first.wait(300), child.err
    workers = [c for c in _children(child.proc.pid) if _alive(c)]
    assert child.kill() == -signal.SIGKILL
    assert workers, "no decoding worker processes found"
    deadline = time.monotonic() + 15
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [w for w in workers if _alive(w)]
    for w in left:                                   # do not leak them from the test
        os.kill(w, signal.SIGKILL)
    assert not left, "decoding workers outlived the killed run"
    for p, orig in files.items():
        assert check_intact(p, orig, want=TINY_TAGS) in ("original", "tagged")
