"""The distillation dataset cache: features of a library on disk, resumable.

Layout of a cache folder (``--cache DIR``, by default
``user_cache_dir("keychords")/distill/<model name>``)::

    index.sqlite             the index (sqlite, WAL journal)
    shards/ab/<track>.<stream>.npy   one array per (track, stream), float16/int16

**Tracks** are identified by content: the first 20 hex digits of the sha256
of the decoded samples (mono float32 at 22050 Hz, as every model hears them).
Two files that decode to the same audio (copies, re-tagged files) are one
track; the second is recorded as a duplicate and costs nothing in training.

**Streams** are the arrays kept per track, named ``<kind>-<hash of their
configuration>`` so that arrays made with another front end are never mixed
up with these (time-major, frame ``t`` first):

* ``student-*``: the chord student's CQT (``ChordStudent.FEATURES``,
  ``log1p`` scaled) over a range padded by 6 semitones on both sides, ``(T,
  252)`` float16. Slicing bins ``[18 - 3 s, 18 - 3 s + 216)`` is the input
  of the track pitch-shifted by ``s`` semitones (``|s| <= 6``); ``s = 0`` is
  bit-identical to the tagger's front end (the padded transform keeps its
  octave grouping: one more octave is computed on top, 18 of its bins kept).
* ``tin-*``: a teacher's input features when they differ from the student's
  (crema: the 2-harmonic CQT, ``db_max`` scaled against the whole track),
  ``(T, H, F)`` float16.
* ``teacher-<model id>-<sha>``: the teacher's chord posteriors as float16
  log-probabilities ``(T, 170)``: see :mod:`.teacher` for why full rather
  than top-k; ``teacheraux-*``: its root / bass log-probabilities and pitch
  logits ``(T, 38)`` when it has those heads.
* ``teacher-ens-<hash>`` / ``teacheraux-ens-<hash>``: a teacher ensemble's
  combination of its members' streams, in the same formats
  (:mod:`.ensemble`).
* ``skey-*``: S-KEY's CQT (99 bins, 12 per octave, hop 512, peak-normalised
  audio) *before* cropping, as float16 ``10 log10 |C|``: random crops of it
  are transpositions (:mod:`.train_key`); scaled per segment at training time.
* ``labels``: ground-truth chord index per student frame (int16, ``-1`` =
  none), from a ``.lab`` file.
* ``keys``: the key in force per S-KEY frame (int16, ``-1`` = none), from a
  ``.key`` file with timed key changes (single-key tracks have only the
  index's ``key``).

**Consistency.** An array is written to a temporary file in its final
folder, fsynced, and renamed into place; only then is it entered in the
index (one sqlite transaction per track). So the index never references a
partial array; killing the process at any point loses at most the track in
progress, and the next run skips every finished one (a source file is
"done" when its size and mtime match the index and its track has every
requested stream). Orphaned temporary files are removed on open.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from model_zoo.features import FrontEnd
from model_zoo.fileio import TMP_SUFFIX, atomic_write
from model_zoo.student import ChordStudent
from tagger.decode import MODEL_RATE, unusable_reason

CACHE_VERSION = 1
KEY_CHANGES = "keys"
SAMPLE_RATE = MODEL_RATE

# Student feature padding (bins at 3 per semitone).
BINS_PER_SEMITONE = ChordStudent.BINS_PER_SEMITONE
PAD_SEMITONES = 6
PAD_BINS = PAD_SEMITONES * BINS_PER_SEMITONE           # 18 below and above
STUDENT_BINS = ChordStudent.FEATURES["n_bins"]         # 216
STORED_STUDENT_BINS = STUDENT_BINS + 2 * PAD_BINS      # 252
_COMPUTED_TOP = ChordStudent.FEATURES["bins_per_octave"]  # one octave on top


def default_cache_dir(name: str) -> Path:
    import platformdirs
    return Path(platformdirs.user_cache_dir("keychords", appauthor=False)) / "distill" / name


def _hash_config(cfg: dict) -> str:
    return hashlib.sha1(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:8]


# -- streams ------------------------------------------------------------------

@dataclass
class StreamSpec:
    """One per-track array computed from audio by a CQT front end."""
    kind: str                      # "student", "tin", "skey"
    features: dict                 # FrontEnd configuration
    store: str = "scaled"          # "scaled" (fe.scale) or "db10" (10 log10 |C|)
    keep_bins: int | None = None   # keep only the first bins
    squeeze_harmonics: bool = False

    @property
    def name(self) -> str:
        return f"{self.kind}-{_hash_config({'f': self.features, 's': self.store, 'k': self.keep_bins})}"

    @property
    def frame_rate(self) -> float:
        return self.features["sample_rate"] / self.features["hop_length"]

    def bytes_per_second(self) -> float:
        h = len(self.features.get("harmonics", [1]))
        bins = self.keep_bins or self.features["n_bins"]
        return self.frame_rate * h * bins * 2

    def frontend(self) -> FrontEnd:
        return FrontEnd(**self.features)

    def finish(self, fe: FrontEnd, mag: torch.Tensor) -> np.ndarray:
        """Whole-track magnitudes ``(H, F, T)`` -> the stored array (time-major)."""
        if self.store == "db10":
            arr = 10.0 * torch.log10(mag.clamp_min(1e-10))
        else:
            arr = fe.scale(mag[None])[0]
        if self.keep_bins:
            arr = arr[:, : self.keep_bins]
        arr = arr.permute(2, 0, 1)                          # (T, H, F)
        if self.squeeze_harmonics:
            arr = arr[:, 0]
        return arr.cpu().numpy().astype(np.float16)


def student_stream() -> StreamSpec:
    """The student's features, padded by :data:`PAD_SEMITONES` on both sides."""
    f = dict(ChordStudent.FEATURES)
    bpo = f["bins_per_octave"]
    f["fmin"] = f["fmin"] * 2.0 ** (-PAD_BINS / bpo)
    f["n_bins"] = STUDENT_BINS + PAD_BINS + _COMPUTED_TOP
    return StreamSpec("student", f, keep_bins=STORED_STUDENT_BINS, squeeze_harmonics=True)


