"""Ground-truth files: ``.lab`` chord annotations and ``.key`` key annotations.

A label file belongs to an audio file when it has the same stem and lies
next to it, or anywhere under one of the ``--labels`` folders (looked up by
stem; the first match in sorted order wins). ``.lab`` files are read as
mir_eval reads them (``start end label`` per line); a ``.key`` file's first
non-empty line is a key such as ``Eb major``, ``F# minor`` or ``Am``.

A ``.key`` file may also give the key in force over time, one
``start end key`` line per segment (seconds), after the whole-track key
line (readers of single-key files still see that line first)::

    Eb major
    0.000000	95.300000	Eb major
    95.300000	190.000000	F major

A file of timed lines only is read too; its whole-track key is then the key
covering most time.

A ``.lab`` file keychords wrote itself (``--sidecar lab``: first line
``# keychords ...``) is never taken for ground truth: it holds the model's
own guesses.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from model_zoo import keys, vocab

from ..sidecar import is_keychords_lab

IGNORE = -1  # frame label: no usable ground truth (outside the annotation, or X)


def is_label_file(path: Path) -> bool:
    """Whether ``path`` is a ground-truth file (not a sidecar keychords wrote)."""
    return path.is_file() and not (path.suffix.lower() == ".lab" and is_keychords_lab(path))


class LabelIndex:
    """Finds ``.lab`` / ``.key`` files for audio files (never keychords' own
    ``.lab`` sidecars)."""

    def __init__(self, label_dirs=()):
        self._by_stem: dict[tuple[str, str], Path] = {}
        for d in label_dirs or ():
            for root, dirs, files in os.walk(d):
                dirs.sort()
                for name in sorted(files):
                    stem, ext = os.path.splitext(name)
                    ext = ext.lower()
                    path = Path(root) / name
                    if (ext in (".lab", ".key") and not name.startswith(".")
                            and (stem, ext) not in self._by_stem and is_label_file(path)):
                        self._by_stem[(stem, ext)] = path

    def find(self, audio_path: str | os.PathLike, ext: str) -> Path | None:
        p = Path(audio_path)
        beside = p.with_suffix(ext)
        if is_label_file(beside):
            return beside
        return self._by_stem.get((p.stem, ext))


def parse_key_text(text: str) -> int:
    """Key index of ``Eb major``, ``F# minor``, ``Am`` or ``Eb:maj``."""
    text = text.strip()
    if ":" in text:  # "Eb:maj" style
        tonic, mode = text.split(":", 1)
        text = f"{tonic} {'minor' if mode.strip().startswith('min') else 'major'}"
    return keys.parse_key(text)


def _timed(text: str) -> tuple[float, float, str] | None:
    """``(start, end, key text)`` of a ``start end key`` line, else None."""
    parts = text.split(None, 2)
    if len(parts) < 3:
        return None
    try:
        return float(parts[0]), float(parts[1]), parts[2]
    except ValueError:
        return None


def _key_lines(path) -> tuple[int | None, list[tuple[float, float, int]]]:
    """``(whole-track key or None, timed segments)`` of a ``.key`` file."""
    whole, segments = None, []
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        row = _timed(text)
        if row is not None:
            segments.append((row[0], row[1], parse_key_text(row[2])))
        elif whole is None:
            whole = parse_key_text(text)
    return whole, segments


def read_key(path: str | os.PathLike) -> int:
    """The whole-track key index (:mod:`model_zoo.keys` order) of a ``.key`` file."""
    whole, segments = _key_lines(path)
    if whole is not None:
        return whole
    if not segments:
        raise ValueError(f"{path}: empty key file")
    totals: dict[int, float] = {}
    for start, end, k in segments:
        totals[k] = totals.get(k, 0.0) + max(0.0, end - start)
    return max(totals, key=lambda k: (totals[k], -next(i for i, s in enumerate(segments)
                                                        if s[2] == k)))


def read_key_segments(path: str | os.PathLike) -> list[tuple[float, float, int]]:
    """``[(start, end, key index)]`` of a ``.key`` file; a single-key file gives
    one segment over all time (``0, inf``)."""
    whole, segments = _key_lines(path)
    if segments:
        return segments
    if whole is None:
        raise ValueError(f"{path}: empty key file")
    return [(0.0, float("inf"), whole)]


def frame_keys(segments, n_frames: int, frame_rate: float) -> np.ndarray:
    """Key index per frame (frame ``i`` at ``i / frame_rate`` s); :data:`IGNORE`
    outside every segment."""
    out = np.full(n_frames, IGNORE, dtype=np.int16)
    times = np.arange(n_frames) / frame_rate
    for start, end, k in segments:
        lo = int(np.searchsorted(times, start, side="left"))
        hi = int(np.searchsorted(times, end, side="left"))
        out[lo:hi] = k
    return out


def read_lab(path: str | os.PathLike) -> tuple[np.ndarray, list[str]]:
    """``(intervals (n, 2), labels)`` of a ``.lab`` file.

    The format mir_eval reads: ``start end label`` per line, whitespace
    separated (the label is the rest of the line); blank lines and ``#``
    comments are skipped. No mir_eval needed here (scoring needs it).
    """
    starts, ends, labels = [], [], []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8",
                                                  errors="replace").splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        parts = text.split(None, 2)
        if len(parts) < 3:
            raise ValueError(f"{path}:{n}: expected 'start end label', got {line!r}")
        starts.append(float(parts[0]))
        ends.append(float(parts[1]))
        labels.append(parts[2].strip())
    intervals = np.array([starts, ends], dtype=np.float64).T.reshape(-1, 2)
    return intervals, labels


def frame_labels(intervals: np.ndarray, labels: list[str], n_frames: int,
                 frame_rate: float) -> np.ndarray:
    """Vocabulary index per frame (frame ``i`` centred at ``i / frame_rate`` s).

    Frames outside every interval, and chords the vocabulary cannot express
    (``X``), get :data:`IGNORE`: they carry no usable chord information.
    Unparseable labels also become :data:`IGNORE`.
    """
    out = np.full(n_frames, IGNORE, dtype=np.int16)
    times = np.arange(n_frames) / frame_rate
    for (start, end), lab in zip(intervals, labels):
        try:
            idx = vocab.label_to_index(lab)
        except ValueError:
            idx = IGNORE
        if idx == vocab.X_INDEX:
            idx = IGNORE
        lo = int(np.searchsorted(times, start, side="left"))
        hi = int(np.searchsorted(times, end, side="left"))
        out[lo:hi] = idx
    return out
