"""Key notations: standard (``Am``), Camelot (``8A``) and Open Key (``1m``).

Keys are the 24 indices of :mod:`model_zoo.keys` (0..11 = C..B major,
12..23 = C..B minor).

Camelot wheel: the number walks the circle of fifths, ``B`` is major and
``A`` minor, and relative keys share a number: 8B = C, 9B = G, ...,
1B = B, ..., 7B = F; 8A = Am, 9A = Em, ..., 1A = Abm, 12A = C#m.

Open Key (Traktor): the same circle numbered from C: 1d = C, 2d = G, ...,
12d = F; ``m`` for minor: 1m = Am, 2m = Em, ...; Open Key n = Camelot
n - 7 (mod 12).
"""

from __future__ import annotations

import re

from model_zoo import keys

NOTATIONS = ("standard", "long", "camelot", "openkey")
_NOTATION_ALIASES = {
    "standard": "standard", "short": "standard", "std": "standard",
    "long": "long",
    "camelot": "camelot",
    "openkey": "openkey", "open_key": "openkey", "open-key": "openkey",
    "open key": "openkey",
}


def notation_name(text: str) -> str:
    """The canonical notation (one of :data:`NOTATIONS`) for a name or alias
    (``short``, ``open-key``, ...); ValueError for anything else."""
    kind = _NOTATION_ALIASES.get(str(text).strip().lower())
    if kind is None:
        raise ValueError(f"unknown key notation {text!r}; one of {', '.join(NOTATIONS)}")
    return kind


def _check(idx: int) -> int:
    if isinstance(idx, bool) or not isinstance(idx, int) or not 0 <= idx < keys.N_KEYS:
        raise ValueError(f"not a key index: {idx!r}")
    return idx


def _major_of(idx: int) -> int:
    """Tonic pitch class of the major key sharing ``idx``'s signature."""
    tonic, minor = keys.tonic_mode(idx)
    return (tonic + 3) % 12 if minor else tonic


def _fifths(idx: int) -> int:
    """Position 0..11 on the circle of fifths, C (or Am) = 0, G (or Em) = 1."""
    return (7 * _major_of(idx)) % 12


def camelot(idx: int) -> tuple[int, str]:
    """``(number 1..12, "A" or "B")`` of key ``idx``."""
    _check(idx)
    return (_fifths(idx) + 7) % 12 + 1, ("A" if idx >= 12 else "B")


def open_key(idx: int) -> tuple[int, str]:
    """``(number 1..12, "d" or "m")`` of key ``idx``."""
    _check(idx)
    return _fifths(idx) + 1, ("m" if idx >= 12 else "d")


def _from_fifths(pos: int, minor: bool) -> int:
    major_tonic = (7 * pos) % 12          # 7 is its own inverse mod 12
    if minor:
        return keys.key_index(major_tonic - 3, True)
    return keys.key_index(major_tonic, False)


def from_camelot(number: int, letter: str) -> int:
    if not 1 <= number <= 12 or letter.upper() not in ("A", "B"):
        raise ValueError(f"not a Camelot code: {number}{letter}")
    return _from_fifths((number - 8) % 12, letter.upper() == "A")


def from_open_key(number: int, letter: str) -> int:
    if not 1 <= number <= 12 or letter.lower() not in ("d", "m"):
        raise ValueError(f"not an Open Key code: {number}{letter}")
    return _from_fifths(number - 1, letter.lower() == "m")


def format_key(idx: int, notation: str = "standard", flats: bool | None = False) -> str:
    """Key ``idx`` in ``notation``.

    - ``standard``: ``C``, ``Am``, ``F#m`` (``Bbm`` with ``flats=True``;
      ``flats=None`` spells each key as its key signature does: ``Eb``,
      ``F#m``, ``Bbm``)
    - ``long``: ``A minor``, ``Eb major`` (same ``flats`` rule)
    - ``camelot``: ``8A`` (A minor), ``8B`` (C major)
    - ``openkey``: ``1m`` (A minor), ``1d`` (C major)
    """
    _check(idx)
    kind = notation_name(notation)
    if kind == "standard":
        return keys.short_key(idx, flats)
    if kind == "long":
        return keys.long_key(idx, flats)
    n, letter = camelot(idx) if kind == "camelot" else open_key(idx)
    return f"{n}{letter}"


_CAMELOT_RE = re.compile(r"^0?(1[0-2]|[1-9])\s*([ABab])$")
_OPENKEY_RE = re.compile(r"^0?(1[0-2]|[1-9])\s*([dDmM])$")
_STANDARD_WORDS_RE = re.compile(r"^([A-Ga-g][#b♯♭]*)\s*([A-Za-z]{2,})$")


def parse_key_any(text: str) -> int:
    """Read a key written in any notation this module knows.

    Standard (``Am``, ``A minor``, ``Bb major``, ``Ebm``, ``D#min``,
    ``F♯m``), Camelot (``8A``, ``08a``) and Open Key (``1m``, ``12d``).
    Anything else raises ``ValueError``, including the ID3 ``TKEY`` value
    ``o`` (off key), which callers handle themselves.
    """
    if not isinstance(text, str):
        raise ValueError(f"not a key: {text!r}")
    s = text.strip()
    m = _CAMELOT_RE.match(s)
    if m:
        return from_camelot(int(m.group(1)), m.group(2))
    m = _OPENKEY_RE.match(s)
    if m:
        return from_open_key(int(m.group(1)), m.group(2))
    try:
        return keys.parse_key(s)
    except ValueError:
        pass
    # "A Minor", "Bb MAJOR", "C#MIN": mode words in any case. (Single
    # letters keep their case: "M" is major, "m" minor.)
    m = _STANDARD_WORDS_RE.match(s)
    if m:
        try:
            return keys.parse_key(f"{m.group(1)} {m.group(2).lower()}")
        except ValueError:
            pass
    raise ValueError(f"not a key: {text!r}")


def convert(text: str, notation: str = "standard", flats: bool | None = False) -> str:
    """Re-write a key given in any notation in ``notation``."""
    return format_key(parse_key_any(text), notation, flats)


def camelot_neighbours(idx: int) -> list[int]:
    """Keys that mix harmonically with ``idx`` (DJ "harmonic mixing").

    ``[same key, one step down the wheel, one step up, relative key]``: on
    the Camelot wheel the same letter with number -1 and +1, and the other
    letter with the same number. For 8A (Am): 8A, 7A (Dm), 9A (Em), 8B (C).
    """
    n, letter = camelot(idx)
    return [idx,
            from_camelot((n - 2) % 12 + 1, letter),
            from_camelot(n % 12 + 1, letter),
            from_camelot(n, "B" if letter == "A" else "A")]
