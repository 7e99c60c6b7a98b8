"""Tuning estimation and correction (tagger/tuning.py, the engine's use of it)."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from model_zoo import registry
from model_zoo.features import FrontEnd
from tagger import tuning

SR = 22050
DETUNINGS = (-45, -30, -15, 15, 30, 45)


def detuned_chords(cents: float, seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """Random three-note chords of harmonic tones, ``cents`` off A440."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    y = np.zeros_like(t)
    for j in range(4):
        part = (t >= j * seconds / 4) & (t < (j + 1) * seconds / 4)
        for m in rng.integers(48, 76, 3):
            f = 440.0 * 2 ** ((m - 69 + cents / 100) / 12)
            for h in range(1, 5):
                y[part] += np.sin(2 * np.pi * f * h * t[part]) / h
    return (0.3 * y / np.abs(y).max()).astype(np.float32)


@pytest.fixture(scope="module")
def chord_frontend():
    """The chord model's front end from C3 up (the low octaves cost the most)."""
    cfg = dict(registry.default_model("chord").features)
    cfg.update(fmin=cfg["fmin"] * 4, n_bins=cfg["n_bins"] - 2 * cfg["bins_per_octave"])
    return FrontEnd(**cfg)


def test_synthetic_tones_median_error_within_3_cents(chord_frontend):
    cfg = chord_frontend.config
    errors = []
    for c in DETUNINGS:
        mag = chord_frontend.magnitude(torch.from_numpy(detuned_chords(c)))[0]
        est = tuning.estimate_cents(mag, cfg["bins_per_octave"], cfg["fmin"])
        errors.append(abs(est - c))
    assert np.median(errors) <= 3.0, errors
    assert max(errors) <= 5.0, errors


def test_in_tune_and_silence():
    fe = FrontEnd(**registry.default_model("key").features)
    cfg = fe.config
    mag = fe.magnitude(torch.from_numpy(detuned_chords(0.0)))[0]
    assert abs(tuning.estimate_cents(mag, cfg["bins_per_octave"], cfg["fmin"])) <= 3.0
    assert tuning.estimate_cents(torch.zeros(1, 84, 10), 12, cfg["fmin"]) == 0.0


def test_grid_offset():
    assert tuning.grid_offset_cents(440.0) == pytest.approx(0.0, abs=1e-9)
    assert tuning.grid_offset_cents(32.70319566257483) == pytest.approx(0.0, abs=1e-6)
    assert tuning.grid_offset_cents(440.0 * 2 ** (-30 / 1200)) == pytest.approx(30.0)


def test_shift_moves_a_peak_by_a_fraction_of_a_bin():
    mag = torch.zeros(1, 20, 3)
    mag[0, 10] = 1.0
    mag[0, 11] = 1.0
    out = tuning.shift_bins(mag, 0.5)
    assert out[0, 10, 0] == pytest.approx(1.0) and out[0, 9, 0] == pytest.approx(0.5)
    assert out[0, 11, 0] == pytest.approx(0.5)
    assert torch.equal(tuning.shift_bins(mag, 0.0), mag)
    # 36 bins per octave: +33.3 cents is one bin; near A440 nothing moves
    assert torch.allclose(tuning.correct(mag, 1200 / 36, 36)[0, 9], mag[0, 10])
    assert tuning.correct(mag, tuning.MIN_CORRECTION_CENTS - 0.1, 36) is mag
    assert tuning.retune_bins(30.2, 36) == pytest.approx(0.9)
    assert tuning.retune_bins(-10.3, 12) == pytest.approx(-0.105)


def test_engine_estimates_and_corrects():
    """A track 30 cents sharp: reported as such, and its corrected features
    equal (nearly) those of the in-tune track."""
    from tagger.engine import Analyzer
    an = Analyzer(device="cpu", num_threads=1)
    plain = Analyzer(device="cpu", num_threads=1, correct_tuning=False)
    sharp = an.prepare("sharp", detuned_chords(30.0, seconds=4.0))
    assert sharp.tuning == pytest.approx(30.0, abs=3.0)
    ref = plain.prepare("ref", detuned_chords(0.0, seconds=4.0))
    raw = plain.prepare("raw", detuned_chords(30.0, seconds=4.0))
    card = an.chord_card
    def err(t):
        return float((an.features(t, card) - plain.features(ref, card)).abs().mean())
    assert err(sharp) < 0.6 * err(raw)
    assert an.analyse([sharp])[0].tuning == sharp.tuning


