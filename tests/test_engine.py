import numpy as np
import pytest

from tagger.engine import _length_buckets


def test_length_buckets():
    groups = _length_buckets([100, 2600, 110, 2500, 90, 77000], max_size=2)
    assert sorted(i for g in groups for i in g) == list(range(6))
    for g in groups:
        lens = [[100, 2600, 110, 2500, 90, 77000][i] for i in g]
        assert len(g) <= 2 and max(lens) <= 1.5 * min(lens)
    assert [5] in groups


@pytest.mark.slow
def test_windowed_student_equals_whole_track(tmp_path, monkeypatch):
    """Windows with receptive-field margins reproduce a whole-track pass."""
    import torch

    from model_zoo import registry
    from model_zoo.skey import ChromaNet, FEATURES as SKEY_FEATURES
    from model_zoo.student import ChordStudent
    from tagger import engine

    monkeypatch.setenv(registry.ENV_MODEL_DIR, str(tmp_path))
    torch.manual_seed(0)
    student = ChordStudent().eval()
    registry.save_model(student, "tiny-student", task="chord", features=ChordStudent.FEATURES)
    registry.save_model(ChromaNet(), "tiny-key", task="key", features=SKEY_FEATURES)
    monkeypatch.setattr(engine, "WINDOW_FRAMES", 300)
    monkeypatch.setattr(engine, "CPU_WINDOW_FRAMES", 300)
    an = engine.Analyzer("tiny-student", "tiny-key", device="cpu", batch_size=3)
    rng = np.random.default_rng(0)
    tracks = []
    for seconds in (70.0, 20.0):
        t = an.start(f"t{seconds}")
        an.feed(t, (rng.standard_normal(int(seconds * 22050)) * 0.1).astype(np.float32))
        tracks.append(an.finish(t))
    with torch.inference_mode():
        probs = an.track_chord_probabilities(tracks)
    for t, p in zip(tracks, probs):
        with torch.inference_mode():
            whole = student(an.features(t, an.chord_card)[None])["chord"][0].softmax(-1)
        assert p.shape == tuple(whole.shape)
        np.testing.assert_allclose(p, whole.numpy(), atol=1e-4)


@pytest.mark.slow
def test_cpu_runs_a_track_in_one_pass(tmp_path, monkeypatch):
    """On a CPU a track shorter than CPU_WINDOW_FRAMES costs its own frames, no overlap."""
    import torch

    from model_zoo import registry
    from model_zoo.student import ChordStudent
    from tagger import engine

    monkeypatch.setenv(registry.ENV_MODEL_DIR, str(tmp_path))
    torch.manual_seed(0)
    registry.save_model(ChordStudent().eval(), "tiny-student", task="chord",
                        features=ChordStudent.FEATURES, extra={"window": 512})
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal(120 * 22050) * 0.1).astype(np.float32)  # 1292 frames
    seen = {}
    for cpu_window in (8192, 512):
        monkeypatch.setattr(engine, "CPU_WINDOW_FRAMES", cpu_window)
        an = engine.Analyzer("tiny-student", None, device="cpu", with_key=False)
        frames = []
        an.chord_net.register_forward_hook(
            lambda m, args, out: frames.append(args[0].shape[0] * args[0].shape[-1]))
        t = an.start("t")
        an.feed(t, audio)
        with torch.inference_mode():
            an.track_chord_probabilities([an.finish(t)])
        seen[cpu_window] = sum(frames)
    assert seen[8192] == 1 + len(audio) // 2048
    assert seen[512] > 1.3 * seen[8192]  # windows of 512 recompute their overlaps


def test_chord_probabilities_are_the_decoders_input(tmp_path, monkeypatch):
    """The public per-frame probabilities are what the chord decoding reads."""
    import pytest
    import torch

    from model_zoo import registry
    from model_zoo.student import ChordStudent
    from tagger import chords as chord_decoding, engine

    monkeypatch.setenv(registry.ENV_MODEL_DIR, str(tmp_path))
    torch.manual_seed(0)
    registry.save_model(ChordStudent().eval(), "tiny-student", task="chord",
                        features=ChordStudent.FEATURES)
    an = engine.Analyzer("tiny-student", None, device="cpu", with_key=False)
    audio = (np.random.default_rng(1).standard_normal(30 * 22050) * 0.1).astype(np.float32)
    p = an.chord_probabilities("t", audio)
    assert p.shape == (1 + len(audio) // 2048, 170)
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-5)
    r = an.analyse_audio("t", audio)
    fe = an.front_end(an.chord_card)
    segs = chord_decoding.decode(p, fe.frame_rate, p_self=an.decode.p_self,
                                 duration=r.duration, min_duration=an.decode.min_duration)
    assert segs == r.segments
    with pytest.raises(engine.AnalysisError, match="no chord model"):
        engine.Analyzer(device="cpu", with_chords=False).chord_probabilities("t", audio)


def test_default_decoding_is_the_tuned_one(tmp_path, monkeypatch):
    """An Analyzer built without decode settings smooths with the setting chosen
    on validation (training/viterbi_tuning.json), as the tagger, beets and eval do."""
    import json
    from dataclasses import asdict
    from pathlib import Path

    from model_zoo import registry
    from model_zoo.student import ChordStudent
    from tagger import engine
    from tagger.chords import DecodeSettings

    tuned = json.loads((Path(__file__).parent.parent / "training" / "viterbi_tuning.json")
                       .read_text())["chosen"]
    assert asdict(DecodeSettings()) == tuned
    monkeypatch.setenv(registry.ENV_MODEL_DIR, str(tmp_path))
    registry.save_model(ChordStudent().eval(), "tiny-student", task="chord",
                        features=ChordStudent.FEATURES)
    an = engine.Analyzer("tiny-student", None, device="cpu", with_key=False)
    assert an.decode == DecodeSettings() and an.decode.p_self == tuned["p_self"]
