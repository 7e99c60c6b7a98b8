"""training/reference_labs.py: a model's decoded chords as .lab files score
exactly as ``keychords eval --reference-model`` scores against the model."""

from __future__ import annotations

import pytest
import torch

from tagger.distill.evaluate import evaluate_folder
from tagger.distill.labels import read_lab
from tests.audio_fixtures import make_audio_file
from tests.model_fixtures import register_tiny_students


@pytest.fixture
def tiny_models(tmp_path, monkeypatch):
    d = register_tiny_students(tmp_path / "models", monkeypatch)
    torch.set_num_threads(1)
    return d


@pytest.mark.slow
def test_reference_labs_score_as_the_reference_model(tiny_models, tmp_path, capsys):
    from training import reference_labs
    lib, out = tmp_path / "lib", tmp_path / "labs"
    for name, hz in (("c", (130.8, 261.6, 329.6)), ("a", (110.0, 220.0, 261.6))):
        make_audio_file(lib / f"{name}.wav", "wav", seconds=4.0, tone_hz=hz)
    assert reference_labs.main([str(lib), "--model", "tiny-a", "--out", str(out),
                                "--threads", "1"]) == 0
    labs = sorted(p.name for p in out.iterdir())
    assert labs == ["a.lab", "c.lab"]
    intervals, labels = read_lab(out / "c.lab")
    assert intervals[0, 0] == 0.0 and abs(intervals[-1, 1] - 4.0) < 0.1 and labels
    assert (out / "c.lab").read_text().startswith("# reference tiny-a\n")

    models = ["tiny-a", "tiny-b"]
    by_labs = evaluate_folder([str(lib)], models, [], label_dirs=[out], progress=False)
    by_model = evaluate_folder([str(lib)], models, [], reference="tiny-a", progress=False)
    assert by_labs["files"] == by_model["files"] == 2
    for m in models:
        a = {k: v for k, v in by_labs["chord"][m].items() if k != "x_realtime"}
        b = {k: v for k, v in by_model["chord"][m].items() if k != "x_realtime"}
        assert a == pytest.approx(b, abs=1e-6, nan_ok=True)
    assert by_labs["chord"]["tiny-a"]["majmin"] == pytest.approx(1.0)

    stamp = (out / "c.lab").stat().st_mtime_ns      # a second run resumes: nothing redone
    assert reference_labs.main([str(lib), "--model", "tiny-a", "--out", str(out)]) == 0
    assert (out / "c.lab").stat().st_mtime_ns == stamp


def test_eval_scores_every_model_on_the_same_tracks(tiny_models, tmp_path, monkeypatch):
    """A file that one model fails on is left out for every model, and reported once."""
    from tagger.engine import Analyzer
    lib = tmp_path / "lib"
    for name, hz in (("c", (130.8, 261.6, 329.6)), ("a", (110.0, 220.0, 261.6))):
        make_audio_file(lib / f"{name}.wav", "wav", seconds=4.0, tone_hz=hz)
    real = Analyzer.analyse_audio

    def flaky(self, path, audio):
        if self.chord_card.id == "tiny-b" and path.endswith("a.wav"):
            raise ValueError("tiny-b cannot read this one")
        return real(self, path, audio)

    monkeypatch.setattr(Analyzer, "analyse_audio", flaky)
    res = evaluate_folder([str(lib)], ["tiny-a", "tiny-b"], [], reference="tiny-a",
                          progress=False)
    assert res["chord"]["tiny-a"]["tracks"] == res["chord"]["tiny-b"]["tracks"] == 1
    assert [(p.rsplit("/", 1)[-1], why) for p, why in res["failed"]] == [
        ("a.wav", "tiny-b cannot read this one")]
    assert res["audio_hours"] == pytest.approx(4.0 / 3600, abs=1e-3)


def test_bootstrap_interval_brackets_the_pooled_score():
    import numpy as np

    from training.track_intervals import bootstrap_interval, package_of
    assert bootstrap_interval([5.0, 10.0, 2.5], [10.0, 20.0, 5.0]) == (0.5, 0.5)
    correct, scored = np.array([9.0, 1.0, 5.0, 8.0]), np.array([10.0, 10.0, 10.0, 10.0])
    lo, hi = bootstrap_interval(correct, scored, resamples=2000, seed=1)
    assert lo < correct.sum() / scored.sum() < hi and 0.1 <= lo and hi <= 0.9
    assert (lo, hi) == bootstrap_interval(correct, scored, resamples=2000, seed=1)
    assert package_of("/x/flare-game__usr_share_a.ogg") == "flare-game"
    assert package_of("/x/plain.wav") == "plain"


def test_track_intervals_by_package(tiny_models, tmp_path, capsys):
    import json

    from training import track_intervals
    lib = tmp_path / "lib"
    for name, hz in (("pa__c", (130.8, 261.6, 329.6)), ("pb__a", (110.0, 220.0, 261.6)),
                     ("pb__e", (164.8, 329.6, 415.3))):
        make_audio_file(lib / f"{name}.wav", "wav", seconds=4.0, tone_hz=hz)
    args = [str(lib), "--reference-model", "tiny-a", "--chord-model", "tiny-a",
            "--chord-model", "tiny-b", "--resamples", "500", "--threads", "1"]
    assert track_intervals.main(args + ["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    same = out["tiny-a"]
    assert same["majmin"] == 1.0 and same["interval"] == [1.0, 1.0] and same["tracks"] == 3
    assert {k: g["tracks"] for k, g in same["packages"].items()} == {"pa": 1, "pb": 2}
    other = out["tiny-b"]
    pooled = evaluate_folder([str(lib)], ["tiny-b"], [], reference="tiny-a",
                             progress=False)["chord"]["tiny-b"]["majmin"]
    assert other["majmin"] == pytest.approx(pooled)
    assert other["interval"][0] <= other["majmin"] <= other["interval"][1]
    assert track_intervals.main(args) == 0
    assert "tiny-b: majmin" in capsys.readouterr().out
