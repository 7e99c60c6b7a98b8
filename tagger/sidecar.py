"""Sidecar files with the full timed analysis of a track, next to the audio.

Kinds (``<name>`` is the audio file's whole name, extension included, so
``song.ogg`` and ``song.flac`` never share a sidecar):

``lab``   ``<name>.lab``: the mir_eval / Harte lab format, one segment a
          line, ``start<TAB>end<TAB>label`` with 6 decimals, after a first
          comment line ``# keychords <version> chord=<id> key=<id>``.
``json``  ``<name>.chords.json``: generator, path, duration, key
          (``Eb major``), key_confidence, tuning (cents vs A440),
          key_changes, key_regions ``[[start, end, "Eb major", confidence],
          ...]``, chords, progression, segments ``[[start, end, label,
          confidence], ...]``, models.
``jams``  ``<name>.jams``: a JAMS document (JSON, written without the
          ``jams`` package) with a ``chord`` annotation and, when the key is
          known, a ``key_mode`` annotation: one observation per key region
          (``Eb:major``); the generator is in ``annotation_tools`` and the
          ``keychords`` sandbox, with the tuning.

The header and generator fields mark the files as keychords' own guesses:
:mod:`tagger.distill.labels` never takes them for ground truth. Chord labels
are spelled in the key at their time (:mod:`tagger.spelling`; ``flats=True``
/ ``False`` force flats / sharps).

Every file is written atomically: a hidden temporary file in the same
directory (``.NAME.XXXXXXXX.keychords-tmp``, so
:func:`tagger.tags.remove_tmp_files` cleans up after a crash), fsynced and
renamed over the destination (:func:`model_zoo.fileio.atomic_write`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from model_zoo import keys, vocab
from model_zoo.fileio import atomic_write

from . import keytrack, version
from .result import TrackResult

KINDS = ("lab", "json", "jams")
JAMS_VERSION = "0.3.4"
_SUFFIXES = {"lab": ".lab", "json": ".chords.json", "jams": ".jams"}


GENERATOR = "keychords"          # first word of every header / generator field


def sidecar_path(audio_path, kind: str) -> Path:
    """Where the ``kind`` sidecar of ``audio_path`` goes: ``song.ogg`` ->
    ``song.ogg.lab``."""
    if kind not in _SUFFIXES:
        raise ValueError(f"unknown sidecar kind {kind!r}; one of {', '.join(KINDS)}")
    p = Path(audio_path)
    return p.with_name(p.name + _SUFFIXES[kind])


def missing_sidecars(audio_path, kinds: Iterable[str]) -> list[str]:
    """The ``kinds`` whose sidecar of ``audio_path`` does not exist yet."""
    return [k for k in kinds if not sidecar_path(audio_path, k).exists()]


def generator(models: dict[str, str]) -> str:
    """``keychords 0.1.0 chord=ID key=ID``: who wrote a sidecar."""
    ids = " ".join(f"{k}={v}" for k, v in sorted(models.items()))
    return f"{GENERATOR} {version()} {ids}".rstrip()


def is_keychords_lab(path) -> bool:
    """Whether a ``.lab`` file is one keychords wrote (its first line is the
    ``# keychords ...`` header), not a human annotation."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            first = f.readline()
    except OSError:
        return False
    return first.startswith(f"# {GENERATOR} ")


def _label(index: int, flats: bool) -> str:
    return vocab.harte_name(index, flats)


def lab_text(result: TrackResult, flats: bool | None = None) -> str:
    rows = "".join(f"{start:.6f}\t{end:.6f}\t{label}\n"
                   for start, end, label in result.timed_labels(flats))
    return f"# {generator(result.models)}\n{rows}"


def format_chords_timed(segments: Iterable[tuple[float, float, str]]) -> str:
    """``(start, end, label)`` segments as compact text.

    Entries are separated by ``|``; each is a start time in seconds (two
    decimals) and a Harte label (``N`` no chord, ``X`` unknown); the last
    entry is the end time alone::

        0.00 N|0.46 C:maj|2.32 G:maj|4.18 A:min|6.04 F:maj|8.00

    Consecutive segments share their boundary, so each chord lasts until the
    next entry's time. An empty sequence gives ``""``.
    """
    parts: list[str] = []
    end = None
    for start, stop, label in segments:
        parts.append(f"{start:.2f} {label}")
        end = stop
    if end is None:
        return ""
    parts.append(f"{end:.2f}")
    return "|".join(parts)


def parse_chords_timed(text: str) -> list[tuple[float, float, str]]:
    """The inverse of :func:`format_chords_timed`: ``[(start, end, label)]``."""
    entries = [e.strip() for e in (text or "").split("|") if e.strip()]
    if not entries:
        return []
    starts: list[tuple[float, str]] = []
    for e in entries[:-1]:
        t, _, label = e.partition(" ")
        starts.append((float(t), label.strip()))
    end = float(entries[-1].split()[0])
    out = []
    for i, (t, label) in enumerate(starts):
        stop = starts[i + 1][0] if i + 1 < len(starts) else end
        out.append((t, stop, label))
    return out


def chords_timed_text(segments, flats: bool = False) -> str:
    """Decoded chord segments as :func:`format_chords_timed` text (beets'
    ``chords_timed`` attribute)."""
    return format_chords_timed((s.start, s.end, _label(s.index, flats)) for s in segments)


def keys_timed_text(result: TrackResult, flats: bool | None = None) -> str:
    """The timed key track as :func:`format_chords_timed` text, keys in short
    standard notation: ``0.00 Eb|95.00 E|210.50`` (beets' ``keys_timed``)."""
    return format_chords_timed(keytrack.as_triples(
        result.key_regions, lambda k: keys.short_key(k, flats)))


def json_document(result: TrackResult, flats: bool | None = None) -> dict:
    return {
        "generator": generator(result.models),
        "path": str(result.path),
        "duration": round(float(result.duration), 6),
        "key": result.key_long,
        "key_confidence": None if result.key_index is None else round(float(result.key_confidence), 6),
        "tuning": None if result.tuning is None else round(float(result.tuning), 2),
        "key_changes": result.key_changes,
        "key_regions": result.key_regions_json(),
        "chords": result.chords,
        "progression": result.progression,
        "segments": result.segments_json(flats),
        "models": dict(result.models),
    }


def _key_mode_value(idx: int) -> str:
    name, mode = keys.long_key(idx, flats=None).split()  # conventional spelling
    return f"{name}:{mode}"


def _annotation_metadata(model_id: str | None, task: str) -> dict:
    return {
        "curator": {"name": "", "email": ""},
        "annotator": {"name": "keychords", "model": model_id or ""},
        "version": model_id or "",
        "corpus": "",
        "annotation_tools": GENERATOR + " " + version(),
        "annotation_rules": f"automatic {task} estimation",
        "validation": "",
        "data_source": "machine prediction",
    }


def _key_mode_data(result: TrackResult) -> list[dict]:
    regions = result.key_regions or [keytrack.KeyRegion(
        0.0, float(result.duration), result.key_index, float(result.key_confidence))]
    return [{"time": round(max(0.0, r.start), 6), "duration": round(max(0.0, r.end - r.start), 6),
             "value": _key_mode_value(r.key), "confidence": round(float(r.confidence), 6)}
            for r in regions]


def jams_document(result: TrackResult, flats: bool | None = None) -> dict:
    duration = max(0.0, float(result.duration))
    chord_data = [{
        "time": round(max(0.0, s.start), 6),
        "duration": round(max(0.0, s.end - s.start), 6),
        "value": label,
        "confidence": round(float(s.confidence), 6),
    } for s, (_, _, label) in zip(result.segments, result.timed_labels(flats))]
    annotations = [{
        "annotation_metadata": _annotation_metadata(result.models.get("chord"), "chord"),
        "namespace": "chord",
        "data": chord_data,
        "sandbox": {},
        "time": 0.0,
        "duration": round(duration, 6),
    }]
    if result.key_index is not None:
        annotations.append({
            "annotation_metadata": _annotation_metadata(result.models.get("key"), "key"),
            "namespace": "key_mode",
            "data": _key_mode_data(result),
            "sandbox": {},
            "time": 0.0,
            "duration": round(duration, 6),
        })
    return {
        "annotations": annotations,
        "file_metadata": {
            "title": "", "artist": "", "release": "",
            "duration": round(duration, 6),
            "identifiers": {},
            "jams_version": JAMS_VERSION,
        },
        "sandbox": {"keychords": {"generator": generator(result.models),
                                  "path": str(result.path), "chords": result.chords,
                                  "progression": result.progression,
                                  "tuning": None if result.tuning is None
                                  else round(float(result.tuning), 2),
                                  "models": dict(result.models)}},
    }


def atomic_write_text(dest, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``dest`` through a temporary file + rename.

    A new file gets the usual permissions (0666 less the umask); an existing
    one keeps its permission bits. On any error the temporary file is
    removed and ``dest`` is left as it was; the error propagates.
    """
    dest = Path(dest)
    data = text.encode("utf-8")
    atomic_write(dest, lambda tmp: Path(tmp).write_bytes(data))
    return dest


def write_sidecar(result: TrackResult, kind: str, dest=None, flats: bool | None = None) -> Path:
    """Write the ``kind`` sidecar (``lab``, ``json``, ``jams``) of ``result``.

    ``dest`` overrides the default location (:func:`sidecar_path`).
    Returns the path written.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown sidecar kind {kind!r}; one of {', '.join(KINDS)}")
    dest = Path(dest) if dest is not None else sidecar_path(result.path, kind)
    if kind == "lab":
        text = lab_text(result, flats)
    elif kind == "json":
        text = json.dumps(json_document(result, flats), ensure_ascii=False, indent=1) + "\n"
    else:
        text = json.dumps(jams_document(result, flats), ensure_ascii=False, indent=1) + "\n"
    return atomic_write_text(dest, text)
