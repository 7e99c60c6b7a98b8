"""Key teachers for ``keychords train-key``: their outputs cached, combined per view.

Each teacher (any registered key model: the official S-KEY, keynet, a
kc-key model) is run once per track as the tagger runs it: a segment model
over 15 s windows every 5 s (:data:`WINDOW_SECONDS`, :data:`HOP_SECONDS`), a
whole-track model (card ``segment_seconds: null``, e.g. keynet) once over the
whole track, its answer then standing for every window (on the MMA
validation renders keynet's whole-track key scores 0.735 MIREX weighted as a
target for their 15 s segments, its own 15 s outputs 0.505). Inputs: the
cached S-KEY CQT for a teacher with S-KEY's features, else its own cached
input stream (``tin-*``, e.g. keynet's 24-bin/octave log-CQT). Its
probabilities (our key order, float16 ``(windows, 24)``) are the stream
``keyteacher-<id>-<sha>-<grid>``.

A training view (a segment starting at ``t`` seconds, cropped ``o`` bins
up, i.e. transposed ``o`` semitones down) takes the window whose centre is
nearest its own; the teachers' probabilities are combined (:func:`combine`: weighted
arithmetic or geometric mean) and transposed by ``o`` into the student's
native order. The transposition assumes the teachers are equivariant, which
both teachers are trained to be (S-KEY by construction, keynet by
pitch-shift augmentation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from model_zoo import keys, registry, skey

from .cache import DatasetCache, StreamSpec, skey_stream

WINDOW_SECONDS = skey.SEGMENT_SECONDS
HOP_SECONDS = 5.0
COMBINATIONS = ("arithmetic", "geometric")


@dataclass
class CachedTeacher:
    """One key teacher: its model, where its inputs come from, its output stream."""
    card: registry.ModelCard
    net: torch.nn.Module
    device: torch.device

    @property
    def stream(self) -> str:
        grid = "whole" if self.whole_track else f"w{WINDOW_SECONDS:g}h{HOP_SECONDS:g}"
        return f"keyteacher-{self.card.id}-{self.card.sha256[:8]}-{grid}"

    @property
    def uses_skey_stream(self) -> bool:
        return dict(self.card.features) == dict(skey.FEATURES)

    @property
    def whole_track(self) -> bool:
        return not self.card.extra.get("segment_seconds", WINDOW_SECONDS)

    def input_stream(self) -> StreamSpec:
        if self.uses_skey_stream:
            return skey_stream()
        return StreamSpec("tin", dict(self.card.features), squeeze_harmonics=True)

    @torch.inference_mode()
    def window_probs(self, arr: np.ndarray) -> np.ndarray:
        """Probabilities ``(windows, 24)`` (our order) from a cached input array; one
        row for a whole-track model."""
        rate = self.input_stream().frame_rate
        n = arr.shape[0]
        seg, hop = round(WINDOW_SECONDS * rate), round(HOP_SECONDS * rate)
        if self.whole_track:
            seg = hop = n
        starts = range(0, max(n - seg, 0) + 1, hop)
        xs = [self._input(arr[s: s + seg]) for s in starts]
        p = torch.cat([self.net(torch.stack(xs[i: i + 32]).to(self.device))["key"].float()
                       .softmax(-1) for i in range(0, len(xs), 32)])
        return p.cpu().numpy().astype(np.float16)

    def _input(self, window: np.ndarray) -> torch.Tensor:
        """``(1, F, T)`` model input of a cached window ``(T, F)``."""
        from .train_key import CROP, scale_segment
        if self.uses_skey_stream:
            return torch.from_numpy(np.ascontiguousarray(scale_segment(window)[:CROP]))[None]
        return torch.from_numpy(np.asarray(window, np.float32).T.copy())[None]


def load_teachers(names: list[str], device) -> list[CachedTeacher]:
    """The ``--teacher`` key models (ModelError for a missing or non-key model)."""
    out = []
    for name in names:
        card = registry.find_card(name)
        if card.task != "key":
            raise registry.ModelError(f"teacher {name!r} is a {card.task} model, not a key model")
        card, net = registry.load_model(card, device=str(device))
        out.append(CachedTeacher(card, net.eval(), torch.device(device)))
    return out


def run_teachers(cache: DatasetCache, teachers: list[CachedTeacher], track_ids) -> int:
    """Cache each teacher's window probabilities where missing; tracks computed."""
    done = 0
    for t in teachers:
        src = t.input_stream().name
        for tid in track_ids:
            if not cache.has(tid, t.stream):
                cache.put(tid, t.stream, t.window_probs(cache.load(tid, src)))
                done += 1
    return done


