"""Losses: focal, soft targets, selective KD (stage 2), and S-KEY's.

Chord losses take logits ``(B, T, C)`` and a frame mask ``(B, T)`` (padding
frames of windows shorter than the track excluded); all means are over the
valid frames.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

IGNORE = -1


def _masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return x.mean()
    m = mask.to(x.dtype)
    return (x * m).sum() / m.sum().clamp_min(1.0)


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0,
               mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of ``-(1 - p_t)^gamma log p_t`` over frames with a target (``!= -1``)."""
    logp = logits.float().log_softmax(-1)
    valid = target >= 0
    if mask is not None:
        valid = valid & mask.bool()
    t = target.clamp_min(0)
    logp_t = logp.gather(-1, t.unsqueeze(-1)).squeeze(-1)
    loss = -((1.0 - logp_t.exp()) ** gamma) * logp_t
    return _masked_mean(loss, valid)


def kl_per_frame(teacher_logp: torch.Tensor, student_logits: torch.Tensor,
                 temperature: float = 1.0) -> torch.Tensor:
    """``KL(softmax(t / T) || softmax(s / T))`` per frame ``(B, T)``."""
    pt = (teacher_logp.float() / temperature).log_softmax(-1)
    ps = (student_logits.float() / temperature).log_softmax(-1)
    return (pt.exp() * (pt - ps)).sum(-1)


