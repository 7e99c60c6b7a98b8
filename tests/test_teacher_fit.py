"""training/teacher_fit.py: students' decoded chords against a teacher's cached
posteriors, per named set of files."""

from __future__ import annotations

import json

import pytest
import torch

from tagger.distill import cache as C
from tagger.distill.labels import LabelIndex
from tagger.distill.teacher import Teacher, run_teacher
from tests.audio_fixtures import make_audio_file
from tests.model_fixtures import register_tiny_students

CLIPS = {"train": {"c": (130.8, 261.6, 329.6), "a": (110.0, 220.0, 261.6)},
         "heldout": {"g": (98.0, 196.0, 246.9)}}


@pytest.fixture
def cached(tmp_path, monkeypatch):
    """Two folders of clips in a cache that holds tiny-a's posteriors of them."""
    register_tiny_students(tmp_path / "models", monkeypatch)
    torch.set_num_threads(1)
    files = []
    for folder, clips in CLIPS.items():
        for name, hz in clips.items():
            path = tmp_path / folder / f"{name}.wav"
            make_audio_file(path, "wav", seconds=5.0, tone_hz=hz)
            files.append(str(path))
    with C.DatasetCache(tmp_path / "cache") as cache:
        rep = C.build_features(cache, files, [C.student_stream()], progress=False,
                               label_index=LabelIndex(), log=lambda m: None)
        run_teacher(cache, Teacher("tiny-a"), rep.track_ids, progress=False)
    return tmp_path


def test_teacher_against_itself_and_another(cached, capsys):
    from training import teacher_fit
    argv = ["--cache", str(cached / "cache"), "--teacher", "tiny-a", "--threads", "1",
            "--set", "train", str(cached / "train"), "--set", "heldout", str(cached / "heldout"),
            "--model", "tiny-a", "--model", "tiny-b"]
    assert teacher_fit.main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert [out[s]["tracks"] for s in ("train", "heldout")] == [2, 1]
    assert abs(out["train"]["hours"] - 10 / 3600) < 0.01
    for s in ("train", "heldout"):
        own, other = out[s]["scores"]["tiny-a"], out[s]["scores"]["tiny-b"]
        # the student run from the cached features is the teacher: equal up to the cache's
        # float16 posteriors, whose rounding flips a random net's near-ties
        assert own["root"] > 0.9 and own["mirex"] > 0.9
        assert other["root"] < 0.5


def test_a_set_without_the_teachers_posteriors_is_an_error(cached, tmp_path, capsys):
    from training import teacher_fit
    make_audio_file(tmp_path / "new" / "x.wav", "wav", seconds=5.0)
    argv = ["--cache", str(cached / "cache"), "--teacher", "tiny-a", "--threads", "1",
            "--set", "new", str(tmp_path / "new"), "--model", "tiny-b"]
    assert teacher_fit.main(argv) == 1
    assert "new: no track of" in capsys.readouterr().err


def test_limit_takes_tracks_spread_over_the_set(cached):
    from training.teacher_fit import cached_tracks
    with C.DatasetCache(cached / "cache") as cache:
        stream = Teacher("tiny-a").stream
        both = cached_tracks(cache, [str(cached / "train")], stream, None)
        one = cached_tracks(cache, [str(cached / "train")], stream, 1)
    assert len(both) == 2 and one == both[:1]
