import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model_zoo import registry
from model_zoo.fileio import TMP_SUFFIX
from model_zoo.skey import ChromaNet, FEATURES

REPO = Path(__file__).resolve().parent.parent


def _save(tmp_path, model_id="k1", **kw):
    torch.manual_seed(0)
    net = ChromaNet()
    return net, registry.save_model(net, model_id, task="key", features=FEATURES,
                                    directory=tmp_path, **kw)


def test_round_trip(tmp_path):
    net, card = _save(tmp_path, metrics={"mirex": 0.5})
    data = json.loads(card.card_path.read_text())
    assert data["sha256"] == card.sha256 and data["metrics"] == {"mirex": 0.5}
    assert data["parameters"] == 47_284
    loaded_card, loaded = registry.load_model(card.card_path)
    x = torch.rand(2, 1, 84, 200)
    net.eval()
    assert torch.equal(net(x)["key"], loaded(x)["key"])
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*" + TMP_SUFFIX))


def test_user_models_are_listed_and_found(tmp_path, monkeypatch):
    monkeypatch.setenv(registry.ENV_MODEL_DIR, str(tmp_path))
    _save(tmp_path, "mine", default=True)
    ids = [c.id for c in registry.list_models()]
    assert "mine" in ids
    assert registry.find_card("mine").directory == tmp_path
    assert [c.id for c in registry.list_models("chord") if c.id == "mine"] == []
    with pytest.raises(registry.ModelError, match="no model named 'nope'"):
        registry.find_card("nope")


def test_damaged_weights_are_refused(tmp_path):
    _, card = _save(tmp_path)
    data = bytearray(card.weights_path.read_bytes())
    data[-1] ^= 0xFF
    card.weights_path.write_bytes(bytes(data))
    with pytest.raises(registry.ModelError, match="sha256 mismatch") as e:
        registry.load_model(card.card_path)
    assert str(card.weights_path) in str(e.value) and "\n" not in str(e.value)


def test_truncated_and_missing_weights(tmp_path):
    _, card = _save(tmp_path)
    raw = card.weights_path.read_bytes()
    card.weights_path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(registry.ModelError, match="sha256 mismatch"):
        registry.load_model(card.card_path)
    card.weights_path.unlink()
    with pytest.raises(registry.ModelError, match="weights file missing"):
        registry.load_model(card.card_path)


def test_unreadable_card(tmp_path):
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(registry.ModelError, match="broken.json"):
        registry.read_card(tmp_path / "broken.json")


def test_weights_of_another_architecture(tmp_path):
    _, card = _save(tmp_path)
    data = json.loads(card.card_path.read_text())
    data["config"]["channels"] = [2, 3, 40, 40, 30, 10, 4]
    card.card_path.write_text(json.dumps(data))
    with pytest.raises(registry.ModelError, match="do not fit"):
        registry.load_model(card.card_path)


def test_invalid_ids(tmp_path):
    with pytest.raises(registry.ModelError, match="invalid model id"):
        _save(tmp_path, "../evil")


def test_registry_and_importers_do_not_import_torch():
    code = ("import sys, model_zoo, model_zoo.registry, model_zoo.importers; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_every_architecture_resolves():
    for name, where in registry.ARCHITECTURES.items():
        if not where.startswith("model_zoo."):   # tests register tiny ones of their own
            continue
        cls = registry.architecture_class(name)
        assert registry.architecture_name(cls) == name
    with pytest.raises(registry.ModelError, match="unknown architecture 'nope'"):
        registry.architecture_class("nope")


def test_valid_model_id():
    assert registry.valid_model_id("kc-chords-1.0_b")
    assert not registry.valid_model_id("") and not registry.valid_model_id("-x")
    assert not registry.valid_model_id("a/b") and not registry.valid_model_id("a" * 65)


def test_every_architecture_declares_how_it_runs_over_a_track():
    """The engine reads these declarations instead of probing the network."""
    for name, where in registry.ARCHITECTURES.items():
        if not where.startswith("model_zoo."):   # tests register tiny ones of their own
            continue
        cls = registry.architecture_class(name)
        assert cls.task in ("chord", "key"), name
        assert isinstance(cls.batches_tracks, bool), name
        assert cls.batches_tracks == hasattr(cls, "forward_many"), name
        if cls.task == "chord":
            assert callable(getattr(cls, "receptive_field", None)), name
