"""The timed key track (tagger/keytrack.py) and its compact text form."""

import numpy as np
import pytest

from tagger import keytrack
from tagger.keytrack import KeyRegion
from tagger.result import TrackResult
from tagger.sidecar import keys_timed_text, parse_chords_timed


def _posteriors(keys_per_window, sure=0.6, seed=0):
    """Noisy window posteriors favouring the given key in each window."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(24), len(keys_per_window)) * (1 - sure)
    p[np.arange(len(keys_per_window)), keys_per_window] += sure
    return p


def test_one_key_and_a_change():
    centres = 7.5 + 5.0 * np.arange(40)
    duration = 210.0
    steady = keytrack.key_regions(_posteriors([3] * 40), centres, duration)
    assert steady == [KeyRegion(0.0, duration, 3, steady[0].confidence)]
    change = keytrack.key_regions(_posteriors([3] * 24 + [4] * 16), centres, duration)
    assert [r.key for r in change] == [3, 4]
    assert abs(change[1].start - 125.0) <= 5.0
    assert change[-1].end == duration and change[0].start == 0.0
    assert keytrack.main_key(change) == 3


def test_a_stray_window_is_no_change():
    keys_ = [0] * 20
    keys_[10] = 7
    regions = keytrack.key_regions(_posteriors(keys_), 7.5 + 5.0 * np.arange(20), 105.0)
    assert [r.key for r in regions] == [0]
    # with no switch penalty at all every window speaks for itself
    assert len(keytrack.key_regions(_posteriors(keys_), 7.5 + 5.0 * np.arange(20), 105.0,
                                    p_self=1 / 24)) == 3


def test_edges_and_lookup():
    regions = [KeyRegion(0.0, 20.0, 7, 0.5), KeyRegion(20.0, 150.0, 0, 0.8),
               KeyRegion(150.0, 180.0, 2, 0.6)]
    assert keytrack.edge_keys(regions, 180.0) == (7, 2)   # 20 s of G: most of the first 30 s
    assert keytrack.edge_keys(regions, 180.0, seconds=60.0) == (0, 0)
    assert keytrack.key_at(regions, 10.0) == 7 and keytrack.key_at(regions, 500.0) == 2
    assert keytrack.key_at([], 1.0, default=5) == 5
    assert keytrack.edge_keys([], 10.0) == (None, None)


def test_keys_timed_text_round_trips():
    r = TrackResult(path="x", duration=180.0, key_index=3,
                    key_regions=[KeyRegion(0.0, 95.0, 3, 0.7), KeyRegion(95.0, 180.0, 4, 0.6)])
    text = keys_timed_text(r)
    assert text == "0.00 Eb|95.00 E|180.00"
    assert parse_chords_timed(text) == [(0.0, 95.0, "Eb"), (95.0, 180.0, "E")]
    assert keys_timed_text(r, flats=False) == "0.00 D#|95.00 E|180.00"
    assert r.key_changes == 1 and r.key_at(100.0) == 4
    assert keys_timed_text(TrackResult(path="y")) == ""


def _cadences(root: int, seconds: float, sr: int = 22050, per_chord: float = 1.25) -> np.ndarray:
    """I IV V vi ii V I I in ``root`` major as sine triads with a bass, for ``seconds``."""
    n = int(per_chord * sr)
    t = np.arange(n) / sr
    env = np.minimum(1.0, np.minimum(t / 0.02, (per_chord - t) / 0.05))
    parts = []
    while len(parts) * per_chord < seconds:
        for step, third in ((0, 4), (5, 4), (7, 4), (9, 3), (2, 3), (7, 4), (0, 4), (0, 4)):
            r = (root + step) % 12
            notes = (36 + r, 60 + r, 60 + r + third, 67 + r, 72 + r + third)
            parts.append(sum(0.9 ** k * np.sin(2 * np.pi * 440 * 2 ** ((m - 69) / 12) * t)
                             for k, m in enumerate(notes)) * env * 0.12)
    return np.concatenate(parts)[: int(seconds * sr)].astype(np.float32)


@pytest.mark.slow
def test_engine_finds_a_key_change(tmp_path):
    """45 s in C major, then 45 s in F# major: two regions, the change within 4 s."""
    import json

    from tagger.engine import Analyzer
    from tagger.sidecar import write_sidecar
    an = Analyzer(device="cpu", with_chords=False, num_threads=1)
    r = an.analyse_audio(str(tmp_path / "two.wav"), np.concatenate(
        [_cadences(0, 45.0), _cadences(6, 45.0)]))
    assert [g.key for g in r.key_regions] == [0, 6]
    assert abs(r.key_regions[1].start - 45.0) <= 4.0
    assert r.key_changes == 1 and r.key_index in (0, 6)
    assert keytrack.edge_keys(r.key_regions, r.duration) == (0, 6)
    doc = json.loads(write_sidecar(r, "json").read_text())
    assert [k for _, _, k, _ in doc["key_regions"]] == ["C major", "F# major"]
