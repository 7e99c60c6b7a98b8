"""Training the chord student on the cache: stage 1 (pseudo-labels) and stage 2.

Stage 1 targets are the teacher's cached posteriors: ``loss="focal"`` trains
on their argmax with a focal loss (gamma 2, as the paper), ``loss="soft"``
on the softened distribution (``T^2 KL``, temperature ``temperature``).
Stage 2 trains on ground-truth frame labels with
``0.7 focal + 0.3 T^2 mean(w KL(teacher_T || student_T))``, T = 3, ``w`` the
selective-KD weight (:func:`.losses.selective_kd_weight`). The structured
heads (root, bass, chord tones) get auxiliary targets: the teacher's heads
in stage 1, the ground-truth root and chord tones (and the teacher's bass)
in stage 2.

Batches are random windows (``window`` frames) from random training tracks
(chosen in proportion to their length), each pitch-shifted by a random
number of semitones in ``[-5, 6]`` (all twelve transpositions, exact slices
of the padded cached CQT) with targets moved to match.

Every ``eval_every`` steps the held-out tracks (whole tracks, no
augmentation) are scored (agreement with the teacher's argmax, accuracy
against the ground truth where labelled, the held-out loss): the held-out
loss (stage 1; smooth, where argmax agreement on a few held-out tracks
jumps around) or the frame accuracy against the ground truth (stage 2)
decides early stopping (``patience`` evaluations without improvement) and
the weights kept. A
checkpoint (model, optimizer, step, the sampler's and torch's RNG states,
best weights, history) is written atomically every ``checkpoint_every``
steps and on Ctrl-C; running the same training again resumes from it and
continues exactly as if never interrupted.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from model_zoo import vocab
from model_zoo.student import ChordStudent

from ..windows import at_least, plan
from . import augment
from .cache import DatasetCache, student_input, student_stream
from .loop import TrainError, run_loop, warmup_cosine
from .losses import aux_losses, focal_loss, soft_target_loss, stage2_loss

CKPT_VERSION = 1
INFER_WINDOW = 512   # inference window (margin 64 >= the shipped student's receptive field 63)


@dataclass
class ChordTrainConfig:
    stage: int = 1
    loss: str = "focal"             # stage 1: "focal" (teacher argmax) or "soft"
    temperature: float = 2.0        # stage 1 soft targets
    kd_temperature: float = 3.0     # stage 2 selective KD
    alpha: float = 0.7              # stage 2: weight of the ground-truth focal term
    gamma: float = 2.0
    aux_weight: float = 0.3
    window: int = 256
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-2
    warmup: int = 100
    max_steps: int = 3000
    max_minutes: float = 0.0        # 0: no time limit
    eval_every: int = 200
    checkpoint_every: int = 100
    patience: int = 5
    min_delta: float = 1e-4
    shift_low: int = -5
    shift_high: int = 6
    seed: int = 0
    amp: bool = True
    eval_frames: int = 60000        # cap on held-out frames scored per evaluation
    rehearsal: float = 0.0          # stage 2: share of each batch from unlabelled tracks
    eq_db: float = 0.0              # random equaliser on training windows, up to +-dB (0: off)

    # settings a checkpoint must agree on to be resumed
    TRAJECTORY = ("stage", "loss", "temperature", "kd_temperature", "alpha", "gamma",
                  "aux_weight", "window", "batch_size", "lr", "weight_decay", "warmup",
                  "max_steps", "shift_low", "shift_high", "seed", "rehearsal", "eq_db")


@dataclass
class TrainResult:
    net: ChordStudent
    steps: int
    best_step: int
    best_metric: float
    metric_name: str
    history: list = field(default_factory=list)
    seconds: float = 0.0
    steps_per_second: float = 0.0
    resumed_from: int = 0


# -- data --------------------------------------------------------------------------

class WindowSampler:
    """Random, pitch-shifted training windows from cached tracks (and, with
    ``eq_db``, each through a random equaliser: :func:`.augment.random_eq`)."""

    def __init__(self, cache: DatasetCache, track_ids: list[str], window: int,
                 teacher: str | None, teacher_aux: str | None, labels: bool,
                 shift_low: int, shift_high: int, seed: int, eq_db: float = 0.0):
        self.cache, self.ids, self.window = cache, list(track_ids), window
        self.eq_db = eq_db
        self.teacher, self.teacher_aux, self.labels = teacher, teacher_aux, labels
        self.shift_low, self.shift_high = shift_low, shift_high
        self.student = student_stream().name
        lengths = np.array([cache.load(t, self.student).shape[0] for t in self.ids], float)
        if not len(lengths):
            raise TrainError("no training tracks")
        self.p = lengths / lengths.sum()
        self.rng = np.random.default_rng(seed)

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state

    def sample(self, batch: int) -> dict[str, torch.Tensor]:
        w = self.window
        xs = np.zeros((batch, w, 216), np.float32)
        mask = np.zeros((batch, w), bool)
        tl = np.zeros((batch, w, vocab.N_CLASSES), np.float32) if self.teacher else None
        ta = np.zeros((batch, w, 38), np.float32) if self.teacher_aux else None
        lab = np.full((batch, w), -1, np.int64) if self.labels else None
        for b in range(batch):
            tid = self.ids[self.rng.choice(len(self.ids), p=self.p)]
            feats = self.cache.load(tid, self.student)
            n = feats.shape[0]
            s0 = int(self.rng.integers(0, max(1, n - w + 1)))
            shift = int(self.rng.integers(self.shift_low, self.shift_high + 1))
            m = min(w, n - s0)
            xs[b, :m] = student_input(feats[s0: s0 + m], shift)
            if self.eq_db > 0:
                xs[b, :m] = augment.random_eq(xs[b, :m], self.rng, self.eq_db)
            mask[b, :m] = True
            if tl is not None:
                tl[b, :m] = augment.transpose_class_scores(
                    np.asarray(self.cache.load(tid, self.teacher)[s0: s0 + m], np.float32), shift)
            if ta is not None:
                ta[b, :m] = augment.transpose_aux(
                    np.asarray(self.cache.load(tid, self.teacher_aux)[s0: s0 + m], np.float32),
                    shift)
            if lab is not None:
                lab[b, :m] = augment.transpose_labels(
                    self.cache.load(tid, "labels")[s0: s0 + m], shift)
        out = {"x": torch.from_numpy(xs).transpose(1, 2).unsqueeze(1).contiguous(),
               "mask": torch.from_numpy(mask)}
        if tl is not None:
            out["teacher"] = torch.from_numpy(tl)
        if ta is not None:
            out["aux"] = torch.from_numpy(ta)
        if lab is not None:
            out["labels"] = torch.from_numpy(lab)
        return out


class _Rehearsal:
    """Stage 2 with rehearsal: labelled windows plus windows of unlabelled tracks
    (trained on the stage-1 soft-target objective), so the student keeps
    following the teacher on the kinds of music that have no ground truth."""

    def __init__(self, labelled: WindowSampler, unlabelled: WindowSampler, share: float):
        self.labelled, self.unlabelled, self.share = labelled, unlabelled, share

    def state(self) -> dict:
        return {"labelled": self.labelled.state(), "unlabelled": self.unlabelled.state()}

    def set_state(self, state: dict) -> None:
        self.labelled.set_state(state["labelled"])
        self.unlabelled.set_state(state["unlabelled"])

    def split(self, batch: int) -> tuple[int, int]:
        n_u = min(batch - 1, max(1, round(batch * self.share)))
        return batch - n_u, n_u


# -- the objective -------------------------------------------------------------------

_ROOT = torch.tensor([i // vocab.N_QUALITIES for i in range(vocab.N_INDEX)] + [12, -1])
_TONES = torch.from_numpy(augment.CHORD_TONES)


def _root_pitch(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Root class (12 = N, -1 = none) and chord-tone targets of chord indices (-1 ignore)."""
    idx = labels.clamp_min(0)
    root = _ROOT.to(labels.device)[idx]
    root = torch.where(labels < 0, torch.full_like(root, -1), root)
    return root, _TONES.to(labels.device)[idx]

