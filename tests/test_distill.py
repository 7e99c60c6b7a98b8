"""Distillation end to end on a few generated clips: the cache (duplicates,
labels, kill -9 and resume), training resume, the distill / train-key / eval
commands, and registration usable by ``keychords tag``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from model_zoo import registry, vocab
from model_zoo.features import FrontEnd
from model_zoo.fileio import TMP_SUFFIX
from model_zoo.student import ChordStudent
from tagger import cli
from tagger.distill import cache as C
from tagger.distill.labels import LabelIndex
from tagger.distill.teacher import Teacher, run_teacher
from tagger.distill.train_chords import ChordTrainConfig, train_chords
from tagger.distill.train_key import KeyTrainConfig, train_key
from tests.audio_fixtures import make_audio_file
from tests.model_fixtures import save_tiny_student

REPO = Path(__file__).resolve().parent.parent


def _hz(midi):
    return 440.0 * 2 ** ((midi - 69) / 12)


CHORDS = {  # name -> (lab label, MIDI notes)
    "c_major": ("C:maj", (48, 60, 64, 67)),
    "a_minor": ("A:min", (45, 57, 60, 64)),
    "f_major": ("F:maj", (41, 57, 60, 65)),
    "g_major": ("G:maj", (43, 55, 59, 62)),
}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """Four 6 s chord clips with .lab and .key files, a duplicate, a too-short file."""
    lib = tmp_path_factory.mktemp("lib")
    for name, (lab, notes) in CHORDS.items():
        make_audio_file(lib / f"{name}.wav", "wav", seconds=6.0,
                        tone_hz=tuple(_hz(m) for m in notes))
        (lib / f"{name}.lab").write_text(f"0.0\t6.0\t{lab}\n")
        tonic = lab.split(":")[0]
        (lib / f"{name}.key").write_text(f"{tonic} {'minor' if 'min' in lab else 'major'}\n")
    shutil.copy(lib / "c_major.wav", lib / "c_major_copy.wav")
    make_audio_file(lib / "short.wav", "wav", seconds=1.0)
    return lib


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny randomly initialised student registered as the teacher ``tiny``."""
    return save_tiny_student(tmp_path_factory.mktemp("models"))


@pytest.fixture
def env(model_dir, monkeypatch):
    monkeypatch.setenv("KEYCHORDS_MODEL_DIR", str(model_dir))
    return model_dir


@pytest.fixture(scope="module")
def built(library, model_dir, tmp_path_factory):
    """A cache of the library with the tiny teacher's posteriors."""
    old = os.environ.get("KEYCHORDS_MODEL_DIR")
    os.environ["KEYCHORDS_MODEL_DIR"] = str(model_dir)
    try:
        root = tmp_path_factory.mktemp("cache")
        from tagger.scan import scan
        files = scan([library])
        teacher = Teacher("tiny")
        with C.DatasetCache(root) as cache:
            rep = C.build_features(cache, files, [C.student_stream()], progress=False,
                                   label_index=LabelIndex(), log=lambda m: None)
            run_teacher(cache, teacher, rep.track_ids, progress=False)
        return root, files, rep, teacher.stream
    finally:
        if old is None:
            os.environ.pop("KEYCHORDS_MODEL_DIR", None)
        else:
            os.environ["KEYCHORDS_MODEL_DIR"] = old


# -- the cache ------------------------------------------------------------------------------

def test_cache_contents(built, library):
    root, files, rep, tstream = built
    assert rep.added == 4 and rep.duplicates == 1
    assert [Path(p).name for p, _ in rep.failed] == ["short.wav"]
    assert len(rep.track_ids) == 4
    with C.DatasetCache(root) as cache:
        assert cache.verify() == []
        src = cache.source(str(library / "c_major_copy.wav"))
        assert src[3] == "duplicate" and src[2] == cache.source(str(library / "c_major.wav"))[2]
        for tid in rep.track_ids:
            info = cache.track(tid)
            feats = cache.load(tid, C.student_stream().name)
            n = 1 + info.n_samples // 2048
            assert feats.shape == (n, C.STORED_STUDENT_BINS) and feats.dtype == np.float16
            assert cache.load(tid, tstream).shape == (n, 170)
            labels = cache.load(tid, "labels")
            want = vocab.label_to_index(CHORDS[Path(info.path).stem][0])
            assert labels.shape == (n,) and (labels[:-2] == want).all()
            assert info.key is not None and info.lab.endswith(".lab")


