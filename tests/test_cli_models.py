import pytest

from model_zoo import registry
from tagger import cli


def test_import_and_list(crema_h5, skey_pt, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(registry.ENV_MODEL_DIR, str(tmp_path))
    assert cli.main(["models", "import", "crema", str(crema_h5)]) == 0
    assert cli.main(["models", "import", "skey", str(skey_pt), "--name", "skey-official"]) == 0
    out = capsys.readouterr().out
    assert "imported" in out and "'crema'" in out and "'skey-official'" in out
    assert cli.main(["models", "list"]) == 0
    listing = capsys.readouterr().out
    assert "crema" in listing and "skey-official" in listing and "526,889" in listing
    assert (tmp_path / "crema.safetensors").exists()


def test_import_error_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(registry.ENV_MODEL_DIR, str(tmp_path))
    bad = tmp_path / "x.pt"
    bad.write_bytes(b"nope")
    assert cli.main(["models", "import", "skey", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("keychords: error:") and str(bad) in err and "\n" not in err


def test_version(capsys):
    from importlib.metadata import version
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"keychords {version('beets-keychords')}"
