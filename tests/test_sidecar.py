import json
import os
import re

import numpy as np
import pytest

import tagger
from model_zoo import vocab
from tagger.chords import Segment
from tagger.keytrack import KeyRegion
from tagger.result import TrackResult
from tagger.sidecar import (JAMS_VERSION, atomic_write_text, missing_sidecars,
                            sidecar_path, write_sidecar)

# Value patterns of the JAMS namespaces "chord" and "key_mode" (jams 0.3.x
# schemata: namespaces/chord/chord.json, namespaces/key/key_mode.json).
_CHORD_RE = re.compile(
    r"^((N|X)|(([A-G](b*|#*))((:(maj|min|dim|aug|1|5|sus2|sus4|maj6|min6|7|maj7|min7|dim7|"
    r"hdim7|minmaj7|aug7|9|maj9|min9|11|maj11|min11|13|maj13|min13)(\((\*?((b*|#*)([1-9]|"
    r"1[0-3]?))(,\*?((b*|#*)([1-9]|1[0-3]?)))*)\))?)|(:\((\*?((b*|#*)([1-9]|1[0-3]?))(,\*?"
    r"((b*|#*)([1-9]|1[0-3]?)))*)\)))?((/((b*|#*)([1-9]|1[0-3]?)))?)?))$")
_KEY_MODE_RE = re.compile(
    r"^N|([A-G][b#]?)(:(major|minor|ionian|dorian|phrygian|lydian|mixolydian|aeolian|locrian))?$")


def _result(tmp_path, key_index=3):
    segs = [Segment(0.0, 1.25, vocab.index(3, "maj"), 0.91),
            Segment(1.25, 2.5, vocab.index(10, "7"), 0.8),
            Segment(2.5, 3.0, vocab.N_INDEX, 0.5),
            Segment(3.0, 4.1234567, vocab.index(1, "hdim7"), 0.66666666)]
    return TrackResult(path=str(tmp_path / "My Song.flac"), duration=4.1234567,
                       key_index=key_index, key_confidence=0.87654321,
                       segments=segs, chords="Eb Bb7", progression="I V7",
                       models={"chord": "student-v1", "key": "skey"})


def test_paths(tmp_path):
    a = tmp_path / "a.b.mp3"
    assert sidecar_path(a, "lab") == tmp_path / "a.b.mp3.lab"
    assert sidecar_path(a, "json") == tmp_path / "a.b.mp3.chords.json"
    assert sidecar_path(a, "jams") == tmp_path / "a.b.mp3.jams"
    assert sidecar_path(tmp_path / "noext", "lab") == tmp_path / "noext.lab"
    # the same song in two formats never shares a sidecar
    assert sidecar_path(tmp_path / "ragtime.ogg", "lab") != sidecar_path(tmp_path / "ragtime.flac", "lab")
    with pytest.raises(ValueError):
        sidecar_path(a, "csv")


def test_missing_sidecars(tmp_path):
    audio = tmp_path / "ragtime.ogg"
    assert missing_sidecars(audio, ("lab", "json")) == ["lab", "json"]
    (tmp_path / "ragtime.ogg.lab").write_text("")
    (tmp_path / "ragtime.lab").write_text("")     # a label file, not the sidecar
    assert missing_sidecars(audio, ("lab", "json")) == ["json"]


def test_lab(tmp_path):
    r = _result(tmp_path)
    p = write_sidecar(r, "lab")
    assert p == tmp_path / "My Song.flac.lab"
    lines = p.read_text().splitlines()
    assert lines[0] == f"# keychords {tagger.version()} chord=student-v1 key=skey"
    assert lines[1] == "0.000000\t1.250000\tEb:maj"     # spelled in E-flat major
    assert lines[-1] == "3.000000\t4.123457\tC#:hdim7"
    import mir_eval
    intervals, labels = mir_eval.io.load_labeled_intervals(str(p))
    assert labels == ["Eb:maj", "Bb:7", "N", "C#:hdim7"]
    np.testing.assert_allclose(intervals[:, 1], [1.25, 2.5, 3.0, 4.123457])
    mir_eval.chord.validate(labels, labels)
    for lab in labels:
        mir_eval.chord.encode(lab)  # parses as Harte
    assert write_sidecar(r, "lab", flats=True).read_text().splitlines()[-1].endswith("Db:hdim7")
    assert write_sidecar(r, "lab", flats=False).read_text().splitlines()[1].endswith("D#:maj")


