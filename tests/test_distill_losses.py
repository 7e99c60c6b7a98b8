"""Chord distillation losses (hand-computed values) and CQT-domain pitch shifts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from model_zoo import vocab
from tagger.distill import augment
from tagger.distill.losses import (
    focal_loss,
    kl_per_frame,
    selective_kd_weight,
    soft_target_loss,
    stage2_loss,
    top_softened,
)

# -- selective KD weight ---------------------------------------------------------------

@pytest.mark.parametrize("c, w", [
    (0.0, 0.0), (0.05, 0.0), (0.0999, 0.0),          # no opinion: ignored
    (0.1, 1.0), (0.3, 1.0), (0.9, 1.0),              # informative: full weight
    (0.95, 0.6), (0.925, 0.8), (1.0, 0.2),           # over-confident: down-weighted
])
def test_selective_kd_weight_rule(c, w):
    got = selective_kd_weight(torch.tensor([c], dtype=torch.float64))
    assert got.item() == pytest.approx(w, abs=1e-9)


def test_weight_is_continuous_at_0_9_and_monotone_above():
    c = torch.linspace(0.9, 1.0, 101, dtype=torch.float64)
    w = selective_kd_weight(c)
    assert w[0] == pytest.approx(1.0)
    assert torch.all(w[1:] <= w[:-1])


def test_top_softened():
    logp = torch.log(torch.tensor([[0.8, 0.2]]))
    hi = 0.8 ** (1 / 3) / (0.8 ** (1 / 3) + 0.2 ** (1 / 3))
    assert top_softened(logp, 3.0).item() == pytest.approx(hi, rel=1e-6)


# -- focal and KD ----------------------------------------------------------------------------

def test_focal_hand_value_and_ignore():
    logits = torch.tensor([[[0.0, 0.0], [2.0, 0.0], [5.0, -5.0]]])   # (1, 3, 2)
    target = torch.tensor([[0, 1, -1]])                                 # last frame ignored
    p1 = 0.5
    p2 = math.exp(0.0) / (math.exp(2.0) + math.exp(0.0))
    want = (-(1 - p1) ** 2 * math.log(p1) - (1 - p2) ** 2 * math.log(p2)) / 2
    assert focal_loss(logits, target, 2.0).item() == pytest.approx(want, rel=1e-6)
    # gamma 0 is cross-entropy
    ce = (-math.log(p1) - math.log(p2)) / 2
    assert focal_loss(logits, target, 0.0).item() == pytest.approx(ce, rel=1e-6)
    # a mask excludes frames too
    mask = torch.tensor([[True, False, True]])
    assert focal_loss(logits, target, 2.0, mask).item() == pytest.approx(
        -(1 - p1) ** 2 * math.log(p1), rel=1e-6)


def _kl_t(pt_raw, ps_logits, t):
    a = np.array(pt_raw) ** (1 / t)
    a /= a.sum()
    b = np.exp(np.array(ps_logits) / t)
    b /= b.sum()
    return float(np.sum(a * np.log(a / b)))


def test_soft_target_loss_hand_value():
    teacher = torch.log(torch.tensor([[[0.7, 0.2, 0.1]]]))
    student = torch.tensor([[[1.0, 0.0, -1.0]]])
    for t in (1.0, 2.0):
        want = t * t * _kl_t([0.7, 0.2, 0.1], [1.0, 0.0, -1.0], t)
        assert soft_target_loss(student, teacher, t).item() == pytest.approx(want, rel=1e-4)
    # zero when the student equals the teacher
    assert soft_target_loss(teacher.clone(), teacher, 3.0).item() == pytest.approx(0, abs=1e-6)


def test_stage2_loss_hand_values():
    # frame 1: teacher (0.8, 0.2), label 0, uniform student: c = 0.61, w = 1
    # frame 2: teacher (0.999999, 1e-6), label 1, student logits (0, 1): c ~ 0.99, w < 1
    t1, t2 = [0.8, 0.2], [1 - 1e-6, 1e-6]
    teacher = torch.log(torch.tensor([[t1, t2]], dtype=torch.float64))
    student = torch.tensor([[[0.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)
    labels = torch.tensor([[0, 1]])
    out = stage2_loss(student, labels, teacher, temperature=3.0, alpha=0.7, gamma=2.0)

    def focal(p):
        return -(1 - p) ** 2 * math.log(p)
    p2 = math.exp(1) / (1 + math.exp(1))
    want_focal = (focal(0.5) + focal(p2)) / 2
    c1 = 0.8 ** (1 / 3) / (0.8 ** (1 / 3) + 0.2 ** (1 / 3))
    c2 = t2[0] ** (1 / 3) / (t2[0] ** (1 / 3) + t2[1] ** (1 / 3))
    assert 0.1 <= c1 <= 0.9 and c2 > 0.9
    w1, w2 = 1.0, 1 - 0.8 * (c2 - 0.9) / 0.1
    want_kd = 9 * (w1 * _kl_t(t1, [0, 0], 3) + w2 * _kl_t(t2, [0, 1], 3)) / 2
    assert out["focal"].item() == pytest.approx(want_focal, rel=1e-6)
    assert out["kd"].item() == pytest.approx(want_kd, rel=1e-5)
    assert out["loss"].item() == pytest.approx(0.7 * want_focal + 0.3 * want_kd, rel=1e-5)


def test_stage2_ignores_unopinionated_teacher():
    # a flat teacher over 170 classes has c = 1/170 < 0.1: w = 0, only the focal term counts
    teacher = torch.full((1, 4, 170), -math.log(170.0))
    student = torch.randn(1, 4, 170, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([[3, 5, -1, 168]])
    out = stage2_loss(student, labels, teacher)
    assert out["kd"].item() == 0.0
    assert out["loss"].item() == pytest.approx(0.7 * focal_loss(student, labels).item())
    assert kl_per_frame(teacher, student, 3.0).min() > 0


# -- pitch shifts -------------------------------------------------------------------------------

def test_class_scores_follow_vocab_transpose():
    for s in (-5, -1, 1, 6):
        x = np.arange(170, dtype=np.float32)
        y = augment.transpose_class_scores(x, s)
        for i in (0, 13, 30, 167):
            assert y[vocab.transpose(i, s)] == x[i]
        assert y[vocab.N_INDEX] == x[vocab.N_INDEX] and y[vocab.X_INDEX] == x[vocab.X_INDEX]
    labs = np.array([vocab.index(0, "maj"), vocab.index(11, "min7"), vocab.N_INDEX, -1])
    moved = augment.transpose_labels(labs, 2)
    assert list(moved) == [vocab.index(2, "maj"), vocab.index(1, "min7"), vocab.N_INDEX, -1]


def test_aux_transpose():
    aux = np.zeros(38, np.float32)
    aux[3] = 1.0          # root D#
    aux[12] = 2.0         # root N
    aux[13 + 11] = 3.0    # bass B
    aux[26 + 0] = 4.0     # pitch C
    out = augment.transpose_aux(aux, 2)
    assert out[5] == 1.0 and out[12] == 2.0 and out[13 + 1] == 3.0 and out[26 + 2] == 4.0


def test_random_eq_is_one_smooth_gain_per_window():
    """The equaliser multiplies every frame's magnitudes by the same smooth gain,
    within +-3 x max_db (tilt + two bells), and keeps shape and dtype."""
    rng = np.random.default_rng(0)
    x = np.log1p(100 * rng.random((20, 216))).astype(np.float32) + 0.1
    y = augment.random_eq(x, np.random.default_rng(1), 6.0)
    assert y.shape == x.shape and y.dtype == np.float32
    gain = np.expm1(y) / np.expm1(x)
    np.testing.assert_allclose(gain, np.broadcast_to(gain[0], gain.shape), rtol=1e-3)
    assert np.ptp(gain[0]) > 0.05
    assert 10 ** (-18 / 20) <= gain.min() and gain.max() <= 10 ** (18 / 20)
    assert np.abs(np.diff(20 * np.log10(gain[0]))).max() < 1.0        # smooth across bins
    z = augment.random_eq(x, np.random.default_rng(1), 0.0)
    np.testing.assert_allclose(z, x, rtol=1e-5, atol=1e-6)


def test_label_root_pitch():
    root, pitch = augment.label_root_pitch(np.array([vocab.index(9, "min"), vocab.N_INDEX, -1]))
    assert list(root) == [9, 12, -1]
    assert set(np.flatnonzero(pitch[0])) == {9, 0, 4}
    assert pitch[1].sum() == 0 and pitch[2].sum() == 0