def teacher_input_stream(features: dict) -> StreamSpec | None:
    """The stream holding a teacher's inputs; None when they are the student's."""
    if _same_features(features, ChordStudent.FEATURES):
        return None
    return StreamSpec("tin", dict(features))


def skey_stream() -> StreamSpec:
    from model_zoo import skey
    f = dict(skey.FEATURES)
    f["crop_bins"] = None
    return StreamSpec("skey", f, store="db10", squeeze_harmonics=True)


def _same_features(a: dict, b: dict) -> bool:
    fa, fb = FrontEnd(**a).config, FrontEnd(**b).config
    return json.dumps(fa, sort_keys=True) == json.dumps(fb, sort_keys=True)


def student_input(arr: np.ndarray, shift: int = 0) -> np.ndarray:
    """Student features ``(T, 216)`` of a padded array, pitch-shifted by ``shift`` semitones."""
    if abs(shift) > PAD_SEMITONES:
        raise ValueError(f"shift {shift} exceeds the cached padding of {PAD_SEMITONES} semitones")
    start = PAD_BINS - BINS_PER_SEMITONE * shift
    return arr[..., start: start + STUDENT_BINS]


# -- the index ------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS tracks (
    id TEXT PRIMARY KEY, path TEXT, duration REAL, n_samples INTEGER,
    grp TEXT, key INTEGER, lab TEXT, added REAL);
CREATE TABLE IF NOT EXISTS sources (
    path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, track TEXT,
    status TEXT, note TEXT);
CREATE TABLE IF NOT EXISTS arrays (
    track TEXT, stream TEXT, file TEXT, shape TEXT, dtype TEXT, nbytes INTEGER,
    PRIMARY KEY (track, stream));
