"""KeyCQT: the key network on the chord model's CQT, its engine path, its training
data (transposed segments, timed labels, teacher targets) and train-key end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model_zoo import keys, registry
from model_zoo.keycqt import FEATURES, KeyCQT, window_logits
from model_zoo.student import ChordStudent
from tagger import cli, engine
from tagger.distill import cache as C
from tagger.distill.key_teachers import TeacherTargets, load_teachers, run_teachers
from tagger.distill.labels import LabelIndex
from tagger.distill.train_key_cqt import SegmentSampler, track_log_probs, transpose_table
from tagger.scan import scan
from tests.audio_fixtures import make_audio_file
from tests.model_fixtures import save_tiny_key_teachers, write_key_change_song


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_frame_logits_and_clip_logits():
    torch.manual_seed(0)
    net = KeyCQT().eval()
    x = torch.rand(2, 1, 216, 100)
    with torch.inference_mode():
        frames = net.frame_logits(x)
        clip = net(x)["key"]
    assert frames.shape == (2, 13, 24)                      # ceil(100 / 8) pooled frames
    assert torch.allclose(clip, frames.mean(1), atol=1e-6)
    # level-free: a louder copy (a constant added in log1p units per frame) is the same key
    with torch.inference_mode():
        assert torch.allclose(net(x * 3.0)["key"], clip, atol=1e-4)


def test_pitch_class_stage_is_circular():
    """Rolling the 12 pitch classes rolls a block's output the same way."""
    torch.manual_seed(0)
    net = KeyCQT().eval()
    block = net.blocks[0]
    x = torch.randn(1, 64, 12, 5)
    with torch.inference_mode():
        assert torch.allclose(block(x.roll(5, dims=2)), block(x).roll(5, dims=2), atol=1e-5)


def test_window_logits_are_means_of_frames():
    frames = torch.arange(10 * 24, dtype=torch.float32).reshape(10, 24)
    w = window_logits(frames, [0, 16, 64], 32, pool=8)
    assert torch.equal(w[0], frames[0:4].mean(0))
    assert torch.equal(w[1], frames[2:6].mean(0))
    assert torch.equal(w[2], frames[8:10].mean(0))          # clipped at the end
    assert torch.equal(window_logits(frames, [0], 3, pool=8)[0], frames[0])


def test_transpose_table_moves_tonics():
    g = transpose_table()
    p = torch.zeros(1, 24)
    p[0, keys.key_index(9, True)] = 1.0                     # A minor
    up2 = p.gather(1, g[2 + 6][None])                      # transposed up 2: B minor
    assert int(up2.argmax()) == keys.key_index(11, True)
    down6 = p.gather(1, g[-6 + 6][None])
    assert int(down6.argmax()) == keys.key_index(3, True)   # D# minor


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    return write_key_change_song(tmp_path_factory.mktemp("song"))


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    """Tiny key teachers (S-KEY's and keynet's features) and a tiny KeyCQT."""
    d = save_tiny_key_teachers(tmp_path_factory.mktemp("models"))
    registry.save_model(KeyCQT(c1=4, c2=4, c3=8, blocks=1).eval(), "tiny-kcqt", task="key",
                        features=dict(FEATURES), directory=d,
                        extra={"segment_seconds": 15.0,
                               "key_inference": {"aggregation": "mean_logprob",
                                                 "temperature": 1.0}})
    registry.save_model(ChordStudent(dim=16, dilations=(1,)).eval(), "tiny-student",
                        task="chord", features=dict(ChordStudent.FEATURES), directory=d)
    return d


def _cache(tmp_path, song, teachers):
    from tagger.distill.keycqt_phases import streams
    cache = C.DatasetCache(tmp_path / "cache")
    rep = C.build_features(cache, scan([song]), streams(teachers), progress=False,
                           label_index=LabelIndex(), log=lambda m: None)
    C.attach_all_labels(cache, rep.track_ids, LabelIndex())
    return cache, rep.track_ids


def test_engine_reads_key_windows_off_one_pass_on_the_chord_front_end(models_dir, monkeypatch):
    monkeypatch.setenv(registry.ENV_MODEL_DIR, str(models_dir))
    an = engine.Analyzer("tiny-student", "tiny-kcqt", device="cpu", num_threads=1)
    assert len(an.frontends) == 1                           # one CQT serves both models
    audio = (np.random.default_rng(0).standard_normal(22050 * 40) * 0.1).astype(np.float32)
    t = an.start("x")
    an.feed(t, audio)
    t = an.finish(t)
    res = an.analyse([t])[0]
    n = t.mags[engine.feature_key(an.key_card)].shape[-1]
    seg, hop = an.front_end(an.key_card).n_frames(15 * 22050), 54   # 15 s windows every 5 s
    starts = sorted(set(range(0, n - seg + 1, hop)) | set(range(0, n - seg + 1, seg)))
    with torch.inference_mode():
        frames = an.key_net.frame_logits(an.features(t, an.key_card)[None])[0]
    logits = window_logits(frames, starts, seg, 8)
    assert np.allclose(res.key_window_probs, logits.softmax(-1).numpy(), atol=1e-5)
    disjoint = logits[[j for j, s in enumerate(starts) if s % seg == 0]]
    want = disjoint.log_softmax(-1).mean(0).softmax(-1)
    assert res.key_probs == pytest.approx(want.tolist(), abs=1e-5)


