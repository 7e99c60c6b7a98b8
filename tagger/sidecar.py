"""Sidecar files with the full timed analysis of a track, next to the audio.

Kinds (``<stem>`` is the audio file name without its extension):

``lab``   ``<stem>.lab``: the mir_eval / Harte lab format, one segment a
          line, ``start<TAB>end<TAB>label`` with 6 decimals.
``json``  ``<stem>.chords.json``: path, duration, key (``Eb major``),
          key_confidence, chords, progression, segments
          ``[[start, end, label, confidence], ...]``, models.
``jams``  ``<stem>.jams``: a JAMS document (JSON, written without the
          ``jams`` package) with a ``chord`` annotation and, when the key is
          known, a ``key_mode`` annotation (``Eb:major``).

Every file is written atomically: a hidden temporary file in the same
directory (``.NAME.XXXXXXXX.keychords-tmp``, so
:func:`tagger.tags.remove_tmp_files` cleans up after a crash), fsynced and
renamed over the destination (:func:`model_zoo.fileio.atomic_write`).
"""

from __future__ import annotations

import json
from pathlib import Path

from model_zoo import keys, vocab
from model_zoo.fileio import atomic_write

from .result import TrackResult

KINDS = ("lab", "json", "jams")
JAMS_VERSION = "0.3.4"
_SUFFIXES = {"lab": ".lab", "json": ".chords.json", "jams": ".jams"}


def sidecar_path(audio_path, kind: str) -> Path:
    """Where the ``kind`` sidecar of ``audio_path`` goes."""
    if kind not in _SUFFIXES:
        raise ValueError(f"unknown sidecar kind {kind!r}; one of {', '.join(KINDS)}")
    p = Path(audio_path)
    return p.with_name(p.stem + _SUFFIXES[kind]) if p.suffix else p.with_name(p.name + _SUFFIXES[kind])


def _label(index: int, flats: bool) -> str:
    return vocab.harte_name(index, flats)


def lab_text(result: TrackResult, flats: bool = False) -> str:
    return "".join(f"{s.start:.6f}\t{s.end:.6f}\t{_label(s.index, flats)}\n"
                   for s in result.segments)


def json_document(result: TrackResult, flats: bool = False) -> dict:
    return {
        "path": str(result.path),
        "duration": round(float(result.duration), 6),
        "key": result.key_long,
        "key_confidence": None if result.key_index is None else round(float(result.key_confidence), 6),
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
        "annotation_tools": "keychords",
        "annotation_rules": f"automatic {task} estimation",
        "validation": "",
        "data_source": "machine prediction",
    }


def jams_document(result: TrackResult, flats: bool = False) -> dict:
    duration = max(0.0, float(result.duration))
    chord_data = [{
        "time": round(max(0.0, s.start), 6),
        "duration": round(max(0.0, s.end - s.start), 6),
        "value": _label(s.index, flats),
        "confidence": round(float(s.confidence), 6),
    } for s in result.segments]
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
            "data": [{"time": 0.0, "duration": round(duration, 6),
                      "value": _key_mode_value(result.key_index),
                      "confidence": round(float(result.key_confidence), 6)}],
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
        "sandbox": {"keychords": {"path": str(result.path), "chords": result.chords,
                                  "progression": result.progression,
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


def write_sidecar(result: TrackResult, kind: str, dest=None, flats: bool = False) -> Path:
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