"""


@dataclass
class TrackInfo:
    id: str
    path: str
    duration: float
    n_samples: int
    group: str
    key: int | None
    lab: str | None


class CacheError(Exception):
    """The cache cannot be used (one-line message)."""


class DatasetCache:
    """The index and shards of one cache folder."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.shards = self.root / "shards"
        self.shards.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.root / "index.sqlite"), timeout=60)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        row = self.db.execute("SELECT value FROM meta WHERE key='version'").fetchone()
        if row is None:
            with self.db:
                self.db.execute("INSERT INTO meta VALUES ('version', ?)", (str(CACHE_VERSION),))
        elif int(row[0]) != CACHE_VERSION:
            raise CacheError(f"{self.root}: cache version {row[0]} (this keychords "
                             f"writes {CACHE_VERSION}); use another --cache folder")
        self._remove_tmp()
        self._mmaps: dict[tuple[str, str], np.ndarray] = {}

    def close(self) -> None:
        self._mmaps.clear()
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _remove_tmp(self) -> None:
        # (".*.tmp*": the temporary files of earlier versions)
        for p in [*self.shards.rglob(".*" + TMP_SUFFIX), *self.shards.rglob(".*.tmp*")]:
            try:
                p.unlink()
            except OSError:
                pass

    # tracks ------------------------------------------------------------------
    def track_ids(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT id FROM tracks ORDER BY id")]

    def track(self, track_id: str) -> TrackInfo:
        r = self.db.execute("SELECT id, path, duration, n_samples, grp, key, lab FROM tracks "
                            "WHERE id=?", (track_id,)).fetchone()
        if r is None:
            raise KeyError(track_id)
        return TrackInfo(*r)

    def tracks(self, ids=None) -> list[TrackInfo]:
        ids = self.track_ids() if ids is None else ids
        return [self.track(i) for i in ids]

    def add_track(self, info: TrackInfo) -> None:
        with self.db:
            self.db.execute(
                "INSERT OR IGNORE INTO tracks VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (info.id, info.path, info.duration, info.n_samples, info.group, info.key,
                 info.lab, time.time()))

    def set_track_labels(self, track_id: str, key: int | None, lab: str | None) -> None:
        with self.db:
            self.db.execute("UPDATE tracks SET key=?, lab=? WHERE id=?", (key, lab, track_id))

    # sources -------------------------------------------------------------------
    def source(self, path: str) -> tuple | None:
        return self.db.execute("SELECT size, mtime_ns, track, status, note FROM sources "
                               "WHERE path=?", (path,)).fetchone()

    def record_source(self, path: str, size: int, mtime_ns: int, track: str | None,
                      status: str, note: str = "") -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO sources VALUES (?, ?, ?, ?, ?, ?)",
                            (path, size, mtime_ns, track, status, note))

    # arrays --------------------------------------------------------------------
    def has(self, track_id: str, stream: str) -> bool:
        return self.db.execute("SELECT 1 FROM arrays WHERE track=? AND stream=?",
                               (track_id, stream)).fetchone() is not None

    def streams_of(self, track_id: str) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT stream FROM arrays WHERE track=?",
                                              (track_id,))}

    def _array_path(self, track_id: str, stream: str) -> Path:
        return self.shards / track_id[:2] / f"{track_id}.{stream}.npy"

    def put(self, track_id: str, stream: str, array: np.ndarray) -> None:
        """Write one array atomically, then reference it in the index."""
        path = self._array_path(track_id, stream)
        path.parent.mkdir(parents=True, exist_ok=True)
        array = np.ascontiguousarray(array)
        atomic_write(path, lambda tmp: _save_npy(tmp, array))
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO arrays VALUES (?, ?, ?, ?, ?, ?)",
                            (track_id, stream, str(path.relative_to(self.root)),
                             json.dumps(list(array.shape)), str(array.dtype),
                             int(path.stat().st_size)))
        self._mmaps.pop((track_id, stream), None)

    def load(self, track_id: str, stream: str, mmap: bool = True) -> np.ndarray:
        """An array (memory-mapped by default); checks it is the size indexed."""
        key = (track_id, stream)
        if mmap and key in self._mmaps:
            return self._mmaps[key]
        r = self.db.execute("SELECT file, nbytes FROM arrays WHERE track=? AND stream=?",
                            key).fetchone()
        if r is None:
            raise KeyError(f"{track_id}: no {stream} array in the cache")
        path = self.root / r[0]
        try:
            size = path.stat().st_size
        except OSError:
            raise CacheError(f"{path}: array missing from the cache folder") from None
        if size != r[1]:
            raise CacheError(f"{path}: size {size} != indexed {r[1]} (damaged cache)")
        arr = np.load(path, mmap_mode="r" if mmap else None)
        if mmap:
            if len(self._mmaps) > 512:
                self._mmaps.clear()
            self._mmaps[key] = arr
        return arr

    def verify(self) -> list[str]:
        """Problems found (arrays missing, wrong size, unreadable); empty if consistent."""
        problems = []
        for track, stream, file, shape, nbytes in self.db.execute(
                "SELECT track, stream, file, shape, nbytes FROM arrays"):
            p = self.root / file
            try:
                if p.stat().st_size != nbytes:
                    problems.append(f"{file}: size mismatch")
                    continue
                arr = np.load(p, mmap_mode="r")
                if list(arr.shape) != json.loads(shape):
                    problems.append(f"{file}: shape mismatch")
            except (OSError, ValueError) as e:
                problems.append(f"{file}: {e}")
        return problems

    def disk_usage(self) -> int:
        return int(sum(p.stat().st_size for p in self.shards.rglob("*.npy")))


