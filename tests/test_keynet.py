"""keynet (MusicalKeyCNN's keynet.pt): import, parity with its own forward pass,
our 22.05 kHz front end against its librosa one, and the engine."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model_zoo import keynet, keys, registry
from model_zoo.features import FrontEnd
from tagger import notation

# SPEC.md's class table, index by index.
SPEC_TABLE = ["G#m", "D#m", "A#m", "Fm", "Cm", "Gm", "Dm", "Am", "Em", "Bm", "F#m", "C#m",
              "B", "F#", "C#", "G#", "D#", "A#", "F", "C", "G", "D", "A", "E"]


@pytest.fixture(scope="module")
def raw_state(keynet_pt):
    return torch.load(keynet_pt, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def imported(keynet_pt, tmp_path_factory):
    from model_zoo.importers import import_keynet
    card = import_keynet(keynet_pt, directory=tmp_path_factory.mktemp("keynet"))
    return registry.load_model(card)


@pytest.fixture(scope="module")
def nocturne_44k_librosa(nocturne_mp3):
    librosa = pytest.importorskip("librosa")
    y, _ = librosa.load(nocturne_mp3, sr=44100, mono=True)
    return y


def reference_logits(sd: dict, x: torch.Tensor) -> torch.Tensor:
    """keynet's forward pass straight from SPEC.md, in its own (Camelot) order."""
    def block(x, n):
        w = sd[f"conv{n}.conv.weight"]
        x = F.conv2d(x, w, padding=w.shape[-1] // 2)
        x = F.batch_norm(x, sd[f"conv{n}.bn.running_mean"], sd[f"conv{n}.bn.running_var"],
                         sd[f"conv{n}.bn.weight"], sd[f"conv{n}.bn.bias"], False, 0.0, 1e-5)
        return F.elu(x)
    for n in range(1, 9):
        x = block(x, n)
        if n in (2, 4, 6):
            x = F.max_pool2d(x, 2)
    return block(x, 9).mean(dim=(2, 3))


def camelot_to_ours(logits: torch.Tensor) -> torch.Tensor:
    """Reorder Camelot-order logits (i < 12: (i+1)A, else (i-11)B) into ours."""
    native = [notation.from_camelot(i % 12 + 1, "A" if i < 12 else "B") for i in range(24)]
    return logits[:, [native.index(k) for k in range(24)]]


def librosa_features(y: np.ndarray) -> torch.Tensor:
    """keynet's own front end (MusicalKeyCNN predict_keys.py) on 44.1 kHz audio."""
    import librosa
    c = np.abs(librosa.cqt(y, sr=44100, hop_length=8820, n_bins=105, bins_per_octave=24,
                           fmin=65))
    return torch.from_numpy(np.log1p(c)[:-2]).float()[None, None]


def test_camelot_order_is_specs_table():
    perm = keynet.camelot_permutation()
    assert sorted(perm) == list(range(24))
    for native, name in enumerate(SPEC_TABLE):
        assert perm[keys.parse_key(name)] == native
    # Camelot codes: native index i is (i+1)A (minor) or (i-11)B (major)
    for i in range(24):
        code = f"{i % 12 + 1}{'A' if i < 12 else 'B'}"
        assert perm[notation.parse_key_any(code)] == i
    assert perm[keys.parse_key("Eb")] == 16 and perm[keys.parse_key("Abm")] == 0


def test_imported_logits_equal_reference_forward(imported, raw_state):
    card, net = imported
    assert card.parameters == 462_788 and card.task == "key"
    assert card.license.startswith("MIT") and len(card.provenance["source_sha256"]) == 64
    x = torch.rand(2, 1, 103, 157, generator=torch.Generator().manual_seed(0)) * 2
    with torch.inference_mode():
        ours = net(x)["key"]
        ref = camelot_to_ours(reference_logits(raw_state, x))
    assert float((ours - ref).abs().max()) < 1e-4


@pytest.mark.slow
def test_same_logits_and_key_from_audio(imported, raw_state, nocturne_44k_librosa,
                                        nocturne_22k):
    """Reference: librosa's 44.1 kHz CQT + SPEC forward. Ours: the engine's
    decoder at 22.05 kHz + our torch CQT + the imported model."""
    card, net = imported
    lib = librosa_features(nocturne_44k_librosa)
    fe = FrontEnd(**card.features)
    feats = fe(torch.from_numpy(nocturne_22k))[:, :, :, : lib.shape[-1]]
    assert feats.shape == lib.shape
    diff = (feats - lib).abs()
    assert float(diff.mean()) < 5e-4 and float(diff.max()) < 0.05   # measured 5e-5, 0.014
    with torch.inference_mode():
        ref = camelot_to_ours(reference_logits(raw_state, lib))
        assert float((net(lib)["key"] - ref).abs().max()) < 1e-4
        ours = net(feats)["key"]
    # keynet (trained on EDM) hears the relative minor of this Eb major nocturne
    assert keys.long_key(int(ref.argmax()), flats=None) == "C minor"
    assert int(ours.argmax()) == int(ref.argmax())
    assert float((ours.softmax(-1) - ref.softmax(-1)).abs().max()) < 0.02


def _cadence(tonic: int, minor: bool, sr: int = 22050) -> np.ndarray:
    """Eight I-IV-V-I cadences (1 s chords of four harmonics) in ``tonic`` (MIDI)."""
    third = 3 if minor else 4
    chords = [[tonic - 12, tonic, tonic + third, tonic + 7],
              [tonic - 7, tonic + 5, tonic + 5 + third, tonic + 12],
              [tonic - 5, tonic + 7, tonic + 11, tonic + 14],
              [tonic - 12, tonic, tonic + third, tonic + 7]] * 8
    t = np.arange(sr) / sr
    out = [sum(np.sin(2 * np.pi * 440 * 2 ** ((m - 69) / 12) * h * t) / h
               for m in c for h in (1, 2, 3, 4)) * np.hanning(sr) for c in chords]
    return (0.05 * np.concatenate(out)).astype(np.float32)


@pytest.mark.parametrize("tonic,minor", [(63, False), (60, False), (57, True), (63, True)])
def test_cadences_give_their_keys(imported, tonic, minor):
    """The permuted output answers in our order from audio: Eb, C, Am, Ebm."""
    card, net = imported
    feats = FrontEnd(**card.features)(torch.from_numpy(_cadence(tonic, minor)))
    with torch.inference_mode():
        got = int(net(feats)["key"].argmax())
    assert got == keys.key_index(tonic % 12, minor)


def test_padded_batch_equals_one_by_one(imported):
    _, net = imported
    g = torch.Generator().manual_seed(1)
    clips = [torch.rand(1, 1, 103, n, generator=g) for n in (77, 40, 16)]
    with torch.inference_mode():
        many = net.forward_many(clips)
        for c, m in zip(clips, many):
            assert torch.allclose(m["key"], net(c)["key"], atol=1e-5)


def test_import_rejects_other_files(tmp_path):
    from model_zoo.importers import import_keynet
    bad = tmp_path / "keynet.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(registry.ModelError, match="not a readable PyTorch state dict"):
        import_keynet(bad, directory=tmp_path)
    other = tmp_path / "other.pt"
    torch.save({"w": torch.zeros(1)}, other)
    with pytest.raises(registry.ModelError, match="not a keynet checkpoint"):
        import_keynet(other, directory=tmp_path)
    with pytest.raises(registry.ModelError, match="no such file"):
        import_keynet(tmp_path / "missing.pt", directory=tmp_path)


def test_keynet_trains():
    net = keynet.KeyNet()
    net.train()
    out = net(torch.rand(2, 1, 103, 32))["key"]
    assert out.shape == (2, 24)
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())


