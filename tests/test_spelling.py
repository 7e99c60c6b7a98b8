"""Key-aware spelling (tagger/spelling.py) and key-signature key names."""

import pytest

from model_zoo import keys, vocab
from tagger.notation import format_key, parse_key_any
from tagger.progression import summarize
from tagger.chords import Segment
from tagger.spelling import chord_name, chord_names, harte_label


def _idx(names: str) -> list[int]:
    return [vocab.parse_chord_name(n) for n in names.split()]


@pytest.mark.parametrize("key, chords, spelled", [
    ("Eb", "D# Cm Fm A#", "Eb Cm Fm Bb"),
    ("A", "A F#m D E", "A F#m D E"),
    ("C", "C A# G# D7 Fm", "C Bb Ab D7 Fm"),       # borrowed bVII, bVI, iv
    ("Cm", "Cm G G# A# Bdim", "Cm G Ab Bb Bdim"),   # harmonic-minor V and vii°
    ("Bb", "A#7 D#maj7 Gm7 F7", "Bb7 Ebmaj7 Gm7 F7"),
    ("F#", "F# D#m A#m C#7", "F# D#m A#m C#7"),
    ("Db", "C# A#m F#", "Db Bbm Gb"),
])
def test_chords_in_the_keys_own_spelling(key, chords, spelled):
    assert chord_names(_idx(chords), keys.parse_key(key)) == spelled


def test_forced_styles_and_no_key():
    eb = keys.parse_key("Eb")
    assert chord_names(_idx("Eb Bb"), eb, flats=False) == "D# A#"
    assert chord_names(_idx("F#m C#"), keys.parse_key("A"), flats=True) == "Gbm Db"
    assert chord_names(_idx("Eb Bb")) == "D# A#"           # no key: sharps
    assert chord_name(vocab.N_INDEX, eb) == "N" and harte_label(vocab.X_INDEX, eb) == "X"
    assert harte_label(vocab.label_to_index("A#:min7"), eb) == "Bb:min7"


def test_every_spelling_is_plain_and_means_the_same_chord():
    """No double accidentals, no E#/B#/Cb/Fb; every name reads back as the same chord."""
    for k in range(keys.N_KEYS):
        for c in range(vocab.N_INDEX):
            name = chord_name(c, k)
            root = name[:2] if name[1:2] in ("#", "b") else name[:1]
            assert root not in ("E#", "B#", "Cb", "Fb"), (k, name)
            assert vocab.label_to_index(harte_label(c, k)) == c, (k, name)


def test_summarize_spells_the_loop_in_the_key():
    segs = [Segment(i, i + 1.0, c, 0.9) for i, c in enumerate(_idx("D# Cm Fm A#") * 3)]
    assert summarize(segs, keys.parse_key("Eb"), None) == ("Eb Cm Fm Bb", "I vi ii V")
    assert summarize(segs, keys.parse_key("Eb"), False)[0] == "D# Cm Fm A#"


@pytest.mark.parametrize("text, expected", [
    ("Eb", "Eb"), ("D#", "Eb"), ("Gb", "F#"), ("Db", "Db"), ("C#", "Db"), ("A#", "Bb"),
    ("D#m", "Ebm"), ("Bbm", "Bbm"), ("G#m", "G#m"), ("Abm", "G#m"), ("C#m", "C#m"),
])
def test_keys_by_key_signature(text, expected):
    assert format_key(parse_key_any(text), "standard", flats=None) == expected
