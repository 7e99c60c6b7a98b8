import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("KEYCHORDS_SHARED", REPO.parent / "shared"))
CREMA_DIR = SHARED / "anchors" / "crema"
SKEY_DIR = SHARED / "anchors" / "skey"
NOCTURNE_MP3 = SKEY_DIR / "nocturne_n02_in_e-flat_major.mp3"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"reference file not available: {path}")
    return path


@pytest.fixture(scope="session")
def crema_h5() -> Path:
    return _need(CREMA_DIR / "model.h5")


@pytest.fixture(scope="session")
def crema_reference():
    import numpy as np
    return np.load(_need(CREMA_DIR / "reference" / "nocturne.npz"))


@pytest.fixture(scope="session")
def skey_pt() -> Path:
    return _need(SKEY_DIR / "skey.pt")


@pytest.fixture(scope="session")
def nocturne_22k():
    from tagger.decode import load_audio
    return load_audio(_need(NOCTURNE_MP3), 22050)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, crema_h5, skey_pt) -> Path:
    """A model directory with the crema and S-KEY anchors imported (once per run)."""
    from model_zoo import importers
    d = tmp_path_factory.mktemp("models")
    importers.import_crema(crema_h5, directory=d)
    importers.import_skey(skey_pt, directory=d)
    return d


@pytest.fixture(autouse=True)
def _isolated_model_dir(tmp_path, monkeypatch):
    """Every test gets its own user model directory."""
    monkeypatch.setenv("KEYCHORDS_MODEL_DIR", str(tmp_path / "models"))
