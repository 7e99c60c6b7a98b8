"""Defaults chosen by measurement (see training/ for how)."""

from .engine import DecodeSettings

# Viterbi smoothing of chord posteriors, tuned on the POP909 validation renders
# (training/tune_viterbi.py; result in training/viterbi_tuning.json).
DEFAULT_DECODE = DecodeSettings(p_self=0.9, min_duration=0.0)
