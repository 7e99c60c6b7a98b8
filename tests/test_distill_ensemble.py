"""Teacher ensembles in ``keychords distill``: the combination rules against
hand-computed values, and an ensemble distillation end to end on tiny data."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from model_zoo import registry
from tagger import cli
from tagger.distill import cache as C
from tagger.distill.ensemble import (
    Ensemble,
    EnsembleError,
    combine_aux,
    combine_logp,
    combine_pitch,
)
from tagger.distill.teacher import Teacher
from tests.audio_fixtures import make_audio_file
from tests.model_fixtures import register_tiny_students


def _log(*rows):
    return np.log(np.array(rows, np.float32))


# -- the rules ----------------------------------------------------------------------------------

def test_arithmetic_mean_of_probabilities():
    a, b = _log([0.8, 0.2], [0.5, 0.5]), _log([0.2, 0.8], [0.1, 0.9])
    got = combine_logp([a, b], [2, 1], "mean").exp()
    # 2/3 * 0.8 + 1/3 * 0.2 = 0.6; 2/3 * 0.5 + 1/3 * 0.1 = 11/30
    assert torch.allclose(got, torch.tensor([[0.6, 0.4], [11 / 30, 19 / 30]]), atol=1e-6)


def test_normalised_geometric_mean():
    a, b = _log([0.8, 0.2]), _log([0.2, 0.8])
    got = combine_logp([a, b], [0.5, 0.5], "geometric").exp()
    assert torch.allclose(got, torch.tensor([[0.5, 0.5]]), atol=1e-6)   # sqrt(.16) each
    got = combine_logp([a, b], [2, 1], "geometric").exp()
    r = 4 ** (1 / 3)         # (0.8^(2/3) 0.2^(1/3)) / (0.2^(2/3) 0.8^(1/3)) = 4^(1/3)
    assert torch.allclose(got, torch.tensor([[r / (1 + r), 1 / (1 + r)]]), atol=1e-6)


def test_one_member_and_equal_members_are_unchanged():
    a = _log([0.7, 0.2, 0.1])
    for rule in ("mean", "geometric"):
        assert torch.allclose(combine_logp([a, a], [0.3, 0.7], rule), torch.from_numpy(a),
                              atol=1e-6)


def test_pitch_logits_combine_as_bernoullis():
    l1, l2 = np.zeros((1, 12), np.float32), np.full((1, 12), np.log(3.0), np.float32)
    # probabilities 0.5 and 0.75: mean 0.625 -> logit log(5/3); geometric: mean logit
    assert torch.allclose(combine_pitch([l1, l2], [1, 1], "mean"),
                          torch.full((1, 12), np.log(5 / 3)), atol=1e-5)
    assert torch.allclose(combine_pitch([l1, l2], [1, 1], "geometric"),
                          torch.full((1, 12), np.log(3.0) / 2), atol=1e-6)


def test_aux_combines_each_head():
    root_a, root_b = np.full(13, 1 / 13), np.eye(13)[0] * 0.87 + 0.01
    aux_a = np.concatenate([np.log(root_a), np.log(root_a), np.zeros(12)])[None]
    aux_b = np.concatenate([np.log(root_b), np.log(root_a), np.full(12, 2.0)])[None]
    got = combine_aux([aux_a, aux_b], [1, 1], "mean")
    assert got.shape == (1, 38)
    assert np.isclose(float(got[0, 0].exp()), (1 / 13 + 0.88) / 2, atol=1e-6)
    assert torch.allclose(got[0, 13:26].exp(), torch.full((13,), 1 / 13), atol=1e-6)
    assert torch.allclose(got[0, 26:], combine_pitch([aux_a[:, 26:], aux_b[:, 26:]],
                                                     [1, 1], "mean")[0])


def _member(name, aux=True):
    card = types.SimpleNamespace(id=name, sha256=name * 8)
    return types.SimpleNamespace(id=name, card=card, stream=f"teacher-{name}",
                                 aux_stream=f"teacheraux-{name}" if aux else "none")


def test_aux_from_the_members_that_have_it(tmp_path):
    a, b = _member("a"), _member("b", aux=False)
    ens = Ensemble([a, b], [3, 1], "geometric")
    pa, pb = _log([0.8, 0.2] + [1e-30] * 168), _log([0.2, 0.8] + [1e-30] * 168)
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(1, 38)).astype(np.float32))
    aux = torch.cat([x[:, :13].log_softmax(-1), x[:, 13:26].log_softmax(-1), x[:, 26:]], -1)
    aux = aux.numpy().astype(np.float16)
    with C.DatasetCache(tmp_path) as cache:
        cache.put("t", a.stream, pa.astype(np.float16))
        cache.put("t", a.aux_stream, aux)
        cache.put("t", b.stream, pb.astype(np.float16))
        ens.combine_track(cache, "t")
        got = np.asarray(cache.load("t", ens.aux_stream), np.float32)
        assert np.allclose(got, aux.astype(np.float32), atol=4e-3)   # a's alone
        p = np.exp(np.asarray(cache.load("t", ens.stream), np.float32))[0]
    # p0 / p1 = (0.8 / 0.2)^(3/4) (0.2 / 0.8)^(1/4) = 4^(1/2) = 2
    assert np.isclose(p[0], 2 / 3, atol=2e-3) and np.isclose(p[:2].sum(), 1, atol=2e-3)
    assert ens.provenance() == {"teacher": "a+b", "teacher_combine": "geometric", "teachers": [
        {"id": "a", "sha256": "a" * 8, "weight": 0.75},
        {"id": "b", "sha256": "b" * 8, "weight": 0.25}]}


def test_bad_ensembles_are_refused():
    a, b = _member("a"), _member("b")
    with pytest.raises(EnsembleError):
        Ensemble([a, b], [1.0, 0.0])
    with pytest.raises(EnsembleError):
        Ensemble([a, a], [1.0, 1.0])
    with pytest.raises(EnsembleError):
        Ensemble([a, b], [1.0, 1.0], "median")
    names = {Ensemble([a, b], w, r).stream for w in ([1, 1], [2, 1]) for r in ("mean", "geometric")}
    assert len(names) == 4                  # another combination is another stream


# -- end to end -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def library(tmp_path_factory):
    lib = tmp_path_factory.mktemp("lib")
    for name, lab, hz in (("c", "C:maj", (130.8, 261.6, 329.6, 392.0)),
                          ("a", "A:min", (110.0, 220.0, 261.6, 329.6)),
                          ("g", "G:maj", (98.0, 196.0, 246.9, 293.7))):
        make_audio_file(lib / f"{name}.wav", "wav", seconds=4.0, tone_hz=hz)
        (lib / f"{name}.lab").write_text(f"0.0\t4.0\t{lab}\n")
    return lib


@pytest.fixture
def teachers(tmp_path, monkeypatch):
    """Two tiny random students registered as the teachers ``tiny-a`` and ``tiny-b``."""
    d = register_tiny_students(tmp_path / "models", monkeypatch)
    torch.set_num_threads(1)
    return d


@pytest.mark.slow
def test_ensemble_distill_end_to_end(library, teachers, tmp_path, capsys):
    cache_dir = tmp_path / "cache"
    assert cli.main(["distill", str(library), "--teacher", "tiny-a", "--teacher", "tiny-b",
                     "--teacher-weights", "0.6,0.4", "--teacher-combine", "geometric",
                     "--name", "ens", "--cache", str(cache_dir), "--steps", "2",
                     "--stage2-steps", "2", "--window", "32", "--batch-size", "2",
                     "--eval-every", "2", "--heldout", "0.34", "--speed-seconds", "0",
                     "--register-anyway", "-q"]) == 0
    card = registry.find_card("ens")
    prov = card.provenance
    a, b = Teacher("tiny-a"), Teacher("tiny-b")
    assert prov["teacher"] == "tiny-a+tiny-b" and prov["teacher_combine"] == "geometric"
    assert prov["teachers"] == [{"id": "tiny-a", "sha256": a.card.sha256, "weight": 0.6},
                                {"id": "tiny-b", "sha256": b.card.sha256, "weight": 0.4}]
    assert {"student", "teacher", "tiny-a", "tiny-b"} <= set(card.metrics["heldout_mir_eval"])
    ens = Ensemble([a, b], [0.6, 0.4], "geometric")
    with C.DatasetCache(cache_dir) as cache:
        ids = cache.track_ids()
        assert len(ids) == 3
        for tid in ids:
            la, lb = (np.asarray(cache.load(tid, t.stream), np.float32) for t in (a, b))
            assert cache.has(tid, a.aux_stream) and cache.has(tid, b.aux_stream)
            want = combine_logp([la, lb], [0.6, 0.4], "geometric").numpy()
            got = np.asarray(cache.load(tid, ens.stream), np.float32)
            assert got.shape == la.shape and np.allclose(got, want, atol=0.02)
            assert cache.load(tid, ens.aux_stream).shape == (len(la), 38)
    out = capsys.readouterr().err
    assert "tiny-a" in out and "tiny-b" in out        # each member's mir_eval row


def test_distill_refuses_mismatched_weights(library, teachers, tmp_path, capsys):
    assert cli.main(["distill", str(library), "--teacher", "tiny-a", "--teacher", "tiny-b",
                     "--teacher-weights", "1", "--name", "x", "--cache",
                     str(tmp_path / "c"), "-q"]) == 2
    assert "2 teachers" in capsys.readouterr().err


@pytest.mark.slow
def test_score_teachers_script(library, teachers, tmp_path, capsys):
    """training/score_teachers.py: each teacher alone, the ensemble under both rules;
    an ensemble of one teacher with itself scores as the teacher."""
    import json

    from training import score_teachers
    assert score_teachers.main([str(library), "--teacher", "tiny-a", "--teacher", "tiny-b",
                                "--weights", "3,1", "--cache", str(tmp_path / "c"),
                                "--json", "-q"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["tracks"] == 3
    assert list(res["scores"]) == ["tiny-a", "tiny-b", "mean(0.75:0.25)",
                                   "geometric(0.75:0.25)"]
    assert all(0 <= s["majmin"] <= 1 for s in res["scores"].values())
    with C.DatasetCache(tmp_path / "c") as cache:     # the cache a distill run reuses
        assert all(cache.has(t, Teacher("tiny-b").stream) for t in cache.track_ids())
    a = Teacher("tiny-a")
    with C.DatasetCache(tmp_path / "c") as cache:
        ids = cache.track_ids()
        assert score_teachers.score(cache, ids, [a, a], [0.5, 0.5], "geometric") == \
            score_teachers.score(cache, ids, [a], [1.0], "mean") == res["scores"]["tiny-a"]


def test_distill_combines_teachers_by_the_geometric_mean_unless_told():
    """The rule chosen on validation (training/README.md) is the default."""
    args = cli.build_parser().parse_args(["distill", "lib", "--name", "m", "--teacher", "a",
                                          "--teacher", "b"])
    assert args.teacher_combine == "geometric"
    args = cli.build_parser().parse_args(["distill", "lib", "--name", "m", "--teacher", "a",
                                          "--teacher", "b", "--teacher-combine", "mean"])
    assert args.teacher_combine == "mean"