def test_student_stream_is_the_tagger_front_end(built, library):
    """The padded cached features at shift 0 are the tagger's (streamed) features."""
    from tagger.decode import stream_audio
    from tagger.streaming import StreamingMagnitude
    root, files, rep, _ = built
    fe = FrontEnd(**ChordStudent.FEATURES)
    sm = StreamingMagnitude(fe)
    for chunk in stream_audio(library / "a_minor.wav", 22050):
        sm.feed(chunk)
    ref = fe.scale(sm.finish()[None])[0, 0].T.numpy().astype(np.float16)
    with C.DatasetCache(root) as cache:
        tid = cache.source(str(library / "a_minor.wav"))[2]
        got = np.asarray(C.student_input(cache.load(tid, C.student_stream().name)))
    np.testing.assert_array_equal(got, ref)
    # a shift of s semitones is the clip transposed: a tone moves by 3 s bins
    fe = FrontEnd(**C.student_stream().features)
    t = np.arange(22050 * 2) / 22050
    tone = (0.3 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32)
    up = (0.3 * np.sin(2 * np.pi * 220.0 * 2 ** (2 / 12) * t)).astype(np.float32)
    pad = fe(torch.from_numpy(tone)[None])[0, 0, :C.STORED_STUDENT_BINS].T.numpy()
    pad_up = fe(torch.from_numpy(up)[None])[0, 0, :C.STORED_STUDENT_BINS].T.numpy()
    a = C.student_input(pad, 2)[20].argmax()
    b = C.student_input(pad_up, 0)[20].argmax()
    assert a == b == C.student_input(pad, 0)[20].argmax() + 6


def test_rebuild_is_a_no_op(built):
    root, files, _, _ = built
    with C.DatasetCache(root) as cache:
        before = {p: p.stat().st_mtime_ns for p in (root / "shards").rglob("*.npy")}
        rep = C.build_features(cache, files, [C.student_stream()], progress=False,
                               log=lambda m: None)
        assert rep.already == len(files) and rep.added == 0 and len(rep.track_ids) == 4
        after = {p: p.stat().st_mtime_ns for p in (root / "shards").rglob("*.npy")}
    assert before == after


