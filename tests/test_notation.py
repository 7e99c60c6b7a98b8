import pytest

from model_zoo import keys
from tagger.notation import (camelot_neighbours, convert, format_key, from_camelot,
                             from_open_key, parse_key_any)

ALL = range(24)
C, G, E, B, FS, F = 0, 7, 4, 11, 6, 5
AM, EM, DM, CSM, ABM, EBM, CM = 21, 16, 14, 13, 20, 15, 12


@pytest.mark.parametrize("notation", ["standard", "long", "camelot", "openkey"])
@pytest.mark.parametrize("flats", [False, True, None])
def test_round_trip_every_key(notation, flats):
    texts = [format_key(i, notation, flats) for i in ALL]
    assert len(set(texts)) == 24
    assert [parse_key_any(t) for t in texts] == list(ALL)


def test_standard_spellings():
    assert format_key(C) == "C"
    assert format_key(AM) == "Am"
    assert format_key(18) == "F#m"
    assert format_key(22) == "A#m"
    assert format_key(22, flats=True) == "Bbm"
    assert format_key(22, flats=None) == "Bbm"
    assert format_key(3, flats=None) == "Eb"
    assert format_key(18, flats=None) == "F#m"
    assert [format_key(i, flats=None) for i in ALL] == [keys.short_key(i, None) for i in ALL]
    assert format_key(3, "long", None) == "Eb major"


@pytest.mark.parametrize("code,idx", [
    ("8B", C), ("8A", AM), ("9B", G), ("9A", EM), ("7A", DM), ("12B", E), ("12A", CSM),
    ("1B", B), ("1A", ABM), ("2B", FS), ("2A", EBM), ("7B", F), ("5A", CM),
])
def test_camelot_anchors(code, idx):
    assert format_key(idx, "camelot") == code
    assert parse_key_any(code) == idx
    assert parse_key_any(code.lower()) == idx
    assert parse_key_any("0" + code) == idx


@pytest.mark.parametrize("code,idx", [
    ("1d", C), ("2d", G), ("12d", F), ("1m", AM), ("2m", EM), ("12m", DM), ("6d", B),
])
def test_open_key_anchors(code, idx):
    assert format_key(idx, "openkey") == code
    assert parse_key_any(code) == idx
    assert parse_key_any(code.upper()) == idx


def test_open_key_is_camelot_shifted():
    for i in ALL:
        cn = int(format_key(i, "camelot")[:-1])
        on = int(format_key(i, "openkey")[:-1])
        assert on == (cn - 8) % 12 + 1


def test_relative_keys_share_number():
    for i in ALL:
        assert format_key(i, "camelot")[:-1] == format_key(keys.relative(i), "camelot")[:-1]


@pytest.mark.parametrize("text,idx", [
    ("A minor", AM), ("Bb major", 10), ("Ebm", EBM), ("D#min", EBM), ("Am", AM),
    ("C", C), ("F#m", 18), ("  8A ", AM), ("08a", AM), ("1m", AM), ("12d", F),
    ("A Minor", AM), ("C#MIN", CSM), ("E♭m", EBM), ("F♯", FS),
])
def test_parse_key_any(text, idx):
    assert parse_key_any(text) == idx


@pytest.mark.parametrize("text", ["o", "", "  ", "H", "13A", "0A", "8C", "1x", "Am7",
                                  "A minorish", "9", None])
def test_parse_rejects(text):
    with pytest.raises(ValueError):
        parse_key_any(text)


def test_format_rejects():
    for bad in (-1, 24, 1.0, True, "0"):
        with pytest.raises(ValueError):
            format_key(bad)
    with pytest.raises(ValueError):
        format_key(0, "solfege")
    with pytest.raises(ValueError):
        from_camelot(13, "A")
    with pytest.raises(ValueError):
        from_open_key(1, "x")


def test_neighbours_of_8a():
    got = camelot_neighbours(AM)
    assert got[0] == AM
    assert {format_key(i, "camelot") for i in got} == {"8A", "7A", "9A", "8B"}


def test_neighbours_every_key():
    for i in ALL:
        nb = camelot_neighbours(i)
        assert len(nb) == len(set(nb)) == 4
        assert nb[0] == i and nb[3] == keys.relative(i)
        n, letter = int(format_key(i, "camelot")[:-1]), format_key(i, "camelot")[-1]
        codes = {format_key(j, "camelot") for j in nb[1:3]}
        assert codes == {f"{(n - 2) % 12 + 1}{letter}", f"{n % 12 + 1}{letter}"}
        # one step on the wheel is a fifth up or down, same mode
        tonic = keys.tonic_mode(i)[0]
        assert {keys.tonic_mode(j)[0] for j in nb[1:3]} == {(tonic + 5) % 12, (tonic + 7) % 12}
        # the relation is symmetric
        assert all(i in camelot_neighbours(j) for j in nb)


def test_wrap_around():
    assert {format_key(i, "camelot") for i in camelot_neighbours(parse_key_any("12B"))} == \
        {"12B", "11B", "1B", "12A"}
    assert {format_key(i, "camelot") for i in camelot_neighbours(parse_key_any("1A"))} == \
        {"1A", "12A", "2A", "1B"}


def test_convert():
    assert convert("8A", "standard") == "Am"
    assert convert("Am", "openkey") == "1m"
    assert convert("Bbm", "camelot") == "3A"
