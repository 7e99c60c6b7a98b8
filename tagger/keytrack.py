"""A timed key track: where a song changes key.

The key model sees overlapping windows (15 s long, one every ``hop`` s);
each window's 24 posteriors stand for the ``hop`` seconds around its
centre. A Viterbi path over them (stay with probability ``p_self``, else
jump to any other key: :func:`tagger.chords.viterbi_uniform`) turns them
into key regions, so that a change needs several windows of evidence.
``p_self`` was tuned on validation songs with expert key changes
(training/key_changes_eval.py; figures in training/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .chords import viterbi_uniform

HOP_SECONDS = 5.0
P_SELF = 0.9999
EDGE_SECONDS = 30.0        # intro / outro length for key_intro / key_outro


@dataclass(frozen=True)
class KeyRegion:
    start: float
    end: float
    key: int                # model_zoo.keys index
    confidence: float       # mean posterior of ``key`` over the region's windows


def window_cells(centres: np.ndarray, duration: float) -> np.ndarray:
    """Boundaries ``(n + 1,)`` of the time cells the windows stand for: midway
    between centres, the first from 0 and the last to ``duration``."""
    centres = np.asarray(centres, dtype=np.float64)
    mids = (centres[1:] + centres[:-1]) / 2
    return np.concatenate([[0.0], mids, [max(duration, centres[-1] if len(centres) else 0.0)]])


def key_regions(probs: np.ndarray, centres: np.ndarray, duration: float,
                p_self: float = P_SELF) -> list[KeyRegion]:
    """Key regions from window posteriors ``probs (n, 24)`` centred at ``centres`` (s)."""
    probs = np.asarray(probs, dtype=np.float64)
    if len(probs) == 0:
        return []
    path = viterbi_uniform(probs, p_self)
    cells = window_cells(centres, duration)
    regions, start = [], 0
    for i in range(1, len(path) + 1):
        if i == len(path) or path[i] != path[start]:
            k = int(path[start])
            regions.append(KeyRegion(float(cells[start]), float(cells[i]), k,
                                     float(probs[start:i, k].mean())))
            start = i
    return regions


def main_key(regions: list[KeyRegion]) -> int | None:
    """The key covering most of the track (first such on ties)."""
    total: dict[int, float] = {}
    for r in regions:
        total[r.key] = total.get(r.key, 0.0) + r.end - r.start
    return max(total, key=lambda k: total[k]) if total else None


def key_between(regions: list[KeyRegion], start: float, end: float) -> int | None:
    """The key covering most of ``[start, end]``."""
    clipped = [KeyRegion(max(r.start, start), min(r.end, end), r.key, r.confidence)
               for r in regions if r.end > start and r.start < end]
    return main_key(clipped)


def edge_keys(regions: list[KeyRegion], duration: float,
              seconds: float = EDGE_SECONDS) -> tuple[int | None, int | None]:
    """``(intro key, outro key)``: the keys of the first and last ``seconds``."""
    if not regions:
        return None, None
    return (key_between(regions, 0.0, min(seconds, duration)),
            key_between(regions, max(0.0, duration - seconds), duration))


def key_at(regions: list[KeyRegion], t: float, default: int | None = None) -> int | None:
    """The key at time ``t`` (``default`` outside every region)."""
    for r in regions:
        if r.start <= t < r.end:
            return r.key
    if regions and t >= regions[-1].end:
        return regions[-1].key
    return default


def as_triples(regions: list[KeyRegion], name) -> list[tuple[float, float, str]]:
    """Regions as ``(start, end, name(key))`` triples for
    :func:`tagger.sidecar.format_chords_timed`."""
    return [(r.start, r.end, name(r.key)) for r in regions]
