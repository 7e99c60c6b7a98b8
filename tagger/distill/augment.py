"""Pitch-shift and equalisation augmentation in the CQT domain, and the
matching label moves.

Shifting a track by ``s`` semitones moves every partial by ``3 s`` bins of
the student's CQT (36 bins per octave). The cache keeps 6 semitones of
extra bins on both sides (:mod:`.cache`), so a shifted window is an exact
slice of real analysis, not a zero-filled edge. The targets move with it:
chord roots by ``s`` (:func:`model_zoo.vocab.transpose_permutation`; N and X
stay), root / bass classes cyclically (their N class stays), chord-tone
pitch classes by a roll.
"""

from __future__ import annotations

import numpy as np

from model_zoo import vocab


def _tables() -> dict[int, np.ndarray]:
    """``gather[s]``: ``shifted[..., j] = original[..., gather[s][j]]`` for 170 classes."""
    return {s: np.asarray(vocab.transpose_permutation(-s), dtype=np.int64)
            for s in range(-12, 13)}


_GATHER = _tables()
# label lookup: new index of class i after a shift by s (IGNORE = -1 kept)
_MOVE = {s: np.asarray(vocab.transpose_permutation(s) + [-1], dtype=np.int64)
         for s in range(-12, 13)}


def transpose_class_scores(x: np.ndarray, s: int) -> np.ndarray:
    """Move per-class scores ``(..., 170)`` (probabilities, logits) by ``s`` semitones."""
    return x[..., _GATHER[int(s)]]


def transpose_labels(labels: np.ndarray, s: int) -> np.ndarray:
    """Move chord indices by ``s`` semitones; ``-1`` (ignore) stays."""
    return _MOVE[int(s)][np.asarray(labels, dtype=np.int64)]


def _pc_gather(s: int, with_n: bool) -> np.ndarray:
    g = (np.arange(12) - s) % 12
    return np.concatenate([g, [12]]) if with_n else g


def transpose_aux(aux: np.ndarray, s: int) -> np.ndarray:
    """Move teacher aux outputs ``(..., 38)`` = root 13 | bass 13 | pitch 12 by ``s``."""
    g13 = _pc_gather(int(s), True)
    g12 = _pc_gather(int(s), False)
    idx = np.concatenate([g13, 13 + g13, 26 + g12])
    return aux[..., idx]


def label_root_pitch(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Root class (0-11, 12 = N, -1 ignore) and chord-tone multi-hot (12) per label."""
    labels = np.asarray(labels, dtype=np.int64)
    root = np.full(labels.shape, -1, dtype=np.int64)
    pitch = np.zeros(labels.shape + (12,), dtype=np.float32)
    rooted = (labels >= 0) & (labels < vocab.N_INDEX)
    root[rooted] = labels[rooted] // vocab.N_QUALITIES
    root[labels == vocab.N_INDEX] = 12
    pitch[rooted] = CHORD_TONES[labels[rooted]]
    return root, pitch


def _chord_tones() -> np.ndarray:
    out = np.zeros((vocab.N_CLASSES, 12), dtype=np.float32)
    for i in range(vocab.N_INDEX):
        r, q = vocab.root_quality(i)
        for iv in vocab.QUALITY_INTERVALS[q]:
            out[i, (r + iv) % 12] = 1.0
    return out


# chord-tone multi-hot (12 pitch classes) of each of the 170 classes; N and X: none
CHORD_TONES = _chord_tones()


def random_eq(features: np.ndarray, rng: np.random.Generator, max_db: float) -> np.ndarray:
    """Features ``(T, bins)`` (``log1p(gain |C|)``) of the same audio through a random
    smooth equaliser: a tilt across the range plus two bell curves, each up to
    ``+-max_db`` dB, the same for every frame. Chords do not change, so targets
    stay as they are; the student learns to ignore timbre and mix."""
    pos = np.linspace(-1.0, 1.0, features.shape[-1])
    db = rng.uniform(-max_db, max_db) * pos
    for _ in range(2):
        centre, width = rng.uniform(-1.0, 1.0), rng.uniform(0.1, 0.4)
        db += rng.uniform(-max_db, max_db) * np.exp(-0.5 * ((pos - centre) / width) ** 2)
    gain = (10.0 ** (db / 20.0)).astype(np.float32)
    return np.log1p(np.expm1(features) * gain)
