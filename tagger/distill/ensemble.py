"""Teacher ensembles: several chord teachers whose cached posteriors are combined.

Each member keeps its own cache streams (:class:`.teacher.Teacher`: computed
once, resumable); the combination is a derived stream of the same format
(``teacher-ens-<hash>``: float16 log-probabilities ``(T, 170)``, and
``teacheraux-ens-<hash>`` for the root / bass / pitch heads), so training
reads an ensemble exactly as it reads one teacher. Its name hashes the
members' streams, the weights and the rule, so another combination never
reuses it.

Rules (weights ``w`` normalised to sum 1):

* ``mean``: the arithmetic mean of the probabilities, ``sum_i w_i p_i``;
* ``geometric``: the normalised geometric mean, ``softmax(sum_i w_i log p_i)``.

The aux heads combine likewise over the members that have them (their
weights renormalised): root and bass are distributions; each pitch logit is
a Bernoulli, whose mean is ``logit(sum w_i sigmoid(l_i))`` and whose
normalised geometric mean is ``sum w_i l_i``.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import torch

from .cache import DatasetCache
from .teacher import AUX_SIZES, LOGP_FLOOR, Teacher, TeacherStreams, run_teacher

RULES = ("mean", "geometric")
_PITCH_EPS = 1e-6


class EnsembleError(Exception):
    pass


def normalised(weights) -> list[float]:
    """``weights`` scaled to sum 1; each must be positive."""
    w = [float(x) for x in weights]
    if not w or any(not x > 0 for x in w):
        raise EnsembleError(f"teacher weights must be positive, not {w}")
    return [x / sum(w) for x in w]


def combine_logp(logps, weights, rule: str) -> torch.Tensor:
    """Log-probabilities ``(T, K)`` of each member -> their combination's."""
    w = torch.tensor(normalised(weights), dtype=torch.float32)
    x = torch.stack([torch.as_tensor(np.asarray(lp, np.float32)) for lp in logps])
    w = w.view(-1, *([1] * (x.dim() - 1)))
    if rule == "mean":
        return torch.logsumexp(x + w.log(), 0)
    if rule == "geometric":
        return (w * x).sum(0).log_softmax(-1)
    raise EnsembleError(f"unknown combination rule {rule!r} (one of {', '.join(RULES)})")


def combine_pitch(logits, weights, rule: str) -> torch.Tensor:
    """Per-pitch Bernoulli logits of each member -> their combination's logits."""
    w = torch.tensor(normalised(weights), dtype=torch.float32)
    x = torch.stack([torch.as_tensor(np.asarray(lg, np.float32)) for lg in logits])
    w = w.view(-1, *([1] * (x.dim() - 1)))
    if rule == "mean":
        return torch.logit((w * x.sigmoid()).sum(0), eps=_PITCH_EPS)
    if rule == "geometric":
        return (w * x).sum(0)
    raise EnsembleError(f"unknown combination rule {rule!r} (one of {', '.join(RULES)})")


def combine_aux(auxes, weights, rule: str) -> torch.Tensor:
    """Aux arrays ``(T, 38)`` (root, bass log-probabilities; pitch logits) combined."""
    parts, at = [], 0
    for name, n in AUX_SIZES:
        cols = [np.asarray(a, np.float32)[:, at: at + n] for a in auxes]
        comb = combine_pitch if name == "pitch" else combine_logp
        parts.append(comb(cols, weights, rule))
        at += n
    return torch.cat(parts, -1)


def _float16(x: torch.Tensor, high: float) -> np.ndarray:
    return x.clamp(LOGP_FLOOR, high).numpy().astype(np.float16)


class Ensemble(TeacherStreams):
    """Teachers with weights and a rule; duck-types :class:`.teacher.Teacher`
    where a distill run uses it (``id``, streams, provenance)."""

    def __init__(self, members: list[Teacher], weights, rule: str = "mean"):
        if len(members) < 2:
            raise EnsembleError("an ensemble needs two or more teachers")
        if len(weights) != len(members):
            raise EnsembleError(f"{len(weights)} teacher weights for {len(members)} teachers")
        if len({m.stream for m in members}) < len(members):
            raise EnsembleError("a teacher is named twice")
        if rule not in RULES:
            raise EnsembleError(f"unknown combination rule {rule!r} (one of {', '.join(RULES)})")
        self.members, self.weights, self.rule = members, normalised(weights), rule
        spec = {"m": [m.stream for m in members], "w": [round(x, 6) for x in self.weights],
                "r": rule}
        self._hash = hashlib.sha1(json.dumps(spec).encode()).hexdigest()[:8]

    @property
    def id(self) -> str:
        return "+".join(m.id for m in self.members)

    @property
    def stream_tag(self) -> str:
        return f"ens-{self._hash}"

    def bytes_per_second(self) -> float:
        """Disk use per second of audio: every member's outputs and the combination."""
        return sum(m.bytes_per_second() for m in self.members) + self.members[0].bytes_per_second()

    def feature_streams(self) -> list:
        """Every member's input streams (besides the student's), each once."""
        seen = {}
        for m in self.members:
            for s in m.feature_streams():
                seen.setdefault(s.name, s)
        return list(seen.values())

    def provenance(self) -> dict:
        return {"teacher": self.id, "teacher_combine": self.rule,
                "teachers": [{"id": m.card.id, "sha256": m.card.sha256, "weight": round(w, 6)}
                             for m, w in zip(self.members, self.weights)]}

    def combine_track(self, cache: DatasetCache, track_id: str) -> None:
        """Store the combined posteriors (and aux, where members have them) of a track."""
        logps = [cache.load(track_id, m.stream) for m in self.members]
        n = min(len(x) for x in logps)
        logp = combine_logp([x[:n] for x in logps], self.weights, self.rule)
        have = [(m, w) for m, w in zip(self.members, self.weights)
                if cache.has(track_id, m.aux_stream)]
        if have:
            aux = combine_aux([cache.load(track_id, m.aux_stream)[:n] for m, _ in have],
                              [w for _, w in have], self.rule)
            cache.put(track_id, self.aux_stream, _float16(aux, -LOGP_FLOOR))
        cache.put(track_id, self.stream, _float16(logp, 0.0))


def run_ensemble(cache: DatasetCache, ens: Ensemble, track_ids: list[str],
                 progress: bool = True) -> int:
    """Cache every member's posteriors, then their combination, for tracks that
    lack them; returns how many tracks were combined."""
    for m in ens.members:
        run_teacher(cache, m, track_ids, progress=progress)
    todo = [t for t in track_ids if not cache.has(t, ens.stream)]
    for tid in todo:
        ens.combine_track(cache, tid)
    return len(todo)
