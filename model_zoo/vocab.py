"""The 170-class Harte chord vocabulary used by every keychords chord model.

Index order (ours): ``root * 14 + quality`` for the 168 rooted chords
(roots C, C#, ..., B; qualities in :data:`QUALITIES` order), then ``N``
(no chord) = 168 and ``X`` (unknown / out of vocabulary) = 169.

Other orders (crema's alphabetical one, BTC's) are mapped onto this one with
:func:`permutation_from_labels`.
"""

from __future__ import annotations

import re

PITCHES_SHARP = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
PITCHES_FLAT = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")

QUALITIES = (
    "maj", "min", "dim", "aug", "min6", "maj6", "min7",
    "maj7", "7", "dim7", "hdim7", "minmaj7", "sus2", "sus4",
)
N_QUALITIES = len(QUALITIES)
N_INDEX = 168
X_INDEX = 169
N_CLASSES = 170

LABELS = tuple(
    [f"{r}:{q}" for r in PITCHES_SHARP for q in QUALITIES] + ["N", "X"]
)
_LABEL_INDEX = {lab: i for i, lab in enumerate(LABELS)}

# Semitone sets of each quality, relative to the root.
QUALITY_INTERVALS = {
    "maj": (0, 4, 7), "min": (0, 3, 7), "dim": (0, 3, 6), "aug": (0, 4, 8),
    "min6": (0, 3, 7, 9), "maj6": (0, 4, 7, 9), "min7": (0, 3, 7, 10),
    "maj7": (0, 4, 7, 11), "7": (0, 4, 7, 10), "dim7": (0, 3, 6, 9),
    "hdim7": (0, 3, 6, 10), "minmaj7": (0, 3, 7, 11), "sus2": (0, 2, 7),
    "sus4": (0, 5, 7),
}
_BITMAP_QUALITY = {frozenset(v): k for k, v in QUALITY_INTERVALS.items()}

# Harte shorthands outside the vocabulary, reduced to the nearest member
# (extensions above the seventh dropped, as in the usual 170-class setups).
_SHORTHAND_REDUCTION = {
    "maj9": "maj7", "maj11": "maj7", "maj13": "maj7",
    "min9": "min7", "min11": "min7", "min13": "min7",
    "9": "7", "11": "7", "13": "7", "minmaj9": "minmaj7",
    "": "maj",
}
_EXTRA_SHORTHANDS = {
    "maj9": (0, 4, 7, 11, 2), "min9": (0, 3, 7, 10, 2), "9": (0, 4, 7, 10, 2),
    "11": (0, 4, 7, 10, 2, 5), "13": (0, 4, 7, 10, 2, 9),
    "maj11": (0, 4, 7, 11, 2, 5), "maj13": (0, 4, 7, 11, 2, 9),
    "min11": (0, 3, 7, 10, 2, 5), "min13": (0, 3, 7, 10, 2, 9),
    "minmaj9": (0, 3, 7, 11, 2), "1": (0,), "5": (0, 7),
}
_DEGREE_SEMITONES = {1: 0, 2: 2, 3: 4, 4: 5, 5: 7, 6: 9, 7: 11, 8: 12,
                     9: 14, 10: 16, 11: 17, 12: 19, 13: 21}

_NOTE_RE = re.compile(r"^([A-Ga-g])([#b]*)")

# Third of each quality, for maj/min simplification. Suspended chords have
# none; they are shown as major (the usual resolution in popular music).
_MAJMIN = {
    "maj": "maj", "aug": "maj", "maj6": "maj", "maj7": "maj", "7": "maj",
    "sus2": "maj", "sus4": "maj", "min": "min", "dim": "min", "min6": "min",
    "min7": "min", "dim7": "min", "hdim7": "min", "minmaj7": "min",
}

SHORT_SUFFIX = {
    "maj": "", "min": "m", "dim": "dim", "aug": "aug", "min6": "m6",
    "maj6": "6", "min7": "m7", "maj7": "maj7", "7": "7", "dim7": "dim7",
    "hdim7": "m7b5", "minmaj7": "mM7", "sus2": "sus2", "sus4": "sus4",
}


def pitch_class(note: str) -> int:
    """Pitch class (0 = C) of a note name such as ``Eb``, ``F#``, ``Cbb``."""
    m = _NOTE_RE.match(note)
    if not m or m.end() != len(note):
        raise ValueError(f"not a note name: {note!r}")
    pc = PITCHES_SHARP.index(m.group(1).upper())
    for acc in m.group(2):
        pc += 1 if acc == "#" else -1
    return pc % 12


def pitch_name(pc: int, flats: bool = False) -> str:
    """Name of pitch class ``pc`` (sharps unless ``flats``)."""
    return (PITCHES_FLAT if flats else PITCHES_SHARP)[pc % 12]


def index(root: int, quality: str) -> int:
    """Vocabulary index of ``root`` (pitch class) and a vocabulary quality."""
    return (root % 12) * N_QUALITIES + QUALITIES.index(quality)


def root_quality(idx: int) -> tuple[int, str] | None:
    """``(root, quality)`` of a rooted index, None for N and X."""
    if idx >= N_INDEX:
        return None
    return idx // N_QUALITIES, QUALITIES[idx % N_QUALITIES]