def compute_loss(out: dict, batch: dict, cfg: ChordTrainConfig) -> dict[str, torch.Tensor]:
    logits, mask = out["chord"], batch["mask"]
    teacher = batch.get("teacher")
    aux = batch.get("aux")
    if cfg.stage == 1:
        if cfg.loss == "focal":
            target = teacher.argmax(-1)
            main = focal_loss(logits, target, cfg.gamma, mask)
        elif cfg.loss == "soft":
            main = soft_target_loss(logits, teacher, cfg.temperature, mask)
        else:
            raise TrainError(f"unknown stage-1 loss {cfg.loss!r}")
        parts = {"main": main}
        if aux is not None:
            a = aux_losses(out, root_soft=aux[..., :13], bass_soft=aux[..., 13:26],
                           pitch_t=torch.sigmoid(aux[..., 26:]), mask=mask)
        else:
            root, pitch = _root_pitch(teacher.argmax(-1))
            a = aux_losses(out, root_t=root, pitch_t=pitch, mask=mask)
    else:
        labels = batch["labels"]
        parts = stage2_loss(logits, labels, teacher, cfg.kd_temperature, cfg.alpha, cfg.gamma,
                            mask)
        main = parts.pop("loss")
        root, pitch = _root_pitch(labels)
        valid = mask & (labels >= 0)
        a = aux_losses(out, root_t=root, pitch_t=pitch,
                       bass_soft=None if aux is None else aux[..., 13:26], mask=valid)
        parts["main"] = main
    total = main + cfg.aux_weight * a.to(main.device)
    return {"loss": total, "aux": a, **parts}