def test_detuned_features_are_recomputed_tuned(monkeypatch):
    """The correction recomputes a detuned track's magnitudes with front ends
    tuned to it (closer to the in-tune track's than shifting the magnitudes,
    on the 12-bins-per-octave key front end most of all); tracks longer than
    MAX_RETUNE_SECONDS, and features computed elsewhere, are shifted; the
    packed features carry the tuning."""
    from tagger import engine
    from tagger.packed import pack, unpack
    an = engine.Analyzer(device="cpu", num_threads=1)
    plain = engine.Analyzer(device="cpu", num_threads=1, correct_tuning=False)
    y = detuned_chords(30.0, seconds=4.0)
    ref = plain.prepare("ref", detuned_chords(0.0, seconds=4.0))
    exact = an.prepare("sharp", y)
    assert exact.audio is None                               # not kept once tuned
    raw = plain.prepare("raw", y)
    shifted = engine.Track.from_features("sharp", raw.n_samples, raw.mags)
    an.tune(shifted)
    assert shifted.tuning == pytest.approx(exact.tuning)
    monkeypatch.setattr(engine, "MAX_RETUNE_SECONDS", 1.0)
    too_long = an.prepare("sharp", y)
    for card in (an.key_card, an.chord_card):
        def err(t):
            return float((an.features(t, card) - plain.features(ref, card)).abs().mean())
        assert err(exact) < err(shifted) <= err(raw)
        assert err(too_long) == pytest.approx(err(shifted))
    k = engine.feature_key(an.key_card)
    fe = an.frontends[k].tuned(tuning.retune_bins(exact.tuning, 12))
    want = fe.magnitude(torch.from_numpy(y)[None])[0]
    edge = 30    # frames: the whole-clip transform pads the edges by reflection, streams by zeros
    assert torch.allclose(exact.mags[k][..., edge:-edge], want[..., edge:-edge], atol=1e-4)
    back = unpack("sharp", exact.n_samples, pack(exact))
    assert back.tuning == exact.tuning
    assert an.analyse([back])[0].tuning == exact.tuning      # not estimated again


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="fluidsynth not installed")
def test_rendered_pop909_detunings(tmp_path):
    """A short POP909 excerpt rendered with every note bent: median error <= 3 cents."""
    pytest.importorskip("mido")
    from training.render_pop909 import DEFAULT_POP909, SF2_DIR, fluidsynth_render
    from training.tuning_eval import detune_midi
    src = Path(DEFAULT_POP909) / "001" / "001.mid"
    if not src.exists() or not (SF2_DIR / "FluidR3_GM.sf2").exists():
        pytest.skip("POP909 or the soundfont is not available")
    from tagger.engine import Analyzer
    an = Analyzer(device="cpu", num_threads=1, with_key=False)
    errors = []
    for c in DETUNINGS:
        midi = tmp_path / f"{c}.mid"
        detune_midi(src, midi, c, seconds=12.0)
        y = fluidsynth_render(midi, SF2_DIR / "FluidR3_GM.sf2", SR, False, False)
        errors.append(abs(an.prepare(str(c), y[: 12 * SR]).tuning - c))
    assert np.median(errors) <= 3.0, errors


def test_eval_summary_measures_against_nominal_and_own_reading(tmp_path):
    """training/tuning_eval.py: a song whose in-tune render reads +4 cents and
    whose copies read +4 + c is off by 4 against the nominal shift, by 0
    against its own reading; a -45 copy of a -8 song reads +47 (wrapped: 8 off)."""
    from training.tuning_eval import circular, excerpt_key, summarize

    def row(song, c, est, key, mm):
        run = {"tuning": est, "key": key, "majmin": (mm, 10.0)}
        return {"song": song, "source": "s", "cents": c, "corrected": run,
                "uncorrected": dict(run, key=0.0)}
    rows = [row("a", 0, 4.0, 1.0, 8.0), row("a", 30, 34.0, 1.0, 7.0),
            row("b", 0, -8.0, 0.5, 6.0), row("b", 30, 22.0, 0.5, 6.0),
            row("a", -45, -41.0, 1.0, 8.0), row("b", -45, 47.0, 0.0, 0.0)]
    s = summarize(rows)
    assert s["songs"] == 2
    assert s["+30"]["median_abs_error_nominal"] == pytest.approx(6.0)
    assert s["+30"]["median_abs_error_own"] == pytest.approx(0.0)
    assert s["-45"]["median_abs_error_nominal"] == pytest.approx(6.0)   # 4 and 8 (wrapped)
    assert s["-45"]["median_abs_error_own"] == pytest.approx(0.0)
    assert s["+0"]["corrected"] == {"key": 0.75, "majmin": 0.7, "key_delta": 0.0,
                                    "majmin_delta": 0.0}
    assert s["+30"]["corrected"]["majmin_delta"] == pytest.approx(-0.05)
    assert s["-45"]["corrected"]["key_delta"] == pytest.approx(-0.25)
    assert s["in_tune_readings"]["max"] == 4.0
    assert list(circular([49.0, 51.0, -50.0])) == [49.0, -49.0, -50.0]

    keyf = tmp_path / "song.key"
    keyf.write_text("C major\n0\t40\tC major\n40\t200\tA minor\n")
    from model_zoo import keys
    assert excerpt_key(keyf, 30.0, 60.0) == keys.parse_key("A minor")
    assert excerpt_key(keyf, 0.0, 60.0) == keys.parse_key("C major")
