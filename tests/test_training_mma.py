"""MMA band renders: chord symbol mapping, chart timing, split (fast), one render (slow)."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from model_zoo import vocab
from training import leadsheet as LS
from training import mma_chart as M
from training import render_mma as R

SHEET = """<?xml version="1.0" encoding="UTF-8"?>
<score-partwise><part id="P1">
 <measure number="0" implicit="yes">
  <attributes><divisions>2</divisions><key><fifths>-3</fifths><mode>major</mode></key>
   <time><beats>4</beats><beat-type>4</beat-type></time></attributes>
  <note><pitch><step>B</step><alter>-1</alter><octave>4</octave></pitch><duration>2</duration><voice>1</voice></note>
 </measure>
 <measure number="1">
  <harmony><root><root-step>E</root-step><root-alter>-1</root-alter></root><kind>major</kind></harmony>
  <note><pitch><step>E</step><alter>-1</alter><octave>5</octave></pitch><duration>4</duration><voice>1</voice>
   <tie type="start"/></note>
  <harmony><root><root-step>C</root-step></root><kind text="m7">minor-seventh</kind></harmony>
  <note><pitch><step>E</step><alter>-1</alter><octave>5</octave></pitch><duration>3</duration><voice>1</voice>
   <tie type="stop"/></note>
  <harmony><root><root-step>F</root-step></root><kind>dominant-ninth</kind></harmony>
  <note><rest/><duration>1</duration><voice>1</voice></note>
 </measure>
 <measure number="2">
  <harmony><root><root-step>B</root-step><root-alter>-1</root-alter></root><kind>dominant</kind>
   <bass><bass-step>D</bass-step></bass></harmony>
  <note><pitch><step>D</step><octave>5</octave></pitch><duration>8</duration><voice>1</voice></note>
 </measure>
 <measure number="3">
  <harmony><root><root-step>E</root-step><root-alter>-1</root-alter></root><kind>major</kind></harmony>
  <note><pitch><step>E</step><alter>-1</alter><octave>5</octave></pitch><duration>8</duration><voice>1</voice></note>
 </measure>
