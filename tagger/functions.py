"""The harmonic function of a chord in a key (for the picture of a track).

Functions: ``tonic`` (I, and its stand-ins vi and iii; i, III, VI in minor),
``subdominant`` (IV, ii; iv, ii°, VI is tonic), ``dominant`` (V, vii°, also
the harmonic-minor V and vii°), ``secondary`` (a major or dominant-seventh
chord outside the key whose root is a fifth above another degree of the
scale: V/V, V/vi, ...; I7 = V/IV), ``borrowed`` (diatonic to the parallel
key only: bVI, bVII, iv in major; IV, I in minor), ``chromatic`` (anything
else) and ``none`` (no chord / unknown).
"""

from __future__ import annotations

from model_zoo import keys, vocab

FUNCTIONS = ("tonic", "subdominant", "dominant", "secondary", "borrowed", "chromatic", "none")
_MAJOR_SCALE = frozenset({0, 2, 4, 5, 7, 9, 11})
_MINOR_SCALE = frozenset({0, 2, 3, 5, 7, 8, 10})
_HARMONIC_MINOR = frozenset({0, 2, 3, 5, 7, 8, 11})
_ROLE = {  # diatonic root interval -> function
    False: {0: "tonic", 9: "tonic", 4: "tonic", 5: "subdominant", 2: "subdominant",
            7: "dominant", 11: "dominant"},
    True: {0: "tonic", 3: "tonic", 8: "tonic", 5: "subdominant", 2: "subdominant",
           7: "dominant", 11: "dominant", 10: "dominant"},
}


def _tones(root: int, quality: str) -> frozenset[int]:
    return frozenset((root + i) % 12 for i in vocab.QUALITY_INTERVALS[quality])


def _in(tones: frozenset[int], tonic: int, scale: frozenset[int]) -> bool:
    return all((t - tonic) % 12 in scale for t in tones)


def _diatonic(tones: frozenset[int], tonic: int, minor: bool) -> bool:
    if not minor:
        return _in(tones, tonic, _MAJOR_SCALE)
    return _in(tones, tonic, _MINOR_SCALE) or _in(tones, tonic, _HARMONIC_MINOR)


def harmonic_function(index: int, key_idx: int | None) -> str:
    """One of :data:`FUNCTIONS` for vocabulary chord ``index`` in key ``key_idx``."""
    rq = vocab.root_quality(int(index))
    if rq is None or key_idx is None:
        return "none"
    root, quality = rq
    tonic, minor = keys.tonic_mode(key_idx)
    interval = (root - tonic) % 12
    tones = _tones(root, quality)
    scale = _MINOR_SCALE if minor else _MAJOR_SCALE
    dominant_shape = quality in ("maj", "7")
    if _diatonic(tones, tonic, minor) and not (interval == 0 and quality == "7"):
        return _ROLE[minor].get(interval, "chromatic")
    if dominant_shape and interval != 7 and (interval + 5) % 12 in scale:
        return "secondary"
    if _diatonic(tones, tonic, not minor):
        return "borrowed"
    return "chromatic"