def soft_target_loss(student_logits: torch.Tensor, teacher_logp: torch.Tensor,
                     temperature: float = 1.0, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``T^2 * mean KL(teacher_T || student_T)`` (Hinton et al.'s scaling)."""
    kl = kl_per_frame(teacher_logp, student_logits, temperature)
    return temperature ** 2 * _masked_mean(kl, mask)


def top_softened(teacher_logp: torch.Tensor, temperature: float) -> torch.Tensor:
    """``c``: the teacher's highest probability after softening with ``temperature``."""
    return (teacher_logp.float() / temperature).softmax(-1).amax(-1)


def selective_kd_weight(c: torch.Tensor) -> torch.Tensor:
    """Stage-2 KD weight from the teacher's top softened probability ``c``.

    0 if ``c < 0.1`` (the teacher has no opinion); 1 for ``0.1 <= c <= 0.9``;
    ``1 - 0.8 (c - 0.9) / 0.1`` above 0.9 (falling to 0.2 at ``c = 1``: an
    over-confident teacher adds little beyond the hard label).
    """
    w = torch.ones_like(c)
    w = torch.where(c < 0.1, torch.zeros_like(c), w)
    return torch.where(c > 0.9, 1.0 - 0.8 * (c - 0.9) / 0.1, w)


def stage2_loss(student_logits: torch.Tensor, labels: torch.Tensor,
                teacher_logp: torch.Tensor, temperature: float = 3.0, alpha: float = 0.7,
                gamma: float = 2.0, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """``alpha * focal(labels) + (1 - alpha) * T^2 * mean(w * KL(teacher_T || student_T))``."""
    focal = focal_loss(student_logits, labels, gamma, mask)
    w = selective_kd_weight(top_softened(teacher_logp, temperature)).detach()
    kd = temperature ** 2 * _masked_mean(w * kl_per_frame(teacher_logp, student_logits,
                                                          temperature), mask)
    return {"loss": alpha * focal + (1.0 - alpha) * kd, "focal": focal, "kd": kd}


def aux_losses(out: dict, root_t=None, root_soft=None, bass_soft=None, pitch_t=None,
               mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of the structured-head losses that have targets (0 if none).

    ``root_t``: class indices (``-1`` ignore); ``root_soft`` / ``bass_soft``:
    teacher log-probabilities (13); ``pitch_t``: chord-tone probabilities (12).
    """
    terms = []
    if "root" in out:
        if root_t is not None:
            valid = root_t >= 0 if mask is None else (root_t >= 0) & mask.bool()
            lp = out["root"].float().log_softmax(-1)
            nll = -lp.gather(-1, root_t.clamp_min(0).unsqueeze(-1)).squeeze(-1)
            terms.append(_masked_mean(nll, valid))
        elif root_soft is not None:
            terms.append(soft_target_loss(out["root"], root_soft, 1.0, mask))
    if "bass" in out and bass_soft is not None:
        terms.append(soft_target_loss(out["bass"], bass_soft, 1.0, mask))
    if "pitch" in out and pitch_t is not None:
        bce = F.binary_cross_entropy_with_logits(out["pitch"].float(), pitch_t.float(),
                                                 reduction="none").mean(-1)
        terms.append(_masked_mean(bce, mask))
    if not terms:
        return torch.zeros(())
    return torch.stack(terms).mean()


# -- S-KEY ------------------------------------------------------------------------

FIFTHS = torch.exp(1j * 2 * math.pi * 7 * torch.arange(12) / 12)
SKEY_WEIGHTS = {"pos": 1.0, "equi": 1.0, "mode": 1.5 * 1.7, "balance": 20.0}


def fold_signatures(p24: torch.Tensor) -> torch.Tensor:
    """12 key-signature masses: channel-0 (major) + channel-1 (minor) at each position."""
    return p24[..., :12] + p24[..., 12:]


def major_mass(p24: torch.Tensor) -> torch.Tensor:
    return p24[..., :12].sum(-1)


def fifths_projection(ks: torch.Tensor) -> torch.Tensor:
    """``z = sum_q ks[q] exp(2 pi i 7 q / 12)`` (complex, one per row)."""
    ks = ks.float()
    return torch.complex(ks, torch.zeros_like(ks)) @ FIFTHS.to(ks.device)


def mode_pseudo_label(chroma: torch.Tensor, ks_index: torch.Tensor) -> torch.Tensor:
    """1 (major) where the major tonic of the predicted signature is louder than its
    relative minor tonic in the crop-aligned mean chroma ``(B, 12)``.

    Native convention: signature position ``q`` has its major tonic at crop
    position ``q`` and its relative minor tonic at ``q + 9`` (mod 12).
    """
    maj = chroma.gather(1, ks_index[:, None] % 12)
    mino = chroma.gather(1, (ks_index[:, None] + 9) % 12)
    return (maj > mino).float().squeeze(1)


def _bce(p: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    logp = torch.log(p.clamp_min(1e-30)).clamp_min(-100.0)
    log1mp = torch.log((1.0 - p).clamp_min(1e-30)).clamp_min(-100.0)
    return -(target * logp + (1.0 - target) * log1mp).mean()


def skey_losses(pa: torch.Tensor, pb: torch.Tensor, pc: torch.Tensor, k: torch.Tensor,
                chroma: torch.Tensor, weights: dict | None = None) -> dict[str, torch.Tensor]:
    """S-KEY's self-supervised losses on native 24-way probabilities of views A, B, C.

    ``k`` (B,): C is A (and B) transposed such that ``key(A) - key(C) = k``
    semitones (C cropped ``k`` bins higher). ``chroma`` (B, 12): crop-aligned
    mean chroma of A and B. Returns the weighted total and each term.
    """
    w = dict(SKEY_WEIGHTS, **(weights or {}))
    za, zb, zc = (fifths_projection(fold_signatures(p)) for p in (pa, pb, pc))
    target = torch.exp(1j * 2 * math.pi * 7 * k.to(pa.device).double() / 12).to(za.dtype)
    l_pos = (1 - za * zb.conj()).abs().pow(2).mean()
    l_equi = ((target - za * zc.conj()).abs().pow(2).mean()
              + (target - zb * zc.conj()).abs().pow(2).mean())
    with torch.no_grad():
        ks = (fold_signatures(pa) + fold_signatures(pb)).argmax(-1)
        m_star = mode_pseudo_label(chroma, ks)
    l_mode = sum(_bce(major_mass(p), m_star) for p in (pa, pb, pc))
    l_bal = (torch.cat([major_mass(pa), major_mass(pb)]).mean() - 0.5) ** 2
    total = (w["pos"] * l_pos + w["equi"] * l_equi + w["mode"] * l_mode
             + w["balance"] * l_bal)
    return {"loss": total, "pos": l_pos, "equi": l_equi, "mode": l_mode, "balance": l_bal,
            "mode_label_major": m_star.mean()}