# -- building -------------------------------------------------------------------

def _save_npy(path: str, array: np.ndarray) -> None:
    with open(path, "wb") as f:  # by handle: np.save would append ".npy" to the name
        np.save(f, array)


def track_group(path: str, track_id: str) -> str:
    """Tracks of one group stay in one split (train / held out).

    Files named as variants, ``<name>_<digits>`` (``031_0``, ``031_1``: renders
    of one song), group by their folder's name and ``<name>``; any other track
    is its own group, named by its content so that the split does not depend
    on where the library lives.
    """
    p = Path(path)
    head, sep, tail = p.stem.rpartition("_")
    if sep and tail.isdigit() and head:
        return f"{p.parent.name}/{head}"
    return track_id


def probe_seconds(path: str) -> float:
    """Duration a file declares (0 when unknown); cheap (no decoding)."""
    import av
    try:
        with av.open(path) as c:
            if not c.streams.audio:
                return 0.0
            s = c.streams.audio[0]
            if s.duration is not None and s.time_base is not None:
                return float(s.duration * s.time_base)
            if c.duration is not None:
                return c.duration / 1_000_000
    except Exception:
        return 0.0
    return 0.0


def _decode_thread(paths: list[str], out: queue.Queue, stop: threading.Event) -> None:
    """Decode files one after another into ``out`` (bounded: memory stays flat)."""
    from tagger.decode import DecodeError, stream_audio

    def put(item) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    for path in paths:
        try:
            st = os.stat(path)
            if st.st_size == 0:
                raise DecodeError("empty file (0 bytes)")
            for chunk in stream_audio(path, SAMPLE_RATE, 30.0):
                if not put(("chunk", path, chunk)):
                    return
            if not put(("end", path, (st.st_size, st.st_mtime_ns))):
                return
        except DecodeError as e:
            put(("error", path, str(e)))
        except OSError as e:
            put(("error", path, f"cannot read ({e.strerror or e})"))
        except Exception as e:  # a decoder bug must not stop the run
            put(("error", path, f"decoding failed ({type(e).__name__}: {e})"))
    put(("done", None, None))


@dataclass
class BuildReport:
    files: int = 0
    already: int = 0
    analysed: int = 0
    added: int = 0
    duplicates: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    audio_seconds: float = 0.0
    feature_seconds: float = 0.0
    estimated_bytes: int = 0
    track_ids: list[str] = field(default_factory=list)

    @property
    def realtime(self) -> float:
        return self.audio_seconds / self.feature_seconds if self.feature_seconds else 0.0


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def build_features(cache: DatasetCache, files: list[str], streams: list[StreamSpec], *,
                   device: str | torch.device = "cpu", label_index=None,
                   progress: bool = True, log=print, confirm=None,
                   extra_bytes_per_second: float = 0.0) -> BuildReport:
    """Decode ``files`` and store every stream of every new track.

    Files already done (same size and mtime, all streams present) are skipped
    without decoding. ``confirm(estimate_text) -> bool`` may veto the start;
    ``extra_bytes_per_second``: what later phases add per second of audio
    (teacher posteriors), for the disk estimate.
    """
    rep = BuildReport(files=len(files))
    todo = _pending(cache, files, [s.name for s in streams], rep)
    text, free = _estimate(cache, todo, streams, extra_bytes_per_second, rep)
    log(text)
    if rep.estimated_bytes > 0.95 * free:
        raise CacheError(f"not enough disk space in {cache.root}: need about "
                         f"{_fmt_bytes(rep.estimated_bytes)}, {_fmt_bytes(free)} free")
    if confirm is not None and not confirm(text):
        raise KeyboardInterrupt
    if todo:
        _analyse(cache, todo, streams, device, label_index, progress, rep)
    rep.track_ids = _library_tracks(cache, files)
    return rep


def _pending(cache: DatasetCache, files: list[str], names: list[str],
             rep: BuildReport) -> list[str]:
    """The files that still need decoding; counts the others in ``rep``."""
    todo = []
    for p in files:
        st = _stat(p)
        src = cache.source(p)
        if st is not None and src is not None and src[0] == st[0] and src[1] == st[1]:
            if src[3] == "failed":
                rep.failed.append((p, src[4] or "failed before"))
                rep.already += 1
                continue
            if src[2] is not None and set(names) <= cache.streams_of(src[2]):
                rep.already += 1
                if src[3] == "duplicate":
                    rep.duplicates += 1
                continue
        todo.append(p)
    return todo