@pytest.mark.slow
def test_engine_batches_whole_tracks(keynet_pt, nocturne_22k):
    """Two tracks of different lengths in one batch give what each gives alone,
    which is the model's whole-track answer."""
    from model_zoo.importers import import_keynet
    from tagger.engine import Analyzer
    import_keynet(keynet_pt)                      # into this test's user model dir
    an = Analyzer(None, "keynet", device="cpu", batch_size=4, with_chords=False)
    audio = [nocturne_22k[: 22050 * 20], _cadence(60, False)]
    tracks = [an.start(str(i)) for i in range(len(audio))]
    for t, a in zip(tracks, audio):
        an.feed(t, a)
    together = an.analyse([an.finish(t) for t in tracks])
    fe = FrontEnd(**an.key_card.features)
    for a, r in zip(audio, together):
        alone = an.analyse_audio("alone", a)
        assert r.key_index == alone.key_index
        np.testing.assert_allclose(r.key_probs, alone.key_probs, atol=1e-5)
        with torch.inference_mode():
            direct = an.key_net(fe(torch.from_numpy(a)))["key"][0].softmax(-1)
        np.testing.assert_allclose(r.key_probs, direct.numpy(), atol=1e-4)
    assert keys.short_key(together[1].key_index) == "C"


@pytest.mark.slow
def test_cli_import_and_show(keynet_pt, nocturne_mp3, capsys):
    from tagger import cli
    assert cli.main(["models", "import", "keynet", str(keynet_pt)]) == 0
    out = capsys.readouterr().out
    assert "'keynet'" in out and "462,788" in out
    card = registry.find_card("keynet")
    assert not card.builtin and card.extra["segment_seconds"] is None
    assert card.provenance["source_sha256"] == (
        "fc92072f1b9b19552ce3b74a9c8ce0cecb97633a12ae524ac0d93c05800e354e")
    assert cli.main(["show", str(nocturne_mp3), "--key-model", "keynet",
                     "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "C minor" in out and "key: keynet" in out