@pytest.mark.slow
def test_kill_9_and_resume(env, tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    for i in range(5):
        make_audio_file(lib / f"t{i}.wav", "wav", seconds=4.0,
                        tone_hz=(_hz(60 + i), _hz(64 + i), _hz(67 + i)))
    root = tmp_path / "cache"
    envv = dict(os.environ, KEYCHORDS_DISTILL_TEST_DELAY="0.7", PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tagger.cli", "distill", str(lib), "--teacher", "tiny",
         "--name", "killed", "--cache", str(root), "--cache-only", "-q", "--threads", "1"],
        cwd=REPO, env=envv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    n = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if (root / "index.sqlite").exists():
            try:
                con = sqlite3.connect(f"file:{root / 'index.sqlite'}?mode=ro", uri=True,
                                      timeout=1)
                n = con.execute("SELECT count(*) FROM tracks").fetchone()[0]
                con.close()
            except sqlite3.Error:
                n = 0
            if n >= 2:
                break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 2 <= n < 5
    with C.DatasetCache(root) as cache:
        assert cache.verify() == []
        assert not list((root / "shards").rglob(".*.tmp*"))
        assert not list((root / "shards").rglob(".*" + TMP_SUFFIX))
        done = cache.track_ids()
        assert 2 <= len(done) < 5
        mtimes = {p: p.stat().st_mtime_ns for p in (root / "shards").rglob("*.npy")}
    # resume with the same command: finished tracks are not redone
    assert cli.main(["distill", str(lib), "--teacher", "tiny", "--name", "killed", "--cache",
                     str(root), "--cache-only", "-q"]) == 0
    with C.DatasetCache(root) as cache:
        assert cache.verify() == [] and len(cache.track_ids()) == 5
        for p, m in mtimes.items():
            assert p.stat().st_mtime_ns == m
        assert all(cache.has(t, Teacher("tiny").stream) for t in cache.track_ids())


def test_crema_teacher_streams(crema_h5, library, tmp_path, monkeypatch):
    from model_zoo import importers
    monkeypatch.setenv("KEYCHORDS_MODEL_DIR", str(tmp_path / "m"))
    importers.import_crema(crema_h5, directory=tmp_path / "m")
    teacher = Teacher("crema")
    assert teacher.input_stream is not None and teacher.input_stream.kind == "tin"
    files = [str(library / "c_major.wav"), str(library / "a_minor.wav")]
    with C.DatasetCache(tmp_path / "cache") as cache:
        rep = C.build_features(cache, files, [C.student_stream()] + teacher.feature_streams(),
                               progress=False, log=lambda m: None)
        run_teacher(cache, teacher, rep.track_ids, progress=False)
        for path, (lab, _) in zip(files, (CHORDS["c_major"], CHORDS["a_minor"])):
            tid = cache.source(path)[2]
            x = cache.load(tid, teacher.input_stream.name)
            assert x.shape[1:] == (2, 216) and x.dtype == np.float16 and x.max() <= 0
            logp = np.asarray(cache.load(tid, teacher.stream), np.float32)
            assert np.allclose(np.exp(logp).sum(1), 1.0, atol=2e-2)
            assert cache.load(tid, teacher.aux_stream).shape == (len(logp), 38)
            top = np.bincount(logp.argmax(1)).argmax()
            assert vocab.simplify_majmin(int(top)) == vocab.label_to_index(lab)


# -- training --------------------------------------------------------------------------------

def _cfg(**kw):
    base = dict(window=32, batch_size=2, max_steps=6, warmup=2, eval_every=3,
                checkpoint_every=100, eval_frames=200, patience=10)
    base.update(kw)
    return ChordTrainConfig(**base)


@pytest.mark.parametrize("stage, loss", [(1, "focal"), (1, "soft"), (2, "focal")])
def test_training_resume_is_identical(built, tmp_path, stage, loss):
    root, _, rep, tstream = built
    with C.DatasetCache(root) as cache:
        train, held = C.split_tracks(cache, rep.track_ids, 0.25)
        assert held and train and not set(held) & set(train)
        cfg = _cfg(stage=stage, loss=loss)
        kw = dict(teacher=tstream, progress=False, log=lambda m: None)
        full = train_chords(cache, train, held, cfg, tmp_path / "a", **kw)
        part = train_chords(cache, train, held, cfg, tmp_path / "b", stop_after=3, **kw)
        assert part.steps == 3
        resumed = train_chords(cache, train, held, cfg, tmp_path / "b", **kw)
        assert resumed.resumed_from == 3 and resumed.steps == full.steps == 6
    ca = torch.load(tmp_path / "a" / "ckpt.pt", weights_only=True)
    cb = torch.load(tmp_path / "b" / "ckpt.pt", weights_only=True)
    for k, v in ca["model"].items():
        assert torch.equal(v, cb["model"][k]), k
    for k, v in full.net.state_dict().items():
        assert torch.equal(v, resumed.net.state_dict()[k]), k
    assert ca["history"] == cb["history"]
    metric = "gt_accuracy" if stage == 2 else "agreement"
    assert all(metric in h for h in ca["history"])


def test_stage2_rehearsal_trains_on_unlabelled_tracks_and_resumes(library, env, tmp_path,
                                                                  monkeypatch):
    """Stage 2 with rehearsal mixes windows of tracks without .lab files into each batch
    (stage-1 objective); it changes the result and resumes bit-exactly."""
    from tagger.distill import train_chords as T
    lib = tmp_path / "lib"
    lib.mkdir()
    for name in ("c_major", "a_minor"):          # labelled
        shutil.copy(library / f"{name}.wav", lib)
        shutil.copy(library / f"{name}.lab", lib)
    for name in ("f_major", "g_major"):          # unlabelled
        shutil.copy(library / f"{name}.wav", lib / f"u_{name}.wav")
    from tagger.scan import scan
    with C.DatasetCache(tmp_path / "cache") as cache:
        rep = C.build_features(cache, scan([lib]), [C.student_stream()], progress=False,
                               label_index=LabelIndex(), log=lambda m: None)
        teacher = Teacher("tiny")
        run_teacher(cache, teacher, rep.track_ids, progress=False)
        ids = rep.track_ids
        assert sum(cache.has(t, "labels") for t in ids) == 2
        drawn = []
        real_sample = T.WindowSampler.sample

        def sample(self, n):
            drawn.extend([self.labels] * n)
            return real_sample(self, n)
        monkeypatch.setattr(T.WindowSampler, "sample", sample)
        kw = dict(teacher=teacher.stream, progress=False, log=lambda m: None)
        cfg = _cfg(stage=2, loss="focal", rehearsal=0.5, batch_size=4, eval_every=100)
        full = train_chords(cache, ids, [], cfg, tmp_path / "a", **kw)
        assert drawn.count(False) == drawn.count(True) == 2 * 6    # half of every batch
        train_chords(cache, ids, [], cfg, tmp_path / "b", stop_after=3, **kw)
        resumed = train_chords(cache, ids, [], cfg, tmp_path / "b", **kw)
        plain = train_chords(cache, ids, [], _cfg(stage=2, loss="focal", batch_size=4,
                                                  eval_every=100), tmp_path / "c", **kw)
    for k, v in full.net.state_dict().items():
        assert torch.equal(v, resumed.net.state_dict()[k]), k
    assert any(not torch.equal(v, plain.net.state_dict()[k])
               for k, v in full.net.state_dict().items())


def test_key_labels_follow_the_crop():
    """A view cropped ``o`` bins up hears the key ``o`` semitones down (native order)."""
    from model_zoo import keys
    from tagger.distill.train_key import native_label, natural_native_to_ours
    n2o = natural_native_to_ours()
    for k in range(24):
        tonic, minor = keys.tonic_mode(k)
        assert n2o[native_label(k, 0)] == k
        for o in (1, 5, 15):
            assert n2o[native_label(k, o)] == keys.key_index((tonic - o) % 12, minor)
    assert native_label(None, 3) == -1


@pytest.mark.slow
def test_key_training_resume_is_identical(library, tmp_path):
    from tagger.scan import scan
    with C.DatasetCache(tmp_path / "cache") as cache:
        rep = C.build_features(cache, scan([library]), [C.skey_stream()], progress=False,
                               label_index=LabelIndex(), log=lambda m: None)
        assert all(cache.track(t).key is not None for t in rep.track_ids)
        arr = cache.load(rep.track_ids[0], C.skey_stream().name)
        assert arr.shape[1] == 99 and arr.dtype == np.float16
        train, held = C.split_tracks(cache, rep.track_ids, 0.25)
        cfg = KeyTrainConfig(batch_size=1, max_steps=4, warmup=1, eval_every=2,
                             checkpoint_every=100, eval_items=2)
        kw = dict(progress=False, log=lambda m: None)
        full = train_key(cache, train, held, cfg, tmp_path / "a", **kw)
        train_key(cache, train, held, cfg, tmp_path / "b", stop_after=2, **kw)
        resumed = train_key(cache, train, held, cfg, tmp_path / "b", **kw)
    for k, v in full.net.state_dict().items():
        assert torch.equal(v, resumed.net.state_dict()[k]), k
    assert full.history == resumed.history and len(full.history) == 2
    # the clips have .key files: the supervised term is part of the objective, and
    # the held-out whole-track key score selects the weights
    assert all(h["sup"] > 0 for h in full.history)
    assert all(0.0 <= h["heldout_weighted"] <= 1.0 for h in full.history)
    scores = [h["heldout_weighted"] - 1e-3 * (h["pos"] + h["equi"] + h["sup"])
              for h in full.history]
    best = [h["step"] for h in full.history].index(full.best_step)
    assert max(scores) - scores[best] <= 1e-4 + 1e-5      # min_delta, rounding


def test_heldout_key_score_is_the_mirex_mean(library, tmp_path):
    """A model that always answers C major scores the MIREX rules on each label."""
    from model_zoo import keys
    from tagger.distill.train_key import heldout_key_score, natural_native_to_ours
    from tagger.scan import scan

    class AlwaysC(torch.nn.Module):
        def native_logits(self, x):
            logits = torch.zeros(x.shape[0], 24)
            logits[:, natural_native_to_ours().index(keys.key_index(0, False))] = 10.0
            return logits

    with C.DatasetCache(tmp_path / "cache") as cache:
        rep = C.build_features(cache, scan([library]), [C.skey_stream()], progress=False,
                               label_index=LabelIndex(), log=lambda m: None)
        by_key = {cache.track(t).key: t for t in rep.track_ids}
        c, a, f, g = (keys.key_index(t, m) for t, m in ((0, 0), (9, 1), (5, 0), (7, 0)))
        assert set(by_key) == {c, a, f, g}
        # C major is right for C, relative for A minor, a fifth above F, nothing for G
        assert heldout_key_score(AlwaysC(), cache, [by_key[c]]) == 1.0
        assert heldout_key_score(AlwaysC(), cache, [by_key[a], by_key[f], by_key[g]]) \
            == pytest.approx((0.3 + 0.5 + 0.0) / 3)


# -- the commands ------------------------------------------------------------------------------

@pytest.mark.slow
def test_distill_train_key_eval_and_tag(library, env, tmp_path, capsys):
    cache = tmp_path / "cache"
    common = ["--cache", str(cache), "-q", "--batch-size", "2", "--eval-every", "2",
              "--heldout", "0.25"]
    assert cli.main(["distill", str(library), "--teacher", "tiny", "--name", "mine",
                     "--steps", "3", "--stage2-steps", "2", "--window", "32",
                     "--speed-seconds", "2", "--register-anyway", *common]) == 0
    card = registry.find_card("mine")
    assert card.task == "chord" and card.architecture == "student"
    assert card.provenance["stages"] == [1, 2] and card.provenance["teacher"] == "tiny"
    m = card.metrics
    assert {"agreement", "gt_accuracy"} <= set(m["heldout"])
    assert set(m["heldout_mir_eval"]["student"]) >= {"root", "majmin", "mirex", "tetrads"}
    assert m["speed"]["network_x_realtime"] > 0
    report = json.loads((cache / "runs" / "mine" / "report.json").read_text())
    assert report["build"]["duplicates"] == 1 and report["build"]["failed"] == 1

    assert cli.main(["train-key", str(library), "--name", "mykey", "--architecture", "chromanet",
                     "--steps", "2",
                     "--batch-size", "1", "--eval-items", "2", "--speed-seconds", "0",
                     *common[:2], "-q", "--heldout", "0.25", "--register-anyway"]) == 0
    kcard = registry.find_card("mykey")
    assert kcard.task == "key" and sorted(kcard.config["output_permutation"]) == list(range(24))
    assert "calibration" in kcard.metrics and kcard.metrics["heldout_key"]["tracks"] >= 1
    capsys.readouterr()

    # usable at once by `keychords tag`
    code = cli.main(["tag", str(library / "c_major.wav"), "--chord-model", "mine",
                     "--key-model", "mykey", "--dry-run", "--json", "-q", "--workers", "0"])
    out = capsys.readouterr().out
    assert code == 0, out
    row = json.loads(out.splitlines()[0])
    assert row["status"] == "ok" and row["models"] == {"chord": "mine", "key": "mykey"}
    assert row["segments"]

    # side-by-side evaluation
    assert cli.main(["eval", str(library), "--chord-model", "mine", "--chord-model", "tiny",
                     "--key-model", "mykey", "--json", "-q"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["files"] == 4  # the copy and the short file have no .lab / .key
    assert set(res["chord"]) == {"mine", "tiny"} and res["chord"]["mine"]["tracks"] == 4
    assert 0.0 <= res["chord"]["mine"]["majmin"] <= 1.0
    assert res["key"]["mykey"]["tracks"] == 4
    assert cli.main(["eval", str(library), "--chord-model", "mine", "-q"]) == 0
    table = capsys.readouterr().out
    assert "majmin" in table and "mine" in table

    # agreement with a reference model on unlabelled audio: a model agrees with itself
    unlabelled = tmp_path / "unlabelled"
    unlabelled.mkdir()
    shutil.copy(library / "c_major.wav", unlabelled / "a.wav")
    shutil.copy(library / "a_minor.wav", unlabelled / "b.wav")
    assert cli.main(["eval", str(unlabelled), "--reference-model", "tiny", "--chord-model",
                     "tiny", "--chord-model", "mine", "--json", "-q"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["files"] == 2 and res["reference"] == "tiny"
    assert res["chord"]["tiny"]["tracks"] == 2
    assert all(res["chord"]["tiny"][k] == 1.0 for k in ("root", "majmin", "tetrads"))
    assert cli.main(["eval", str(unlabelled), "--reference-model", "tiny",
                     "--key-model", "mykey", "-q"]) == 2      # a reference needs chord models


def test_model_names_and_init(library, env, tmp_path, capsys):
    """New models cannot take a built-in id; --init takes a model of the right kind,
    or 'default' for the shipped one."""
    common = ["--cache", str(tmp_path / "cache"), "-q", "--speed-seconds", "0"]
    assert cli.main(["distill", str(library), "--teacher", "tiny", "--name", "kc-chord-v1",
                     *common]) == 2
    assert cli.main(["train-key", str(library), "--name", "kc-key-v1", *common]) == 2
    assert "built-in model" in capsys.readouterr().err
    assert cli.main(["train-key", str(library), "--name", "k", "--init", "kc-chord-v1",
                     *common]) == 2
    assert cli.main(["distill", str(library), "--teacher", "tiny", "--name", "c",
                     "--init", "kc-key-v1", *common]) == 2
    assert "can be continued" in capsys.readouterr().err

    # --init default starts from the shipped key model (lr 0: its weights stay)
    assert cli.main(["train-key", str(library), "--name", "from-default", "--init", "default",
                     "--steps", "1", "--batch-size", "1", "--eval-items", "1", "--lr", "0",
                     "--heldout", "0.25", *common]) == 0
    card = registry.find_card("from-default")
    default = registry.default_model("key")
    assert card.provenance["init"] == default.id       # recorded as the model it was
    _, shipped = registry.load_model(default)
    _, ours = registry.load_model(card)
    weights = {k: v for k, v in shipped.state_dict().items() if k.endswith("weight")}
    assert weights and all(torch.equal(v, ours.state_dict()[k]) for k, v in weights.items())


@pytest.mark.slow
def test_key_teacher_term_can_skip_labelled_views(library, tmp_path):
    """kd_on='unlabelled': the teacher sees only views of tracks without a .key label."""
    from tagger.scan import scan

    class CountingTeacher:
        def __init__(self):
            self.rows = []

        def native_probs(self, batch, rows):
            assert rows.shape == (3 * len(batch["track"]),)
            self.rows.append(int(rows.sum()))
            return torch.full((int(rows.sum()), 24), 1 / 24)

    with C.DatasetCache(tmp_path / "cache") as cache:
        rep = C.build_features(cache, scan([library]), [C.skey_stream()], progress=False,
                               label_index=LabelIndex(), log=lambda m: None)
        ids = rep.track_ids
        kw = dict(progress=False, log=lambda m: None)
        runs = {}
        for kd_on in ("all", "unlabelled"):
            t = CountingTeacher()
            cfg = KeyTrainConfig(batch_size=2, max_steps=2, warmup=1, eval_every=100,
                                 checkpoint_every=100, kd_on=kd_on)
            res = train_key(cache, ids, [], cfg, tmp_path / kd_on, teacher=t, **kw)
            runs[kd_on] = (t.rows, res)
        assert runs["all"][0] == [6, 6]                   # 3 views x batch 2, every step
        assert runs["unlabelled"][0] == []                # every track is labelled
        for tid in ids:                                   # now none is
            cache.set_track_labels(tid, None, None)
        t = CountingTeacher()
        cfg = KeyTrainConfig(batch_size=2, max_steps=2, warmup=1, eval_every=100,
                             checkpoint_every=100, kd_on="unlabelled")
        train_key(cache, ids, [], cfg, tmp_path / "none", teacher=t, **kw)
        assert t.rows == [6, 6]


@pytest.mark.slow
def test_validation_folders_are_held_out(library, env, tmp_path, capsys):
    """--validation: exactly those files are held out (cached, never trained on)."""
    train_dir, val_dir = tmp_path / "train", tmp_path / "val"
    for d, names in ((train_dir, ("c_major", "a_minor")), (val_dir, ("f_major", "g_major"))):
        d.mkdir()
        for n in names:
            for ext in (".wav", ".lab", ".key"):
                shutil.copy(library / f"{n}{ext}", d / f"{n}{ext}")
    common = ["--cache", str(tmp_path / "cache"), "-q", "--speed-seconds", "0",
              "--validation", str(val_dir), "--batch-size", "1", "--register-anyway"]
    assert cli.main(["train-key", str(train_dir), "--name", "kv", "--architecture", "chromanet",
                     "--steps", "1",
                     "--eval-items", "1", *common]) == 0
    card = registry.find_card("kv")
    assert card.provenance["training_tracks"] == 2 and card.provenance["heldout_tracks"] == 2
    assert card.metrics["heldout_key"]["tracks"] == 2
    assert card.metrics["calibration"]["items"] == 24 + 2     # training labels only
    assert {"margin", "clear"} <= set(card.metrics["calibration"])   # from scratch
    assert cli.main(["distill", str(train_dir), "--teacher", "tiny", "--name", "cv",
                     "--steps", "1", "--stage", "1", "--window", "32", *common]) == 0
    card = registry.find_card("cv")
    assert card.provenance["training_tracks"] == 2 and card.provenance["heldout_tracks"] == 2
    # validation songs inside the library folder: still held out, each file once
    assert cli.main(["train-key", str(tmp_path), "--name", "kv2", "--architecture", "chromanet",
                     "--steps", "1",
                     "--eval-items", "1", *common]) == 0
    card = registry.find_card("kv2")
    assert card.provenance["training_tracks"] == 2 and card.provenance["heldout_tracks"] == 2
    with sqlite3.connect(tmp_path / "cache" / "index.sqlite") as db:
        assert db.execute("select count(*) from sources").fetchone()[0] == 4


def test_cache_knows_files_by_absolute_path(library, env, tmp_path, monkeypatch):
    """The same folder named relatively and absolutely is one set of sources, so a
    second run finds everything done instead of decoding it again."""
    cache = tmp_path / "cache"
    args = ["--name", "k", "--cache", str(cache), "--cache-only", "-q"]
    assert cli.main(["train-key", str(library), *args]) == 0
    with sqlite3.connect(cache / "index.sqlite") as db:
        before = sorted(db.execute("select path, status from sources"))
    monkeypatch.chdir(library.parent)
    assert cli.main(["train-key", library.name, *args]) == 0
    with sqlite3.connect(cache / "index.sqlite") as db:
        after = sorted(db.execute("select path, status from sources"))
    assert after == before and all(os.path.isabs(p) for p, _ in after)


def test_predict_logits_takes_arrays_and_tensors(monkeypatch):
    """Features may come as a numpy array or as a tensor (on the GPU when the speed
    check runs there); both give the same logits, those of a whole-track pass."""
    from tagger.distill.train_chords import predict_logits
    torch.manual_seed(0)
    net = ChordStudent().eval()
    feats = torch.randn(1200, 216)
    with torch.inference_mode():
        whole = net(feats.T[None, None])["chord"][0].float()
    from_array = predict_logits(net, feats.numpy(), window=512)
    # a tensor on a GPU cannot become a numpy array: make every tensor so
    def no_numpy(self, *a, **k):
        raise TypeError("can't convert cuda:0 device type tensor to numpy")
    monkeypatch.setattr(torch.Tensor, "__array__", no_numpy)
    from_tensor = predict_logits(net, feats.clone(), window=512)
    monkeypatch.undo()
    assert from_array.shape == whole.shape == from_tensor.shape
    torch.testing.assert_close(from_array, whole, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(from_tensor, from_array)


def _grow_tiny_at_lr0(library, tmp_path, name: str, *flags: str) -> int:
    """Two stage-1 steps at learning rate 0 from the tiny student, with ``flags``
    that add blocks to it."""
    return cli.main(["distill", str(library), "--teacher", "tiny", "--name", name,
                     "--init", "tiny", *flags, "--stage", "1", "--steps", "2", "--lr", "0",
                     "--window", "32", "--batch-size", "2", "--eval-every", "2",
                     "--heldout", "0.25", "--cache", str(tmp_path / "cache"), "-q"])


def test_track_context_student_from_init(library, env, tmp_path, capsys):
    """--track-context adds a whole-track context block to an --init student: with
    lr 0 the weights are the old ones and the block stays at zero; its card has no
    window, so the tagger and the training-side scoring run it on whole tracks."""
    assert _grow_tiny_at_lr0(library, tmp_path, "ctx", "--track-context", "4",
                             "--speed-seconds", "2") == 0
    card = registry.find_card("ctx")
    assert card.config["context_units"] == 4 and "window" not in card.extra
    assert card.metrics["speed"]["network_x_realtime"] > 0
    _, tiny = registry.load_model(registry.find_card("tiny"))
    _, ctx = registry.load_model(card)
    assert ctx.receptive_field() is None and ctx.context is not None
    params = dict(ctx.named_parameters())
    old = dict(tiny.named_parameters())
    assert set(params) - set(old) == {k for k in params if k.startswith("context.")}
    assert all(torch.equal(v, params[k]) for k, v in old.items())
    assert not ctx.context.proj.weight.any()
    capsys.readouterr()
    code = cli.main(["tag", str(library / "a_minor.wav"), "--chord-model", "ctx",
                     "--no-key", "--dry-run", "--json", "-q", "--workers", "0"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert json.loads(out.splitlines()[0])["segments"]


def test_extra_dilations_grow_an_init_student(library, env, tmp_path, capsys):
    """--extra-dilations appends dilated blocks to an --init student: with lr 0 the
    old weights are kept, the new blocks stay the identity, the receptive field
    grows, and the tagger runs the model with margins that cover it."""
    assert _grow_tiny_at_lr0(library, tmp_path, "deeper", "--extra-dilations", "32,64",
                             "--speed-seconds", "0") == 0
    card = registry.find_card("deeper")
    _, tiny = registry.load_model(registry.find_card("tiny"))
    _, deeper = registry.load_model(card)
    assert card.config["dilations"] == tiny.config["dilations"] + [32, 64]
    assert deeper.receptive_field() == tiny.receptive_field() + 96
    old, new = dict(tiny.named_parameters()), dict(deeper.named_parameters())
    assert {k for k in new if k not in old} == {
        k for k in new if k.startswith(("temporal.2.", "temporal.3."))}
    assert all(torch.equal(v, new[k]) for k, v in old.items())
    assert not deeper.temporal[3].mix.weight.any()
    capsys.readouterr()
    assert cli.main(["tag", str(library / "a_minor.wav"), "--chord-model", "deeper",
                     "--no-key", "--dry-run", "--json", "-q", "--workers", "0"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["segments"]


def test_extra_dilations_must_be_positive_integers(library, env, tmp_path, capsys):
    for bad in ("0", "8,x", ","):
        with pytest.raises(SystemExit):
            cli.main(["distill", str(library), "--teacher", "tiny", "--name", "x",
                      "--extra-dilations", bad, "--cache", str(tmp_path / "c")])
        assert "--extra-dilations" in capsys.readouterr().err


def test_predict_logits_covers_a_grown_receptive_field():
    """Windows for a student whose field is longer than the default margin (64)
    still give the whole-track pass."""
    from tagger.distill.train_chords import predict_logits
    torch.manual_seed(0)
    net = ChordStudent(dim=32, dilations=[1, 2, 4, 8, 16, 1, 2, 4, 64]).eval()
    for block in net.temporal:       # a grown block that does something
        torch.nn.init.normal_(block.mix.weight, std=0.2)
    assert net.receptive_field() > 64
    feats = torch.randn(1500, 216)
    with torch.inference_mode():
        whole = net(feats.T[None, None])["chord"][0].float()
    torch.testing.assert_close(predict_logits(net, feats, window=512), whole,
                               atol=1e-4, rtol=1e-4)


def test_frame_blocks_grow_an_init_student(library, env, tmp_path):
    """--frame-blocks adds per-frame blocks to an --init student: with lr 0 the old
    weights are kept, the new blocks stay the identity, the window stays."""
    assert _grow_tiny_at_lr0(library, tmp_path, "grown", "--frame-blocks", "2",
                             "--speed-seconds", "0") == 0
    card = registry.find_card("grown")
    assert card.config["frame_blocks"] == 2 and card.extra.get("window")
    _, tiny = registry.load_model(registry.find_card("tiny"))
    _, grown = registry.load_model(card)
    old, new = dict(tiny.named_parameters()), dict(grown.named_parameters())
    assert {k for k in new if k not in old} == {k for k in new if k.startswith("frame.")}
    assert all(torch.equal(v, new[k]) for k, v in old.items())
    assert not grown.frame[1].down.weight.any()


def test_eq_augment_changes_the_training_windows_and_is_recorded(library, env, tmp_path):
    """--eq-augment passes training windows through a random equaliser (the sampler's
    windows differ from the plain ones, the targets do not) and the card records it."""
    from tagger.distill.cache import DatasetCache
    from tagger.distill.train_chords import WindowSampler
    assert _grow_tiny_at_lr0(library, tmp_path, "eq", "--eq-augment", "6",
                             "--speed-seconds", "0") == 0
    stage = registry.find_card("eq").metrics["training"]["stage1"]
    assert stage["config"]["eq_db"] == 6.0
    cache = DatasetCache(tmp_path / "cache")
    ids = cache.track_ids()
    teacher = next(s for s in cache.streams_of(ids[0]) if s.startswith("teacher-"))
    batches = [WindowSampler(cache, ids, 32, teacher, None, labels=False, shift_low=0,
                             shift_high=0, seed=0, eq_db=eq).sample(1) for eq in (0.0, 6.0)]
    assert torch.equal(batches[0]["teacher"], batches[1]["teacher"])
    assert not torch.allclose(batches[0]["x"], batches[1]["x"])


def test_a_fine_tune_keeps_its_init_shift_average(library, env, tmp_path):
    """A student continued from a shift-averaged --init (as the shipped default is)
    is itself shift-averaged: trained plain, scored and saved with the same shifts."""
    from training.shift_average import with_shift_average
    with_shift_average("tiny", [-1, 0, 1], "tiny-tta", directory=env)
    assert cli.main(["distill", str(library), "--teacher", "tiny", "--name", "tta-ft",
                     "--init", "tiny-tta", "--stage", "1", "--steps", "2", "--lr", "0",
                     "--window", "32", "--batch-size", "2", "--eval-every", "2",
                     "--heldout", "0.25", "--cache", str(tmp_path / "cache"), "-q",
                     "--speed-seconds", "0"]) == 0
    card, net = registry.load_model("tta-ft")
    assert card.config["shift_average"] == [-1, 0, 1] and net.shifts == [-1, 0, 1]
    _, tiny = registry.load_model("tiny")
    new = dict(net.named_parameters())          # (lr 0; BatchNorm statistics do move)
    assert all(torch.equal(v, new[k]) for k, v in tiny.named_parameters())


@pytest.mark.slow
def test_fine_tune_keeps_its_init_output_order(library, env, tmp_path, capsys):
    """train-key --init keeps the init's output order, even where calibration on
    this library would choose another (here: the init's order moved by a fifth)."""
    from model_zoo import skey
    from tagger.distill.train_key import finalize
    _, shipped = registry.load_model("kc-key-v3")               # a shipped ChromaNet
    order = shipped.config["output_permutation"]
    moved = [order[(o % 12 + 7) % 12 + 12 * (o // 12)] for o in range(24)]
    registry.save_model(finalize(shipped, moved), "fifth", task="key",
                        features=dict(skey.FEATURES),
                        extra={"segment_seconds": skey.SEGMENT_SECONDS})
    assert cli.main(["train-key", str(library), "--name", "tuned", "--init", "fifth",
                     "--steps", "1", "--batch-size", "1", "--eval-items", "1", "--lr", "0",
                     "--heldout", "0.25", "--cache", str(tmp_path / "cache"), "-q",
                     "--speed-seconds", "0"]) == 0
    card = registry.find_card("tuned")
    assert card.config["output_permutation"] == moved
    assert card.metrics["calibration"] == {"method": "kept", "init": "fifth"}
    assert "output order: kept from --init fifth" in capsys.readouterr().err


@pytest.mark.slow
def test_worse_model_is_not_registered_unless_asked(library, env, tmp_path, capsys):
    """A run reports its init's held-out score next to the new model's, and a
    model that scores below it is not registered without --register-anyway."""
    unlabelled = tmp_path / "unlabelled"        # scored by agreement with the teacher
    unlabelled.mkdir()
    for n in CHORDS:
        shutil.copy(library / f"{n}.wav", unlabelled / f"{n}.wav")
    args = ["distill", str(unlabelled), "--teacher", "tiny", "--name", "worse", "--init", "tiny",
            "--stage", "1", "--steps", "4", "--lr", "0.5", "--window", "32",
            "--batch-size", "2", "--eval-every", "2", "--heldout", "0.5",
            "--speed-seconds", "0", "--cache", str(tmp_path / "cache"), "-q"]
    assert cli.main(args) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-2].startswith("held-out agreement with tiny: new ") and "for tiny (the init" in err[-2]
    assert err[-1].startswith("keychords: error: 'worse' not registered: it scores below tiny")
    assert "--register-anyway" in err[-1]
    with pytest.raises(registry.ModelError):
        registry.find_card("worse")
    assert cli.main(args + ["--register-anyway"]) == 0      # the trained weights, at once
    base = registry.find_card("worse").metrics["baseline"]
    assert base["model"] == "tiny" and base["role"] == "init" and base["new"] < base["score"]


def test_progress_total_is_the_steps_that_fit_the_time_limit():
    """With --minutes the bar's total (so its ETA) is the steps that fit, not --steps."""
    from tagger.distill.trainbar import TrainBar
    now = [0.0]
    bar = TrainBar(100_000, 1.0, "t", enabled=False, clock=lambda: now[0])
    for i in range(1, 21):                     # 0.1 s a step, 60 s in all
        now[0] += 0.1
        bar.advance(i, now[0])
    assert bar.bar.total == 600 and bar.done == 20
    bar.close()
    now[0] = 0.0                               # resumed at step 50 after 30 s of training
    bar = TrainBar(100_000, 1.0, "t", start_step=50, enabled=False, clock=lambda: now[0])
    for i in range(51, 61):
        now[0] += 0.1
        bar.advance(i, 30.0 + now[0])
    assert bar.bar.total == 60 + 290 and bar.done == 60   # the 29 s left, at 10 steps/s
    bar.close()
    bar = TrainBar(300, 1.0, "t", enabled=False, clock=lambda: now[0])
    assert bar.expected_total(10, 0.0) == 300  # --steps comes first
    bar = TrainBar(300, 0.0, "t", enabled=False)
    assert bar.expected_total(10, 5.0) == 300


def test_pool_frames_onto_student_hop():
    from tagger.distill.teacher import pool_frames
    for n in (2048 * 5, 2048 * 5 + 511, 2048 * 5 + 1600, 2048 * 6 - 1):
        t_fast, t_student = 1 + n // 512, 1 + n // 2048
        assert pool_frames(torch.rand(t_fast, 3).softmax(-1), 4).shape == (t_student, 3)
    p = torch.zeros(21, 2)
    p[:, 1] = 1.0
    p[8] = torch.tensor([1.0, 0.0])             # on student frame 2's centre
    p[14] = torch.tensor([1.0, 0.0])            # half-way between student frames 3 and 4
    out = pool_frames(p, 4)
    assert torch.allclose(out.sum(-1), torch.ones(6))
    assert torch.allclose(out[:, 0], torch.tensor([0, 0, 0.25, 0.125, 0.125, 0]))