def test_segments_are_transposed_with_their_labels(song, models_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(registry.ENV_MODEL_DIR, str(models_dir))
    teachers = load_teachers(["tiny-skey", "tiny-keynet"], "cpu")
    cache, ids = _cache(tmp_path, song, teachers)
    with cache:
        assert run_teachers(cache, teachers, ids) == 2
        sampler = SegmentSampler(cache, ids, seed=0, segment_seconds=5.0)
        b = sampler.sample(48)
        arr = cache.load(ids[0], C.student_stream().name)
        targets = TeacherTargets(cache, teachers, [1, 1], "geometric")
        tp = targets.probs(b["track"], b["start"])
        lp = track_log_probs(KeyCQT().eval(), arr)
    assert b["x"].shape == (48, 1, 216, sampler.seg)
    assert set(b["shift"].tolist()) > {0}
    g = transpose_table()
    for i, (start, shift, y) in enumerate(zip(b["start"].tolist(), b["shift"].tolist(),
                                              b["y"].tolist())):
        tonic = 0 if start + 2.5 < 20.0 else 7               # the key in force, transposed
        assert y == keys.key_index(tonic + shift, False)
        s0 = round(start * sampler.frame_rate)
        want = C.student_input(np.asarray(arr[s0: s0 + sampler.seg], np.float32), shift).T
        np.testing.assert_array_equal(b["x"][i, 0].numpy(), want)
        shifted = tp[i: i + 1].gather(1, g[shift + 6][None])[0]
        k = int(tp[i].argmax())
        assert int(shifted.argmax()) == transpose_key_index(k, shift)
    assert lp.shape == (24,) and np.exp(lp).sum() <= 1.0 + 1e-5


def transpose_key_index(k: int, s: int) -> int:
    tonic, minor = keys.tonic_mode(k)
    return keys.key_index(tonic + s, minor)


@pytest.mark.slow
def test_train_key_keycqt_end_to_end(song, models_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(registry.ENV_MODEL_DIR, str(models_dir))
    train = tmp_path / "train"
    train.mkdir()
    make_audio_file(train / "a.wav", "wav", seconds=20.0, channels=1)
    assert cli.main(["train-key", str(train), "--architecture", "keycqt", "--name", "kc-small",
                     "--teacher", "tiny-skey", "--teacher", "tiny-keynet",
                     "--teacher-combination", "geometric", "--cache", str(tmp_path / "cache"),
                     "-q", "--speed-seconds", "0", "--register-anyway", "--steps", "3",
                     "--batch-size", "2", "--eval-every", "3",
                     "--validation", str(song)]) == 0
    card = registry.find_card("kc-small")
    assert card.architecture == "keycqt" and card.features == dict(FEATURES)
    assert card.provenance["teacher"] == "tiny-skey,tiny-keynet"
    assert card.metrics["heldout_key"]["tracks"] == 1
    assert card.metrics["training"]["steps"] == 3
    assert card.extra["key_inference"]["aggregation"] == "mean_logprob"
    res = engine.Analyzer("tiny-student", "kc-small", device="cpu",
                          num_threads=1).analyse_audio("x", np.zeros(22050 * 3, np.float32) + 0.01)
    assert 0 <= res.key_index < 24
    # an --init of another architecture is refused with one line
    assert cli.main(["train-key", str(train), "--architecture", "keycqt", "--name", "k2",
                     "--init", "tiny-skey", "--cache", str(tmp_path / "cache"), "-q"]) == 2
    assert "keycqt" in capsys.readouterr().err


def test_kd_on_unlabelled_leaves_labelled_segments_to_their_labels(song, tmp_path):
    from tagger.distill.train_key_cqt import KeyCQTTrainConfig, train_key_cqt
    cache, ids = _cache(tmp_path, song, [])
    asked = []

    class Teacher:                      # uniform targets; records the segments it is asked for
        ids = ["fake"]

        def probs(self, tracks, starts):
            asked.append(len(tracks))
            return torch.full((len(tracks), 24), 1 / 24)

        def track_probs(self, track):
            return np.full(24, 1 / 24)

    with cache:
        for kd_on, want in (("unlabelled", 0), ("all", 2)):
            asked.clear()
            cfg = KeyCQTTrainConfig(batch_size=2, max_steps=1, kd_on=kd_on,
                                    width=dict(c1=4, c2=4, c3=8, blocks=1))
            res = train_key_cqt(cache, ids, [], cfg, tmp_path / kd_on, teacher=Teacher(),
                                progress=False, log=lambda m: None)
            assert res.steps == 1 and sum(asked) == want