def _estimate(cache: DatasetCache, todo: list[str], streams: list[StreamSpec],
              extra_bytes_per_second: float, rep: BuildReport) -> tuple[str, int]:
    """Estimate the cache growth from declared durations (no decoding) into
    ``rep``; returns the estimate as text and the free disk space."""
    secs = [probe_seconds(p) for p in todo]
    per_sec = sum(s.bytes_per_second() for s in streams) + extra_bytes_per_second
    rep.estimated_bytes = int(sum(secs) * per_sec)
    free = shutil.disk_usage(cache.root).free
    text = (f"{rep.files} audio files: {rep.already} already cached, {len(todo)} to analyse "
            f"({sum(secs) / 3600:.2f} h); estimated cache growth {_fmt_bytes(rep.estimated_bytes)} "
            f"({_fmt_bytes(per_sec * 3600)}/h of audio) in {cache.root} "
            f"({_fmt_bytes(free)} free)")
    return text, free


def _analyse(cache: DatasetCache, todo: list[str], streams: list[StreamSpec], device,
             label_index, progress: bool, rep: BuildReport) -> None:
    """Decode ``todo`` on a reader thread and store each finished track."""
    from tqdm import tqdm

    fes = [s.frontend().to(device) for s in streams]
    slow = float(os.environ.get("KEYCHORDS_DISTILL_TEST_DELAY", "0") or 0)  # tests only
    q: queue.Queue = queue.Queue(maxsize=6)
    stop = threading.Event()
    threading.Thread(target=_decode_thread, args=(todo, q, stop), daemon=True).start()
    bar = tqdm(total=len(todo), unit="file", desc="features", disable=not progress,
               dynamic_ncols=True)
    start = time.monotonic()
    current = None
    try:
        while True:
            kind, path, payload = q.get()
            if kind == "done":
                break
            if kind != "error" and (current is None or current["path"] != path):
                current = {"path": path, "h": hashlib.sha256(), "n": 0, "peak": 0.0,
                           "sm": [_streaming(fe, device) for fe in fes]}
            if kind == "chunk":
                _take_chunk(current, payload)
                continue
            if kind == "error":
                st = _stat(path) or (0, 0)
                cache.record_source(path, st[0], st[1], None, "failed", payload)
                rep.failed.append((path, payload))
            else:  # end of a file
                _finish_track(cache, current, streams, fes, payload, rep, label_index)
                if slow:
                    time.sleep(slow)
            current = None
            bar.update(1)
            el = time.monotonic() - start
            bar.set_postfix_str(f"{rep.audio_seconds / max(el, 1e-9):.0f}x realtime",
                                refresh=False)
    finally:
        stop.set()
        bar.close()
        rep.feature_seconds = time.monotonic() - start


def _take_chunk(current: dict, chunk: np.ndarray) -> None:
    current["h"].update(np.ascontiguousarray(chunk, np.float32).tobytes())
    current["n"] += chunk.size
    if chunk.size:
        current["peak"] = max(current["peak"], float(np.abs(chunk).max()))
    for sm in current["sm"]:
        sm.feed(chunk)


def _finish_track(cache: DatasetCache, current: dict, streams, fes, size_mtime,
                  rep: BuildReport, label_index) -> None:
    """Store a fully decoded track, or record why it cannot be analysed."""
    size, mtime = size_mtime
    note = unusable_reason(current["n"], current["peak"], SAMPLE_RATE)
    if note:
        cache.record_source(current["path"], size, mtime, None, "failed", note)
        rep.failed.append((current["path"], note))
        return
    _store_track(cache, current, streams, fes, size, mtime, rep, label_index)
    rep.analysed += 1
    rep.audio_seconds += current["n"] / SAMPLE_RATE