# -- inference and held-out scoring -------------------------------------------------

@torch.inference_mode()
def predict_logits(net: ChordStudent, feats: np.ndarray | torch.Tensor,
                   device: torch.device | str = "cpu", window: int = INFER_WINDOW,
                   batch_size: int = 8) -> torch.Tensor:
    """Chord logits ``(T, 170)`` of a whole track's features ``(T, 216)``.

    Overlapping windows placed as the tagger places them
    (:func:`tagger.windows.plan`, margins of ``window // 8`` frames or the
    student's receptive field if longer, the window at least 4 margins), so
    the result is that of a whole-track pass; a student with a whole-track
    context block runs in one pass. ``feats`` may be a tensor on any device.
    """
    if isinstance(feats, torch.Tensor):       # may live on the GPU already
        x = feats.to(device=device, dtype=torch.float32).T
    else:
        x = torch.as_tensor(np.asarray(feats, np.float32)).T.to(device)
    field = net.receptive_field()
    margin = max(window // 8, field or 0)
    window = at_least(window, margin)
    if field is None or x.shape[-1] <= window:  # one pass
        return net(x[None, None])["chord"][0].float()
    wins = plan(x.shape[-1], window, margin)
    outs = []
    for i in range(0, len(wins), batch_size):
        b = torch.stack([x[:, w.start: w.start + window] for w in wins[i: i + batch_size]])[:, None]
        outs.append(net(b)["chord"].float())
    o = torch.cat(outs)
    return torch.cat([o[j, w.offset: w.offset + w.length] for j, w in enumerate(wins)])


_MAJMIN = np.asarray(vocab.MAJMIN_INDEX)


def _majmin(idx: np.ndarray) -> np.ndarray:
    return _MAJMIN[idx]


@torch.inference_mode()
def heldout_scores(net: ChordStudent, cache: DatasetCache, ids: list[str],
                   teacher: str | None, cfg: ChordTrainConfig,
                   device: torch.device | str = "cpu", max_frames: int | None = None) -> dict:
    """Frame agreement with the teacher, accuracy vs ground truth, held-out loss."""
    was_training = net.training
    net.eval()
    stream = student_stream().name
    agree = agree_mm = n = 0
    gt_ok = gt_mm_ok = gt_n = 0
    loss_sum = loss_w = 0.0
    frames = 0
    for tid in ids:
        if max_frames is not None and frames >= max_frames:
            break
        feats = student_input(cache.load(tid, stream))
        logits = predict_logits(net, feats, device).cpu()
        frames += logits.shape[0]
        pred = logits.argmax(-1).numpy()
        batch = {"mask": torch.ones(1, logits.shape[0], dtype=torch.bool)}
        if teacher is not None and cache.has(tid, teacher):
            tlp = torch.from_numpy(np.asarray(cache.load(tid, teacher), np.float32))
            targ = tlp.argmax(-1).numpy()
            agree += int((pred == targ).sum())
            agree_mm += int((_majmin(pred) == _majmin(targ)).sum())
            n += len(pred)
            batch["teacher"] = tlp[None]
        if cache.has(tid, "labels"):
            lab = np.asarray(cache.load(tid, "labels"), np.int64)[: len(pred)]
            ok = lab >= 0
            gt_ok += int((pred[: len(lab)][ok] == lab[ok]).sum())
            gt_mm_ok += int((_majmin(pred[: len(lab)][ok]) == _majmin(lab[ok])).sum())
            gt_n += int(ok.sum())
            lab_full = np.full(len(pred), -1, np.int64)
            lab_full[: len(lab)] = lab
            batch["labels"] = torch.from_numpy(lab_full)[None]
        usable = "teacher" in batch and (cfg.stage == 1 or "labels" in batch)
        if usable:
            out = {"chord": logits[None]}
            lo = compute_loss(out, batch, cfg)["main"]
            loss_sum += float(lo) * len(pred)
            loss_w += len(pred)
    if was_training:
        net.train()
    res = {"frames": frames}
    if n:
        res["agreement"] = agree / n
        res["agreement_majmin"] = agree_mm / n
    if gt_n:
        res["gt_accuracy"] = gt_ok / gt_n
        res["gt_accuracy_majmin"] = gt_mm_ok / gt_n
    if loss_w:
        res["loss"] = loss_sum / loss_w
    return res


def _metric_name(stage: int, scores: dict) -> str:
    """The held-out score that selects weights and stops training.

    Stage 1: the held-out loss (the training objective without augmentation;
    smooth, where frame agreement with the teacher's argmax is noisy on a
    small held-out set). Stage 2: frame accuracy against the ground truth.
    """
    if stage == 2 and "gt_accuracy" in scores:
        return "gt_accuracy"
    if "loss" in scores:
        return "loss"
    return "agreement"


def _score(name: str, value: float) -> float:
    """Higher is better."""
    return -value if name == "loss" else value


# -- the loop --------------------------------------------------------------------------

def train_chords(cache: DatasetCache, train_ids: list[str], heldout_ids: list[str],
                 cfg: ChordTrainConfig, run_dir: str | os.PathLike, *,
                 teacher: str | None, teacher_aux: str | None = None,
                 init_state: dict | None = None, student_config: dict | None = None,
                 device: str | torch.device = "cpu", progress: bool = True,
                 stop_after: int | None = None, log=print) -> TrainResult:
    """Train (or resume training) a student; returns it with its best weights loaded.

    ``stop_after``: stop (checkpointed, not finished) once this many steps are
    done, as an interruption would; a later call resumes.
    """
    device = torch.device(device)
    unlabelled_ids: list[str] = []
    if cfg.stage == 2:
        unlabelled_ids = [t for t in train_ids if not cache.has(t, "labels")]
        train_ids = [t for t in train_ids if cache.has(t, "labels")]
        if not train_ids:
            raise TrainError("stage 2 needs tracks with .lab ground truth")
    if teacher is None:
        raise TrainError("a teacher's posteriors are needed (stage 1 targets, stage 2 KD)")

    torch.manual_seed(cfg.seed)
    net = _new_student(student_config, init_state).to(device).train()
    opt = _adamw(net, cfg)
    sampler = _sampler(cache, train_ids, unlabelled_ids, cfg, teacher, teacher_aux)
    train_step = _Stepper(net, opt, sampler, cfg, device)

    def evaluate() -> tuple[float, dict]:
        scores = heldout_scores(net, cache, heldout_ids, teacher, cfg, device,
                                max_frames=cfg.eval_frames)
        name = _metric_name(cfg.stage, scores)
        return (_score(name, scores.get(name, -math.inf)),
                {k: round(v, 5) if isinstance(v, float) else v for k, v in scores.items()})

    res = run_loop(net=net, opt=opt, sampler=sampler, cfg=cfg,
                   trajectory=ChordTrainConfig.TRAJECTORY, version=CKPT_VERSION,
                   run_dir=Path(run_dir), device=device, train_step=train_step,
                   evaluate=evaluate if heldout_ids else None, desc=f"stage {cfg.stage}",
                   progress=progress, stop_after=stop_after, min_delta=cfg.min_delta,
                   log=log)
    metric_name = _metric_name(cfg.stage, res.history[-1]) if res.history else "agreement"
    best_value = -res.best_score if metric_name == "loss" else res.best_score
    return TrainResult(net, res.steps, res.best_step, best_value, metric_name, res.history,
                       res.seconds, res.steps_per_second, res.resumed_from)


def _new_student(student_config: dict | None, init_state: dict | None) -> ChordStudent:
    net = ChordStudent(**(student_config or {}))
    if init_state is not None:
        try:   # blocks the init lacks start as the identity
            net.load_grown(init_state)
        except ValueError as e:
            raise TrainError(f"the initial weights do not fit: {e}") from None
    return net


def _adamw(net: torch.nn.Module, cfg: ChordTrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on weight matrices and kernels only."""
    decay = [p for _, p in net.named_parameters() if p.dim() > 1]
    no_decay = [p for _, p in net.named_parameters() if p.dim() <= 1]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)


def _sampler(cache: DatasetCache, train_ids: list[str], unlabelled_ids: list[str],
             cfg: ChordTrainConfig, teacher: str, teacher_aux: str | None):
    """The training windows: a :class:`_Rehearsal` mix when stage 2 rehearses
    unlabelled tracks, else one :class:`WindowSampler`."""
    def windows(ids: list[str], labels: bool, seed: int) -> WindowSampler:
        return WindowSampler(cache, ids, cfg.window, teacher, teacher_aux, labels=labels,
                             shift_low=cfg.shift_low, shift_high=cfg.shift_high, seed=seed,
                             eq_db=cfg.eq_db)

    sampler = windows(train_ids, cfg.stage == 2, cfg.seed)
    if cfg.stage == 2 and cfg.rehearsal > 0 and unlabelled_ids:
        return _Rehearsal(sampler, windows(unlabelled_ids, False, cfg.seed + 1),
                          cfg.rehearsal)
    return sampler


class _Stepper:
    """One optimisation step (``__call__(step) -> loss parts``): the warm-up
    cosine learning rate, the rehearsal mix, mixed precision on CUDA and
    gradient clipping."""

    def __init__(self, net, opt, sampler, cfg: ChordTrainConfig, device: torch.device):
        self.net, self.opt, self.sampler = net, opt, sampler
        self.rehearsal = sampler if isinstance(sampler, _Rehearsal) else None
        self.cfg, self.device = cfg, device
        self.stage1_cfg = replace(cfg, stage=1, loss="soft")
        self.use_amp = cfg.amp and device.type == "cuda"
        self.amp_dtype = (torch.bfloat16 if self.use_amp and torch.cuda.is_bf16_supported()
                          else torch.float16)
        self.scaler = (torch.amp.GradScaler("cuda")
                       if self.use_amp and self.amp_dtype == torch.float16 else None)

    def batch_loss(self, batch: dict, objective: ChordTrainConfig) -> dict:
        batch = {k: v.to(self.device) for k, v in batch.items()}
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.use_amp):
            out = self.net(batch["x"])
        return compute_loss(out, batch, objective)

    def __call__(self, step: int) -> dict:
        cfg, opt = self.cfg, self.opt
        for g in opt.param_groups:
            g["lr"] = warmup_cosine(step, cfg, 0.05)
        if self.rehearsal is None:
            parts = self.batch_loss(self.sampler.sample(cfg.batch_size), cfg)
        else:
            n_l, n_u = self.rehearsal.split(cfg.batch_size)
            parts = self.batch_loss(self.rehearsal.labelled.sample(n_l), cfg)
            rparts = self.batch_loss(self.rehearsal.unlabelled.sample(n_u), self.stage1_cfg)
            parts["rehearsal"] = rparts["loss"]
            parts["loss"] = (n_l * parts["loss"] + n_u * rparts["loss"]) / cfg.batch_size
        opt.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(parts["loss"]).backward()
            self.scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), 5.0)
            self.scaler.step(opt)
            self.scaler.update()
        else:
            parts["loss"].backward()
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), 5.0)
            opt.step()
        return parts
