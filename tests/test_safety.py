"""Never lose or corrupt a user's file (issue 7): audio, changed files, bad
input, malformed tags.

Guarantee -> tests (the SIGKILL and concurrency ones, 2 and 5, are in
``tests/test_safety_kill.py``; a longer soak is ``benchmarks/soak_kill.py``):

1. Tagging never changes the audio: ``test_audio_never_changes`` (every
   format and tag variant, four writes that shrink and grow the tag: demuxed
   audio packets, the raw audio bytes where the container keeps them in
   place, every decoded sample, every tag we do not own),
   ``test_huge_artwork_kept`` (multi-MB cover art, every format); more in
   ``tests/test_tags.py``.
3. A file that changed while it was analysed is not overwritten with stale
   results, is reported and retried: ``test_changed_while_analysed``,
   ``test_changed_but_already_tagged_is_skipped``.
4. Bad input never stops a run, is never written to, and gets one line
   ``keychords: <path>: <reason>``: ``test_bad_inputs`` (zero-length,
   not audio, truncated and corrupted files of every format, a folder named
   like a file, read-only files, 255-byte names, multi-MB tags, files locked
   by another process), ``test_folder_named_like_a_file``,
   ``test_permissions_enforced`` (the CLI with permission bits enforced:
   unreadable files and folders, read-only files and folders),
   ``test_non_utf8_names``, ``test_long_paths``, ``test_lock_*``,
   ``test_damaged_mp3_start``.
7. Malformed tags never crash a reader or a run: ``test_fuzzed_tag_readers``
   (hypothesis, every format, bounded and derandomized),
   ``test_search_and_tag_over_fuzzed_files``.

(Guarantee 6, the distillation cache, is tested with the distillation code.)

Models: analysis here uses two tiny constant-output models registered below
(``safety-chord``, ``safety-key``) so that the real CLI spends its time in
decoding, tag reading and writing rather than in the networks; every file
gets ``initial_key=C chords=C progression=I``.

Permissions: tests usually run as root, which bypasses permission bits.
keychords treats a file without any write bit as read-only even for root
(tested here as root); real permission checks (unreadable files, read-only
folders) run the CLI without the capabilities that let root bypass them
(CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), and are skipped where that is
impossible.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import av
import mutagen
import numpy as np
import pytest
import torch
from audio_fixtures import (
    ALL_FORMATS,
    TAG_KIND,
    add_existing_tags,
    decode_samples,
    make_audio_file,
    suffix,
)
import extra_formats
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_tags import mp3_payload, snapshot
from torch import nn

from model_zoo import registry
from model_zoo.registry import save_model
from tagger import cli, locking, pipeline
from tagger.tags import (
    AUDIO_FORMATS,
    TMP_SUFFIX,
    TagError,
    audio_format,
    read_tags,
    tags_to_write,
    write_tags,
)

REPO = Path(__file__).resolve().parent.parent
OURS = {"initial_key": "Am", "chords": "Am F C G", "progression": "vi IV I V"}
GROWN = {"initial_key": "F#m", "chords": ("Am F C G " * 300).strip(),
          "progression": ("vi IV I V " * 300).strip()}
TINY_TAGS = {"initial_key": "C", "chords": "C", "progression": "I"}
TINY_ARGS = ["--chord-model", "safety-chord", "--key-model", "safety-key"]
SECONDS = 3.5            # the engine needs 3 s


# --- tiny models ----------------------------------------------------------------

# One octave high up (A6..G#7): no decimation stages, next to nothing to compute.
TINY_FEATURES = {"sample_rate": 22050, "hop_length": 2048, "fmin": 1760.0, "n_bins": 12,
                 "bins_per_octave": 12, "harmonics": [1], "scaling": "magnitude"}


class Const(nn.Module):
    """Always class ``index`` of ``size``, whatever the input: per frame for a
    chord model, per segment for a key model."""

    batches_tracks = False

    @staticmethod
    def receptive_field() -> None:
        return None

    def __init__(self, task: str = "chord", size: int = 170, index: int = 0):
        super().__init__()
        self.task = task
        self.config = {"task": task, "size": size, "index": index}
        self.logits = nn.Parameter(torch.nn.functional.one_hot(torch.tensor(index), size) * 10.0)

    def forward(self, x):
        if self.task == "key":
            return {"key": self.logits.expand(x.shape[0], -1)}
        return {"chord": self.logits.expand(x.shape[0], x.shape[-1], -1)}


# Registered by importing this module (as CLI subprocesses do, see cli_child).
registry.ARCHITECTURES["safety-const"] = f"{__name__}:Const"


def install_tiny_models(directory) -> Path:
    directory = Path(directory)
    for task, size in (("chord", 170), ("key", 24)):   # C major, always
        save_model(Const(task, size), f"safety-{task}", task=task, features=TINY_FEATURES,
                   directory=directory)
    return directory


def cli_child() -> int:
    """Entry point of CLI subprocesses (the tiny architectures are registered
    by importing this module)."""
    return cli.main(sys.argv[1:])


# Run the real CLI in a child process: python -c CHILD_CLI tag ...
CHILD_CLI = (f"import sys; sys.path[:0] = [{str(REPO)!r}, {str(REPO / 'tests')!r}]; "
             "import test_safety; sys.exit(test_safety.cli_child())")


def child_env(model_dir, state) -> dict:
    env = dict(os.environ, KEYCHORDS_MODEL_DIR=str(model_dir), KEYCHORDS_STATE=str(state),
               LC_ALL="C.UTF-8", PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONIOENCODING", None)
    return env


def cli_command(*args) -> list:
    return [sys.executable, "-c", CHILD_CLI, *args]


# --- what a file is, and whether it is still intact -------------------------------

def audio_packets(path) -> list:
    """Every demuxed packet of the first audio stream: timing and bytes."""
    with av.open(os.fspath(path)) as f:
        s = f.streams.audio[0]
        return [(p.pts, p.dts, bytes(p)) for p in f.demux(s) if p.size]


def audio_region(path, fmt: str) -> bytes | None:
    """The audio bytes, where the container keeps them in one place that a tag
    change does not rewrite (Ogg renumbers pages: there, the packets count)."""
    data = Path(path).read_bytes()
    if fmt == "mp3":
        return mp3_payload(path)
    if fmt == "flac":
        pos = data.index(b"fLaC") + 4
        while True:
            last, size = data[pos] & 0x80, int.from_bytes(data[pos + 1:pos + 4], "big")
            pos += 4 + size
            if last:
                return data[pos:]
    if fmt in ("wav", "aiff"):
        order, audio = ("little", b"data") if fmt == "wav" else ("big", b"SSND")
        pos = 12
        while pos + 8 <= len(data):
            size = int.from_bytes(data[pos + 4:pos + 8], order)
            if data[pos:pos + 4] == audio:
                return data[pos + 8:pos + 8 + size]
            pos += 8 + size + (size & 1)
        raise AssertionError("no audio chunk")
    if fmt == "wavpack":
        end = len(data)
        if data[end - 32:end - 24] == b"APETAGEX":           # APEv2 footer
            size, = struct.unpack("<I", data[end - 20:end - 16])
            flags, = struct.unpack("<I", data[end - 12:end - 8])
            end -= size + (32 if flags & (1 << 31) else 0)    # (with its header)
        return data[:end]
    if fmt in ("aac", "alac"):
        pos = 0
        while pos + 8 <= len(data):
            size, kind, head = int.from_bytes(data[pos:pos + 4], "big"), data[pos + 4:pos + 8], 8
            if size == 1:
                size, head = int.from_bytes(data[pos + 8:pos + 16], "big"), 16
            if kind == b"mdat":
                return data[pos + head:pos + size if size else len(data)]
            pos += size
        raise AssertionError("no mdat atom")
    return None


@dataclass
class Original:
    """A pristine file and everything about it that tagging must not change."""
    fmt: str
    data: bytes
    packets: list
    region: bytes | None
    samples: np.ndarray
    snap: dict

    @classmethod
    def of(cls, path, fmt: str) -> Original:
        return cls(fmt, Path(path).read_bytes(), audio_packets(path), audio_region(path, fmt),
                   decode_samples(path), snapshot(path))


def check_intact(path, orig: Original, want=None) -> str:
    """``"original"`` (byte for byte) or ``"tagged"``: keychords' tags as
    ``want`` says (a dict, or a predicate on read_tags' result), the audio
    (packets, raw bytes, every decoded sample) and every other tag as in
    ``orig``. Anything else fails the test."""
    if Path(path).read_bytes() == orig.data:
        return "original"
    got = read_tags(path)
    if want is not None:
        assert (want(got) if callable(want) else got == want), (path, got)
    assert audio_packets(path) == orig.packets, f"{path}: audio packets changed"
    if orig.region is not None:
        assert audio_region(path, orig.fmt) == orig.region, f"{path}: audio bytes changed"
    samples = decode_samples(path)
    assert samples.dtype == orig.samples.dtype and np.array_equal(samples, orig.samples), \
        f"{path}: decoded audio changed"
    assert other_tags(snapshot(path)) == other_tags(orig.snap), f"{path}: other tags changed"
    return "tagged"


def other_tags(snap: dict) -> dict:
    """A snapshot (tests/test_tags.py) in which "no tag at all" and "a tag
    holding only keychords' fields" (what tagging an untagged file gives) are
    the same thing."""
    if snap.get("tags") in (None, []):
        snap = {k: v for k, v in snap.items() if k not in ("version", "unknown", "vendor")}
        snap["tags"] = None
    return snap


def temp_files(directory) -> list[str]:
    return [os.path.join(r, n) for r, _, names in os.walk(directory)
            for n in names if n.endswith(TMP_SUFFIX)]


# Pristine files of every format: untagged, tagged (and ID3 v2.3 too).
VARIANTS = [(fmt, v) for fmt in ALL_FORMATS
            for v in (("plain", "v4", "v3") if TAG_KIND[fmt] == "id3" else ("plain", "tagged"))]


def build_templates(root: Path) -> dict[tuple[str, str], tuple[Path, Original]]:
    """One pristine file per (format, variant) in ``root``, with its Original."""
    out = {}
    for fmt, variant in VARIANTS:
        p = make_audio_file(root / f"{fmt}-{variant}{suffix(fmt)}", fmt, seconds=SECONDS)
        if variant != "plain":
            add_existing_tags(p, fmt, id3_version=3 if variant == "v3" else 4)
        out[(fmt, variant)] = (p, Original.of(p, fmt))
    return out


@pytest.fixture(scope="session")
def templates(tmp_path_factory) -> dict[tuple[str, str], tuple[Path, Original]]:
    return build_templates(tmp_path_factory.mktemp("safety-templates"))


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> Path:
    return install_tiny_models(tmp_path_factory.mktemp("safety-models"))


@pytest.fixture
def tiny_env(tiny_models, tmp_path, monkeypatch):
    monkeypatch.setenv("KEYCHORDS_MODEL_DIR", str(tiny_models))
    monkeypatch.setenv("KEYCHORDS_STATE", str(tmp_path / "state.sqlite"))
    return tmp_path


def place(templates, fmt, variant, dst) -> tuple[Path, Original]:
    src, orig = templates[(fmt, variant)]
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst, orig


def run_tag(capsys, *args) -> tuple[int, list[dict], list[str]]:
    """`keychords tag ARGS --json` in this process: exit code, rows, stderr lines."""
    code = cli.main(["tag", *map(str, args), "--json", "-q", "--workers", "0", *TINY_ARGS])
    out = capsys.readouterr()
    return code, [json.loads(x) for x in out.out.splitlines() if x.strip()], out.err.splitlines()


def assert_one_line_each(rows: list[dict], err: list[str]) -> None:
    """Each failed file has exactly one stderr line ``keychords: <path>: <reason>``
    (its reason one line); nothing else on stderr but notes."""
    failed = {r["path"]: r["error"] for r in rows if r["status"] == "failed"}
    for path, reason in failed.items():
        assert reason and "\n" not in reason
        mine = [ln for ln in err if ln.startswith(f"keychords: {path}: ")]
        assert mine == [f"keychords: {path}: {reason}"], (path, mine)
    others = [ln for ln in err if not any(ln.startswith(f"keychords: {p}: ") for p in failed)]
    assert all(ln.startswith("keychords: note: ") for ln in others), others


# --- 1. the audio never changes -----------------------------------------------------

@pytest.mark.parametrize("fmt,variant", VARIANTS)
def test_audio_never_changes(fmt, variant, templates, tmp_path):
    p, orig = place(templates, fmt, variant, tmp_path / ("song" + suffix(fmt)))
    expected = {}
    # write, grow the tag far past any padding (the audio moves), shrink it, change one field
    for values, overwrite in ((OURS, False), (GROWN, True), (OURS, True), ({"chords": "C"}, True)):
        assert write_tags(p, values, overwrite=overwrite)
        expected.update(values)
        assert check_intact(p, orig, want=expected) == "tagged"
    assert not temp_files(tmp_path)


def _big_art(size: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + random.Random(size).randbytes(size)


def add_huge_artwork(path, fmt: str, art: bytes) -> None:
    from mutagen.apev2 import BINARY, APEValue
    from mutagen.flac import Picture
    from mutagen.mp4 import MP4Cover
    f = mutagen.File(str(path))
    if f.tags is None:
        f.add_tags()
    kind = TAG_KIND[fmt]
    if kind == "id3":
        f.tags.add(mutagen.id3.APIC(encoding=3, mime="image/png", type=3, desc="huge", data=art))
    elif kind == "mp4":
        f.tags["covr"] = [MP4Cover(art, imageformat=MP4Cover.FORMAT_PNG)]
    elif kind == "ape":
        f.tags["Cover Art (Front)"] = APEValue(b"huge.png\x00" + art, BINARY)
    else:
        pic = Picture()
        pic.type, pic.mime, pic.desc, pic.data = 3, "image/png", "huge", art
        if fmt == "flac":
            f.add_picture(pic)
        else:
            import base64
            f.tags["METADATA_BLOCK_PICTURE"] = [base64.b64encode(pic.write()).decode("ascii")]
    f.save()


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_huge_artwork_kept(fmt, templates, tmp_path):
    """Multi-MB existing tags are read, kept byte for byte, and the audio with them."""
    p, _ = place(templates, fmt, "v4" if TAG_KIND[fmt] == "id3" else "tagged",
                 tmp_path / ("art" + suffix(fmt)))
    art = _big_art(3 << 20)
    add_huge_artwork(p, fmt, art)
    orig = Original.of(p, fmt)
    assert read_tags(p) == {}
    assert write_tags(p, OURS) == OURS
    assert check_intact(p, orig, want=OURS) == "tagged"   # the snapshot holds the art
    assert art in p.read_bytes() or fmt in ("ogg", "opus")  # (Ogg: base64, split in pages)


# --- 3. a file that changed while it was being analysed ------------------------------------

def _change_during_analysis(monkeypatch, change):
    """Make ``change(path)`` happen to every file after decoding, before the write."""
    from tagger.engine import Analyzer
    real = Analyzer.analyse

    def analyse(self, tracks):
        results = real(self, tracks)
        for t in tracks:
            change(t.path)
        return results
    monkeypatch.setattr(Analyzer, "analyse", analyse)


@pytest.mark.parametrize("how", ["appended", "touched", "rewritten", "replaced"])
def test_changed_while_analysed(how, templates, tiny_env, capsys, monkeypatch):
    from tagger.state import State
    lib = tiny_env / "lib"
    p, _ = place(templates, "flac", "tagged", lib / "song.flac")
    other, _ = templates[("mp3", "v4")]

    def change(path):
        st = os.stat(path)
        if how == "appended":
            with open(path, "ab") as fh:
                fh.write(b"\0" * 10)
        elif how == "touched":            # same size, new mtime (e.g. another tagger)
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        elif how == "rewritten":          # other audio, in place
            Path(path).write_bytes(other.read_bytes())
        else:                             # other audio, renamed over it
            shutil.copyfile(other, path + ".new")
            os.replace(path + ".new", path)
    with monkeypatch.context() as m:
        _change_during_analysis(m, change)
        code, rows, err = run_tag(capsys, lib)
    changed = p.read_bytes()
    assert code == 1 and rows[0]["status"] == "failed"
    assert rows[0]["error"] == f"file changed since it was analysed: {p}"
    assert_one_line_each(rows, err)
    assert read_tags(p) == {}                         # not written ...
    state = State(tiny_env / "state.sqlite")
    assert not state.is_done(str(p), {"chord": "safety-chord", "key": "safety-key"})
    state.close()

    code, rows, err = run_tag(capsys, lib)            # ... and retried next time
    assert code == 0 and rows[0]["status"] == "ok", (rows, err)
    assert read_tags(p) == TINY_TAGS and p.read_bytes() != changed


def test_changed_but_already_tagged_is_skipped(templates, tiny_env, capsys, monkeypatch):
    """What a second keychords run on the same library sees: the file changed
    because the other run tagged it with the very values this one would
    write. Nothing to write: skipped, not failed, not marked done by this run."""
    p, orig = place(templates, "ogg", "tagged", tiny_env / "lib" / "song.ogg")
    _change_during_analysis(monkeypatch, lambda path: write_tags(path, TINY_TAGS))
    code, rows, err = run_tag(capsys, p)
    assert code == 0 and rows[0]["status"] == "skipped" and not err
    assert "changed while it was being analysed" in rows[0]["error"]
    assert check_intact(p, orig, want=TINY_TAGS) == "tagged"


def test_changed_during_write_not_replaced(templates, tmp_path, monkeypatch):
    """Someone writes to the file while keychords is writing its copy: the
    copy is thrown away (tags.py also checks the size/mtime before the copy
    and under the lock)."""
    p, orig = place(templates, "wav", "v4", tmp_path / "w.wav")
    real = mutagen.wave.WAVE.save

    def save(self, *a, **k):
        real(self, *a, **k)
        os.utime(p, ns=(0, 10**9))
    monkeypatch.setattr(mutagen.wave.WAVE, "save", save)
    with pytest.raises(TagError, match="changed while its tags were being written"):
        write_tags(p, OURS)
    assert p.read_bytes() == orig.data and not temp_files(tmp_path)


# --- 4. bad input -----------------------------------------------------------------

class LockHolder:
    """Another process holding an advisory lock on ``path`` until stopped."""

    CODE = ("import fcntl, os, sys\n"
            "fd = os.open(sys.argv[1], os.O_RDWR)\n"
            "kind = sys.argv[2]\n"
            "if kind == 'flock-ex': fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "elif kind == 'flock-sh': fcntl.flock(fd, fcntl.LOCK_SH)\n"
            "else: fcntl.lockf(fd, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "sys.stdin.read()\n")

    def __init__(self, path, kind):
        self.proc = subprocess.Popen([sys.executable, "-c", self.CODE, os.fspath(path), kind],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdout.readline() == b"locked\n"

    def release(self):
        self.proc.stdin.close()
        self.proc.wait(10)


@contextlib.contextmanager
def lock_held(path, kind):
    h = LockHolder(path, kind)
    try:
        yield h
    finally:
        h.release()


LOCKS = (("flock-ex", "flac"), ("flock-sh", "mp3"), ("posix", "ogg"))


def _bad_cases() -> list[tuple[str, str]]:
    """``(file name, part of the reason)`` of every bad file in the library."""
    cases = [("empty.mp3", "empty file"), ("text.mp3", ""), ("noise.flac", ""),
             ("picture.m4a", "")]
    for fmt in ALL_FORMATS:
        cases.append((f"cut-{fmt}{suffix(fmt)}", ""))              # half of it is missing
        if fmt != "mp3":                                           # MP3: test_damaged_mp3_start
            cases.append((f"header-{fmt}{suffix(fmt)}", ""))       # magic and header destroyed
    cases += [(f"cut95-{fmt}{suffix(fmt)}", "truncated")           # the last 5 % missing
              for fmt in ("wav", "aiff", "ogg", "opus")]
    cases += [("read-only.mp3", "read-only"),
              ("no-permissions.flac", "permission denied")]        # root reads, never writes it
    cases += [(f"locked-{kind}{suffix(fmt)}", "file is locked by another process")
              for kind, fmt in LOCKS]
    return cases


BAD_CASES = _bad_cases()
GOOD_FILES = (("good.flac", "flac"), ("a" * 251 + ".wav", "wav"),   # 255 bytes
              ("音" * 83 + "xy.mp3", "mp3"),                      # 255 bytes, 89 characters
              ("huge-art.m4a", "aac"))


def _make_bad_file(lib: Path, name: str, templates) -> None:
    stem, fmt = name.rsplit(".", 1)[0], None
    kind, _, rest = stem.partition("-")
    fmt = next((f for f in ALL_FORMATS if rest == f), None)
    if name == "empty.mp3":
        (lib / name).write_bytes(b"")
    elif name == "text.mp3":
        (lib / name).write_text("not audio at all\n" * 200)
    elif name == "noise.flac":
        (lib / name).write_bytes(random.Random(1).randbytes(50_000))
    elif name == "picture.m4a":
        (lib / name).write_bytes(_big_art(20_000))
    elif kind in ("cut", "header"):
        data = templates[(fmt, "plain" if fmt == "wavpack" else
                          ("v4" if TAG_KIND[fmt] == "id3" else "tagged"))][1].data
        if kind == "cut":
            (lib / name).write_bytes(data[: len(data) // 2])
        else:
            bad = bytearray(data)
            bad[:64] = bytes(range(64))
            (lib / name).write_bytes(bytes(bad))
    elif kind == "cut95":
        data = templates[(fmt, "plain")][1].data
        (lib / name).write_bytes(data[: len(data) * 95 // 100])
    elif name == "read-only.mp3":
        os.chmod(place(templates, "mp3", "v4", lib / name)[0], 0o444)
    elif name == "no-permissions.flac":
        os.chmod(place(templates, "flac", "plain", lib / name)[0], 0)
    elif kind == "locked":
        lock_fmt = dict((k, f) for k, f in LOCKS)[rest]
        place(templates, lock_fmt, "plain", lib / name)
    else:
        raise AssertionError(f"no recipe for {name}")


@pytest.fixture(scope="module")
def bad_library(templates, tiny_models, tmp_path_factory):
    """One `keychords tag` run over a library of bad files next to good ones:
    ``(lib, exit code, rows by name, stderr lines, bytes of the bad files before)``."""
    import io

    root = tmp_path_factory.mktemp("bad-inputs")
    lib = root / "lib"
    lib.mkdir()
    for name, _ in BAD_CASES:
        _make_bad_file(lib, name, templates)
    good = {}
    for name, fmt in GOOD_FILES:
        p, orig = place(templates, fmt, "plain", lib / name)
        if name.startswith("huge"):
            add_huge_artwork(p, fmt, _big_art(4 << 20))
            orig = Original.of(p, fmt)
        good[name] = orig
    before = {name: (lib / name).read_bytes() for name, _ in BAD_CASES}
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.ExitStack() as stack:
        mp.setenv("KEYCHORDS_MODEL_DIR", str(tiny_models))
        mp.setenv("KEYCHORDS_STATE", str(root / "state.sqlite"))
        mp.setattr(locking, "LOCK_WAIT", 0.3)
        for kind, fmt in LOCKS:
            stack.enter_context(lock_held(lib / f"locked-{kind}{suffix(fmt)}", kind))
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(["tag", str(lib), "--json", "-q", "--workers", "0", *TINY_ARGS])
    rows = {os.path.basename(r["path"]): r
            for r in map(json.loads, out.getvalue().splitlines()) if r}
    return lib, code, rows, err.getvalue().splitlines(), before, good


def test_bad_input_names_are_portable_extremes():
    assert len(os.fsencode("音" * 83 + "xy.mp3")) == len(os.fsencode("a" * 251 + ".wav")) == 255


@pytest.mark.parametrize("name,reason", BAD_CASES, ids=[n for n, _ in BAD_CASES])
def test_bad_input(bad_library, name, reason):
    """A bad file fails with its reason, once, and is not written to."""
    lib, _, rows, err, before, _ = bad_library
    r = rows[name]
    assert r["status"] == "failed" and reason in r["error"], r
    assert (lib / name).read_bytes() == before[name], f"{name} was written to"
    assert_one_line_each([r], [ln for ln in err if ln.startswith(f"keychords: {r['path']}: ")])


@pytest.mark.parametrize("name", [n for n, _ in GOOD_FILES], ids=lambda n: n[:12])
def test_good_file_among_bad_ones(bad_library, name):
    """The run goes on past bad files: the good ones are tagged, intact."""
    lib, _, rows, _, _, good = bad_library
    assert rows[name]["status"] == "ok", rows[name]
    assert check_intact(lib / name, good[name], want=TINY_TAGS) == "tagged"


def test_read_only_line_names_the_path_once(bad_library):
    lib, _, rows, err, _, _ = bad_library
    name = "read-only.mp3"
    line = [ln for ln in err if str(lib / name) in ln]
    assert line == [f"keychords: {lib / name}: {rows[name]['error']}"]
    assert line[0].count(name) == 1, line


def test_bad_library_run(bad_library):
    """Exit code 1, one row per file, one stderr line per failure, no temp files."""
    lib, code, rows, err, _, _ = bad_library
    assert code == 1
    assert set(rows) == {n for n, _ in BAD_CASES} | {n for n, _ in GOOD_FILES}
    assert_one_line_each(list(rows.values()), err)
    assert not temp_files(lib)


def test_damaged_mp3_start(templates, tiny_env, capsys):
    """An MP3 is a self-synchronising stream: a damaged start (here the ID3v2
    header) that the decoder skips still decodes in full, so it is analysed and
    tagged, without loss: the new tag goes in front and every byte of the
    file is kept after it, the decoded audio unchanged."""
    p, orig = place(templates, "mp3", "v4", tiny_env / "damaged.mp3")
    bad = bytearray(orig.data)
    bad[:64] = bytes(range(64))
    p.write_bytes(bytes(bad))
    samples = decode_samples(p)
    code, rows, err = run_tag(capsys, p)
    assert code == 0 and rows[0]["status"] == "ok", (rows, err)
    assert p.read_bytes().endswith(bytes(bad)) and read_tags(p) == TINY_TAGS
    assert np.array_equal(decode_samples(p), samples)


def test_folder_named_like_a_file(templates, tiny_env, capsys):
    lib = tiny_env / "lib"
    inner, orig = place(templates, "wav", "plain", lib / "album.flac" / "inner.wav")
    code, rows, err = run_tag(capsys, lib)           # a folder is walked, not tagged
    assert code == 0 and [r["path"] for r in rows] == [str(inner)] and not err
    assert check_intact(inner, orig, want=TINY_TAGS) == "tagged"
    from tagger.engine import Analyzer
    out = list(pipeline.run([str(lib / "album.flac")],
                            Analyzer("safety-chord", "safety-key"), pipeline.Options()))
    assert out[0].status == "failed" and out[0].error == "is a folder, not a file"
    with pytest.raises(TagError, match="not a regular file"):
        write_tags(lib / "album.flac", OURS)


@pytest.mark.parametrize("kind", ["flock-ex", "flock-sh", "posix"])
def test_lock_held_by_another_process(kind, templates, tmp_path, monkeypatch):
    """A file another process has locked is waited for (LOCK_WAIT), then left
    alone with "file is locked by another process"; once the lock is gone it
    is written."""
    monkeypatch.setattr(locking, "LOCK_WAIT", 0.2)
    p, orig = place(templates, "flac", "tagged", tmp_path / "l.flac")
    with lock_held(p, kind):
        with pytest.raises(TagError, match="file is locked by another process"):
            write_tags(p, OURS)
        assert p.read_bytes() == orig.data and not temp_files(tmp_path)
    assert write_tags(p, OURS) == OURS
    assert check_intact(p, orig, want=OURS) == "tagged"


def test_lock_released_in_time_is_waited_for(templates, tmp_path):
    """A lock held briefly (another keychords run writing) is waited for."""
    p, orig = place(templates, "mp3", "v3", tmp_path / "l.mp3")
    h = LockHolder(p, "flock-ex")
    import threading
    t = threading.Timer(0.3, h.release)
    t.start()
    try:
        assert write_tags(p, OURS) == OURS
    finally:
        t.join()
    assert check_intact(p, orig, want=OURS) == "tagged"


def test_temp_file_of_a_live_writer_is_not_removed(tmp_path):
    """remove_tmp_files (run at the start of every `keychords tag`) removes the
    temporary files a crash left, not those another process is writing."""
    from tagger.tags import remove_tmp_files
    live = tmp_path / (".song.flac.abcd1234" + TMP_SUFFIX)
    dead = tmp_path / (".other.flac.efgh5678" + TMP_SUFFIX)
    live.write_bytes(b"x")
    dead.write_bytes(b"y")
    with lock_held(live, "flock-ex"):
        assert remove_tmp_files(tmp_path) == [str(dead)]
        assert live.exists()
    assert remove_tmp_files(tmp_path) == [str(live)]


NON_UTF8 = [b"caf\xe9.flac", b"\xff\xfe-latin1-\xe0\xe8.ogg", b"bad-\xc3\x28.wav"]


@pytest.mark.slow
def test_non_utf8_names(templates, tiny_models, tmp_path):
    """File names that are not valid UTF-8 (any bytes but / and NUL, on Linux)
    are found, decoded, tagged, remembered in the state database, and named in
    output: stderr lines and plain stdout show the bad bytes as \\udcXX
    escapes; JSON lines are valid JSON whose "path", through json.loads and
    os.fsencode, gives back the exact name."""
    lib = tmp_path / "lib"
    lib.mkdir()
    libb = os.fsencode(lib)
    origs = {}
    for name, fmt in zip(NON_UTF8, ("flac", "ogg", "wav")):
        src, orig = templates[(fmt, "plain")]
        shutil.copyfile(src, libb + b"/" + name)
        origs[name] = orig
    junk = b"junk-\xe9.mp3"
    with open(libb + b"/" + junk, "wb") as fh:
        fh.write(b"not audio\n" * 100)
    env = child_env(tiny_models, tmp_path / "state.sqlite")
    cmd = cli_command("tag", lib, "--json", "-q", "--workers", "0", *TINY_ARGS)
    res = subprocess.run(cmd, env=env, capture_output=True, timeout=300, check=False)
    assert res.returncode == 1, res.stderr.decode("utf-8", "replace")
    rows = [json.loads(x) for x in res.stdout.decode("utf-8").splitlines()]
    by_name = {os.path.basename(os.fsencode(r["path"])): r for r in rows}
    assert set(by_name) == set(NON_UTF8) | {junk}
    for name, orig in origs.items():
        assert by_name[name]["status"] == "ok", by_name[name]
        assert check_intact(os.fsdecode(libb + b"/" + name), orig, want=TINY_TAGS) == "tagged"
    bad = by_name[junk]
    assert bad["status"] == "failed"
    line = f"keychords: {bad['path']}: {bad['error']}".encode("utf-8", "backslashreplace")
    assert [ln for ln in res.stderr.splitlines() if ln.startswith(b"keychords: ")] == [line]
    assert b"junk-\\udce9.mp3" in line

    # resume state: the next run skips them; search prints them
    res = subprocess.run(cmd, env=env, capture_output=True, timeout=300, check=False)
    rows = [json.loads(x) for x in res.stdout.decode("utf-8").splitlines()]
    assert sorted(r["status"] for r in rows) == ["failed", "skipped", "skipped", "skipped"]
    res = subprocess.run(cli_command("search", lib, "--json"), env=env, capture_output=True,
                         timeout=300, check=False)
    found = {os.path.basename(os.fsencode(json.loads(x)["path"]))
             for x in res.stdout.decode("utf-8").splitlines()}
    assert res.returncode == 0 and found == set(NON_UTF8)
    res = subprocess.run(cli_command("search", lib, "--key", "C"), env=env,
                         capture_output=True, timeout=300, check=False)
    assert res.returncode == 0 and b"caf\\udce9.flac\tC\tC\tI" in res.stdout


def _deep_dir(root: Path, length: int) -> str:
    """Make folders under ``root`` until the path is about ``length`` bytes
    (relative to an open folder: no single call sees a path over PATH_MAX)."""
    path = os.fspath(root)
    os.makedirs(path, exist_ok=True)
    fd = os.open(path, os.O_RDONLY)
    i = 0
    while len(os.fsencode(path)) < length:
        name = (f"{i:02d}" + "d" * 250)[: max(1, min(252, length - len(path) - 1))]
        os.mkdir(name, dir_fd=fd)
        nfd = os.open(name, os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd, path, i = nfd, f"{path}/{name}", i + 1
    os.close(fd)
    return path


def _write_at(path: str, data: bytes) -> None:
    """Write a file whose path may be longer than PATH_MAX."""
    parent, name = os.path.split(path)
    fd = os.open(".", os.O_RDONLY)
    for part in parent.split("/"):
        if not part:
            nfd = os.open("/", os.O_RDONLY)
        else:
            nfd = os.open(part, os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = nfd
    out = os.open(name, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
    os.write(out, data)
    os.close(out)
    os.close(fd)


def test_long_paths(templates, tiny_env, capsys):
    """Deep folders: a file with a path near PATH_MAX is tagged; one at the
    limit has no room for the temporary copy and gets a clear line; a folder
    past the limit cannot be listed and gets a note; the run goes on."""
    lib = tiny_env / "lib"
    lib.mkdir()
    orig = templates[("flac", "plain")][1]
    near = _deep_dir(lib / "near", 3900) + "/near.flac"
    _write_at(near, orig.data)
    limit_dir = _deep_dir(lib / "limit", 4080)
    limit = limit_dir + "/" + "x" * (4090 - len(limit_dir) - 1 - 5) + ".flac"
    assert len(os.fsencode(limit)) == 4090
    _write_at(limit, orig.data)
    deep_dir = _deep_dir(lib / "deep", 5000)
    _write_at(deep_dir + "/deep.flac", orig.data)
    code, rows, err = run_tag(capsys, lib)
    assert code == 1
    by_path = {r["path"]: r for r in rows}
    assert set(by_path) == {near, limit}
    assert by_path[near]["status"] == "ok"
    assert check_intact(near, orig, want=TINY_TAGS) == "tagged"
    r = by_path[limit]
    assert r["status"] == "failed" and "path too long" in r["error"], r
    assert Path(limit).read_bytes() == orig.data
    assert_one_line_each(rows, err)
    notes = [ln for ln in err if ln.startswith("keychords: note: ")]
    assert len(notes) == 1 and "cannot read folder (File name too long)" in notes[0]
    assert notes[0].startswith(f"keychords: note: {lib / 'deep'}/")


def _drop_dac_capabilities() -> None:  # pragma: no cover - runs in the child
    """Give up root's CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (from the
    bounding set, so the exec'd program never has them): permission bits then
    apply to root as to any file owner."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def run_without_override(cmd, **kw) -> subprocess.CompletedProcess:
    """Run ``cmd`` where permission bits are enforced (as root: without the
    capabilities that bypass them)."""
    pre = _drop_dac_capabilities if os.geteuid() == 0 else None
    return subprocess.run(cmd, preexec_fn=pre, capture_output=True, check=False, **kw)


@pytest.mark.slow
def test_permissions_enforced(templates, tiny_models, tmp_path):
    """Real permission checks (as root, the CLI runs without the capabilities
    that bypass them): unreadable file -> "permission denied (cannot read)";
    read-only file -> "... is read-only"; read-only folder -> "cannot create
    a temporary file"; unreadable folder -> a note. None of them is touched."""
    lib = tmp_path / "lib"
    good, good_orig = place(templates, "ogg", "plain", lib / "good.ogg")
    unreadable, _ = place(templates, "flac", "tagged", lib / "unreadable.flac")
    readonly, _ = place(templates, "mp3", "v4", lib / "readonly.mp3")
    in_ro_dir, _ = place(templates, "wav", "plain", lib / "ro-folder" / "song.wav")
    hidden, _ = place(templates, "wav", "plain", lib / "closed-folder" / "song.wav")
    before = {p: Path(p).read_bytes() for p in (unreadable, readonly, in_ro_dir, hidden)}
    os.chmod(unreadable, 0o200)
    os.chmod(readonly, 0o444)
    os.chmod(lib / "ro-folder", 0o555)
    os.chmod(lib / "closed-folder", 0)
    try:
        try:
            probe = run_without_override([sys.executable, "-c", "open(__import__('sys').argv[1])",
                                          str(unreadable)])
        except (OSError, subprocess.SubprocessError) as e:
            pytest.skip(f"cannot drop the permission-bypassing capabilities: {e}")
        if probe.returncode == 0:
            pytest.skip("permission bits are not enforced here")
        env = child_env(tiny_models, tmp_path / "state.sqlite")
        res = run_without_override(cli_command("tag", lib, "--json", "-q", "--workers", "0",
                                               *TINY_ARGS), env=env, timeout=300)
        rows = [json.loads(x) for x in res.stdout.decode().splitlines()]
        err = [ln for ln in res.stderr.decode().splitlines() if ln.startswith("keychords: ")]
        assert res.returncode == 1, res.stderr.decode()
        by_path = {r["path"]: r for r in rows}
        assert set(by_path) == {str(good), str(unreadable), str(readonly), str(in_ro_dir)}
        assert by_path[str(good)]["status"] == "ok"
        assert by_path[str(unreadable)]["error"] == "permission denied (cannot read)"
        assert "is read-only" in by_path[str(readonly)]["error"]
        assert "cannot create a temporary file" in by_path[str(in_ro_dir)]["error"]
        assert_one_line_each(rows, err)
        assert err.count(f"keychords: note: {lib / 'closed-folder'}: skipped "
                         f"(cannot read folder (Permission denied))") == 1
    finally:
        os.chmod(lib / "closed-folder", 0o755)
        os.chmod(lib / "ro-folder", 0o755)
        os.chmod(unreadable, 0o644)
    assert check_intact(good, good_orig, want=TINY_TAGS) == "tagged"
    for p, data in before.items():
        assert Path(p).read_bytes() == data, p
    assert not temp_files(lib)


# --- 7. malformed tags ------------------------------------------------------------

def mutate(data: bytes, ops) -> bytes:
    """Apply ``(op, where, value)`` edits; ``where`` is a fraction of the length,
    negative for "near the end" (ID3v1, APEv2, WAV/AIFF tag chunks, moov)."""
    b = bytearray(data)
    for op, where, value in ops:
        if not b:
            break
        pos = int(abs(where) * min(len(b), 4096))
        pos = len(b) - 1 - pos if where < 0 else pos
        pos = max(0, min(len(b) - 1, pos))
        if op == "set":
            b[pos] = value & 0xFF
        elif op == "flip":
            b[pos] ^= 1 << (value % 8)
        elif op == "delete":
            del b[pos:pos + 1 + value % 64]
        elif op == "insert":
            b[pos:pos] = bytes([value & 0xFF]) * (1 + value % 32)
        elif op == "size":                  # a 32-bit field made huge or zero
            b[pos:pos + 4] = (b"\xff\xff\xff\x7f", b"\x00\x00\x00\x00",
                              b"\x7f\x7f\x7f\x7f")[value % 3]
        elif op == "cut":
            del b[pos:]
    return bytes(b)


_OPS = st.lists(st.tuples(st.sampled_from(["set", "flip", "delete", "insert", "size", "cut"]),
                          st.floats(-1, 1, allow_nan=False), st.integers(0, 255)),
                min_size=1, max_size=8)


@pytest.fixture(scope="session")
def fuzz_sources(templates, tmp_path_factory):
    """Tagged files of every format that also carry keychords' own fields."""
    root = tmp_path_factory.mktemp("fuzz-sources")
    out = {}
    for fmt in ALL_FORMATS:
        src, _ = templates[(fmt, "v3" if TAG_KIND[fmt] == "id3" else "tagged")]
        p = root / ("src" + suffix(fmt))
        shutil.copyfile(src, p)
        write_tags(p, OURS)
        out[fmt] = p.read_bytes()
    return out


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(fmt=st.sampled_from(ALL_FORMATS), ops=_OPS)
@pytest.mark.slow
def test_fuzzed_tag_readers(fuzz_sources, fmt, ops):
    data = mutate(fuzz_sources[fmt], ops)
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / ("fuzz" + suffix(fmt))
        p.write_bytes(data)
        assert audio_format(p) in (None, *AUDIO_FORMATS)
        for reader in (read_tags, lambda q: tags_to_write(q, TINY_TAGS)):
            try:
                got = reader(p)
            except TagError as e:
                assert str(e) and "\n" not in str(e)
            else:
                assert isinstance(got, dict) and set(got) <= {"initial_key", "chords",
                                                              "progression"}
        try:
            write_tags(p, TINY_TAGS, overwrite=True)
        except TagError as e:
            assert str(e) and "\n" not in str(e)
            assert p.read_bytes() == data             # a failed write leaves it as it was
        else:
            assert read_tags(p) == TINY_TAGS
        assert not temp_files(d)


def fuzzed_library(sources: dict[str, bytes], directory: Path, per_format: int, seed: int):
    rng = random.Random(seed)
    ops_names = ["set", "flip", "delete", "insert", "size", "cut"]
    directory.mkdir(parents=True)
    for fmt, data in sources.items():
        for i in range(per_format):
            ops = [(rng.choice(ops_names), rng.uniform(-1, 1), rng.randrange(256))
                   for _ in range(rng.randint(1, 6))]
            (directory / f"{fmt}-{i}{suffix(fmt)}").write_bytes(mutate(data, ops))


def test_search_and_tag_over_fuzzed_files(fuzz_sources, tiny_env, capsys):
    """`keychords search` and `keychords tag` over a folder of damaged files:
    both finish, one line per file (a result, or `keychords: <path>: <reason>`)."""
    lib = tiny_env / "fuzzed"
    fuzzed_library(fuzz_sources, lib, per_format=6, seed=7)
    names = sorted(str(p) for p in lib.iterdir())
    for extra in ([], ["--json"], ["--key", "Am"], ["--progression", "vi IV I V"]):
        code = cli.main(["search", str(lib), *extra])
        out, err = capsys.readouterr()
        assert code in (0, 1)
        printed = [json.loads(x)["path"] if extra == ["--json"] else x.split("\t")[0]
                   for x in out.splitlines()]
        failed = [ln.split(": ")[1] for ln in err.splitlines()]
        assert all(ln.startswith("keychords: ") for ln in err.splitlines())
        assert len(failed) == len(set(failed)) and not set(printed) & set(failed)
        if not extra or extra == ["--json"]:         # no filter: every file accounted for
            assert sorted(printed + failed) == names
    before = {p: Path(p).read_bytes() for p in names}
    code, rows, err = run_tag(capsys, lib)
    assert code in (0, 1) and sorted(r["path"] for r in rows) == names
    assert_one_line_each(rows, err)
    for r in rows:
        if r["status"] == "failed":
            assert Path(r["path"]).read_bytes() == before[r["path"]], r
        else:
            assert r["status"] == "ok" and read_tags(r["path"])["initial_key"] in ("Am", "C")
    assert not temp_files(lib)


# --- the formats beyond the common nine (tests/extra_formats.py) --------------------

def _other_tags_any(path) -> list:
    """Every tag mutagen sees in ``path`` but keychords' own fields, any tag kind."""
    import mutagen
    t = mutagen.File(str(path)).tags
    ours = {"initialkey", "chords", "progression", "tkey", "txxx:chords", "txxx:progression"}
    if t is None:
        return []
    items = t.items() if hasattr(t, "items") else list(t)
    return sorted((k, repr(v)) for k, v in items if k.lower() not in ours)


@pytest.mark.parametrize("fmt", extra_formats.TAGGABLE)
def test_new_formats_audio_and_other_tags_kept(fmt, tmp_path):
    if not extra_formats.can_make(fmt):
        pytest.skip(f"no encoder for {fmt} here")
    p = extra_formats.make_extra_file(tmp_path / f"song{extra_formats.EXTRA[fmt][0]}", fmt,
                                      seconds=1.0)
    extra_formats.add_other_tags(p, fmt)
    packets, samples, others = audio_packets(p), decode_samples(p), _other_tags_any(p)
    expected = {}
    for values, overwrite in ((OURS, False), (GROWN, True), (OURS, True)):
        assert write_tags(p, values, overwrite=overwrite)
        expected.update(values)
        assert read_tags(p) == expected
        assert audio_packets(p) == packets, f"{fmt}: audio packets changed"
        assert np.array_equal(decode_samples(p), samples), f"{fmt}: decoded audio changed"
        assert _other_tags_any(p) == others, f"{fmt}: other tags changed"
    assert not temp_files(tmp_path)


@pytest.mark.slow
def test_new_formats_tagged_from_a_folder(tiny_env, capsys):
    """A folder of WMA, TTA, Musepack, DSF, DSDIFF and AC-3 files: every one is
    found and analysed; the AC-3 file, which no tag fits, says so in one line."""
    lib = tiny_env / "lib"
    lib.mkdir()
    made = [extra_formats.make_extra_file(lib / f"t{suffix_}", fmt, seconds=SECONDS)
            for fmt, (suffix_, _) in extra_formats.EXTRA.items() if extra_formats.can_make(fmt)]
    code, rows, err = run_tag(capsys, lib)
    assert len(rows) == len(made)
    by_ext = {os.path.splitext(r["path"])[1]: r for r in rows}
    for ext, r in by_ext.items():
        if ext == ".ac3":
            assert r["status"] == "failed" and r["error"].startswith("cannot be tagged"), r
        else:
            assert r["status"] == "ok" and read_tags(r["path"]) == TINY_TAGS, r
    assert code == 1
    assert_one_line_each(rows, err)


def _damaged_new_formats(lib: Path) -> list[str]:
    """Cut, header-smashed and magic-only files of every new format."""
    names = []
    for ext in extra_formats.ALL_NEW_SUFFIXES:
        junk = random.Random(ext).randbytes(4000)
        (lib / f"stub{ext}").write_bytes(extra_formats.MAGIC[ext] + junk)
        names.append(f"stub{ext}")
    for fmt, (ext, _) in extra_formats.EXTRA.items():
        if not extra_formats.can_make(fmt):
            continue
        data = extra_formats.make_extra_file(lib / f"whole{ext}", fmt, seconds=1.0).read_bytes()
        (lib / f"whole{ext}").unlink()
        (lib / f"cut{ext}").write_bytes(data[: len(data) // 2])
        (lib / f"header{ext}").write_bytes(bytes(range(64)) + data[64:])
        names += [f"cut{ext}", f"header{ext}"]
    return names


def test_damaged_new_formats(tiny_env, capsys):
    """No traceback, one line per bad file, and nothing written to any of them."""
    lib = tiny_env / "bad"
    lib.mkdir()
    names = _damaged_new_formats(lib)
    before = {n: (lib / n).read_bytes() for n in names}
    code, rows, err = run_tag(capsys, lib)
    assert code == 1 and sorted(os.path.basename(r["path"]) for r in rows) == sorted(names)
    assert all(r["status"] == "failed" for r in rows), [r for r in rows if r["status"] != "failed"]
    assert_one_line_each(rows, err)
    assert not any("Traceback" in ln for ln in err)
    assert {n: (lib / n).read_bytes() for n in names} == before
