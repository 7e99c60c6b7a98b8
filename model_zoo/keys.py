"""The 24-class key vocabulary shared by every keychords key model.

Index order (ours): 0..11 = C, C#, ..., B major; 12..23 = C, C#, ..., B minor.
Foreign output orders (the released S-KEY checkpoint's, for example) are
mapped onto this one once, by their importers.
"""

from __future__ import annotations

import re

from .vocab import pitch_class, pitch_name

N_KEYS = 24

# Keys conventionally spelled with flats (by key signature).
_FLAT_MAJOR = {1, 3, 5, 8, 10}   # Db Eb F Ab Bb
_FLAT_MINOR = {0, 2, 3, 5, 7, 10}  # Cm Dm Ebm Fm Gm Bbm (by signature)


def key_index(tonic: int, minor: bool) -> int:
    return (tonic % 12) + (12 if minor else 0)


def tonic_mode(idx: int) -> tuple[int, bool]:
    """``(tonic pitch class, is_minor)`` of key ``idx``."""
    return idx % 12, idx >= 12


def relative(idx: int) -> int:
    """Relative major/minor (Am <-> C)."""
    tonic, minor = tonic_mode(idx)
    return key_index(tonic + 3, False) if minor else key_index(tonic - 3, True)


def signature_has_flats(idx: int) -> bool:
    """Whether key ``idx`` is conventionally spelled with flats (``Eb``, ``Cm``: yes)."""
    tonic, minor = tonic_mode(idx)
    return tonic in (_FLAT_MINOR if minor else _FLAT_MAJOR)


def _spell(idx: int, flats: bool | None) -> str:
    if flats is None:  # conventional spelling by key signature
        flats = signature_has_flats(idx)
    return pitch_name(idx % 12, flats)


def short_key(idx: int, flats: bool | None = False) -> str:
    """Short standard notation: ``C``, ``Am``, ``F#m`` (``Bbm`` with flats).

    ``flats=None`` spells each key as its signature does (``Eb``, ``F#m``).
    """
    return _spell(idx, flats) + ("m" if idx >= 12 else "")


def long_key(idx: int, flats: bool | None = None) -> str:
    """mir_eval-style name: ``Eb major``, ``F# minor``."""
    return _spell(idx, flats) + (" minor" if idx >= 12 else " major")


_KEY_RE = re.compile(
    r"^\s*([A-Ga-g][#b♯♭]*)\s*(m|min|minor|maj|major|M)?\s*$")


def parse_key(text: str) -> int:
    """Parse ``Am``, ``A minor``, ``Eb``, ``F# major``, ``Bbmin`` to an index.

    Camelot (``8A``) and Open Key (``1m``) codes are handled by
    :mod:`tagger.notation`; this only reads note-name notations.
    """
    m = _KEY_RE.match(text.replace("♯", "#").replace("♭", "b"))
    if not m:
        raise ValueError(f"not a key: {text!r}")
    tonic = pitch_class(m.group(1)[0].upper() + m.group(1)[1:])
    minor = (m.group(2) or "") in ("m", "min", "minor")
    return key_index(tonic, minor)
