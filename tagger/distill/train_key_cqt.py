"""Distil a :class:`model_zoo.keycqt.KeyCQT` key model from key teachers and labels.

Data: the cache's ``student`` stream (the chord student's CQT padded by 6
semitones, so that a slice is the track transposed: :func:`.cache.student_input`),
the key teachers' cached window probabilities (:mod:`.key_teachers`: 15 s
windows every 5 s) and ``.key`` labels (the key in force over a segment where
the key changes). Each training item is a ``segment_seconds`` segment of one
track (tracks drawn in proportion to their length), transposed by ``s`` in
-6..+6 semitones. Its targets, transposed with it: the combined teachers'
probabilities of the window nearest it (``kd_weight``, KL divergence; with
``kd_on="unlabelled"`` only on segments without a label) and, where a label
exists, the key in force (``sup_weight``, cross-entropy).
Without teachers only labelled tracks are used.

Selection: every ``eval_every`` steps, the held-out labelled tracks' whole-track
keys (the card's rule: the mean log-probability of the disjoint 15 s segments
of one whole-track pass, as the tagger forms it) are scored (MIREX weighted,
mean); without labelled held-out tracks, agreement with the teachers' whole-track
keys is scored instead. The network's outputs are in our key order by
construction: there is no output order to calibrate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from model_zoo import keys
from model_zoo.features import FrontEnd
from model_zoo.keycqt import FEATURES, KeyCQT, window_logits

from .cache import (KEY_CHANGES, PAD_SEMITONES, STUDENT_BINS, DatasetCache, skey_stream,
                    student_input, student_stream)
from .key_teachers import WINDOW_SECONDS
from .loop import TrainError, run_loop, warmup_cosine
from .train_key import KeyTrainResult

CKPT_VERSION = 1
SEGMENT_SECONDS = 15.0


@dataclass
class KeyCQTTrainConfig:
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup: int = 100
    max_steps: int = 4000
    max_minutes: float = 0.0
    checkpoint_every: int = 100
    eval_every: int = 200
    patience: int = 8
    kd_weight: float = 1.0
    kd_on: str = "all"            # "unlabelled": the teacher term skips labelled segments
    sup_weight: float = 1.0
    segment_seconds: float = SEGMENT_SECONDS
    seed: int = 0
    width: dict = field(default_factory=dict)   # KeyCQT constructor arguments

    TRAJECTORY = ("batch_size", "lr", "weight_decay", "warmup", "max_steps", "kd_weight",
                  "kd_on", "sup_weight", "segment_seconds", "seed", "width")


def transpose_table() -> torch.Tensor:
    """``G[s + 6, j]``: the key whose probability key ``j`` takes when a track is
    transposed up by ``s`` semitones (``s`` in -6..6)."""
    rows = []
    for s in range(-PAD_SEMITONES, PAD_SEMITONES + 1):
        row = []
        for j in range(keys.N_KEYS):
            tonic, minor = keys.tonic_mode(j)
            row.append(keys.key_index(tonic - s, minor))
        rows.append(row)
    return torch.tensor(rows)


def transpose_key(key: int, s: int) -> int:
    tonic, minor = keys.tonic_mode(key)
    return keys.key_index(tonic + s, minor)


class SegmentSampler:
    """Transposed segments of cached chord CQTs, with where they come from."""

    def __init__(self, cache: DatasetCache, track_ids: list[str], seed: int,
                 segment_seconds: float = SEGMENT_SECONDS):
        self.cache, self.ids = cache, list(track_ids)
        if not self.ids:
            raise TrainError("no training tracks")
        self.stream = student_stream().name
        fe = FrontEnd(**FEATURES)
        self.frame_rate = fe.frame_rate
        self.seg = fe.n_frames(int(segment_seconds * fe.sample_rate))
        lengths = np.array([cache.load(t, self.stream).shape[0] for t in self.ids], float)
        self.p = lengths / lengths.sum()
        self.labels = KeyLabels(cache)
        self.rng = np.random.default_rng(seed)

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state

    def sample(self, batch: int) -> dict:
        xs, ys, tracks, starts, shifts = [], [], [], [], []
        for _ in range(batch):
            tid = self.ids[self.rng.choice(len(self.ids), p=self.p)]
            arr = self.cache.load(tid, self.stream)
            n = arr.shape[0]
            s0 = int(self.rng.integers(0, n - self.seg + 1)) if n > self.seg else 0
            shift = int(self.rng.integers(-PAD_SEMITONES, PAD_SEMITONES + 1))
            seg = np.zeros((self.seg, STUDENT_BINS), np.float32)
            part = student_input(np.asarray(arr[s0: s0 + self.seg], np.float32), shift)
            seg[: len(part)] = part
            xs.append(seg.T)
            key = self.labels.key_over(tid, s0 / self.frame_rate,
                                       (s0 + self.seg) / self.frame_rate)
            ys.append(-1 if key is None else transpose_key(key, shift))
            tracks.append(tid)
            starts.append(s0 / self.frame_rate)
            shifts.append(shift)
        return {"x": torch.from_numpy(np.stack(xs))[:, None], "y": torch.tensor(ys),
                "track": tracks, "start": torch.tensor(starts), "shift": torch.tensor(shifts)}


class KeyLabels:
    """The labelled key of a span of a cached track: the key in force over most of
    it where the track has timed key changes, else the track's key (None: none)."""

    def __init__(self, cache: DatasetCache):
        self.cache = cache
        f = FrontEnd(**skey_stream().features)
        self.rate = f.frame_rate

    def key_over(self, tid: str, start: float, end: float) -> int | None:
        key = self.cache.track(tid).key
        if key is None or not self.cache.has(tid, KEY_CHANGES):
            return key
        ks = np.asarray(self.cache.load(tid, KEY_CHANGES)[int(start * self.rate):
                                                          int(end * self.rate)])
        ks = ks[ks >= 0]
        return int(np.bincount(ks).argmax()) if len(ks) else None


