"""The results table of a distributed run: Parquet part files in one folder.

One row per analysed file: where it is and which version of it was analysed
(path, size, mtime_ns), whether that worked (status ``ok`` / ``failed``,
error), what came out (key, confidence, chords, progression, the timed
chords as JSON ``[[start, end, label, confidence], ...]``, the tag values to
write as JSON) and by which models. Part files are written whole and
renamed into place, so a killed run leaves only complete parts; a later run
resumes by skipping files the table already holds for the same models.
Needs pyarrow (the ``ray`` extra).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from .result import TrackResult

PART_GLOB = "part-*.parquet"
TMP_SUFFIX = ".parquet-tmp"
COLUMNS = {  # name -> pyarrow type name
    "path": "string", "size": "int64", "mtime_ns": "int64", "status": "string",
    "error": "string", "duration": "float64", "key": "string", "key_index": "int64",
    "confidence": "float64", "chords": "string", "progression": "string",
    "timed_chords": "string", "tags": "string", "chord_model": "string",
    "key_model": "string", "analysed": "float64",
}


def schema():
    import pyarrow as pa
    return pa.schema([(name, getattr(pa, kind)()) for name, kind in COLUMNS.items()])


def _base_row(entry: dict, models: dict[str, str]) -> dict:
    return {"path": entry["path"], "size": int(entry["size"]),
            "mtime_ns": int(entry["mtime_ns"]), "status": "ok", "error": "",
            "duration": 0.0, "key": "", "key_index": -1, "confidence": 0.0, "chords": "",
            "progression": "", "timed_chords": "[]", "tags": "{}",
            "chord_model": models.get("chord", ""), "key_model": models.get("key", ""),
            "analysed": time.time()}


def result_row(entry: dict, result: TrackResult, tags: dict[str, str],
               flats: bool = False) -> dict:
    """The row of a file (``entry``: path, size, mtime_ns) analysed into ``result``."""
    row = _base_row(entry, result.models)
    row.update(duration=result.duration, key=result.key_long or "",
               key_index=-1 if result.key_index is None else result.key_index,
               confidence=result.key_confidence, chords=result.chords,
               progression=result.progression,
               timed_chords=json.dumps(result.segments_json(flats)), tags=json.dumps(tags))
    return row


def error_row(entry: dict, error: str, models: dict[str, str]) -> dict:
    """The row of a file that could not be analysed."""
    row = _base_row(entry, models)
    row.update(status="failed", error=error)
    return row


def write_part(directory: str | os.PathLike, rows: list[dict]) -> Path:
    """Write ``rows`` as a new part file, atomically (temporary file, fsync, rename)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    name = f"part-{time.time_ns():020d}-{os.getpid()}.parquet"
    tmp = d / f".{name}{TMP_SUFFIX}"
    pq.write_table(pa.Table.from_pylist(rows, schema=schema()), tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, d / name)
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return d / name


def remove_partial_parts(directory: str | os.PathLike) -> list[Path]:
    """Delete part files a killed run left half-written."""
    found = sorted(Path(directory).glob(f".part-*{TMP_SUFFIX}"))
    for p in found:
        p.unlink(missing_ok=True)
    return found


def read_rows(directory: str | os.PathLike, columns: list[str] | None = None) -> list[dict]:
    """Every row of the table, oldest part first (a file analysed twice:
    its later row comes later)."""
    import pyarrow.parquet as pq
    rows: list[dict] = []
    for part in sorted(Path(directory).glob(PART_GLOB)):
        rows.extend(pq.read_table(part, columns=columns).to_pylist())
    return rows


def analysed(directory: str | os.PathLike) -> set[tuple]:
    """``(path, size, mtime_ns, chord_model, key_model)`` of every row: what
    a resumed run with the same models need not analyse again."""
    if not Path(directory).is_dir():
        return set()
    cols = ["path", "size", "mtime_ns", "chord_model", "key_model"]
    return {tuple(r[c] for c in cols) for r in read_rows(directory, cols)}


def latest_rows(directory: str | os.PathLike) -> dict[str, dict]:
    """The most recent row of each path."""
    return {r["path"]: r for r in read_rows(directory)}
