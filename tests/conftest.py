import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("KEYCHORDS_SHARED", REPO.parent / "shared"))
CREMA_DIR = SHARED / "anchors" / "crema"
SKEY_DIR = SHARED / "anchors" / "skey"
KEYNET_DIR = SHARED / "anchors" / "keynet"
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
def keynet_pt() -> Path:
    return _need(KEYNET_DIR / "keynet.pt")


@pytest.fixture(scope="session")
def nocturne_mp3() -> Path:
    return _need(NOCTURNE_MP3)


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


@pytest.fixture(scope="session")
def render_pop909_song(tmp_path_factory):
    """A function: POP909 song id -> ``{".flac", ".lab", ".key": path}`` of its
    variant 0 (seed 0) rendered as training/render_pop909.py does (skips
    without mido, fluidsynth, the soundfont or the song); each song once per run."""
    import shutil
    done: dict[str, dict] = {}

    def render(song: str) -> dict:
        if song in done:
            return done[song]
        pytest.importorskip("mido")
        if shutil.which("fluidsynth") is None:
            pytest.skip("fluidsynth not installed (bash shared/data/get_soundfonts.sh)")
        from training import render_pop909 as R
        pop909 = _need(SHARED / "data" / "pop909")
        _need(pop909 / song)
        choice = R.choose_variant(song, 0, 0)
        if not (R.SF2_DIR / R.SOUNDFONTS[choice["soundfont"]][0]).exists():
            pytest.skip("soundfont missing (bash shared/data/get_soundfonts.sh)")
        out = tmp_path_factory.mktemp("pop909")
        meta = R.render_one(str(pop909), str(out), song, 0, 0)
        done[song] = {k: out / meta["split"] / f"{meta['stem']}{k}"
                      for k in (".flac", ".lab", ".key")}
        return done[song]
    return render


@pytest.fixture
def one_thread():
    """torch on one thread for the test (small tensors; immune to a busy machine)."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _isolated_model_dir(tmp_path, monkeypatch):
    """Every test gets its own user model directory."""
    monkeypatch.setenv("KEYCHORDS_MODEL_DIR", str(tmp_path / "models"))
