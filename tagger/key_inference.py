"""The whole-track key from a key model's segment logits, and its confidence.

A segment-wise key model (ChromaNet: 15 s segments) gives one logit vector
per segment; the track's key distribution is an aggregate of them, read
through a temperature so that its top probability (``key_confidence``) is
calibrated. Both are card settings (``extra["key_inference"]``, written by
``training/calibrate_key.py``); a card without them keeps the historical
rule: the mean of the segments' probabilities, temperature 1. The card may
also set ``track_p_self``, the timed key track's stay probability
(:mod:`tagger.keytrack`), chosen for that model with
``training/key_changes_eval.py``; default :data:`tagger.keytrack.P_SELF`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from model_zoo.registry import ModelError

from .keytrack import P_SELF

AGGREGATIONS = ("mean_prob", "mean_logprob", "confidence_weighted")


@dataclass(frozen=True)
class KeyInference:
    """How a card's segment outputs become the track's key distribution."""
    aggregation: str = "mean_prob"
    temperature: float = 1.0
    track_p_self: float = P_SELF      # the timed key track's stay probability

    @classmethod
    def from_card(cls, card) -> KeyInference:
        cfg = (card.extra or {}).get("key_inference") or {}
        out = cls(cfg.get("aggregation", "mean_prob"), float(cfg.get("temperature", 1.0)),
                  float(cfg.get("track_p_self", P_SELF)))
        if out.aggregation not in AGGREGATIONS:
            raise ModelError(f"{card.id}: unknown key aggregation {out.aggregation!r}")
        if not out.temperature > 0:
            raise ModelError(f"{card.id}: key temperature must be positive, not {out.temperature}")
        if not 0 < out.track_p_self < 1:
            raise ModelError(f"{card.id}: track_p_self must be in (0, 1), not {out.track_p_self}")
        return out

    def log_probs(self, logits: torch.Tensor) -> torch.Tensor:
        """Segment logits ``(S, 24)`` -> the track's log-probabilities ``(24,)``,
        before the temperature."""
        return aggregate(logits, self.aggregation)

    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        """Segment logits ``(S, 24)`` -> the track's calibrated probabilities."""
        return (self.log_probs(logits) / self.temperature).softmax(-1)


def aggregate(logits: torch.Tensor, method: str) -> torch.Tensor:
    """Log-probabilities ``(24,)`` of the whole track from segment logits ``(S, 24)``.

    ``mean_prob``: log of the mean of the segments' probabilities;
    ``mean_logprob``: the normalised mean of their log-probabilities (a
    geometric mean: segments that rule a key out weigh more);
    ``confidence_weighted``: the mean of probabilities, each segment weighted
    by its top probability (near-uniform segments, e.g. drums only, count less).
    """
    logp = logits.float().log_softmax(-1)
    if method == "mean_logprob":
        return logp.mean(0).log_softmax(-1)
    p = logp.exp()
    if method == "mean_prob":
        w = torch.ones(len(p), device=p.device)
    elif method == "confidence_weighted":
        w = p.max(-1).values
    else:
        raise ValueError(f"unknown key aggregation {method!r}")
    return ((w[:, None] * p).sum(0) / w.sum()).clamp_min(1e-12).log()