def test_own_lab_sidecars_are_never_labels(tmp_path):
    """distill / train-key / eval find labels through LabelIndex: a .lab that
    keychords wrote is the model's own guess, never ground truth."""
    from tagger.distill.labels import LabelIndex, read_lab
    r = _result(tmp_path)
    own = write_sidecar(r, "lab", dest=tmp_path / "My Song.lab")
    assert read_lab(own)[1] == ["Eb:maj", "Bb:7", "N", "C#:hdim7"]  # readable, header skipped
    assert LabelIndex().find(r.path, ".lab") is None
    write_sidecar(r, "lab")                   # its own name: not a label file's name
    assert LabelIndex().find(r.path, ".lab") is None
    assert LabelIndex([tmp_path]).find(tmp_path / "elsewhere" / "My Song.ogg", ".lab") is None
    human = tmp_path / "labels" / "My Song.lab"
    human.parent.mkdir()
    human.write_text("# annotated by hand\n0.0\t4.1\tD#:maj\n")
    assert LabelIndex([tmp_path]).find(tmp_path / "x" / "My Song.ogg", ".lab") == human
    own.write_text("0.0\t4.1\tD#:maj\n")  # no header: a human's file
    assert LabelIndex().find(r.path, ".lab") == own


def test_json(tmp_path):
    r = _result(tmp_path)
    p = write_sidecar(r, "json")
    assert p.name == "My Song.flac.chords.json"
    doc = json.loads(p.read_text("utf-8"))
    assert doc["path"] == r.path
    assert doc["key"] == "Eb major"
    assert doc["key_confidence"] == pytest.approx(0.876543)
    assert doc["chords"] == "Eb Bb7" and doc["progression"] == "I V7"
    assert doc["duration"] == pytest.approx(4.123457)
    assert doc["segments"][0] == [0.0, 1.25, "Eb:maj", 0.91]
    assert [s[2] for s in doc["segments"]] == ["Eb:maj", "Bb:7", "N", "C#:hdim7"]
    assert doc["models"] == {"chord": "student-v1", "key": "skey"}
    assert doc["generator"] == f"keychords {tagger.version()} chord=student-v1 key=skey"
    assert doc["tuning"] is None and doc["key_changes"] == 0 and doc["key_regions"] == []
    r.tuning = -12.345
    r.key_regions = [KeyRegion(0.0, 2.5, 3, 0.8), KeyRegion(2.5, 4.1234567, 4, 0.7)]
    doc = json.loads(write_sidecar(r, "json").read_text())
    assert doc["tuning"] == -12.35 and doc["key_changes"] == 1
    assert doc["key_regions"] == [[0.0, 2.5, "Eb major", 0.8], [2.5, 4.123, "E major", 0.7]]
    # each chord is spelled in the key at its time: B7 in E major, not Cb7
    assert [s[2] for s in doc["segments"]] == ["Eb:maj", "Bb:7", "N", "C#:hdim7"]
    r.segments[1] = Segment(1.25, 2.5, vocab.label_to_index("B:7"), 0.8)
    r.key_regions = [KeyRegion(0.0, 1.25, 3, 0.8), KeyRegion(1.25, 4.1234567, 4, 0.7)]
    doc = json.loads(write_sidecar(r, "json").read_text())
    assert doc["segments"][1][2] == "B:7"
    r.key_index = None
    assert json.loads(write_sidecar(r, "json").read_text())["key"] is None


def _check_jams(doc):
    """The JAMS schema's structural rules (jams_schema.json, 0.3.x)."""
    assert set(doc) <= {"file_metadata", "annotations", "sandbox"}
    fm = doc["file_metadata"]
    assert isinstance(fm["duration"], (int, float)) and fm["duration"] >= 0
    assert re.match(r"[0-9].[0-9].[0-9]", fm["jams_version"])
    assert isinstance(fm["identifiers"], dict)
    for key in ("title", "artist", "release"):
        assert isinstance(fm[key], str)
    assert isinstance(doc["sandbox"], dict)
    for ann in doc["annotations"]:
        assert {"annotation_metadata", "data", "namespace"} <= set(ann)
        meta = ann["annotation_metadata"]
        assert {"name", "email"} <= set(meta["curator"])
        assert isinstance(meta["annotator"], dict)
        for key in ("corpus", "annotation_tools", "annotation_rules", "validation", "data_source"):
            assert isinstance(meta[key], str)
        assert isinstance(meta["version"], (str, int, float))
        assert isinstance(ann["sandbox"], dict)
        for key in ("time", "duration"):
            assert ann[key] is None or ann[key] >= 0
        assert isinstance(ann["data"], list)
        for obs in ann["data"]:
            assert set(obs) == {"time", "duration", "value", "confidence"}
            assert obs["time"] >= 0 and obs["duration"] >= 0
            pattern = {"chord": _CHORD_RE, "key_mode": _KEY_MODE_RE}[ann["namespace"]]
            assert pattern.match(obs["value"]), obs["value"]


