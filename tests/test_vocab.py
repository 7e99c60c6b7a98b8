import pytest

from model_zoo import keys, vocab


def test_size_and_layout():
    assert len(vocab.LABELS) == 170 and len(set(vocab.LABELS)) == 170
    assert vocab.LABELS[vocab.N_INDEX] == "N" and vocab.LABELS[vocab.X_INDEX] == "X"
    assert vocab.LABELS[vocab.index(9, "min")] == "A:min"
    assert vocab.root_quality(vocab.index(10, "hdim7")) == (10, "hdim7")


@pytest.mark.parametrize("label,expected", [
    ("C:maj", "C:maj"), ("C", "C:maj"), ("Db:min7", "C#:min7"), ("Eb:min/b3", "D#:min"),
    ("G:9", "G:7"), ("F:maj9", "F:maj7"), ("A:min11", "A:min7"), ("C:maj(9)", "C:maj"),
    ("Bb:7(#9)", "A#:7"), ("E:(1,b3,5)", "E:min"), ("Cb:maj", "B:maj"),
    ("D:sus4(b7)", "D:sus4"), ("N", "N"), ("X", "X"), ("C:(1,5)", "X"), ("G:5", "X"),
    ("A:min(*b3)", "X"), ("F#:hdim7/b7", "F#:hdim7"), ("B:dim7", "B:dim7"),
])
def test_label_to_index(label, expected):
    assert vocab.LABELS[vocab.label_to_index(label)] == expected


def test_rejects_non_labels():
    with pytest.raises(ValueError):
        vocab.label_to_index("H:maj")


def test_transpose():
    c_maj = vocab.index(0, "maj")
    assert vocab.LABELS[vocab.transpose(c_maj, 7)] == "G:maj"
    assert vocab.LABELS[vocab.transpose(c_maj, -1)] == "B:maj"
    assert vocab.transpose(vocab.N_INDEX, 3) == vocab.N_INDEX
    perm = vocab.transpose_permutation(5)
    assert sorted(perm) == list(range(170))
    for i in range(170):
        assert vocab.transpose(vocab.transpose(i, 5), -5) == i


def test_simplify_and_names():
    assert vocab.LABELS[vocab.simplify_majmin(vocab.label_to_index("A:min7"))] == "A:min"
    assert vocab.LABELS[vocab.simplify_majmin(vocab.label_to_index("G:7"))] == "G:maj"
    assert vocab.short_name(vocab.label_to_index("A#:min7"), flats=True) == "Bbm7"
    assert vocab.short_name(vocab.label_to_index("F#:maj")) == "F#"
    for i in range(168):
        assert vocab.parse_chord_name(vocab.short_name(i)) == i
        assert vocab.parse_chord_name(vocab.short_name(i, flats=True)) == i
        assert vocab.label_to_index(vocab.harte_name(i, flats=True)) == i


def test_crema_order_is_a_permutation():
    perm = vocab.permutation_from_labels(vocab.crema_labels())
    assert sorted(perm) == list(range(170))
    assert vocab.crema_labels()[:2] == ["A#:7", "A#:aug"]
    assert vocab.crema_labels()[-2:] == ["N", "X"]


def test_keys():
    assert keys.short_key(keys.parse_key("A minor")) == "Am"
    assert keys.short_key(keys.parse_key("Bbm"), flats=True) == "Bbm"
    assert keys.short_key(keys.parse_key("Bbm")) == "A#m"
    assert keys.long_key(keys.parse_key("D#"), flats=None) == "Eb major"
    assert keys.long_key(keys.parse_key("F# minor"), flats=None) == "F# minor"
    assert keys.relative(keys.parse_key("Am")) == keys.parse_key("C")
    assert keys.relative(keys.parse_key("Eb")) == keys.parse_key("Cm")
    for i in range(24):
        assert keys.parse_key(keys.long_key(i)) == i
        assert keys.parse_key(keys.short_key(i, flats=True)) == i
    with pytest.raises(ValueError):
        keys.parse_key("8A")
