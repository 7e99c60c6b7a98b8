"""The two Ray Data stages of ``keychords tag --ray``.

:func:`decode_batch` (plain CPU tasks) decodes files and computes their
features with :class:`tagger.engine.FeatureExtractor`; only the packed fp16
features (:mod:`tagger.packed`) leave it. :class:`ModelStage` (an actor
pool, one GPU per actor where the cluster has GPUs) analyses them in
batches across tracks. A file that cannot be decoded or analysed becomes a
row with an error, never an exception that would stop the job.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from . import pipeline
from . import results_table as table
from .engine import AnalysisError, Analyzer, FeatureExtractor
from .packed import pack, unpack
from .workers import decode_messages

LONG_SECONDS = 1800.0         # a file longer than this goes out as a block of its own
BLOCK_AUDIO_SECONDS = 600.0   # otherwise a block holds about this much audio


def columns(rows: list[dict]) -> dict[str, np.ndarray]:
    """Rows as a batch of columns (text and bytes as object arrays)."""
    out = {}
    for name in rows[0]:
        values = [r[name] for r in rows]
        kind = object if isinstance(values[0], (str, bytes)) else None
        out[name] = np.array(values, dtype=kind)
    return out


def batch_rows(batch: dict[str, np.ndarray]) -> list[dict]:
    names = list(batch)
    return [dict(zip(names, values)) for values in zip(*(batch[n] for n in names))]


def features_row(extractor: FeatureExtractor, entry: dict) -> dict:
    """Decode one file and compute its features: a row with ``features``
    (packed) and ``n_samples``, or status ``failed`` and an ``error``."""
    row = {"path": str(entry["path"]), "size": int(entry["size"]),
           "mtime_ns": int(entry["mtime_ns"]), "status": "ok", "error": "",
           "n_samples": 0, "features": b""}
    track = extractor.start(row["path"])
    for kind, payload in decode_messages(row["path"], extractor.sample_rate):
        if kind == "chunk":
            extractor.feed(track, payload)
        elif kind == "error":
            row.update(status="failed", error=payload)
            return row
        else:  # the version of the file that was read
            row["size"], row["mtime_ns"] = payload
    try:
        row["features"] = pack(extractor.finish(track))
    except AnalysisError as e:
        row.update(status="failed", error=str(e))
    row["n_samples"] = track.n_samples
    return row


def decode_batch(batch: dict[str, np.ndarray], cards: list, threads: int = 1
                 ) -> Iterator[dict[str, np.ndarray]]:
    """Manifest rows in, feature rows out, in blocks of bounded audio length."""
    import torch
    torch.set_num_threads(threads)
    extractor = FeatureExtractor(cards)
    rows, seconds = [], 0.0
    for entry in batch_rows(batch):
        row = features_row(extractor, entry)
        length = row["n_samples"] / extractor.sample_rate
        if length > LONG_SECONDS:
            yield columns([row])
            continue
        rows.append(row)
        seconds += length
        if seconds >= BLOCK_AUDIO_SECONDS:
            yield columns(rows)
            rows, seconds = [], 0.0
    if rows:
        yield columns(rows)


class ModelStage:
    """An actor that holds the models and turns feature rows into result rows."""

    def __init__(self, chord_card, key_card, options: pipeline.Options,
                 batch_size: int = 16, threads: int = 1):
        self.analyzer = Analyzer(chord_card, key_card, with_chords=chord_card is not None,
                                 with_key=key_card is not None, batch_size=batch_size,
                                 flats=options.flats, num_threads=threads)
        self.options = options

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        entries = batch_rows(batch)
        out = [table.error_row(e, str(e["error"]), self.analyzer.model_ids) for e in entries]
        todo = [i for i, e in enumerate(entries) if e["status"] == "ok"]
        tracks = [unpack(str(entries[i]["path"]), int(entries[i]["n_samples"]),
                         entries[i]["features"], self.analyzer.device) for i in todo]
        for i, res in zip(todo, self.analyse(tracks)):
            if isinstance(res, str):
                out[i] = table.error_row(entries[i], res, self.analyzer.model_ids)
            else:
                out[i] = table.result_row(entries[i], res, pipeline.tag_values(res, self.options),
                                          self.options.flats)
        return columns(out)

    def analyse(self, tracks: list) -> list:
        """Results, batched; if a batch fails, track by track (an error
        message for each track that fails alone)."""
        try:
            return self.analyzer.analyse(tracks)
        except Exception:
            pass
        out = []
        for t in tracks:
            try:
                out.append(self.analyzer.analyse([t])[0])
            except Exception as e:
                out.append(f"analysis failed ({type(e).__name__}: {e})")
        return out
