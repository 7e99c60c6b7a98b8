"""Training-data helpers: the POP909 split, label transposition, .lab I/O.

Fast: no rendering, no audio. (training/ is a repo folder, not a package
that is installed; pytest's ``pythonpath = ["."]`` makes it importable.)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from model_zoo import keys, vocab
from training import labels as L
from training.splits import PROPORTIONS, SPLITS, normalize_id, partition, split_of

# Every possible POP909 id, and the 809 in shared/data/pop909 (the 100 below
# are absent there).
ALL_IDS = [f"{i:03d}" for i in range(1, 910)]
_ABSENT = {
    17, 18, 38, 62, 64, 85, 104, 132, 138, 141, 143, 166, 176, 187, 189, 192, 218, 224, 225,
    230, 233, 244, 268, 269, 272, 285, 290, 305, 307, 330, 345, 348, 353, 371, 372, 378, 394,
    397, 401, 404, 409, 410, 414, 417, 425, 435, 445, 447, 448, 461, 462, 469, 470, 483, 505,
    509, 510, 518, 530, 532, 541, 551, 567, 568, 577, 581, 584, 587, 589, 597, 612, 613, 620,
    622, 632, 642, 644, 647, 649, 685, 686, 689, 698, 709, 720, 721, 732, 736, 748, 775, 779,
    787, 792, 815, 824, 826, 860, 873, 875, 884}
POP909_IDS = [f"{i:03d}" for i in range(1, 910) if i not in _ABSENT]
POP909 = Path(os.environ.get("KEYCHORDS_SHARED",
                             Path(__file__).resolve().parents[2] / "shared")) / "data" / "pop909"


def test_split_is_deterministic_and_normalises_ids():
    for sid in ("001", "045", "909"):
        assert split_of(sid) == split_of(sid)
        assert split_of(sid) == split_of(int(sid)) == split_of(str(int(sid)))
    assert normalize_id(7) == "007"
    with pytest.raises(ValueError):
        normalize_id("abc")


def test_split_is_disjoint_and_covers_every_id():
    parts = partition(ALL_IDS)
    assert set(parts) == set(SPLITS)
    seen = [sid for name in SPLITS for sid in parts[name]]
    assert len(seen) == len(set(seen)) == len(ALL_IDS)
    assert partition(list(reversed(ALL_IDS))) == parts  # order does not matter


def test_split_proportions_on_the_pop909_ids(pop909_ids):
    parts = partition(pop909_ids)
    n = len(pop909_ids)
    for name, share in PROPORTIONS.items():
        assert abs(len(parts[name]) / n - share) < 0.03, (name, len(parts[name]), n)
    # the counts the renders and reports use
    assert {k: len(v) for k, v in parts.items()} == {"train": 636, "validation": 89,
                                                     "test": 84}
    # a song never changes split when other songs are missing
    sub = partition(pop909_ids[::3])
    for name in SPLITS:
        assert set(sub[name]) <= set(parts[name])


@pytest.fixture(scope="module")
def pop909_ids():
    """The 809 ids (checked against the data set when it is present)."""
    from training.splits import song_ids
    assert len(POP909_IDS) == 809
    if POP909.is_dir() and song_ids(POP909):
        assert song_ids(POP909) == POP909_IDS
    return POP909_IDS


@pytest.mark.parametrize("label,k,expected", [
    ("Gb:maj", 2, "Ab:maj"),
    ("F#:min", 1, "G:min"),
    ("C:maj", -1, "B:maj"),
    ("B:7", 1, "C:7"),
    ("Bb:sus4(b7)", 5, "Eb:sus4(b7)"),
    ("F#:maj7/5", -3, "D#:maj7/5"),     # bass degree is relative: unchanged
    ("C:min/b3", 3, "D#:min/b3"),
    ("N", 4, "N"),
    ("X", -2, "X"),
    ("E:maj", 12, "E:maj"),
    ("Db:maj", 0, "Db:maj"),
])
def test_transpose_label(label, k, expected):
    assert L.transpose_label(label, k) == expected


def test_transposed_labels_are_equivalent_in_the_vocabulary():
    out = L.transpose_label("Gb:maj", 2)
    assert vocab.label_to_index(out) == vocab.label_to_index("G#:maj") \
        == vocab.label_to_index("Ab:maj")
    assert L.transpose_label("Gb:maj", 2, flats=False) == "G#:maj"
    assert L.transpose_label("Gb:maj", 2, flats=True) == "Ab:maj"
    # every label shape found in POP909 moves like the vocabulary's transpose
    samples = ["C:maj", "Db:min", "D:sus2", "Eb:min7", "E:sus4", "F:maj/3", "F#:maj/5",
               "G:maj7", "Ab:min/5", "A:min/b3", "Bb:sus4(b7)", "B:min7/b7", "C:maj7/7",
               "C#:7", "D:maj6", "D#:dim", "E:7/b7", "F:hdim7", "G:aug", "A:dim7",
               "Bb:min6", "B:minmaj7", "N"]
    for lab in samples:
        idx = vocab.label_to_index(lab)
        for k in range(-5, 7):
            assert vocab.label_to_index(L.transpose_label(lab, k)) == vocab.transpose(idx, k)


def test_transpose_key():
    assert L.transpose_key("Gb major", 2) == "Ab major"
    assert L.transpose_key("Gb:maj", 2) == "Ab major"
    assert L.transpose_key("Gb:maj", 0) == "Gb major"   # unmoved: spelling kept
    assert L.transpose_key("E:min", -1) == "Eb minor"
    assert L.transpose_key("A:min", 3) == "C minor"
    for k in range(-5, 7):
        moved = L.transpose_key("C#:min", k)
        assert keys.parse_key(moved) == keys.key_index(1 + k, True)


def test_majority_key_adds_enharmonic_spellings():
    segs = [(0.0, 10.0, "F#:maj"), (10.0, 50.0, "Eb:min"), (50.0, 100.0, "Gb:maj")]
    name, frac, n = L.majority_key(segs)
    assert name == "F# major" and n == 2 and frac == pytest.approx(0.6)


def test_lab_round_trip_through_mir_eval(tmp_path):
    segs = [(0.055333, 0.721998, "N"), (0.721998, 4.055323, "B:maj"),
            (4.055323, 5.388653, "C#:maj7/5"), (5.388653, 6.7, "Bb:sus4(b7)")]
    path = tmp_path / "x.lab"
    L.write_lab(path, segs)
    intervals, labels = L.read_lab(path)
    assert labels == [s[2] for s in segs]
    np.testing.assert_allclose(intervals, [[s[0], s[1]] for s in segs], atol=1e-6)
    assert L.read_segments(path) == [(pytest.approx(a), pytest.approx(b), c)
                                     for a, b, c in segs]


def test_merge_repeats():
    segs = [(0, 1, "N"), (1, 2, "N"), (2, 3, "C:maj"), (3, 4, "C:maj/3"), (4, 5, "A:min")]
    assert L.merge_repeats(segs) == [(0, 2, "N"), (2, 3, "C:maj"), (3, 4, "C:maj/3"),
                                     (4, 5, "A:min")]
    assert len(L.merge_repeats(segs, key=vocab.label_to_index)) == 3


def test_variant_choices_are_seeded_per_song_and_variant():
    from training.render_pop909 import TRANSPOSE_RANGE, choose_variant
    a = choose_variant("001", 0, seed=0)
    assert a == choose_variant("001", 0, seed=0)
    others = [choose_variant("001", 1, seed=0), choose_variant("002", 0, seed=0),
              choose_variant("001", 0, seed=1)]
    assert any(o != a for o in others)
    ks = {choose_variant(f"{i:03d}", 0, seed=0)["transpose"] for i in range(1, 200)}
    assert ks <= set(range(TRANSPOSE_RANGE[0], TRANSPOSE_RANGE[1] + 1)) and len(ks) > 6
    assert choose_variant("001", 0, seed=0, transpose=False)["transpose"] == 0


def test_rewrite_midi_programs_transposition_and_bass(tmp_path):
    mido = pytest.importorskip("mido")
    from training.render_pop909 import BASS_CHANNEL, midi_note_onsets, rewrite_midi
    mid = mido.MidiFile(type=1, ticks_per_beat=480)
    tempo = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500000, time=0)])
    mid.tracks.append(tempo)
    for ch, name, notes in ((0, "MELODY", [72, 74]), (2, "PIANO", [40, 60])):
        t = mido.MidiTrack([mido.MetaMessage("track_name", name=name, time=0),
                            mido.Message("program_change", channel=ch, program=0, time=0)])
        for n in notes:
            t.append(mido.Message("note_on", channel=ch, note=n, velocity=90, time=480))
            t.append(mido.Message("note_on", channel=ch, note=n, velocity=0, time=240))
        mid.tracks.append(t)
    src, dst = tmp_path / "in.mid", tmp_path / "out.mid"
    mid.save(str(src))
    choice = {"transpose": 3,
              "programs": {"MELODY": {"program": 73, "volume": 100},
                           "PIANO": {"program": 4, "volume": 90}},
              "bass": {"program": 33, "below": 48, "volume": 95}}
    rewrite_midi(src, dst, choice)
    out = mido.MidiFile(str(dst))
    progs = {(m.channel, m.program) for t in out.tracks for m in t
             if m.type == "program_change"}
    assert progs == {(0, 73), (2, 4), (BASS_CHANNEL, 33)}
    notes = sorted((m.channel, m.note) for t in out.tracks for m in t
                   if m.type == "note_on" and m.velocity > 0)
    assert notes == [(0, 75), (0, 77), (2, 63), (BASS_CHANNEL, 43)]
    # timing untouched
    np.testing.assert_allclose(midi_note_onsets(dst), midi_note_onsets(src))


def test_teacher_confidence_pools_a_triads_extensions():
    """C:7 and C:maj7 count towards C:maj; the class is the argmax's triad."""
    from training.agreement_by_confidence import teacher_confidence
    p = np.zeros((2, vocab.N_CLASSES))
    c7, cmaj7, cmaj = vocab.index(0, "7"), vocab.index(0, "maj7"), vocab.index(0, "maj")
    am = vocab.index(9, "min")
    p[0, [c7, cmaj7, am]] = [0.35, 0.25, 0.4]     # argmax A:min, but C:maj holds 0.6
    p[1, [cmaj, am]] = [0.9, 0.1]
    cls, conf = teacher_confidence(p)
    assert list(cls) == [am, cmaj]
    np.testing.assert_allclose(conf, [0.4, 0.9])


