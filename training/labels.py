"""Chord and key labels of POP909, transposition, and mir_eval ``.lab`` I/O.

POP909 files read here (per song folder ``NNN/``):

* ``chord_midi.txt``: ``start<TAB>end<TAB>label`` per line, Harte labels
  (``F#:maj7/5``, ``Bb:sus4(b7)``, ``N``), times in seconds on the MIDI
  file's own clock (so they hold for audio rendered from that MIDI).
* ``key_audio.txt``: ``start<TAB>end<TAB>key`` (``Gb:maj``, ``Eb:min``);
  its times are on the clock of the original recording, not the MIDI's,
  so only the per-key total durations are used here (the majority key).
"""

from __future__ import annotations

import re
from pathlib import Path

from model_zoo import keys, vocab

_ROOT_RE = re.compile(r"^([A-G][#b]*)(.*)$")
_NOTE_ONLY_RE = re.compile(r"^[A-G][#b]*$")


def _respell(pc: int, like: str, flats: bool | None) -> str:
    if flats is None:
        flats = "b" in like[1:]
    return vocab.pitch_name(pc, flats)


def transpose_label(label: str, semitones: int, flats: bool | None = None) -> str:
    """Move a Harte label's root by ``semitones``; qualities and bass degrees stay.

    ``N`` and ``X`` are unchanged; a bass given as a note name (not Harte's
    degree form) moves with the root. ``flats=None`` keeps the label's own
    accidental style (``Gb:maj`` +2 -> ``Ab:maj``, ``F#:min`` +1 -> ``G:min``);
    True / False force flats / sharps. ``semitones % 12 == 0`` returns the
    label unchanged.
    """
    label = label.strip()
    if label in ("N", "X") or semitones % 12 == 0:
        return label
    m = _ROOT_RE.match(label)
    if m is None:
        raise ValueError(f"not a Harte chord label: {label!r}")
    root, rest = m.group(1), m.group(2)
    new_root = _respell(vocab.pitch_class(root) + semitones, root, flats)
    if "/" in rest:
        head, bass = rest.split("/", 1)
        if _NOTE_ONLY_RE.match(bass):
            bass = _respell(vocab.pitch_class(bass) + semitones, bass, flats)
        rest = f"{head}/{bass}"
    return new_root + rest


def parse_key(text: str) -> int:
    """Key index (model_zoo.keys order) of ``Gb:maj``, ``Eb:min``, ``Gb major``, ``Am``."""
    t = text.strip()
    if ":" in t:
        tonic, mode = t.split(":", 1)
        mode = {"maj": "major", "min": "minor"}.get(mode.strip(), mode.strip())
        t = f"{tonic} {mode}"
    return keys.parse_key(t)


def key_name(text: str) -> str:
    """``Gb:maj`` -> ``Gb major`` (the tonic's spelling kept)."""
    idx = parse_key(text)
    tonic = re.match(r"\s*([A-Ga-g][#b]*)", text).group(1)
    return tonic[0].upper() + tonic[1:] + (" minor" if idx >= 12 else " major")


def key_uses_flats(text: str) -> bool:
    """Whether the key's signature has flats (``Ab major``, ``C minor``: yes)."""
    return keys.signature_has_flats(parse_key(text))


def transpose_key(text: str, semitones: int) -> str:
    """``Gb major`` (or ``Gb:maj``) +2 -> ``Ab major``.

    Unmoved keys keep their spelling; moved ones are spelled as their key
    signature is (``model_zoo.keys.long_key``).
    """
    if semitones % 12 == 0:
        return key_name(text)
    tonic, minor = keys.tonic_mode(parse_key(text))
    return keys.long_key(keys.key_index(tonic + semitones, minor))


def read_segments(path: str | Path) -> list[tuple[float, float, str]]:
    """``(start, end, label)`` rows of a whitespace-separated text file."""
    rows = []
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 3:
            raise ValueError(f"{path}: bad line {line!r}")
        rows.append((float(parts[0]), float(parts[1]), " ".join(parts[2:])))
    return rows


def majority_key(segments: list[tuple[float, float, str]]) -> tuple[str, float, int]:
    """The key covering most time: ``(label, fraction of the keyed time, n distinct keys)``.

    Labels are compared by key index, so ``F#:maj`` and ``Gb:maj`` add up;
    the name is spelled as first written (``Gb:maj`` -> ``Gb major``).
    Ties go to the key that appears first.
    """
    totals: dict[int, float] = {}
    order: list[int] = []
    names: dict[int, str] = {}
    for start, end, lab in segments:
        idx = parse_key(lab)
        if idx not in totals:
            order.append(idx)
            totals[idx] = 0.0
            names[idx] = key_name(lab)
        totals[idx] += max(0.0, end - start)
    if not totals:
        raise ValueError("no key segments")
    best = max(order, key=lambda i: (totals[i], -order.index(i)))
    whole = sum(totals.values())
    return names[best], (totals[best] / whole if whole > 0 else 1.0), len(totals)


def format_lab(segments) -> str:
    """mir_eval ``.lab`` text: ``start<TAB>end<TAB>label`` per line, 6 decimals."""
    return "".join(f"{s:.6f}\t{e:.6f}\t{lab}\n" for s, e, lab in segments)


def write_lab(path: str | Path, segments) -> None:
    Path(path).write_text(format_lab(segments))


def read_lab(path: str | Path):
    """``(intervals (n, 2) array, labels)`` as mir_eval reads them."""
    import mir_eval
    return mir_eval.io.load_labeled_intervals(str(path))


def merge_repeats(segments, key=lambda lab: lab):
    """Join consecutive segments whose ``key(label)`` is equal (keeps the first label)."""
    out: list[list] = []
    for s, e, lab in segments:
        if out and key(out[-1][2]) == key(lab):
            out[-1][1] = e
        else:
            out.append([s, e, lab])
    return [tuple(x) for x in out]


def format_key_file(key: str, segments=()) -> str:
    """``.key`` text: the whole-track key, then ``start<TAB>end<TAB>key`` per
    segment when the key changes are known (``tagger.distill.labels`` reads both)."""
    return key + "\n" + "".join(f"{s:.6f}\t{e:.6f}\t{k}\n" for s, e, k in segments)