def combine(probs: torch.Tensor, weights, method: str) -> torch.Tensor:
    """Teachers' probabilities ``(n_teachers, B, 24)`` -> ``(B, 24)``: the weighted
    arithmetic mean, or the normalised weighted geometric mean."""
    w = torch.as_tensor(weights, dtype=probs.dtype, device=probs.device)
    w = (w / w.sum())[:, None, None]
    if method == "arithmetic":
        return (w * probs).sum(0)
    if method == "geometric":
        return (w * probs.clamp_min(1e-8).log()).sum(0).softmax(-1)
    raise ValueError(f"unknown teacher combination {method!r}")


def _transpose_gather() -> torch.Tensor:
    """``G[o, n]``: our key index whose probability the native output ``n`` takes
    for a view transposed ``o`` semitones down (o = 0..15)."""
    from .train_key import N_OFFSETS, natural_native_to_ours
    n2o = natural_native_to_ours()
    rows = []
    for o in range(N_OFFSETS):
        row = []
        for n in range(keys.N_KEYS):
            tonic, minor = keys.tonic_mode(n2o[n])
            row.append(keys.key_index((tonic + o) % 12, minor))
        rows.append(row)
    return torch.tensor(rows)


class TeacherTargets:
    """KD targets for training views from the cached, combined teachers."""

    def __init__(self, cache: DatasetCache, teachers: list[CachedTeacher],
                 weights=None, method: str = "arithmetic"):
        if method not in COMBINATIONS:
            raise ValueError(f"unknown teacher combination {method!r}")
        self.cache, self.teachers, self.method = cache, teachers, method
        self.weights = list(weights) if weights else [1.0] * len(teachers)
        if len(self.weights) != len(teachers):
            raise ValueError(f"{len(self.weights)} teacher weights for {len(teachers)} teachers")
        self.gather = _transpose_gather()

    @property
    def ids(self) -> list[str]:
        return [t.card.id for t in self.teachers]

    def native_probs(self, batch: dict, rows: torch.Tensor) -> torch.Tensor:
        """Targets ``(rows.sum(), 24)`` in native order for the selected ``rows`` of the
        batch's views A, B, C (``batch``: ``track``, ``seconds`` (view length),
        ``start_a/b`` seconds, ``o``, ``oc``)."""
        tids = batch["track"] * 3
        starts = torch.cat([batch["start_a"], batch["start_b"], batch["start_a"]])
        starts = starts + (batch["seconds"] - WINDOW_SECONDS) / 2    # centres aligned
        offsets = torch.cat([batch["o"], batch["o"], batch["oc"]])
        sel = rows.nonzero().flatten().tolist()
        p = self.probs([tids[i] for i in sel], starts[sel])
        return p.gather(1, self.gather[offsets[sel]])

    def probs(self, track_ids: list[str], window_starts: torch.Tensor) -> torch.Tensor:
        """The combined teachers' probabilities ``(B, 24)``, our order, of each track's
        window nearest to starting at ``window_starts`` seconds."""
        per = torch.stack([self._window_probs(t, track_ids, window_starts)
                           for t in self.teachers])
        return combine(per, self.weights, self.method)

    def track_probs(self, track_id: str) -> np.ndarray:
        """The combined teachers' whole-track probabilities: the mean over windows."""
        per = torch.stack([torch.from_numpy(np.asarray(self.cache.load(track_id, t.stream),
                                                       np.float32)).mean(0)
                           for t in self.teachers])
        return combine(per[:, None], self.weights, self.method)[0].numpy()

    def _window_probs(self, teacher: CachedTeacher, tids, starts) -> torch.Tensor:
        out = []
        for tid, s in zip(tids, starts.tolist()):
            arr = self.cache.load(tid, teacher.stream)
            i = min(max(round(s / HOP_SECONDS), 0), len(arr) - 1)
            out.append(np.asarray(arr[i], np.float32))
        return torch.from_numpy(np.stack(out)) if out else torch.zeros(0, keys.N_KEYS)