def test_jams(tmp_path):
    r = _result(tmp_path)
    p = write_sidecar(r, "jams")
    assert p.name == "My Song.flac.jams"
    doc = json.loads(p.read_text("utf-8"))
    _check_jams(doc)
    assert doc["file_metadata"]["jams_version"] == JAMS_VERSION
    assert doc["file_metadata"]["duration"] == pytest.approx(4.123457)
    chord, key = doc["annotations"]
    assert chord["namespace"] == "chord" and key["namespace"] == "key_mode"
    assert chord["annotation_metadata"]["annotator"]["name"] == "keychords"
    assert chord["annotation_metadata"]["annotation_tools"] == f"keychords {tagger.version()}"
    assert doc["sandbox"]["keychords"]["generator"].startswith("keychords ")
    assert chord["annotation_metadata"]["annotator"]["model"] == "student-v1"
    assert key["annotation_metadata"]["annotator"]["model"] == "skey"
    assert [o["value"] for o in chord["data"]] == ["Eb:maj", "Bb:7", "N", "C#:hdim7"]
    assert chord["data"][1] == {"time": 1.25, "duration": 1.25, "value": "Bb:7",
                                "confidence": 0.8}
    assert key["data"] == [{"time": 0.0, "duration": pytest.approx(4.123457),
                            "value": "Eb:major", "confidence": pytest.approx(0.876543)}]
    # every vocabulary label and key is valid in its namespace
    for lab in vocab.LABELS:
        assert _CHORD_RE.match(lab)
        assert _CHORD_RE.match(vocab.harte_name(vocab.LABELS.index(lab), flats=True))
    from tagger.sidecar import _key_mode_value
    for k in range(24):
        assert _KEY_MODE_RE.match(_key_mode_value(k))
    # the timed key track: one key_mode observation per region
    r.key_regions = [KeyRegion(0.0, 2.5, 3, 0.8), KeyRegion(2.5, 4.1234567, 16, 0.7)]
    r.tuning = 7.0
    doc = json.loads(write_sidecar(r, "jams").read_text())
    _check_jams(doc)
    assert doc["annotations"][1]["data"] == [
        {"time": 0.0, "duration": 2.5, "value": "Eb:major", "confidence": 0.8},
        {"time": 2.5, "duration": pytest.approx(1.623457), "value": "E:minor", "confidence": 0.7}]
    assert doc["sandbox"]["keychords"]["tuning"] == 7.0
    # without a key there is no key_mode annotation
    r.key_regions = []
    r.key_index = None
    doc = json.loads(write_sidecar(r, "jams").read_text())
    _check_jams(doc)
    assert [a["namespace"] for a in doc["annotations"]] == ["chord"]


def test_jams_loads_with_jams_if_installed(tmp_path):
    jams = pytest.importorskip("jams")
    p = write_sidecar(_result(tmp_path), "jams")
    jam = jams.load(str(p), validate=True)
    assert len(jam.annotations) == 2


def test_unknown_kind(tmp_path):
    with pytest.raises(ValueError):
        write_sidecar(_result(tmp_path), "xml")


def test_atomic_replace_keeps_mode_and_leaves_no_temp(tmp_path):
    dest = tmp_path / "x.lab"
    dest.write_text("old\n")
    os.chmod(dest, 0o640)
    atomic_write_text(dest, "new\n")
    assert dest.read_text() == "new\n"
    assert (os.stat(dest).st_mode & 0o777) == 0o640
    assert sorted(os.listdir(tmp_path)) == ["x.lab"]


def test_atomic_failure_leaves_old_file(tmp_path, monkeypatch):
    dest = tmp_path / "x.lab"
    dest.write_text("old\n")

    def boom(*a, **k):
        raise OSError("disk on fire")
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk on fire"):
        atomic_write_text(dest, "new\n")
    assert dest.read_text() == "old\n"
    assert sorted(os.listdir(tmp_path)) == ["x.lab"]


def test_new_file_respects_umask(tmp_path):
    old = os.umask(0o022)
    try:
        p = atomic_write_text(tmp_path / "n.json", "{}")
    finally:
        os.umask(old)
    assert (os.stat(p).st_mode & 0o777) == 0o644