def _stat(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _streaming(fe: FrontEnd, device):
    from tagger.streaming import StreamingMagnitude
    return StreamingMagnitude(fe, device)


def _store_track(cache: DatasetCache, cur: dict, streams, fes, size: int, mtime: int,
                 rep: BuildReport, label_index) -> None:
    path = cur["path"]
    tid = cur["h"].hexdigest()[:20]
    known = cache.db.execute("SELECT path FROM tracks WHERE id=?", (tid,)).fetchone()
    have = cache.streams_of(tid) if known else set()
    for spec, fe, sm in zip(streams, fes, cur["sm"]):
        if spec.name in have:
            continue
        cache.put(tid, spec.name, spec.finish(fe, sm.finish()))
    if known is None:
        cache.add_track(TrackInfo(tid, path, cur["n"] / SAMPLE_RATE, cur["n"],
                                  track_group(path, tid), None, None))
        rep.added += 1
        status = "ok"
    else:
        status = "ok" if known[0] == path else "duplicate"
        if status == "duplicate":
            rep.duplicates += 1
    if label_index is not None and status == "ok":
        attach_labels(cache, tid, path, label_index)
    cache.record_source(path, size, mtime, tid, status,
                        "" if status == "ok" else f"same audio as {known[0]}")


def attach_labels(cache: DatasetCache, track_id: str, path: str, label_index) -> bool:
    """Store the ``.lab`` frame labels and ``.key`` key of a track when files exist."""
    from . import labels as L
    info = cache.track(track_id)
    lab = label_index.find(path, ".lab")
    keyf = label_index.find(path, ".key")
    key = info.key
    if keyf is not None:
        try:
            key = L.read_key(keyf)
        except (ValueError, OSError):
            key = None
    labpath = info.lab
    if lab is not None and (info.lab != str(lab) or not cache.has(track_id, "labels")):
        fr = ChordStudent.FEATURES["sample_rate"] / ChordStudent.FEATURES["hop_length"]
        n_frames = 1 + info.n_samples // ChordStudent.FEATURES["hop_length"]
        try:
            intervals, labs = L.read_lab(lab)
        except Exception:
            intervals = None
        if intervals is not None:
            cache.put(track_id, "labels", L.frame_labels(intervals, labs, n_frames, fr))
            labpath = str(lab)
    if keyf is not None and key is not None:
        _attach_key_changes(cache, info, keyf)
    if key != info.key or labpath != info.lab:
        cache.set_track_labels(track_id, key, labpath)
    return lab is not None


def _attach_key_changes(cache: DatasetCache, info: TrackInfo, keyf) -> None:
    """A ``.key`` file with key changes: the key in force per S-KEY frame, the
    ``keys`` stream (training labels each segment with its own key)."""
    from . import labels as L
    try:
        segments = L.read_key_segments(keyf)
    except (ValueError, OSError):
        return
    if len({k for _, _, k in segments}) < 2 or cache.has(info.id, KEY_CHANGES):
        return
    spec = skey_stream()
    n_frames = 1 + info.n_samples // spec.features["hop_length"]
    cache.put(info.id, KEY_CHANGES, L.frame_keys(segments, n_frames, spec.frame_rate))


def attach_all_labels(cache: DatasetCache, track_ids: list[str], label_index) -> int:
    n = 0
    for tid in track_ids:
        n += attach_labels(cache, tid, cache.track(tid).path, label_index)
    return n


def _library_tracks(cache: DatasetCache, files: list[str]) -> list[str]:
    """Distinct usable tracks of ``files`` (in file order)."""
    seen: dict[str, None] = {}
    for p in files:
        src = cache.source(p)
        if src is not None and src[2] is not None and src[3] != "failed":
            seen.setdefault(src[2], None)
    return list(seen)


def split_tracks(cache: DatasetCache, track_ids: list[str], heldout: float = 0.1,
                 salt: str = "keychords-distill-v1") -> tuple[list[str], list[str]]:
    """``(train, heldout)`` by group (a hash rule: stable as the library grows).

    At least one group is held out when there are two or more groups and
    ``heldout > 0``.
    """
    if heldout <= 0:
        return list(track_ids), []
    groups: dict[str, list[str]] = {}
    for tid in track_ids:
        groups.setdefault(cache.track(tid).group, []).append(tid)

    def h(g: str) -> float:
        return int(hashlib.sha256(f"{salt}:{g}".encode()).hexdigest()[:12], 16) / 16 ** 12

    held = [g for g in groups if h(g) < heldout]
    if not held and len(groups) >= 2:
        held = [min(groups, key=h)]
    if len(held) == len(groups) and len(groups) >= 2:
        held = held[:-1]
    hs = set(held)
    train = [t for g, ts in groups.items() if g not in hs for t in ts]
    return train, [t for g in held for t in groups[g]]


def hours(cache: DatasetCache, ids) -> float:
    return sum(cache.track(t).duration for t in ids) / 3600


__all__ = [
    "PAD_SEMITONES",
    "BuildReport",
    "CacheError",
    "DatasetCache",
    "StreamSpec",
    "TrackInfo",
    "attach_all_labels",
    "build_features",
    "default_cache_dir",
    "skey_stream",
    "split_tracks",
    "student_input",
    "student_stream",
    "teacher_input_stream",
]
