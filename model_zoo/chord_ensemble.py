"""Several chord students as one model: their outputs' weighted geometric mean.

Students fine-tuned on different material disagree where each is strong (one
on real recordings, one on rendered sevenths); averaging their frame
log-probabilities is the other way to combine them besides averaging their
weights (:mod:`training.interpolate`), which on our validation sets was as
good at half the cost. Every member reads the same features, so the front end
runs once; the network cost is the members' sum.
"""

from __future__ import annotations

import torch
from torch import nn

from .student import ChordStudent


class ChordEnsemble(nn.Module):
    """Chord students whose heads' log-probabilities are averaged with ``weights``.

    members
        Each member's :class:`~model_zoo.student.ChordStudent` config (its
        ``shift_average`` included); the weights live under ``members.<i>.``.
    weights
        One non-negative number per member, normalised to sum to 1
        (default: equal).

    ``chord``, ``root`` and ``bass`` come out as averaged log-probabilities
    (softmax of them is the normalised geometric mean), ``pitch`` as averaged
    logits. Eval only: an ensemble is assembled from trained students, not
    trained.
    """

    FEATURES = ChordStudent.FEATURES
    task = "chord"
    batches_tracks = False

    def __init__(self, members, weights=None):
        super().__init__()
        members = [dict(m) for m in members]
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two members")
        weights = [1.0] * len(members) if weights is None else [float(w) for w in weights]
        if len(weights) != len(members):
            raise ValueError(f"{len(weights)} weights for {len(members)} members")
        if min(weights) < 0 or sum(weights) <= 0:
            raise ValueError("weights must be non-negative and not all zero")
        self.weights = [w / sum(weights) for w in weights]
        self.members = nn.ModuleList([ChordStudent(**m) for m in members])
        shapes = {(m.n_bins, m.in_channels) for m in self.members}
        if len(shapes) != 1:
            raise ValueError("members expect different features")
        self.n_bins, self.in_channels = shapes.pop()
        self.config = {"members": [m.config for m in self.members], "weights": self.weights}
        super().train(False)

    def receptive_field(self) -> int | None:
        """The widest member's one-sided context (None: a whole-track member)."""
        fields = [m.receptive_field() for m in self.members]
        return None if None in fields else max(fields)

    def train(self, mode: bool = True):
        if mode:
            raise RuntimeError("a chord ensemble is not trained; train its members")
        return super().train(False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        total: dict[str, torch.Tensor] = {}
        for w, member in zip(self.weights, self.members):
            for name, v in member(x).items():
                v = v.float()
                if name != "pitch":
                    v = v.log_softmax(-1)
                total[name] = total[name] + w * v if name in total else w * v
        return total


__all__ = ["ChordEnsemble"]
