"""Defaults chosen by measurement (see training/ for how)."""

from .engine import DecodeSettings

# Viterbi smoothing of chord posteriors, tuned on the POP909 validation renders
# with the crema teacher (training/tune_viterbi.py; the grid and the scores are
# in training/viterbi_tuning.json): self-transition 0.01 scored majmin 0.8203
# vs 0.8138 for crema's own 0.957 and gives 27.9 segments/min (reference 28.8).
DEFAULT_DECODE = DecodeSettings(p_self=0.01, min_duration=0.0)
