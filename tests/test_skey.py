import pytest
import torch

from model_zoo import importers, keys, registry, skey
from model_zoo.features import FrontEnd


def _key_probs(net, audio):
    """S-KEY's published inference: peak-normalise the track, 15 s segments, mean."""
    y = torch.from_numpy(audio)
    y = y / y.abs().max()
    seg = int(skey.SEGMENT_SECONDS * 22050)
    n = len(y) // seg
    batch = y[: n * seg].reshape(n, seg) if n else y[None]
    fe = FrontEnd(**{**skey.FEATURES, "normalize_peak": False})
    with torch.inference_mode():
        return net(fe(batch))["key"].softmax(-1).mean(0)


def test_released_order_maps_to_ours():
    perm = importers.skey_released_permutation()
    assert sorted(perm) == list(range(24))
    # released index 0 is A major, 12 is B minor, 6 is D# major
    assert perm[keys.parse_key("A")] == 0
    assert perm[keys.parse_key("Bm")] == 12
    assert perm[keys.parse_key("Eb")] == 6
    assert perm[keys.parse_key("Bbm")] == 23


def test_imported_skey_says_e_flat_major(skey_pt, nocturne_22k, tmp_path):
    card = importers.import_skey(skey_pt, "skey-test", directory=tmp_path)
    assert card.parameters == 47_284 and card.task == "key"
    _, net = registry.load_model(card)
    probs = _key_probs(net, nocturne_22k)
    assert keys.long_key(int(probs.argmax()), flats=None) == "Eb major"
    assert float(probs.max()) > 0.3    # measured 0.366


def test_transposition_moves_the_key(skey_pt, nocturne_22k, tmp_path):
    """Shifting the CQT crop by k bins is a transposition by k semitones."""
    sd, _ = importers.read_skey_checkpoint(skey_pt)
    net = skey.ChromaNet(output_permutation=importers.skey_released_permutation())
    net.load_state_dict(sd)
    net.eval()
    y = torch.from_numpy(nocturne_22k[: 15 * 22050])[None]
    fe = FrontEnd(**{**skey.FEATURES, "crop_bins": None})
    full = fe(y)
    with torch.inference_mode():
        base = int(net(full[:, :, :84])["key"].argmax())
        up2 = int(net(full[:, :, 2:86])["key"].argmax())
    tonic, minor = keys.tonic_mode(base)
    assert keys.tonic_mode(up2) == ((tonic - 2) % 12, minor)


def test_import_rejects_other_files(tmp_path):
    bad = tmp_path / "skey.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(registry.ModelError, match="skey.pt"):
        importers.import_skey(bad, directory=tmp_path)
    other = tmp_path / "other.pt"
    torch.save({"model": {"w": torch.zeros(1)}}, other)
    with pytest.raises(registry.ModelError, match="not an S-KEY checkpoint"):
        importers.import_skey(other, directory=tmp_path)


def test_chromanet_shapes_and_training_mode():
    net = skey.ChromaNet()
    x = torch.rand(3, 1, 84, 646)
    assert net(x)["key"].shape == (3, 24)
    net.train()
    out = net(x)["key"]
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())
