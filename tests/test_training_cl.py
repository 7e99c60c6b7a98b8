"""POP909-CL labels, timed .key files and the real-music split (fast; no audio)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model_zoo import keys, vocab
from tagger.distill.labels import IGNORE, frame_keys, read_key, read_key_segments
from training import labels as L
from training import pop909_cl as C
from training import real_split

TRAINING = Path(__file__).resolve().parents[1] / "training"


@pytest.mark.parametrize("notes,label,index", [
    ([59, 63, 66], "B:maj", vocab.index(11, "maj")),
    ([58, 61, 65, 68], "Bb:min7", vocab.index(10, "min7")),      # not Db:maj6/6
    ([49, 53, 56, 58], "Db:maj6", vocab.index(1, "maj6")),       # bass Db: the sixth chord
    ([52, 55, 60], "C:maj/3", vocab.index(0, "maj")),
    ([48, 51, 56], "Ab:maj/3", vocab.index(8, "maj")),
    ([48, 53, 57, 62], "D:min7/b7", vocab.index(2, "min7")),
    ([59, 62, 65, 68], "B:dim7", vocab.index(11, "dim7")),
    ([48, 55], "C:(5)", vocab.X_INDEX),
    ([48, 51], "C:(b3)", vocab.X_INDEX),
    ([60], "C:(1)", vocab.X_INDEX),
])
def test_cl_chord_notes_to_harte(notes, label, index):
    assert C.chord_label(notes) == label
    assert vocab.label_to_index(label) == index


def test_cl_key_names():
    assert C.key_from_midi("Gb") == "Gb major"
    assert C.key_from_midi("Ebm") == "Eb minor"
    assert keys.parse_key(C.key_from_midi("C#m")) == keys.key_index(1, True)


def test_beats_to_seconds_extrapolates_with_the_edge_beats():
    grid = np.array([1.0, 1.5, 2.0, 3.0])
    np.testing.assert_allclose(C.beats_to_seconds([0, 0.5, 2.5, -1, 4, 5], grid),
                               [1.0, 1.25, 2.5, 0.5, 4.0, 5.0])


def test_align_finds_a_fractional_beat_offset():
    rng = np.random.default_rng(0)
    grid = 0.3 + 0.6 * np.arange(200) + rng.normal(0, 0.002, 200).cumsum() * 0
    cl_beats = np.sort(rng.choice(np.arange(0, 180, 0.25), 300, replace=False))
    true_offset = 1.5
    ref = C.beats_to_seconds(cl_beats + true_offset, grid) + rng.normal(0, 0.005, 300)
    got = C.align(cl_beats, grid, np.sort(ref))
    assert got["offset"] == pytest.approx(true_offset) and got["matched"] > 0.95


def test_timed_key_file_is_read_both_ways(tmp_path):
    timed = tmp_path / "a.key"
    timed.write_text(L.format_key_file("Eb major", [(0.0, 95.3, "Eb major"),
                                                    (95.3, 120.0, "F minor")]))
    assert timed.read_text().splitlines()[0] == "Eb major"   # old readers see this line
    assert read_key(timed) == keys.parse_key("Eb major")
    segs = read_key_segments(timed)
    assert [s[2] for s in segs] == [keys.parse_key("Eb major"), keys.parse_key("F minor")]
    fk = frame_keys(segs, 130, 1.0)
    assert fk[0] == fk[95] == keys.parse_key("Eb major")
    assert fk[96] == fk[119] == keys.parse_key("F minor") and fk[120] == IGNORE
    # old single-key files: one segment over all time
    plain = tmp_path / "b.key"
    plain.write_text("Am\n")
    assert read_key_segments(plain) == [(0.0, float("inf"), keys.parse_key("A minor"))]
    assert (frame_keys(read_key_segments(plain), 5, 10.0) == keys.parse_key("A minor")).all()
    # timed lines only: the key covering most time
    only = tmp_path / "c.key"
    only.write_text("0 10 C major\n10 40 A minor\n40 50 C major\n")
    assert read_key(only) == keys.parse_key("A minor")


def test_real_split_by_package_keeps_v1_heldout_tracks():
    files = ["a-pkg/1.ogg", "a-pkg/2.ogg", "held/1.ogg", "b-pkg/3.ogg"]
    parts = real_split.split_files(files, ["a-pkg/2.ogg"], heldout_packages=("held",))
    assert parts == {"train": ["a-pkg/1.ogg", "b-pkg/3.ogg"],
                     "heldout": ["a-pkg/2.ogg", "held/1.ogg"]}


def test_committed_real_music_lists_are_consistent():
    lists = {n: (TRAINING / f"unlabeled_{n}.txt").read_text().splitlines()
             for n in ("v2_train", "v2_heldout", "train", "extra", "heldout")}
    assert not set(lists["v2_train"]) & set(lists["v2_heldout"])
    assert set(lists["heldout"]) - set(lists["v2_heldout"]) <= {
        "hyperrogue-music/usr_share_hyperrogue_music_hr-savino-ocean.ogg"}  # not valid Ogg
    v1_trained = {p.split("/")[0] for p in lists["train"] + lists["extra"]}
    assert not v1_trained & set(real_split.HELDOUT_PACKAGES)
    for name in ("v2_train", "v2_heldout"):
        assert lists[name] == sorted(lists[name])
        assert {p.split("/")[0] for p in lists[name]} <= set(real_split.GENRES)
    held_genres = {real_split.GENRES[p] for p in real_split.HELDOUT_PACKAGES}
    assert {"electronic", "chiptune", "rock", "orchestral"} <= held_genres