@torch.inference_mode()
def track_log_probs(net: KeyCQT, arr: np.ndarray, device="cpu",
                    segment_seconds: float = SEGMENT_SECONDS) -> np.ndarray:
    """A cached track's whole-track key log-probabilities ``(24,)`` as the tagger
    forms them: one pass, the disjoint segments' mean log-probability."""
    fe = FrontEnd(**FEATURES)
    seg = fe.n_frames(int(segment_seconds * fe.sample_rate))
    x = torch.from_numpy(np.asarray(student_input(arr), np.float32).T)[None, None]
    frames = net.frame_logits(x.to(device))[0].float().cpu()
    n = arr.shape[0]
    starts = list(range(0, n - seg + 1, seg)) if n >= seg else [0]
    logits = window_logits(frames, starts, min(n, seg), net.pool)
    return logits.log_softmax(-1).mean(0).numpy()


def heldout_scores(net: KeyCQT, cache: DatasetCache, ids: list[str], teacher=None,
                   device="cpu") -> dict:
    """Mean MIREX weighted score on labelled ``ids`` and agreement with the teachers'
    whole-track keys (where there are teachers)."""
    from .evaluate import mirex_key_score
    stream = student_stream().name
    est = {t: int(np.argmax(track_log_probs(net, cache.load(t, stream), device))) for t in ids}
    out = {}
    lab = [t for t in ids if cache.track(t).key is not None]
    if lab:
        out["weighted"] = float(np.mean([mirex_key_score(cache.track(t).key, est[t])
                                         for t in lab]))
    if teacher is not None:
        out["teacher_agree"] = float(np.mean([est[t] == int(np.argmax(teacher.track_probs(t)))
                                              for t in ids]))
    return out


def train_key_cqt(cache: DatasetCache, train_ids: list[str], heldout_ids: list[str],
                  cfg: KeyCQTTrainConfig, run_dir, *, teacher=None,
                  init_state: dict | None = None, device="cpu", progress: bool = True,
                  stop_after: int | None = None, log=print) -> KeyTrainResult:
    """Train (or resume) a KeyCQT on teacher targets and labels; best weights loaded.

    ``teacher``: a :class:`.key_teachers.TeacherTargets` (None: labels only)."""
    device = torch.device(device)
    torch.manual_seed(cfg.seed)
    if teacher is None:
        train_ids = [t for t in train_ids if cache.track(t).key is not None]
        if not train_ids:
            raise TrainError("no key teacher and no training track with a .key label")
    net = KeyCQT(**cfg.width)
    if init_state is not None:
        net.load_state_dict(init_state)
    net.to(device).train()
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sampler = SegmentSampler(cache, train_ids, cfg.seed, cfg.segment_seconds)
    gather = transpose_table()

    def train_step(step: int) -> dict:
        batch = sampler.sample(cfg.batch_size)
        for g in opt.param_groups:
            g["lr"] = warmup_cosine(step, cfg, 0.02)
        logp = net(batch["x"].to(device))["key"].float().log_softmax(-1)
        parts = {"loss": logp.new_zeros(())}
        y = batch["y"].to(device)
        if cfg.sup_weight > 0 and bool((y >= 0).any()):
            parts["sup"] = -logp[y >= 0].gather(1, y[y >= 0, None]).mean()
            parts["loss"] = parts["loss"] + cfg.sup_weight * parts["sup"]
        rows = (y < 0) if cfg.kd_on == "unlabelled" else torch.ones_like(y, dtype=torch.bool)
        if teacher is not None and cfg.kd_weight > 0 and bool(rows.any()):
            sel = rows.nonzero().flatten().tolist()
            centred = batch["start"] + (sampler.seg / sampler.frame_rate - WINDOW_SECONDS) / 2
            pt = teacher.probs([batch["track"][i] for i in sel], centred[sel])
            pt = pt.gather(1, gather[batch["shift"][sel] + PAD_SEMITONES]).to(device)
            parts["kd"] = (pt * (pt.clamp_min(1e-12).log() - logp[rows])).sum(-1).mean()
            parts["loss"] = parts["loss"] + cfg.kd_weight * parts["kd"]
        opt.zero_grad(set_to_none=True)
        parts["loss"].backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        return parts

    def evaluate() -> tuple[float, dict]:
        rec = {k: round(v, 4) for k, v in
               heldout_scores(net, cache, heldout_ids, teacher, device).items()}
        return rec.get("weighted", rec.get("teacher_agree", 0.0)), rec

    res = run_loop(net=net, opt=opt, sampler=sampler, cfg=cfg,
                   trajectory=KeyCQTTrainConfig.TRAJECTORY, version=CKPT_VERSION,
                   run_dir=Path(run_dir), device=device, train_step=train_step,
                   evaluate=evaluate if heldout_ids else None, desc="train-key",
                   progress=progress, stop_after=stop_after, log=log)
    return KeyTrainResult(net.cpu().eval(), res.steps, res.best_step, res.best_score,
                             res.history, res.seconds, res.steps_per_second)


__all__ = ["KeyCQTTrainConfig", "SegmentSampler", "heldout_scores", "track_log_probs",
           "train_key_cqt", "transpose_table"]
