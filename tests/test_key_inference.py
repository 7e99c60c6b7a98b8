"""The whole-track key from segment logits, its temperature from the card, and
the calibration tools that fit it (training/calibrate_key.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model_zoo import registry
from model_zoo.skey import FEATURES as SKEY_FEATURES, ChromaNet
from tagger.key_inference import KeyInference, aggregate
from training import calibrate_key


def _logits(seed=0, n=5):
    return torch.randn(n, 24, generator=torch.Generator().manual_seed(seed)) * 3


def test_aggregations():
    z = _logits()
    p = z.softmax(-1)
    assert torch.allclose(aggregate(z, "mean_prob").exp(), p.mean(0), atol=1e-6)
    geo = p.log().mean(0).exp()
    assert torch.allclose(aggregate(z, "mean_logprob").exp(), geo / geo.sum(), atol=1e-6)
    w = p.max(-1).values
    assert torch.allclose(aggregate(z, "confidence_weighted").exp(),
                          (w[:, None] * p).sum(0) / w.sum(), atol=1e-6)
    # one segment: every rule gives its own distribution
    for how in ("mean_prob", "mean_logprob", "confidence_weighted"):
        assert torch.allclose(aggregate(z[:1], how).exp(), p[0], atol=1e-6)
    with pytest.raises(ValueError):
        aggregate(z, "median")


def test_card_settings_and_temperature(tmp_path):
    card = registry.ModelCard(id="k", task="key", architecture="chromanet", config={},
                              features={}, sha256="0", directory=tmp_path)
    assert KeyInference.from_card(card) == KeyInference("mean_prob", 1.0)
    card.extra["key_inference"] = {"aggregation": "mean_logprob", "temperature": 0.5}
    inf = KeyInference.from_card(card)
    z = _logits(1)
    p = inf.probs(z)
    assert int(p.argmax()) == int(inf.log_probs(z).argmax())          # argmax kept
    assert float(p.max()) > float(inf.log_probs(z).exp().max())       # T < 1 sharpens
    for bad in ({"aggregation": "vote"}, {"temperature": 0}):
        card.extra["key_inference"] = bad
        with pytest.raises(registry.ModelError):
            KeyInference.from_card(card)


def test_engine_reads_the_card(tmp_path, monkeypatch):
    """key_confidence follows the card's temperature; the key does not move."""
    from tagger import engine
    monkeypatch.setenv(registry.ENV_MODEL_DIR, str(tmp_path))
    torch.manual_seed(0)
    net = ChromaNet(channels=(2, 3, 4, 4, 4, 4, 3)).eval()
    registry.save_model(net, "plain", task="key", features=SKEY_FEATURES)
    registry.save_model(net, "sharp", task="key", features=SKEY_FEATURES,
                        extra={"key_inference": {"aggregation": "mean_prob",
                                                 "temperature": 0.25}})
    audio = (np.random.default_rng(0).standard_normal(22050 * 20) * 0.1).astype(np.float32)
    res = {m: engine.Analyzer(None, m, device="cpu", with_chords=False, num_threads=1)
           .analyse_audio("x", audio) for m in ("plain", "sharp")}
    assert res["plain"].key_index == res["sharp"].key_index
    assert res["sharp"].key_confidence > res["plain"].key_confidence
    assert sum(res["sharp"].key_probs) == pytest.approx(1.0, abs=1e-5)


def test_fit_temperature_recovers_a_known_one():
    rng = np.random.default_rng(0)
    logp = torch.tensor(rng.standard_normal((4000, 24)) * 2).log_softmax(-1).numpy()
    true_t = 2.0
    p = torch.tensor(logp / true_t).softmax(-1).numpy()
    refs = np.array([rng.choice(24, p=row / row.sum()) for row in p])
    assert calibrate_key.fit_temperature(logp, refs) == pytest.approx(true_t, rel=0.1)
    assert calibrate_key.ece(p, refs) < 0.03                    # calibrated by construction
    assert calibrate_key.ece(np.exp(logp), refs) > 0.1          # overconfident


def test_weighted_score_fifth_rules():
    c, g, f = 0, 7, 5                                            # C, G, F major
    assert calibrate_key.weighted(c, g) == 0.5 and calibrate_key.weighted(c, f) == 0.0
    assert calibrate_key.weighted(c, f, both_fifths=True) == 0.5
    assert calibrate_key.weighted(c, 12 + 9) == 0.3               # A minor: relative
    assert calibrate_key.weighted(12 + 9, c) == 0.3
    assert calibrate_key.weighted(c, 12) == 0.2                   # C minor: parallel


def test_the_cards_key_track_stay_probability_reaches_the_key_track(tmp_path, monkeypatch):
    from tagger import engine, keytrack
    monkeypatch.setenv(registry.ENV_MODEL_DIR, str(tmp_path))
    net = ChromaNet(channels=(2, 3, 4, 4, 4, 4, 3)).eval()
    registry.save_model(net, "sticky", task="key", features=SKEY_FEATURES,
                        extra={"key_inference": {"track_p_self": 0.999999}})
    registry.save_model(net, "plain", task="key", features=SKEY_FEATURES)
    seen = []
    real = keytrack.key_regions
    monkeypatch.setattr(keytrack, "key_regions",
                        lambda *a, **k: seen.append(a[3] if len(a) > 3 else k.get("p_self"))
                        or real(*a, **k))
    audio = (np.random.default_rng(0).standard_normal(22050 * 20) * 0.1).astype(np.float32)
    for m in ("sticky", "plain"):
        engine.Analyzer(None, m, device="cpu", with_chords=False, num_threads=1
                        ).analyse_audio("x", audio)
    assert seen == [0.999999, keytrack.P_SELF]
    bad = registry.save_model(net, "bad", task="key", features=SKEY_FEATURES,
                              extra={"key_inference": {"track_p_self": 1.0}})
    with pytest.raises(registry.ModelError, match="track_p_self"):
        KeyInference.from_card(bad)
