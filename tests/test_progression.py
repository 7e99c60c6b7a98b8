"""The progression summary: chord loop finding, Roman numerals, search matching."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model_zoo import keys, vocab
from tagger.chords import Segment
from tagger.progression import (
    chords_match, find_loop, loop_names, parse_chord_names, parse_roman,
    progression_matches, roman_numeral, roman_numerals, same_cycle, summarize,
)

P = vocab.parse_chord_name
C_MAJOR = keys.parse_key("C")
A_MINOR = keys.parse_key("Am")


def track(names, durations=2.0, start=0.0):
    """Segments for chord names (``N``/``X`` allowed), back to back."""
    if not isinstance(durations, (list, tuple)):
        durations = [durations] * len(names)
    segs, t = [], start
    for name, d in zip(names, durations):
        idx = vocab.N_INDEX if name == "N" else vocab.X_INDEX if name == "X" else P(name)
        segs.append(Segment(t, t + d, idx, 0.8))
        t += d
    return segs


def names(loop):
    return loop_names(loop)


def transposed(segs, k):
    return [Segment(s.start, s.end, vocab.transpose(s.index, k), s.confidence) for s in segs]


def pop_track():
    """Intro N, then C G Am F x6 with blips and an N gap, then N."""
    names_, durs = ["N"], [1.5]
    for rep in range(6):
        for ch in ["C", "G", "Am", "F"]:
            names_.append(ch)
            durs.append(2.0)
            if rep == 2 and ch == "G":
                names_ += ["E", "G"]       # a 0.1 s detector blip inside G
                durs += [0.1, 0.5]
        if rep == 3:
            names_.append("N")               # a short silence / no-chord
            durs.append(0.6)
    names_ += ["X", "N"]
    durs += [0.2, 3.0]
    return track(names_, durs)


# ---------------------------------------------------------------- find_loop

def test_pop_loop_c_major():
    segs = pop_track()
    loop = find_loop(segs)
    assert names(loop) == "C G Am F"     # starts where the track enters it
    assert roman_numerals(loop, C_MAJOR) == ["I", "V", "vi", "IV"]
    assert summarize(segs, C_MAJOR) == ("C G Am F", "I V vi IV")
    assert summarize(segs, None) == ("C G Am F", "")


@pytest.mark.parametrize("k", range(12))
def test_pop_loop_every_key(k):
    segs = transposed(pop_track(), k)
    loop = find_loop(segs)
    assert roman_numerals(loop, keys.key_index(k, False)) == ["I", "V", "vi", "IV"]
    assert chords_match("C G Am F", loop_names(loop))


def test_rotation_follows_track_entry():
    # The track enters the loop on Am: the loop is reported from Am.
    segs = track(["Am", "F", "C", "G"] * 5)
    loop = find_loop(segs)
    assert names(loop) == "Am F C G"
    assert roman_numerals(loop, A_MINOR) == ["i", "VI", "III", "VII"]


def test_rotation_weighted_by_run_length():
    # A glitch restarts the run mid-loop once; the long clean run decides.
    seq = ["C", "G", "Am", "F"] * 5 + ["D"] + ["Am", "F", "C", "G"] * 2
    assert names(find_loop(track(seq))) == "C G Am F"


def test_simplify_merges_sevenths():
    seq = ["Cmaj7", "G", "Am7", "F"] * 4
    assert names(find_loop(track(seq))) == "C G Am F"
    assert names(find_loop(track(seq), simplify=False)) == "Cmaj7 G Am7 F"
    loop = find_loop(track(seq), simplify=False)
    assert roman_numerals(loop, C_MAJOR) == ["Imaj7", "V", "vi7", "IV"]


def test_loop_ending_on_its_first_chord():
    # "C Bb F C" repeated merges into C Bb F C Bb F...: the cycle is C Bb F.
    segs = track(["C", "Bb", "F", "C"] * 4)
    loop = find_loop(segs)
    assert names(loop) == "C A# F"
    assert loop_names(loop, flats=True) == "C Bb F"
    assert roman_numerals(loop, C_MAJOR) == ["I", "bVII", "IV"]
    assert roman_numerals([P(c) for c in ["C", "Bb", "F", "C"]], C_MAJOR) == \
        ["I", "bVII", "IV", "I"]
    assert progression_matches("I bVII IV I", "I bVII IV")
    assert chords_match("C Bb F C", "D C G")


def test_twelve_bar_blues():
    bars = ["A7"] * 4 + ["D7"] * 2 + ["A7"] * 2 + ["E7", "D7", "A7", "E7"]
    segs = track(bars * 4)
    loop = find_loop(segs)
    assert names(loop) == "A D A E D A E"
    assert roman_numerals(loop, keys.parse_key("A")) == ["I", "IV", "I", "V", "IV", "I", "V"]
    full = find_loop(segs, simplify=False)
    assert names(full) == "A7 D7 A7 E7 D7 A7 E7"
    assert roman_numerals(full, keys.parse_key("A")) == \
        ["I7", "IV7", "I7", "V7", "IV7", "I7", "V7"]


def test_blues_without_turnaround():
    # Last bar A7 runs into the next chorus's A7: the cycle is 5 chords.
    bars = ["A7"] * 4 + ["D7"] * 2 + ["A7"] * 2 + ["E7", "D7", "A7", "A7"]
    loop = find_loop(track(bars * 3), simplify=False)
    assert names(loop) == "A7 D7 A7 E7 D7"


def test_no_repetition_fallback():
    seq = ["C", "D", "E", "F", "G", "A", "B"]
    durs = [1.0, 5.0, 1.0, 4.0, 3.0, 1.0, 6.0]
    loop = find_loop(track(seq, durs))
    # Four longest chords (D 5, F 4, G 3, B 6) in order of first appearance.
    assert names(loop) == "D F G B"


def test_degenerate_inputs():
    assert find_loop([]) == []
    assert find_loop(track(["N", "X", "N"])) == []
    assert names(find_loop(track(["Am"]))) == "Am"
    assert names(find_loop(track(["Am", "Am", "Am"]))) == "Am"
    assert names(find_loop(track(["C", "G"]))) == "C G"          # once: fallback
    # Only short segments: they are kept rather than dropping everything.
    assert names(find_loop(track(["C", "G"] * 4, 0.1))) == "C G"


def test_occurs_twice_rule():
    # C G Am F C G Am holds the 4-cycle only 1.75 times (7 < 2 * 4 chords), so
    # it is no loop; the phrase C G Am occurs twice and is the loop.
    seq = ["C", "G", "Am", "F", "C", "G", "Am"]
    assert names(find_loop(track(seq))) == "C G Am"
    # Non-contiguous occurrences count: an 8-chord phrase played once in each
    # of two sections, with other material in between.
    phrase = ["C", "G", "Am", "F", "Dm", "G", "Em", "A"]
    seq = phrase + ["Bb", "Eb"] + phrase
    assert names(find_loop(track(seq))) == "C G Am F Dm G Em A"


def test_four_beats_eight_made_of_it():
    loop = find_loop(track(["C", "G", "Am", "F"] * 8))
    assert len(loop) == 4


def test_genuine_eight_chord_loop():
    seq = ["C", "G", "Am", "F", "C", "G", "F", "G"] * 4
    assert names(find_loop(track(seq))) == "C G Am F C G F G"
    # ... but not when max_len forbids it.
    assert len(find_loop(track(seq), max_len=4)) <= 4


def test_shorter_loop_wins_ties():
    # A 2-cycle and a 3-cycle covering the same time: the shorter wins.
    seq = ["C", "G"] * 3 + ["Dm", "Em", "F"] * 2
    assert names(find_loop(track(seq))) == "C G"
    # With clearly more coverage the longer one wins.
    seq = ["C", "G"] * 3 + ["Dm", "Em", "F"] * 4
    assert names(find_loop(track(seq))) == "Dm Em F"


def test_most_covering_section_wins():
    verse = ["Am", "F", "C", "G"] * 2
    chorus = ["F", "G", "Em", "Am"] * 4
    loop = find_loop(track(verse + chorus + verse))
    assert names(loop) == "F G Em Am"


# ---------------------------------------------------------------- numerals

@pytest.mark.parametrize("chord,key,expected", [
    ("C", "C", "I"), ("Dm", "C", "ii"), ("Em", "C", "iii"), ("F", "C", "IV"),
    ("G", "C", "V"), ("Am", "C", "vi"), ("Bdim", "C", "vii°"),
    ("G7", "C", "V7"), ("Fmaj7", "C", "IVmaj7"), ("Dm7", "C", "ii7"),
    ("Am6", "C", "vi6"), ("F6", "C", "IV6"), ("Gsus4", "C", "Vsus4"),
    ("Gsus2", "C", "Vsus2"), ("Bm7b5", "C", "viiø7"), ("Bdim7", "C", "vii°7"),
    ("Eaug", "C", "III+"), ("Cm", "C", "i"), ("CmM7", "C", "imaj7"),
    ("D", "C", "V/V"), ("D7", "C", "V7/V"), ("Dm", "C", "ii"),
    ("Bb", "C", "bVII"), ("Eb", "C", "bIII"), ("Ab", "C", "bVI"), ("Db", "C", "bII"),
    ("Fm", "C", "iv"), ("F#dim", "C", "#iv°"), ("F#m7b5", "C", "#ivø7"),
    ("F#", "C", "bV"), ("C#dim7", "C", "#i°7"), ("D#dim7", "C", "#ii°7"),
    ("G#dim7", "C", "#v°7"), ("E7", "C", "III7"), ("A7", "C", "VI7"),
    ("Am", "Am", "i"), ("Bdim", "Am", "ii°"), ("C", "Am", "III"), ("Dm", "Am", "iv"),
    ("Em", "Am", "v"), ("F", "Am", "VI"), ("G", "Am", "VII"),
    ("E", "Am", "V"), ("E7", "Am", "V7"), ("G#dim", "Am", "vii°"),
    ("G#dim7", "Am", "vii°7"), ("G#m7b5", "Am", "viiø7"), ("Gdim", "Am", "bvii°"),
    ("G#", "Am", "#VII"), ("D", "Am", "IV"), ("Bm", "Am", "ii"), ("B", "Am", "V/V"),
    ("B7", "Am", "V7/V"), ("Bb", "Am", "bII"), ("C#", "Am", "#III"),
    ("D#dim", "Am", "#iv°"), ("F#dim", "Am", "#vi°"), ("F#m", "Am", "#vi"),
    ("Eb", "Am", "bV"), ("A", "Am", "I"),
])
def test_numeral_table(chord, key, expected):
    k = keys.parse_key(key)
    assert roman_numeral(P(chord), k) == expected
    for t in range(1, 12):   # transposition invariance
        assert roman_numeral(vocab.transpose(P(chord), t), (k + t) % 12 + (k // 12) * 12) \
            == expected


def test_minor_pop_loop():
    loop = [P(c) for c in ["Am", "F", "C", "G"]]
    assert roman_numerals(loop, A_MINOR) == ["i", "VI", "III", "VII"]
    assert roman_numerals(loop, C_MAJOR) == ["vi", "IV", "I", "V"]


def test_every_chord_in_every_key():
    for k in range(keys.N_KEYS):
        seen = set()
        for c in range(vocab.N_INDEX):
            num = roman_numeral(c, k)
            assert num and num[0] in "#bIViv"
            seen.add(num)
            assert parse_roman(num) == [num]          # round-trips the parser
        # Distinct chords get distinct numerals within a key.
        assert len(seen) == vocab.N_INDEX
    assert roman_numeral(vocab.N_INDEX, 0) == "N"
    assert roman_numeral(vocab.X_INDEX, 0) == "X"


# ---------------------------------------------------------------- search

def test_parse_roman():
    assert parse_roman("I-V-vi-IV") == ["I", "V", "vi", "IV"]
    assert parse_roman("  I V  vi IV ") == ["I", "V", "vi", "IV"]
    assert parse_roman("I – V – vi – IV") == ["I", "V", "vi", "IV"]
    assert parse_roman("ii7, V7 | Imaj7") == ["ii7", "V7", "Imaj7"]
    assert parse_roman("♭VII viio7 V/V IΔ") == ["bVII", "vii°7", "V/V", "Imaj7"]
    assert parse_roman("") == []


def test_parse_chord_names():
    assert parse_chord_names("Am-F-C-G") == ["Am", "F", "C", "G"]
    assert parse_chord_names("Am, F | C  G") == ["Am", "F", "C", "G"]
    assert parse_chord_names("C- G") == ["C-", "G"]


def test_same_cycle():
    assert same_cycle(["I", "V", "vi", "IV"], ["vi", "IV", "I", "V"])
    assert same_cycle([], [])
    assert not same_cycle(["I", "V", "vi", "IV"], ["I", "V", "IV", "vi"])
    assert not same_cycle(["I", "V"], ["I", "V", "I"])


def test_progression_matches():
    assert progression_matches("I V vi IV", "vi IV I V")
    assert progression_matches("I-V-vi-IV", ["I", "V", "vi", "IV"])
    assert progression_matches(["I", "V", "vi", "IV"], "IV I V vi")
    assert not progression_matches("I V vi IV", "I V IV vi")
    assert not progression_matches("I V vi IV", "i v VI iv")      # case matters
    assert not progression_matches("I V vi", "I V vi IV")
    assert progression_matches("I V I V", "V I")                   # one period
    assert not progression_matches("", "I V")
    assert not progression_matches("I V", "")


def test_chords_match():
    assert chords_match(["Am", "F", "C", "G"], ["Em", "C", "G", "D"])    # transposed
    assert chords_match(["Am", "F", "C", "G"], ["C", "G", "Am", "F"])    # rotated
    assert chords_match("Am F C G", "Bm G D A")
    assert chords_match("Am F C G", "F#m D A E")
    assert chords_match("Am F C G", "Ebm Cb Gb Db")                    # flats
    assert not chords_match("Am F C G", "Am F C E")
    assert not chords_match("Am F C G", "A F C G")                     # quality
    assert not chords_match("Am F C G", "Am F C")
    assert not chords_match("Am F C G", "Am F G C")
    assert not chords_match("Am F C G", "N")
    assert not chords_match("Am F C G", "")
    with pytest.raises(ValueError):
        chords_match("Hm Q", "Am F C G")


def test_match_against_found_loops():
    segs = pop_track()
    for k in range(12):
        t = transposed(segs, k)
        loop = find_loop(t)
        assert chords_match("Am F C G", loop_names(loop, flats=True))
        assert progression_matches("vi IV I V",
                                   roman_numerals(loop, keys.key_index(k, False)))
        assert not progression_matches("vi IV I V",
                                       roman_numerals(loop, keys.key_index(k, True)))


# ---------------------------------------------------------------- property

_seg_spec = st.lists(
    st.tuples(st.floats(0.0, 5.0, allow_nan=False), st.integers(0, vocab.N_CLASSES - 1)),
    max_size=80)


@settings(max_examples=100, deadline=None)
@given(spec=_seg_spec, simplify=st.booleans(), key=st.integers(0, keys.N_KEYS - 1),
       motif=st.lists(st.integers(0, vocab.N_INDEX - 1), min_size=0, max_size=9),
       reps=st.integers(0, 5))
def test_random_segments_never_crash(spec, simplify, key, motif, reps):
    items = spec + [(1.0, c) for c in motif] * reps
    segs, t = [], 0.0
    for d, idx in items:
        segs.append(Segment(t, t + d, idx, 0.5))
        t += d
    loop = find_loop(segs, simplify=simplify)
    assert 0 <= len(loop) <= 8
    assert all(0 <= c < vocab.N_INDEX for c in loop)
    if len(loop) >= 2:   # a cycle never has equal neighbours, wrap-around included
        assert all(loop[i] != loop[(i + 1) % len(loop)] for i in range(len(loop)))
    nums = roman_numerals(loop, key)
    assert len(nums) == len(loop) and all(nums)
    if loop:
        assert chords_match(loop_names(loop), loop_names(loop, flats=True))
        assert progression_matches(nums, list(reversed(nums))) == (
            len(loop) <= 2 or same_cycle(nums, list(reversed(nums))))


# ---------------------------------------------------------------- one matcher
@pytest.mark.parametrize("query,value,hit", [
    ("V", "I V vi IV", True),            # one numeral: the loop contains it
    ("V", "I IV", False),
    ("vi IV I V", "I V vi IV", True),    # several: equal up to rotation
    ("I V", "I V vi IV", False),
    ("I V I V", "V I", True),            # repetition reduced
    ("bVII", "I bVII IV", True),
    ("maj", "Imaj7 IV", True),           # not numerals: substring
    ("V", "", False),
])
def test_progression_query(query, value, hit):
    from tagger.progression import progression_query
    assert progression_query(query)(value) is hit


@pytest.mark.parametrize("query,value,hit", [
    ("Bb", "Gm A# F", True),             # one chord, any spelling: contained
    ("Bb", "Gm F", False),
    ("Am F C G", "Em C G D", True),      # transposed
    ("Am F C G", "C G Am F", True),      # rotated
    ("Am F C G", "Am F C E", False),
    ("sus", "Csus4 G", True),            # not chord names: substring
])
def test_chords_query(query, value, hit):
    from tagger.progression import chords_query
    assert chords_query(query)(value) is hit


def test_beets_queries_and_search_share_one_meaning(tmp_path, capsys):
    """`keychords search --progression V` and `beet ls progression:V` agree."""
    from beetsplug.keychords import ChordsQuery, ProgressionQuery
    from tagger import cli
    from tagger.tags import write_tags
    from tests.audio_fixtures import make_audio_file

    path = make_audio_file(tmp_path / "a.flac", "flac", seconds=1.0)
    write_tags(path, {"initial_key": "C", "chords": "C G Am F", "progression": "I V vi IV"})
    for query, hit in (("V", True), ("ii", False), ("vi IV I V", True), ("I V", False)):
        assert ProgressionQuery.value_match(query, "I V vi IV") is hit
        assert (cli.main(["search", str(tmp_path), "--progression", query]) == 0) is hit
    for query, hit in (("G", True), ("D", False), ("Em C G D", True)):
        assert ChordsQuery.value_match(query, "C G Am F") is hit
        assert (cli.main(["search", str(tmp_path), "--chords", query]) == 0) is hit
    capsys.readouterr()


# ---------------------------------------------------------------- stability

def _reencoded(pairs, seed, blips=3, jitter=0.25):
    """``pairs`` as another encoding might decode them: every boundary moved by up
    to ``jitter`` s and ``blips`` short stray chords (0.3-0.7 s, longer than the
    fixed 0.3 s floor) inside held chords."""
    import random
    rng = random.Random(seed)
    out = [(n, max(0.2, d + rng.uniform(-jitter, jitter))) for n, d in pairs]
    for _ in range(blips):
        i = rng.randrange(len(out))
        n, d = out[i]
        b = rng.uniform(0.3, 0.7)
        if d > b + 0.4:
            stray = rng.choice(["C", "F#", "D", "G", "A", "Bm", "F", "C#m"])
            out[i:i + 1] = [(n, (d - b) / 2), (stray, b), (n, (d - b) / 2)]
    return track([n for n, _ in out], [d for _, d in out])


STABLE = {
    "C G Am F": [("C", 2.0), ("G", 2.0), ("Am", 2.0), ("F", 2.0)] * 8,
    "A D A E D A E": [(c, 2.0) for c in ["A"] * 4 + ["D"] * 2 + ["A"] * 2
                      + ["E", "D", "A", "E"]] * 3,
    # a dominant two-chord verse around a bridge of other chords
    "Em B": ([("Em", 1.5), ("B", 1.5)] * 6 + [(c, 1.0) for c in ["Em", "E", "A", "D", "G", "C"]]
             * 2 + [("Em", 1.5), ("B", 1.5)] * 6),
}


@pytest.mark.parametrize("loop", sorted(STABLE))
def test_loop_is_stable_under_reencoding(loop):
    """The known loop, and the same one (same rotation) for 30 re-encodings."""
    pairs = STABLE[loop]
    assert names(find_loop(track([n for n, _ in pairs], [d for _, d in pairs]))) == loop
    found = {names(find_loop(_reencoded(pairs, seed))) for seed in range(30)}
    assert found == {loop}


def test_rare_chords_and_relative_blips_are_left_out():
    # 1.2 s stray chords between 4 s chords: under half the median, so blips.
    seq = [("Am", 4.0), ("F", 4.0), ("E", 1.2), ("C", 4.0), ("G", 4.0)] * 3
    assert names(find_loop(track([n for n, _ in seq], [d for _, d in seq]))) == "Am F C G"
    # a chord with 2 % of the time is left out even when long enough
    seq = [("Am", 4.0), ("F", 4.0), ("C", 4.0), ("G", 4.0)] * 6 + [("Bb", 2.0)]
    assert "A#" not in names(find_loop(track([n for n, _ in seq], [d for _, d in seq])))