def test_limited_context_frames_see_only_their_span():
    """training/context.py: with a context at least the model's receptive field the
    result is the whole-track pass; with less, frames lose what lies beyond it."""
    import torch

    from model_zoo.student import ChordStudent
    from training.context import limited_context_probs
    torch.manual_seed(0)
    net = ChordStudent(stem_channels=[4], dim=16, dilations=[1, 2], attention_layers=0).eval()
    k = net.receptive_field()
    feats = torch.rand(1, 216, 200) * 3
    with torch.no_grad():
        whole = net(feats[None])["chord"][0].softmax(-1).numpy()
    np.testing.assert_allclose(limited_context_probs(net, feats, k, hop=16), whole, atol=1e-5)
    short = limited_context_probs(net, feats, k - 2, hop=5)
    assert not np.allclose(short, whole, atol=1e-5)


def test_real_validation_and_test_lists_are_held_out_by_package():
    """training/real_validation_v2.txt (choices: held-out tracks of packages
    with other tracks in training) and real_test_v2.txt (reported once: whole
    packages never trained on) are held out and share no package."""
    here = Path(__file__).resolve().parent.parent / "training"

    def rows(name):
        return [r for r in (here / name).read_text().splitlines() if r.strip()]

    def packages(rs):
        return {r.split("/", 1)[0] for r in rs}

    heldout = set(rows("unlabeled_v2_heldout.txt"))
    val, test = rows("real_validation_v2.txt"), rows("real_test_v2.txt")
    assert len(val) == 10 and len(test) == 16
    assert set(val) <= heldout and set(test) <= heldout
    assert not packages(val) & packages(test)
    assert not packages(test) & packages(rows("unlabeled_v2_train.txt"))
    assert not (set(val) | set(test)) & set(rows("unlabeled_v2_train.txt"))
    # every held-out track of the test packages, and 0 A.D.'s music (training only)
    test_all, extra = rows("real_test_all_v2.txt"), rows("unlabeled_0ad_train.txt")
    assert set(test) <= set(test_all) <= heldout and packages(test_all) == packages(test)
    assert len(test_all) == len(set(test_all)) == 74
    assert packages(extra) == {"0ad-data"} and len(set(extra)) == 61
    assert not packages(extra) & packages(set(heldout) | set(rows("unlabeled_v2_train.txt")))
