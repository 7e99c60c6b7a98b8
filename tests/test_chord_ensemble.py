"""model_zoo.chord_ensemble and training/ensemble_students.py: students as one model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model_zoo import registry
from model_zoo.chord_ensemble import ChordEnsemble
from model_zoo.student import ChordStudent
from tests.model_fixtures import TINY_STUDENT, register_tiny_students
from training import ensemble_students


def _members(seed=0):
    torch.manual_seed(seed)
    a = ChordStudent(**TINY_STUDENT).eval()
    b = ChordStudent(**{**TINY_STUDENT, "shift_average": [-1, 0, 1]}).eval()
    return a, b


def test_output_is_the_weighted_mean_of_the_members_log_probabilities():
    a, b = _members()
    net = ChordEnsemble([a.config, b.config], weights=[3, 1])
    for member, src in zip(net.members, (a, b)):
        member.load_state_dict(src.state_dict())
    assert net.weights == [0.75, 0.25] and not net.training
    x = torch.rand(2, 1, 216, 40) * 3
    with torch.no_grad():
        out, oa, ob = net(x), a(x), b(x)
    for name in ("chord", "root", "bass"):
        want = 0.75 * oa[name].log_softmax(-1) + 0.25 * ob[name].log_softmax(-1)
        torch.testing.assert_close(out[name], want)
    torch.testing.assert_close(out["pitch"], 0.75 * oa["pitch"] + 0.25 * ob["pitch"])
    assert net.receptive_field() == a.receptive_field()


def test_bad_ensembles_are_refused():
    a, b = _members()
    with pytest.raises(ValueError, match="two members"):
        ChordEnsemble([a.config])
    with pytest.raises(ValueError, match="weights"):
        ChordEnsemble([a.config, b.config], weights=[1, 1, 1])
    with pytest.raises(ValueError, match="non-negative"):
        ChordEnsemble([a.config, b.config], weights=[1, -1])
    with pytest.raises(ValueError, match="different features"):
        ChordEnsemble([a.config, {**b.config, "n_bins": 180}])
    with pytest.raises(RuntimeError, match="not trained"):
        ChordEnsemble([a.config, b.config]).train()


def test_registered_ensemble_runs_in_the_tagger(tmp_path, monkeypatch, capsys):
    """An ensemble of a student with itself tags exactly as the student does, and
    the card round trip keeps members, weights and provenance."""
    from tagger import engine
    register_tiny_students(tmp_path / "models", monkeypatch, ("a", "b"))
    assert ensemble_students.main(["a", "a", "--name", "aa"]) == 0
    assert ensemble_students.main(["a", "b", "--weights", "1,3", "--name", "ab"]) == 0
    card, net = registry.load_model("ab")
    src = registry.find_card("b")
    assert card.architecture == "chord-ensemble" and isinstance(net, ChordEnsemble)
    assert net.weights == [0.25, 0.75]
    assert card.provenance["members"][1] == {"id": "b", "sha256": src.sha256}
    torch.testing.assert_close(net.members[1].state_dict(), registry.load_model("b")[1].state_dict())
    audio = (np.random.default_rng(1).standard_normal(20 * 22050) * 0.1).astype(np.float32)
    single = engine.Analyzer("a", None, device="cpu", with_key=False)
    pair = engine.Analyzer("aa", None, device="cpu", with_key=False)
    np.testing.assert_allclose(pair.chord_probabilities("t", audio),
                               single.chord_probabilities("t", audio), atol=1e-5)
    assert pair.analyse_audio("t", audio).segments == single.analyse_audio("t", audio).segments
    assert not np.allclose(engine.Analyzer("ab", None, device="cpu", with_key=False)
                           .chord_probabilities("t", audio),
                           single.chord_probabilities("t", audio), atol=1e-3)


def test_cli_refuses_non_students_and_other_features(tmp_path, monkeypatch, capsys):
    from model_zoo.keynet import FEATURES, KeyNet
    d = register_tiny_students(tmp_path / "models", monkeypatch, ("a",))
    registry.save_model(KeyNet(n_filters=2).eval(), "key", task="key",
                        features=dict(FEATURES), directory=d)
    assert ensemble_students.main(["a", "key", "--name", "x"]) == 2
    assert "not a chord student" in capsys.readouterr().err
    registry.save_model(ChordStudent(**TINY_STUDENT).eval(), "other", task="chord",
                        features={**ChordStudent.FEATURES, "hop_length": 1024}, directory=d)
    assert ensemble_students.main(["a", "other", "--name", "x"]) == 2
    assert "different features" in capsys.readouterr().err
    assert not (d / "x.json").exists()
