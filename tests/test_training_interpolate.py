"""training/interpolate.py: weight interpolation of two students of one network."""

from __future__ import annotations

import pytest
import torch

from model_zoo import registry
from model_zoo.student import ChordStudent
from tests.model_fixtures import TINY_STUDENT, register_tiny_students
from training import interpolate


def _models(tmp_path, monkeypatch):
    return register_tiny_students(tmp_path / "models", monkeypatch, ("a", "b"))


def test_weights_are_the_weighted_sum(tmp_path, monkeypatch):
    d = _models(tmp_path, monkeypatch)
    assert interpolate.main(["a", "b", "--alpha", "0.25", "--name", "mix"]) == 0
    sa, sb, sm = (registry.load_model(m)[1].state_dict() for m in ("a", "b", "mix"))
    floats = [k for k, v in sm.items() if v.is_floating_point()]
    assert floats and any(not torch.equal(sa[k], sb[k]) for k in floats)
    for k in floats:
        assert torch.allclose(sm[k], 0.25 * sa[k] + 0.75 * sb[k], atol=1e-6)
    card = registry.find_card("mix")
    assert card.provenance["alpha"] == 0.25
    assert card.provenance["a"]["sha256"] == registry.find_card("a").sha256
    assert card.features == registry.find_card("b").features and card.directory == d
    interpolate.main(["a", "b", "--alpha", "0", "--name", "same-as-b"])
    sz = registry.load_model("same-as-b")[1].state_dict()
    assert all(torch.equal(sz[k], sb[k]) for k in sb)


def test_different_networks_and_bad_alpha_are_refused(tmp_path, monkeypatch, capsys):
    d = _models(tmp_path, monkeypatch)
    registry.save_model(ChordStudent(**{**TINY_STUDENT, "dim": 8}).eval(), "small",
                        task="chord", features=ChordStudent.FEATURES, directory=d)
    assert interpolate.main(["a", "small", "--alpha", "0.5", "--name", "x"]) == 2
    assert "not the same network" in capsys.readouterr().err
    assert interpolate.main(["a", "b", "--alpha", "1.5", "--name", "x"]) == 2
    assert "alpha" in capsys.readouterr().err
    assert not (d / "x.json").exists()


@pytest.mark.parametrize("growth, block, inner, outer", [
    ({"frame_blocks": 1, "frame_mult": 2}, "frame.0", "up", "down"),
    ({"dilations": TINY_STUDENT["dilations"] + [8]}, "temporal.2", "conv", "mix"),
])
def test_a_student_grown_by_blocks_mixes_with_its_init(tmp_path, monkeypatch,
                                                       growth, block, inner, outer):
    """A = B + blocks (per-frame or appended dilated ones): B counts as A with those
    blocks at the identity, so the mix keeps A's blocks with their output layers
    scaled by alpha and mixes the other weights as usual; its card is A's network."""
    d = _models(tmp_path, monkeypatch)
    torch.manual_seed(3)
    grown = ChordStudent(**{**TINY_STUDENT, **growth})
    for p in grown.parameters():
        torch.nn.init.normal_(p, std=0.1)
    registry.save_model(grown.eval(), "g", task="chord", features=ChordStudent.FEATURES,
                        directory=d)
    assert interpolate.main(["g", "b", "--alpha", "0.4", "--name", "gmix"]) == 0
    sg, sb = (registry.load_model(m)[1].state_dict() for m in ("g", "b"))
    card, mix = registry.load_model("gmix")
    sm = mix.state_dict()
    assert card.config == registry.find_card("g").config
    torch.testing.assert_close(sm[f"{block}.{outer}.weight"], 0.4 * sg[f"{block}.{outer}.weight"])
    torch.testing.assert_close(sm[f"{block}.{inner}.weight"], sg[f"{block}.{inner}.weight"])
    torch.testing.assert_close(sm["embed.weight"],
                               0.4 * sg["embed.weight"] + 0.6 * sb["embed.weight"])
    assert interpolate.main(["b", "g", "--alpha", "0.4", "--name", "x"]) == 2
