"""Chord decoding: frame posteriors -> smoothed path -> timed segments."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model_zoo import vocab

# crema's own decoder uses this self-transition probability; keychords' default
# (DecodeSettings) is tuned on development data.
CREMA_SELF_TRANSITION = 0.957154635


@dataclass(frozen=True)
class DecodeSettings:
    """How chord posteriors are smoothed into segments.

    The defaults were tuned on the POP909 validation renders with the crema
    teacher (training/tune_viterbi.py; grid and scores in
    training/viterbi_tuning.json): self-transition 0.01 scored majmin 0.8203
    vs 0.8138 for crema's own 0.957 and gives 27.9 segments/min (reference 28.8).
    """

    p_self: float = 0.01
    min_duration: float = 0.0


def viterbi_uniform(probs: np.ndarray, p_self: float) -> np.ndarray:
    """Most likely state path under a "stay or jump anywhere" transition model.

    ``probs`` (T, K) are per-frame state probabilities (used as likelihoods,
    as crema does); the transition matrix has ``p_self`` on the diagonal and
    ``(1 - p_self) / (K - 1)`` elsewhere; the start is uniform. Because every
    jump costs the same, each step is O(K), not O(K^2).
    """
    probs = np.asarray(probs)
    t_len, k = probs.shape
    if t_len == 0:
        return np.zeros(0, dtype=np.int64)

    def log_e(t: int) -> np.ndarray:   # row by row: no (T, K) float64 copy of a long track
        return np.log(np.clip(probs[t].astype(np.float64), 1e-30, None))

    log_stay = np.log(p_self)
    log_jump = np.log((1.0 - p_self) / (k - 1))
    back = np.empty((t_len, k), dtype=np.uint8 if k <= 256 else np.int32)
    score = log_e(0) - np.log(k)
    back[0] = np.arange(k)
    states = np.arange(k)
    for t in range(1, t_len):
        best = int(np.argmax(score))
        stay = score + log_stay
        jump = score[best] + log_jump
        take_jump = jump > stay
        back[t] = np.where(take_jump, best, states)
        score = np.where(take_jump, jump, stay) + log_e(t)
    path = np.empty(t_len, dtype=np.int64)
    path[-1] = int(np.argmax(score))
    for t in range(t_len - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path


@dataclass
class Segment:
    start: float
    end: float
    index: int          # vocabulary index
    confidence: float   # mean posterior of the label over the segment

    @property
    def label(self) -> str:
        return vocab.LABELS[self.index]


def segments_from_path(path: np.ndarray, probs: np.ndarray, frame_rate: float,
                       duration: float | None = None) -> list[Segment]:
    """Runs of equal states as timed segments; the last one ends at ``duration``."""
    segs: list[Segment] = []
    if len(path) == 0:
        return segs
    change = np.flatnonzero(np.diff(path)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(path)]])
    for s, e in zip(starts, ends):
        idx = int(path[s])
        conf = float(np.mean(probs[s:e, idx]))
        segs.append(Segment(s / frame_rate, e / frame_rate, idx, conf))
    if duration is not None:
        segs[-1].end = max(segs[-1].start, duration)
    return segs


def merge_short(segs: list[Segment], min_duration: float) -> list[Segment]:
    """Absorb segments shorter than ``min_duration`` into a neighbour.

    A short segment joins the longer of its neighbours; equal neighbours
    then merge. Confidence of a merged segment is the duration-weighted mean.
    """
    segs = [Segment(s.start, s.end, s.index, s.confidence) for s in segs]
    changed = True
    while changed and len(segs) > 1:
        changed = False
        lengths = [s.end - s.start for s in segs]
        i = int(np.argmin(lengths))
        if lengths[i] >= min_duration:
            break
        prev_len = lengths[i - 1] if i > 0 else -1.0
        next_len = lengths[i + 1] if i + 1 < len(segs) else -1.0
        j = i - 1 if prev_len >= next_len else i + 1
        lo, hi = min(i, j), max(i, j)
        keep = segs[j]
        merged = Segment(segs[lo].start, segs[hi].end, keep.index,
                         _weighted_conf(segs[lo], segs[hi]) if segs[lo].index == segs[hi].index
                         else keep.confidence)
        segs[lo:hi + 1] = [merged]
        changed = True
    out: list[Segment] = []
    for s in segs:  # merge equal neighbours
        if out and out[-1].index == s.index:
            out[-1] = Segment(out[-1].start, s.end, s.index, _weighted_conf(out[-1], s))
        else:
            out.append(s)
    return out


def _weighted_conf(a: Segment, b: Segment) -> float:
    da, db = a.end - a.start, b.end - b.start
    return (a.confidence * da + b.confidence * db) / max(da + db, 1e-9)


def decode(probs: np.ndarray, frame_rate: float, p_self: float,
           duration: float | None = None, min_duration: float = 0.0) -> list[Segment]:
    """Posteriors ``(T, 170)`` in vocabulary order -> timed chord segments."""
    path = viterbi_uniform(probs, p_self)
    segs = segments_from_path(path, probs, frame_rate, duration)
    return merge_short(segs, min_duration) if min_duration > 0 else segs
