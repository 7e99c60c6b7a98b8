"""Two key teachers for train-key: cached window outputs, their combination,
transposed KD targets, timed key labels, and the command end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model_zoo import keys, registry
from tagger import cli
from tagger.distill import cache as C
from tagger.distill.key_teachers import HOP_SECONDS, TeacherTargets, combine, load_teachers
from tagger.distill.labels import LabelIndex
from tagger.distill.train_key import ViewSampler, natural_native_to_ours
from tests.audio_fixtures import make_audio_file
from tests.model_fixtures import save_tiny_key_teachers, write_key_change_song


pytestmark = pytest.mark.usefixtures("one_thread")


def test_combine_arithmetic_and_geometric():
    p = torch.tensor([[[0.7, 0.2, 0.1]], [[0.1, 0.6, 0.3]]])
    a = combine(p, [3, 1], "arithmetic")[0]
    assert torch.allclose(a, torch.tensor([0.55, 0.3, 0.15]))
    g = combine(p, [1, 1], "geometric")[0]
    want = torch.sqrt(p[0, 0] * p[1, 0])
    assert torch.allclose(g, want / want.sum())
    assert torch.allclose(combine(p, [1, 0], "geometric")[0], p[0, 0])
    with pytest.raises(ValueError):
        combine(p, [1, 1], "median")


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    return write_key_change_song(tmp_path_factory.mktemp("song"))


@pytest.fixture(scope="module")
def teachers_dir(tmp_path_factory):
    return save_tiny_key_teachers(tmp_path_factory.mktemp("teachers"))


def _cache(tmp_path, song, teachers):
    streams = {s.name: s for s in [C.skey_stream()] + [t.input_stream() for t in teachers]}
    cache = C.DatasetCache(tmp_path / "cache")
    from tagger.scan import scan
    rep = C.build_features(cache, scan([song]), list(streams.values()), progress=False,
                           label_index=LabelIndex(), log=lambda m: None)
    C.attach_all_labels(cache, rep.track_ids, LabelIndex())
    return cache, rep.track_ids


def test_timed_key_labels_follow_the_segment(song, tmp_path):
    """A segment inside the G-major half is labelled G major, transposed with its crop."""
    cache, ids = _cache(tmp_path, song, [])
    with cache:
        assert cache.has(ids[0], C.KEY_CHANGES) and cache.track(ids[0]).key == 0
        sampler = ViewSampler(cache, ids, seed=0, segment_seconds=5.0)
        b = sampler.sample(64)
    n2o = natural_native_to_ours()
    for start, o, ya in zip(b["start_a"].tolist(), b["o"].tolist(), b["ya"].tolist()):
        tonic = 0 if start + 2.5 < 20.0 else 7
        assert n2o[ya] == keys.key_index((tonic - o) % 12, False)


def test_teacher_targets_are_cached_windows_transposed(song, teachers_dir, tmp_path,
                                                       monkeypatch):
    monkeypatch.setenv("KEYCHORDS_MODEL_DIR", str(teachers_dir))
    teachers = load_teachers(["tiny-skey", "tiny-keynet"], "cpu")
    cache, ids = _cache(tmp_path, song, teachers)
    with cache:
        from tagger.distill.key_teachers import run_teachers
        assert run_teachers(cache, teachers, ids) == 2
        assert run_teachers(cache, teachers, ids) == 0            # cached
        for t, n_windows in zip(teachers, (1 + (40 - 15) // 5, 1)):     # keynet: whole track
            w = cache.load(ids[0], t.stream)
            assert w.shape == (n_windows, 24)
            assert np.allclose(np.asarray(w, np.float32).sum(1), 1.0, atol=1e-2)
        targets = TeacherTargets(cache, teachers, [0.5, 0.5], "arithmetic")
        batch = ViewSampler(cache, ids, seed=1).sample(3)
        rows = torch.tensor([True, False, True] * 3)
        got = targets.native_probs(batch, rows)
        assert got.shape == (6, 24)
        # the first view: view A of item 0 (15 s), the window nearest its start, shifted by o
        assert batch["seconds"] == pytest.approx(15.0, abs=0.02)
        win = round((float(batch["start_a"][0]) + (batch["seconds"] - 15.0) / 2) / HOP_SECONDS)
        ours = 0.5 * sum(np.asarray(cache.load(ids[0], t.stream)[i], np.float32)
                         for t, i in zip(teachers, (win, 0)))
        o, n2o = int(batch["o"][0]), natural_native_to_ours()
        for n in range(24):
            tonic, minor = keys.tonic_mode(n2o[n])
            assert got[0, n] == pytest.approx(ours[keys.key_index((tonic + o) % 12, minor)],
                                              abs=1e-6)
        assert np.allclose(targets.track_probs(ids[0]).sum(), 1.0, atol=1e-2)


@pytest.mark.slow
def test_train_key_with_two_teachers(song, teachers_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KEYCHORDS_MODEL_DIR", str(teachers_dir))
    # a two-step model from scratch is worse than the shipped one: registered on request
    common = ["--cache", str(tmp_path / "cache"), "-q", "--speed-seconds", "0", "--register-anyway",
              "--steps", "2", "--batch-size", "2", "--eval-items", "2", "--eval-every", "2",
              "--validation", str(song)]
    train = tmp_path / "train"
    train.mkdir()
    make_audio_file(train / "a.wav", "wav", seconds=8.0, channels=1)
    assert cli.main(["train-key", str(train), "--name", "two", "--architecture", "chromanet",
                     "--teacher", "tiny-skey",
                     "--teacher", "tiny-keynet", "--teacher-weights", "1,3",
                     "--teacher-combination", "geometric", *common]) == 0
    card = registry.find_card("two")
    prov = card.provenance
    assert prov["teacher"] == "tiny-skey,tiny-keynet"
    assert prov["teacher_weights"] == [1.0, 3.0] and prov["teacher_combination"] == "geometric"
    assert card.metrics["heldout_key_teacher"]["tracks"] == 1
    assert cli.main(["train-key", str(train), "--name", "bad", "--teacher", "tiny-skey",
                     "--teacher", "tiny-keynet", "--teacher-weights", "1", *common]) == 2
    assert "--teacher-weights" in capsys.readouterr().err
