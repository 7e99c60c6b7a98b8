"""model_zoo.tuning against librosa.estimate_tuning.

librosa runs in a subprocess with its own numba cache directory: its
``piptrack`` is numba code, and a stale shared cache can crash the process.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from model_zoo.tuning import estimate_tuning

_LIBROSA = """
import sys, numpy as np, librosa
y = np.load(sys.argv[1])
print(*(librosa.estimate_tuning(y=c, sr=22050, bins_per_octave=b)
        for c in y for b in (12, 36)))
"""


def _tone(cents: float, seconds: float = 3.0) -> np.ndarray:
    t = np.arange(int(22050 * seconds)) / 22050
    f = 440.0 * 2 ** (cents / 1200)
    return sum(np.sin(2 * np.pi * h * f * t) / h for h in (1, 2, 3)).astype(np.float32)


def test_detuned_tone():
    # 20 cents sharp: 0.2 semitone bins, 0.6 of a third-semitone bin (= -0.4). The
    # interpolated STFT peaks (2048 points) are a few cents off, librosa's alike.
    assert estimate_tuning(_tone(20), 22050, 12) == pytest.approx(0.2, abs=0.04)
    assert estimate_tuning(_tone(20), 22050, 36) == pytest.approx(-0.4, abs=0.1)
    assert estimate_tuning(_tone(-13), 22050, 12) == pytest.approx(-0.13, abs=0.04)
    assert estimate_tuning(np.zeros(22050, np.float32), 22050, 12) == 0.0


@pytest.mark.slow
def test_equals_librosa(nocturne_22k, tmp_path):
    pytest.importorskip("librosa")
    clips = np.stack([nocturne_22k[: 22050 * 8], nocturne_22k[22050 * 8: 22050 * 16],
                      _tone(-13, 8.0)])
    np.save(tmp_path / "clips.npy", clips)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    out = subprocess.run([sys.executable, "-c", _LIBROSA, str(tmp_path / "clips.npy")],
                         check=True, env=env, capture_output=True, text=True).stdout
    want = [float(v) for v in out.split()]
    ours = [estimate_tuning(c, 22050, b) for c in clips for b in (12, 36)]
    assert ours == pytest.approx(want, abs=1e-9)
