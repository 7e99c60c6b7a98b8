"""S-KEY losses: zero for a perfect equivariant predictor, positive otherwise;
the view sampler's transposition convention matches the loss's."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from model_zoo import keys
from tagger.distill.losses import (
    fifths_projection,
    fold_signatures,
    major_mass,
    mode_pseudo_label,
    skey_losses,
)
from tagger.distill.train_key import (
    CROP,
    mapping,
    natural_native_to_ours,
    permutation_from,
)


def native_onehot(pos: int, major: bool) -> torch.Tensor:
    p = torch.zeros(24)
    p[(0 if major else 12) + pos % 12] = 1.0
    return p


def chroma_for(pos: int, major: bool) -> torch.Tensor:
    """Crop-aligned chroma whose loudest tonic matches the mode of signature ``pos``."""
    h = torch.full((12,), 0.1)
    h[pos % 12] = 1.0 if major else 0.5          # major tonic
    h[(pos + 9) % 12] = 0.5 if major else 1.0    # relative minor tonic
    return h


def perfect_batch(ks=(0, 3, 7, 10), modes=(True, False, True, False), shifts=(1, -4, 5, 11)):
    pa = torch.stack([native_onehot(q, m) for q, m in zip(ks, modes)])
    pc = torch.stack([native_onehot(q - k, m) for q, m, k in zip(ks, modes, shifts)])
    chroma = torch.stack([chroma_for(q, m) for q, m in zip(ks, modes)])
    return pa, pa.clone(), pc, torch.tensor(shifts), chroma


def test_perfect_equivariant_predictor_has_zero_loss():
    pa, pb, pc, k, chroma = perfect_batch()
    out = skey_losses(pa, pb, pc, k, chroma)
    for name in ("pos", "equi", "mode", "balance", "loss"):
        assert out[name].item() == pytest.approx(0.0, abs=1e-6), name


def test_each_violation_is_penalised():
    pa, pb, pc, k, chroma = perfect_batch()
    # B in another key than A
    out = skey_losses(pa, torch.roll(pb, 1, dims=1), pc, k, chroma)
    assert out["pos"] > 0.1 and out["loss"] > 0.1
    # C not transposed (an invariant predictor)
    out = skey_losses(pa, pb, pa.clone(), k, chroma)
    assert out["equi"] > 0.1 and out["pos"].item() == pytest.approx(0, abs=1e-6)
    # C transposed the wrong way
    out = skey_losses(pa, pb, torch.stack([native_onehot(q + s, m) for q, m, s in
                                           zip((0, 3, 7, 10), (True, False, True, False),
                                               (1, -4, 5, 11))]), k, chroma)
    assert out["equi"] > 0.1
    # wrong mode (vs the chroma pseudo-label) and all-major collapse
    flipped = torch.cat([pa[:, 12:], pa[:, :12]], 1)
    out = skey_losses(flipped, flipped.clone(), torch.cat([pc[:, 12:], pc[:, :12]], 1), k,
                      chroma)
    assert out["mode"] > 10 and out["balance"].item() == pytest.approx(0, abs=1e-6)
    major = torch.stack([native_onehot(q, True) for q in (0, 3, 7, 10)])
    out = skey_losses(major, major.clone(), major.roll(0, 1), k, chroma)
    assert out["balance"].item() == pytest.approx(0.25)
    # an undecided predictor sits at the centre of the circle
    u = torch.full((4, 24), 1 / 24)
    out = skey_losses(u, u, u, k, chroma)
    assert out["pos"].item() == pytest.approx(1.0, abs=1e-6)
    assert out["equi"].item() == pytest.approx(2.0, abs=1e-6)


def test_weights_and_gradients():
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 24, requires_grad=True)
    p = logits.softmax(-1)
    _, _, _, k, chroma = perfect_batch()
    out = skey_losses(p[0], p[1], p[2], k, chroma)
    want = out["pos"] + out["equi"] + 1.5 * 1.7 * out["mode"] + 20 * out["balance"]
    assert out["loss"].item() == pytest.approx(want.item(), rel=1e-6)
    out["loss"].backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_projection_and_fold():
    p = native_onehot(1, False)
    assert fold_signatures(p)[1] == 1 and major_mass(p) == 0
    z = fifths_projection(fold_signatures(p)[None])
    assert z.item().real == pytest.approx(math.cos(2 * math.pi * 7 / 12), abs=1e-6)
    h = chroma_for(4, True)[None]
    assert mode_pseudo_label(h, torch.tensor([4])).item() == 1.0
    assert mode_pseudo_label(chroma_for(4, False)[None], torch.tensor([4])).item() == 0.0


def test_crop_convention_matches_loss():
    """A chroma-template predictor applied to real crops of a C major cadence:
    crops at a higher offset read as keys ``k`` semitones lower, as the loss expects."""
    from model_zoo import skey
    from model_zoo.features import FrontEnd
    from tagger.distill.train_key import synthetic_clip
    fe = FrontEnd(**dict(skey.FEATURES, crop_bins=None))
    audio = synthetic_clip(keys.key_index(0, False), seconds=4.0)
    mag = fe.magnitude(torch.from_numpy(audio)[None])[0, 0].numpy()  # (99, T), linear
    profile = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])

    def predict(offset):  # native major position: crop position of the tonic
        chroma = mag[offset: offset + CROP].mean(1).reshape(7, 12).mean(0)
        scores = [np.corrcoef(np.roll(profile, q), chroma)[0, 1] for q in range(12)]
        return int(np.argmax(scores))

    o = 2
    qa = predict(o)
    # natural mapping: crop position q at offset 0 is pitch class A + q (bin 0 = A0)
    assert natural_native_to_ours()[(qa + o) % 12] == keys.key_index(0, False)
    for oc in (0, 5, 9, 14):
        k = oc - o
        qc = predict(oc)
        assert (qa - qc - k) % 12 == 0
        pa, pc = native_onehot(qa, True)[None], native_onehot(qc, True)[None]
        out = skey_losses(pa, pa, pc, torch.tensor([k]), torch.ones(1, 12))
        assert out["equi"].item() == pytest.approx(0.0, abs=1e-6)


def test_mappings_are_permutations():
    n2o = natural_native_to_ours()
    assert sorted(n2o) == list(range(24))
    assert mapping(0, False) == n2o
    for rot in range(12):
        for flip in (False, True):
            m = mapping(rot, flip)
            assert sorted(m) == list(range(24))
            # channel 0 position p and channel 1 position p share a key signature
            for p in range(12):
                a, b = keys.tonic_mode(m[p]), keys.tonic_mode(m[12 + p])
                maj, mino = (a, b) if not a[1] else (b, a)
                assert (maj[0] - 3) % 12 == mino[0]
    perm = permutation_from(n2o)
    assert [n2o[perm[i]] for i in range(24)] == list(range(24))


def test_mirex_matrix_matches_mir_eval():
    import mir_eval

    from tagger.distill.evaluate import key_score_matrix
    m = key_score_matrix()
    for ref in (keys.parse_key("Eb major"), keys.parse_key("F# minor")):
        for est in range(24):
            want = mir_eval.key.weighted_score(keys.long_key(ref), keys.long_key(est))
            assert m[ref, est] == want, (keys.long_key(ref), keys.long_key(est))


def test_calibration_recovers_the_released_order(skey_pt):
    """From the released checkpoint's native outputs alone, calibration finds the
    output order its authors found empirically."""
    from model_zoo import importers, skey
    from tagger.distill.train_key import calibrate
    sd, _ = importers.read_skey_checkpoint(skey_pt)
    net = skey.ChromaNet()
    net.load_state_dict(sd)
    perm, report = calibrate(net.eval())
    assert perm == importers.skey_released_permutation(), report
    assert report["accuracy"] == 1.0 and report["expected_weighted"] > report["runner_up_expected"]


def test_released_skey_is_equivariant_under_our_views(skey_pt, nocturne_22k, tmp_path):
    """On a real recording, the released S-KEY's outputs on our views A, B, C satisfy
    the loss's transposition convention (and violate the opposite one)."""
    from model_zoo import importers, skey
    from tagger.distill import cache as C
    from tagger.distill.train_key import ViewSampler
    spec = C.skey_stream()
    fe = spec.frontend()
    arr = spec.finish(fe, fe.magnitude(torch.from_numpy(nocturne_22k[: 22050 * 40])[None])[0])
    with C.DatasetCache(tmp_path / "c") as cache:
        cache.add_track(C.TrackInfo("t" * 20, "x", 40.0, 22050 * 40, "g", None, None))
        cache.put("t" * 20, spec.name, arr)
        batch = ViewSampler(cache, ["t" * 20], seed=0).sample(6)
    sd, _ = importers.read_skey_checkpoint(skey_pt)
    net = skey.ChromaNet()
    net.load_state_dict(sd)
    with torch.no_grad():
        p = net.eval().native_logits(torch.cat([batch["a"], batch["b"], batch["c"]])).softmax(-1)
    n = 6
    good = skey_losses(p[:n], p[n:2 * n], p[2 * n:], batch["k"], batch["chroma"])
    bad = skey_losses(p[:n], p[n:2 * n], p[2 * n:], -batch["k"], batch["chroma"])
    assert good["equi"] < 1.0 < bad["equi"], (good["equi"], bad["equi"])
    assert good["pos"] < 0.5