def _quality_bitmap(quality: str) -> set[int] | None:
    """Semitone set of a Harte quality string such as ``min7(9,*5)``."""
    m = re.fullmatch(r"([^()]*)(?:\((.*)\))?", quality)
    if m is None:
        return None
    short, degrees = m.group(1), m.group(2)
    if short in QUALITY_INTERVALS:
        tones = set(QUALITY_INTERVALS[short])
    elif short in _EXTRA_SHORTHANDS:
        tones = set(_EXTRA_SHORTHANDS[short])
    elif short == "":
        tones = {0, 4, 7} if degrees is None else {0}
    else:
        return None
    for deg in filter(None, (degrees or "").split(",")):
        deg = deg.strip()
        omit = deg.startswith("*")
        deg = deg.lstrip("*")
        dm = re.fullmatch(r"([#b]*)(\d+)", deg)
        if dm is None or int(dm.group(2)) not in _DEGREE_SEMITONES:
            return None
        semis = _DEGREE_SEMITONES[int(dm.group(2))]
        semis += dm.group(1).count("#") - dm.group(1).count("b")
        semis %= 12
        if omit:
            tones.discard(semis)
        else:
            tones.add(semis)
    return tones


def label_to_index(label: str) -> int:
    """Map any Harte label (``Eb:min7/b3``, ``C``, ``G:9``, ``N``) to our index.

    Bass notes are dropped; qualities outside the vocabulary are reduced
    (``9`` -> ``7``, ``maj(9)`` -> ``maj``); anything else becomes ``X``.
    Raises ``ValueError`` for text that is not a chord label at all.
    """
    label = label.strip()
    if label in ("N", "N.C.", ""):
        return N_INDEX
    if label == "X":
        return X_INDEX
    if label in _LABEL_INDEX:
        return _LABEL_INDEX[label]
    body = label.split("/", 1)[0]
    if ":" in body:
        root_s, quality = body.split(":", 1)
    else:
        m = _NOTE_RE.match(body)
        if not m:
            raise ValueError(f"not a chord label: {label!r}")
        root_s, quality = body[: m.end()], body[m.end():]
        if quality == "":
            quality = "maj"
    root = pitch_class(root_s)
    tones = _quality_bitmap(quality)
    if tones is not None and frozenset(tones) in _BITMAP_QUALITY:
        return index(root, _BITMAP_QUALITY[frozenset(tones)])
    short = quality.split("(", 1)[0]
    if short in _SHORTHAND_REDUCTION:
        base = _SHORTHAND_REDUCTION[short]
        base_tones = set(QUALITY_INTERVALS[base])
        # Added tensions keep the base chord; a removed or altered chord tone
        # changes the chord, which the vocabulary cannot express.
        if tones is not None and base_tones <= tones:
            return index(root, base)
        if tones is None:
            return index(root, base)
    if short in QUALITY_INTERVALS and tones is not None:
        if set(QUALITY_INTERVALS[short]) <= tones:
            return index(root, short)
    return X_INDEX


def transpose(idx: int, semitones: int) -> int:
    """Index of chord ``idx`` moved by ``semitones`` (N and X unchanged)."""
    if idx >= N_INDEX:
        return idx
    root, q = divmod(idx, N_QUALITIES)
    return ((root + semitones) % 12) * N_QUALITIES + q


def transpose_permutation(semitones: int) -> list[int]:
    """``perm`` such that ``y_shifted[..., perm[i]] = y[..., i]`` for class vectors."""
    return [transpose(i, semitones) for i in range(N_CLASSES)]


def simplify_majmin(idx: int) -> int:
    """Reduce a chord to its major or minor triad (N, X unchanged)."""
    rq = root_quality(idx)
    if rq is None:
        return idx
    return index(rq[0], _MAJMIN[rq[1]])


# simplify_majmin of every class, for array lookups: ``np.asarray(MAJMIN_INDEX)[idx]``.
MAJMIN_INDEX = tuple(simplify_majmin(i) for i in range(N_CLASSES))


def short_name(idx: int, flats: bool = False) -> str:
    """Lead-sheet name: ``Am``, ``F#7``, ``Bbmaj7``; ``N`` and ``X`` as is."""
    rq = root_quality(idx)
    if rq is None:
        return LABELS[idx]
    return pitch_name(rq[0], flats) + SHORT_SUFFIX[rq[1]]


def harte_name(idx: int, flats: bool = False) -> str:
    """Harte label (``A:min``; flats on request, ``Bb:7``)."""
    rq = root_quality(idx)
    if rq is None:
        return LABELS[idx]
    return f"{pitch_name(rq[0], flats)}:{rq[1]}"


_SHORT_RE = re.compile(r"^([A-G][#b]?)(.*)$")
_SUFFIX_QUALITY = {v: k for k, v in SHORT_SUFFIX.items()}
_SUFFIX_QUALITY.update({"M": "maj", "maj": "maj", "min": "min", "-": "min",
                        "m7b5": "hdim7", "ø": "hdim7", "o": "dim", "o7": "dim7",
                        "+": "aug", "M7": "maj7", "mmaj7": "minmaj7"})


def parse_chord_name(text: str) -> int:
    """Parse a lead-sheet (``Am``, ``Bbmaj7``) or Harte name to an index."""
    text = text.strip()
    m = _SHORT_RE.match(text)
    if m and ":" not in text and m.group(2) in _SUFFIX_QUALITY:
        return index(pitch_class(m.group(1)), _SUFFIX_QUALITY[m.group(2)])
    return label_to_index(text)


def crema_labels() -> list[str]:
    """crema's chord_tag class order: the label strings sorted alphabetically."""
    return sorted(LABELS)


def permutation_from_labels(labels: list[str]) -> list[int]:
    """``perm[j]`` = our index of a foreign model's output class ``j``."""
    return [label_to_index(lab) for lab in labels]
