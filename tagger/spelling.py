"""Chord names spelled as a musician writes them in a key.

``flats`` everywhere here: ``True`` / ``False`` force flats / sharps (the
``--flats`` / ``--sharps`` options); ``None`` spells each chord in the
key's own spelling: a root is named from its scale degree (E-flat major:
``Eb Cm Fm Bb``; A major: ``A F#m D E``; C major's borrowed ``bVII`` is
``Bb``), falling back to the key signature's accidental where the degree
would need a double accidental or ``E#``/``B#``/``Cb``/``Fb``. Without a
key, ``None`` spells with sharps.
"""

from __future__ import annotations

from model_zoo import keys, vocab

_LETTERS = "CDEFGAB"
_NATURAL = (0, 2, 4, 5, 7, 9, 11)
# Diatonic interval -> degree (0-based) of the reference scale.
_MAJOR_DEGREES = {0: 0, 2: 1, 4: 2, 5: 3, 7: 4, 9: 5, 11: 6}
_MINOR_DEGREES = {0: 0, 2: 1, 3: 2, 5: 3, 7: 4, 8: 5, 10: 6}
MINOR_THIRD = frozenset({"min", "dim", "min6", "min7", "dim7", "hdim7", "minmaj7"})
_DIM_FAMILY = {"dim", "dim7", "hdim7"}
_PLAIN = {"C", "C#", "Db", "D", "D#", "Eb", "E", "F", "F#", "Gb", "G", "G#", "Ab",
          "A", "A#", "Bb", "B"}


def scale_degree(interval: int, quality: str, minor: bool) -> tuple[str, int]:
    """``(accidental, 0-based degree)`` of a chord root ``interval`` semitones
    above the tonic (the degree a Roman numeral and a spelling use)."""
    dimish = quality in _DIM_FAMILY
    if not minor:
        if interval in _MAJOR_DEGREES:
            return "", _MAJOR_DEGREES[interval]
        # Chromatic: 1 3 6 8 10, between degrees (below, above).
        below = {1: 0, 3: 1, 6: 3, 8: 4, 10: 5}[interval]
        sharp = dimish or (interval == 6 and quality in MINOR_THIRD)
        return ("#", below) if sharp else ("b", below + 1)
    if interval in _MINOR_DEGREES:
        if interval == 10 and dimish:
            return "b", 6          # bvii°: vii° is the leading-tone chord
        return "", _MINOR_DEGREES[interval]
    if interval == 1:
        return ("#", 0) if dimish else ("b", 1)
    if interval == 4:
        return "#", 2
    if interval == 6:
        return ("#", 3) if quality in MINOR_THIRD else ("b", 4)
    if interval == 9:
        return "#", 5
    # interval == 11: the harmonic-minor leading tone.
    return ("", 6) if dimish else ("#", 6)


def root_name(root: int, quality: str, key_idx: int | None, flats: bool | None = None) -> str:
    """Name of pitch class ``root`` as the root of a ``quality`` chord in key ``key_idx``."""
    if flats is not None or key_idx is None:
        return vocab.pitch_name(root, bool(flats))
    tonic, minor = keys.tonic_mode(key_idx)
    tonic_letter = _LETTERS.index(keys.short_key(key_idx, None)[0])
    _, degree = scale_degree((root - tonic) % 12, quality, minor)
    letter = (tonic_letter + degree) % 7
    shift = (root - _NATURAL[letter] + 6) % 12 - 6       # -6..5 semitones
    name = _LETTERS[letter] + ("#" * shift if shift > 0 else "b" * -shift)
    if name in _PLAIN:
        return name
    return vocab.pitch_name(root, keys.signature_has_flats(key_idx))


def chord_name(index: int, key_idx: int | None = None, flats: bool | None = None) -> str:
    """Lead-sheet name (``Eb``, ``F#m7``; ``N`` / ``X`` as they are)."""
    rq = vocab.root_quality(int(index))
    if rq is None:
        return vocab.short_name(int(index))
    root, quality = rq
    return root_name(root, quality, key_idx, flats) + vocab.SHORT_SUFFIX[quality]


def harte_label(index: int, key_idx: int | None = None, flats: bool | None = None) -> str:
    """Harte label (``Eb:maj``, ``F#:min7``) in the same spelling."""
    rq = vocab.root_quality(int(index))
    if rq is None:
        return vocab.LABELS[int(index)]
    root, quality = rq
    return f"{root_name(root, quality, key_idx, flats)}:{quality}"


def key_name(key_idx: int, flats: bool | None = None) -> str:
    """Short key name by key signature (``Eb``, ``F#m``), unless ``flats`` forces one style."""
    return keys.short_key(key_idx, flats)


def chord_names(loop, key_idx: int | None = None, flats: bool | None = None) -> str:
    """Space-separated lead-sheet names of a loop: ``"Eb Cm Fm Bb"``."""
    return " ".join(chord_name(int(c), key_idx, flats) for c in loop)
