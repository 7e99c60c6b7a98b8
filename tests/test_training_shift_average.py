"""training/shift_average.py: a student's weights registered with shift averaging."""

from __future__ import annotations

import torch

from model_zoo import registry
from tests.model_fixtures import register_tiny_students
from training import shift_average


def test_same_weights_with_the_shifts_in_the_config(tmp_path, monkeypatch):
    register_tiny_students(tmp_path / "models", monkeypatch, ("a",))
    assert shift_average.main(["a", "--name", "a-tta"]) == 0
    assert shift_average.main(["a", "--shifts=-2,0,2", "--name", "a-tta2"]) == 0
    card, net = registry.load_model("a-tta")
    src_card, src = registry.load_model("a")
    assert card.config == {**src_card.config, "shift_average": [-1, 0, 1]}
    assert card.provenance["source"] == {"id": "a", "sha256": src_card.sha256}
    assert registry.find_card("a-tta2").config["shift_average"] == [-2, 0, 2]
    sa, sb = src.state_dict(), net.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    x = torch.rand(1, 1, 216, 30) * 3
    with torch.no_grad():
        assert not torch.allclose(net(x)["chord"].softmax(-1), src(x)["chord"].softmax(-1))


def test_not_a_student_and_bad_shifts_are_refused(tmp_path, monkeypatch, capsys):
    from model_zoo.keynet import FEATURES, KeyNet
    d = register_tiny_students(tmp_path / "models", monkeypatch, ("a",))
    registry.save_model(KeyNet(n_filters=2).eval(), "key", task="key",
                        features=dict(FEATURES), directory=d)
    assert shift_average.main(["key", "--name", "x"]) == 2
    assert "not a chord student" in capsys.readouterr().err
    assert shift_average.main(["a", "--shifts=1,1", "--name", "x"]) == 2
    assert "twice" in capsys.readouterr().err