</part></score-partwise>
"""


def _harmony(xml: str) -> ET.Element:
    return ET.fromstring(f"<harmony>{xml}</harmony>")


@pytest.mark.parametrize("xml,harte,index", [
    ("<root><root-step>C</root-step></root><kind>major</kind>", "C:maj", vocab.index(0, "maj")),
    ("<root><root-step>B</root-step><root-alter>-1</root-alter></root><kind>minor-seventh</kind>",
     "Bb:min7", vocab.index(10, "min7")),
    ("<root><root-step>F</root-step><root-alter>1</root-alter></root><kind>half-diminished</kind>",
     "Gb:hdim7", vocab.index(6, "hdim7")),
    ("<root><root-step>G</root-step></root><kind>dominant-ninth</kind>", "G:9",
     vocab.index(7, "7")),
    ("<root><root-step>D</root-step></root><kind>major-minor</kind>", "D:minmaj7",
     vocab.index(2, "minmaj7")),
    ("<root><root-step>C</root-step></root><kind>major</kind><bass><bass-step>E</bass-step></bass>",
     "C:maj/3", vocab.index(0, "maj")),
    ("<root><root-step>C</root-step></root><kind>dominant</kind><degree><degree-value>5</degree-value>"
     "<degree-alter>-1</degree-alter><degree-type>alter</degree-type></degree>",
     "C:7(b5,*5)", vocab.X_INDEX),
    ("<root><root-step>A</root-step></root><kind>major-sixth</kind>", "A:maj6",
     vocab.index(9, "maj6")),
    ("<root><root-step>E</root-step></root><kind>suspended-fourth</kind>", "E:sus4",
     vocab.index(4, "sus4")),
    ("<kind>none</kind>", "N", vocab.N_INDEX),
    ("<root><root-step>C</root-step></root><kind>Tristan</kind>", "X", vocab.X_INDEX),
])
def test_chord_symbols_to_harte_and_vocabulary(xml, harte, index):
    label, _ = LS.harmony_to_harte(_harmony(xml))
    assert label == harte
    assert vocab.label_to_index(label) == index


def test_chart_chords_keep_the_bass_and_play_the_vocabulary_chord():
    c = M.to_chart_chord("Bb:9/3")
    assert (c.root, c.quality, c.bass) == (10, "7", 2)
    assert c.harte(flats=True) == "Bb:7/3" and c.mma(flats=True) == "Bb7/D"
    assert c.transposed(2).harte(flats=False) == "C:7/3"
    assert M.to_chart_chord("C:7(b5,*5)") is None
    assert M.to_chart_chord("N") == M.ChartChord(None)
    for q, suffix in M.MMA_SUFFIX.items():   # every vocabulary quality has an MMA name
        assert M.ChartChord(0, q).mma(False) == "C" + suffix


def test_lead_sheet_parse_pads_the_pickup_and_joins_ties(tmp_path):
    path = tmp_path / "song.xml"
    path.write_text(SHEET)
    sheet = LS.parse(path)
    assert sheet.pickup == 3.0 and sheet.length == 16.0
    assert [(c.beat, c.label) for c in sheet.chords] == [
        (4.0, "Eb:maj"), (6.0, "C:min7"), (7.5, "F:9"), (8.0, "Bb:7/3"), (12.0, "Eb:maj")]
    assert sheet.notes[:2] == [(3.0, 1.0, 70), (4.0, 3.5, 75)]   # tie joined
    assert sheet.keys == [(0.0, -3, "major")]
    assert LS.key_name(-3, False) == "Eb major" and LS.key_name(-3, True) == "C minor"


def test_chart_timing_and_labels():
    chords = [LS.Chord(4.0, "Eb:maj"), LS.Chord(6.0, "C:min7"), LS.Chord(7.5, "F:9"),
              LS.Chord(8.0, "Bb:7/3"), LS.Chord(10.0, "C:7(b5,*5)"), LS.Chord(12.0, "Eb:maj"),
              LS.Chord(13.0, "Eb:maj")]
    chart, counts = M.build_chart(chords, 16.0)
    # F:9 at 7.5 rounds to 8 and is replaced by Bb:7/3 there; X dropped; repeats joined
    assert [(b, c.harte(True)) for b, c in chart] == [
        (0, "N"), (4, "Eb:maj"), (6, "C:min7"), (8, "Bb:7/3"), (12, "Eb:maj")]
    assert counts == {"symbols": 7, "dropped_x": 1, "off_beat": 1}
    text = M.mma_text(chart, M.n_bars(16.0, 4), 4, "Swing", 120, True)
    assert text.splitlines() == ["Tempo 120", "Time 4", "Groove Swing", "1 z / / /",
                                 "2 Eb / Cm7 /", "3 Bb7/D / / /", "4 Eb / / /"]
    rows = M.chart_labels(chart, 16, 0.5, True)
    assert rows == [(0.0, 2.0, "N"), (2.0, 3.0, "Eb:maj"), (3.0, 4.0, "C:min7"),
                    (4.0, 6.0, "Bb:7/3"), (6.0, 8.0, "Eb:maj")]


def test_meter_family_and_grooves():
    assert M.meter_family([(0, 3, 4)]) == 3 and M.meter_family([(0, 6, 8)]) == 3
    assert M.meter_family([(0, 4, 4)]) == 4 and M.meter_family([(0, 2, 2)]) == 4
    assert M.meter_family([(0, 12, 8)]) == 4 and M.meter_family([]) == 4
    if not M.MMA_LIB.is_dir():
        pytest.skip("mma library not installed")
    grooves = M.list_grooves()
    assert len(grooves) > 100 and {g["time"] for g in grooves.values()} >= {3, 4}
    assert not any("Intro" in g or "End" in g for v in grooves.values() for g in v["grooves"])


def test_song_key_sanity_check():
    def chart(*chords):
        return [(i * 4, M.ChartChord(r, q)) for i, (r, q) in enumerate(chords)]
    sheet = LS.LeadSheet(chords=[], notes=[], keys=[(0.0, -3, "major")], times=[], length=8)
    assert R.song_key(sheet, chart((3, "maj"), (8, "maj"), (3, "maj")))[0] == "Eb major"
    assert R.song_key(sheet, chart((5, "min"), (7, "7"), (0, "min")))[0] == "C minor"
    key, info = R.song_key(sheet, chart((5, "maj"), (0, "7"), (5, "maj")))  # F major tune
    assert key is None and info["check"] is False


def test_split_is_by_song_and_stems_are_distinct():
    ids = [f"Author {i}/Title_{i % 7}" for i in range(600)]
    parts = {s: [i for i in ids if R.split_of(i) == s] for s in ("train", "validation", "test")}
    assert sum(len(v) for v in parts.values()) == len(ids)
    for name, share in (("train", 0.8), ("validation", 0.1), ("test", 0.1)):
        assert abs(len(parts[name]) / len(ids) - share) < 0.05
    assert R.split_of(ids[3]) == R.split_of(ids[3])
    assert len({R.stem_of(i) for i in ids}) == len(ids)
    a = R.choose_variant(ids[0], 0, 0, 4, {"x": {"time": 4, "grooves": ["X1", "X2"]},
                                           "y": {"time": 3, "grooves": ["Y"]}})
    assert a["groove"] in ("X1", "X2") and -5 <= a["transpose"] <= 6
    assert a == R.choose_variant(ids[0], 0, 0, 4, {"x": {"time": 4, "grooves": ["X1", "X2"]},
                                                   "y": {"time": 3, "grooves": ["Y"]}})


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("mma") and shutil.which("fluidsynth")),
                    reason="needs mma and fluidsynth")
def test_render_one_short_song(tmp_path):
    mido = pytest.importorskip("mido")
    path = tmp_path / "Someone" / "Short_Song" / "Short_Song.xml"
    path.parent.mkdir(parents=True)
    path.write_text(SHEET)
    grooves = {"pianoballad": {"time": 4, "grooves": ["PianoBallad"]}}
    if not (M.MMA_LIB / "pianoballad.mma").exists():
        pytest.skip("MMA's pianoballad groove not installed")
    meta = R.render_one(str(path), "Someone/Short_Song", str(tmp_path / "out"), 0, 0,
                        grooves=grooves)
    out = R.outputs(tmp_path / "out", meta["split"], meta["stem"])
    assert out["flac"].exists() and out["lab"].exists() and out["json"].exists()
    rows = [ln.split("\t") for ln in out["lab"].read_text().splitlines()]
    assert rows[0][2] == "N" and float(rows[-1][1]) == pytest.approx(meta["labels_end_s"], abs=1e-3)
    assert meta["duration_s"] >= meta["labels_end_s"]
    # MMA's bass starts each labelled chord on its beat
    mid = R.run_mma(meta["mma_source"], tmp_path)
    m = mido.MidiFile(str(mid))
    spb = 60.0 / meta["tempo"]
    for track in m.tracks:
        if "bass" in track.name.lower():
            now, onsets = 0, []
            for msg in track:
                now += msg.time
                if msg.type == "note_on" and msg.velocity > 0:
                    onsets.append(now / m.ticks_per_beat * spb)
            changes = [float(r[0]) for r in rows if r[2] != "N"]
            gap = [min(abs(np.array(onsets) - c)) for c in changes]
            assert max(gap) < 0.05, gap
            break
    assert R.render_one(str(path), "Someone/Short_Song", str(tmp_path / "out"), 0, 0,
                        grooves=grooves)["skipped"]
