"""The beets plugin (beetsplug/keychords.py) on real beets libraries and files.

Uses beets' own test helpers (``beets.test.helper``). beets' test audio is
not in its wheel, so the files are generated here (tests/audio_fixtures.py,
plus a synthesised chord progression); the models are the shipped defaults.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import wave
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from beets import config as beets_config
from beets.dbcore.query import InvalidQueryError
from beets.library import Item
from beets.test.helper import (AsIsImporterMixin, AutotagImportHelper, ImportHelper,
                               PluginMixin)
from beets.util import cached_classproperty
from mediafile import MediaFile

from beetsplug.keychords import (ChordsQuery, HarmonicQuery, KeychordsPlugin, KeyQuery,
                                 ProgressionQuery)
from model_zoo import registry
from tagger.notation import parse_key_any
from tagger.sidecar import format_chords_timed, parse_chords_timed
from tagger.tags import read_tags, write_tags
from tests.audio_fixtures import ALL_FORMATS, make_audio_file, suffix

REPO = Path(__file__).resolve().parent.parent
C_MAJOR = (130.81, 164.81, 196.0, 261.63, 329.63, 392.0)
MODELS = "chord={},key={}".format(*(registry.default_model(t).id for t in ("chord", "key")))


# -- fixtures ------------------------------------------------------------------

@pytest.fixture
def models(tmp_path, monkeypatch):
    """An empty user model directory: the built-in defaults do the work."""
    d = tmp_path / "user-models"
    monkeypatch.setenv("KEYCHORDS_MODEL_DIR", str(d))
    return d


_NOTE = {n: i for i, n in enumerate("C C# D D# E F F# G G# A A# B".split())}


def make_progression_wav(path, chords, seconds_per_chord=1.0, repeats=2, sr=22050) -> Path:
    """A WAV file playing ``chords`` (``"Am"``, ``"F"``...) as sine triads plus bass."""
    parts = []
    for _ in range(repeats):
        for name in chords:
            root = _NOTE[name.rstrip("m")]
            third = 3 if name.endswith("m") else 4
            midi = [36 + root, 60 + root, 60 + root + third, 67 + root, 72 + root + third]
            n = int(seconds_per_chord * sr)
            t = np.arange(n) / sr
            s = sum(0.9 ** k * np.sin(2 * np.pi * 440 * 2 ** ((m - 69) / 12) * t)
                    for k, m in enumerate(midi))
            env = np.minimum(1.0, np.minimum(t / 0.02, (seconds_per_chord - t) / 0.05))
            parts.append(s * env * 0.12)
    pcm = (np.concatenate(parts) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())
    return Path(path)


def _has_our_tags(path) -> bool:
    import mutagen
    tags = mutagen.File(str(path)).tags or {}
    keys = tags.keys()   # Vorbis comments iterate as (key, value) pairs
    return any(("CHORDS" in k.upper() or "PROGRESSION" in k.upper()) for k in keys)


class KeychordsHelper(PluginMixin):
    plugin: ClassVar[str] = "keychords"

    def load_plugins(self, *plugins: str) -> None:
        super().load_plugins(*plugins)
        # Item types and named queries are cached per class; the plugin's
        # only count once it is loaded.
        cached_classproperty.cache.clear()

    def unload_plugins(self) -> None:
        super().unload_plugins()
        cached_classproperty.cache.clear()

    def plugin_instance(self) -> KeychordsPlugin:
        import beets.plugins
        return next(p for p in beets.plugins.find_plugins() if isinstance(p, KeychordsPlugin))

    def add_file(self, path, **values) -> Item:
        item = Item.from_path(str(path))
        item.update(values)
        item.add(self.lib)
        return item

    def ls(self, query: str) -> list[str]:
        return sorted(i.title for i in self.lib.items(query))


class LibHelper(KeychordsHelper, ImportHelper):
    pass


# -- no models needed ------------------------------------------------------------

def test_import_does_not_load_torch():
    code = ("import beetsplug.keychords, sys; "
            "assert 'torch' not in sys.modules and 'numpy' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_beet_commands_do_not_load_torch(tmp_path):
    """beets loads the plugin, lists, queries, templates: no torch."""
    (tmp_path / "config.yaml").write_text(textwrap.dedent(f"""\
        directory: {tmp_path / 'music'}
        library: {tmp_path / 'library.db'}
        plugins: keychords
        """))
    code = textwrap.dedent("""\
        import sys
        from beets import ui
        for args in (['ls'], ['ls', 'harmonic:8A'], ['ls', 'progression:I V vi IV'],
                     ['ls', 'chords:Am F C G', '-f', '$camelot $openkey $key'],
                     ['keychords', '--help']):
            try:
                ui.main(args)
            except SystemExit:
                pass
        from beets import plugins
        assert [p.name for p in plugins.find_plugins()] == ['keychords']
        assert 'torch' not in sys.modules, 'torch was imported'
        """)
    env = dict(os.environ, BEETSDIR=str(tmp_path), PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert "keychords [options]" in out.stdout


def test_chords_timed_text():
    segs = [(0.0, 0.4567, "N"), (0.4567, 2.32, "D#:maj"), (2.32, 9.85, "C:7"),
            (9.85, 12.0, "A:min")]
    text = format_chords_timed(segs)
    assert text == "0.00 N|0.46 D#:maj|2.32 C:7|9.85 A:min|12.00"
    back = parse_chords_timed(text)
    assert [lab for _, _, lab in back] == ["N", "D#:maj", "C:7", "A:min"]
    assert back[0] == (0.0, 0.46, "N") and back[-1] == (9.85, 12.0, "A:min")
    assert format_chords_timed([]) == "" and parse_chords_timed("") == []


def test_query_value_match():
    assert HarmonicQuery.value_match("8A", "Am") and HarmonicQuery.value_match("Am", "C")
    assert HarmonicQuery.value_match("Am", "Dm") and HarmonicQuery.value_match("Am", "Em")
    assert not HarmonicQuery.value_match("Am", "G") and not HarmonicQuery.value_match("Am", "O")
    assert ProgressionQuery.value_match("I V vi IV", "vi IV I V")
    assert not ProgressionQuery.value_match("I V vi IV", "I IV vi V")
    assert ChordsQuery.value_match("Am F C G", "Em C G D")           # transposed
    assert ChordsQuery.value_match("Am F C G", "C G Am F")           # rotated
    assert not ChordsQuery.value_match("Am F C G", "Am F C E")
    assert ChordsQuery.value_match("Bb", "F Bb C") and ChordsQuery.value_match("A#", "F Bb C")
    assert not ChordsQuery.value_match("B", "F Bb C")
    assert ChordsQuery.value_match("no such", "xx NO SUCH yy")       # plain substring


class TestFieldsAndQueries(KeychordsHelper, ImportHelper):
    def test_media_fields_round_trip_every_format(self, tmp_path):
        for fmt in ALL_FORMATS:
            path = make_audio_file(tmp_path / f"rt_{fmt}{suffix(fmt)}", fmt, seconds=1.0)
            item = self.add_file(path, title=fmt)
            item.update({"initial_key": "F#m", "chords": "F#m D A E",
                         "progression": "i VI III VII"})
            item.write()
            mf = MediaFile(str(path))
            assert (mf.initial_key, mf.chords, mf.progression) == (
                "F#m", "F#m D A E", "i VI III VII"), fmt
            # the same tags the standalone tagger reads and writes
            assert read_tags(path) == {"initial_key": "F#m", "chords": "F#m D A E",
                                       "progression": "i VI III VII"}, fmt
            back = Item.from_path(str(path))
            assert (back.chords, back.progression) == ("F#m D A E", "i VI III VII"), fmt
            # ... and the other way round: tags from the standalone tagger
            write_tags(path, {"chords": "C G", "progression": "I V"}, overwrite=True)
            item.read()
            assert (item.chords, item.progression) == ("C G", "I V"), fmt
            # None removes the tags; an item that never had them writes none
            item.update({"chords": None, "progression": None})
            item.write()
            assert not _has_our_tags(path), fmt
            fresh = make_audio_file(tmp_path / f"fresh_{fmt}{suffix(fmt)}", fmt, seconds=1.0)
            item = self.add_file(fresh, title=f"fresh {fmt}")
            assert item.get("chords") is None
            item.write()
            assert not _has_our_tags(fresh), fmt

    def test_double_registration_is_harmless(self):
        KeychordsPlugin()
        KeychordsPlugin()
        assert {"chords", "progression"} <= Item._media_fields

    def test_template_fields(self):
        beets_config["keychords"]["key_notation"] = "openkey"
        cases = {"Am": ("8A", "1m"), "F#m": ("11A", "4m"), "C": ("8B", "1d"),
                 "A#": ("6B", "11d"), "": ("", ""), "o": ("", ""), "junk": ("", "")}
        for key, (cam, ok) in cases.items():
            item = self.add_item(title=f"k{key}", initial_key=key or None)
            assert item.evaluate_template("$camelot|$openkey|$key") == f"{cam}|{ok}|{ok}", key
        self.lib.path_formats = [("default", "$camelot/$title")]
        item = self.add_item(title="song", initial_key="Am")
        assert os.fsdecode(item.destination()).endswith(os.path.join("8A", "song.mp3"))

    def test_queries(self):
        rows = {
            "pop": ("C", "C G Am F", "I V vi IV"),
            "pop in D": ("D", "D A Bm G", "I V vi IV"),
            "sad": ("Am", "Am G F E", "i VII VI V"),
            "dorian": ("Dm", "Dm G", "i IV"),
            "far": ("F#", "F# C#", "I V"),
            "unanalysed": (None, None, None),
        }
        for title, (key, chords, prog) in rows.items():
            self.add_item(title=title, initial_key=key, chords=chords, progression=prog)
        # the standard field, as beets does
        assert self.ls("initial_key:Am") == ["sad"]
        # harmonic neighbourhood of Am (8A): Am, Dm (7A), Em (9A), C (8B)
        assert self.ls("harmonic:8A") == ["dorian", "pop", "sad"]
        assert self.ls("harmonic:Am") == self.ls("harmonic:8a") == self.ls("harmonic:1m")
        assert self.ls("harmonic:D") == ["pop in D"]      # D, G, A, Bm
        assert self.ls("^harmonic:Am") == ["far", "pop in D", "unanalysed"]
        with pytest.raises(InvalidQueryError):
            list(self.lib.items("harmonic:H#"))
        # progressions: any key, any rotation
        assert self.ls("progression:'I V vi IV'") == ["pop", "pop in D"]
        assert self.ls("progression:'vi-IV-I-V'") == ["pop", "pop in D"]
        assert self.ls("progression:'I V vi'") == []
        assert self.ls("progression:VII") == ["sad"]
        assert self.ls("progression:'i IV' initial_key:Dm") == ["dorian"]
        # chords: any rotation and transposition
        assert self.ls("chords:'G D Em C'") == ["pop", "pop in D"]
        assert self.ls("chords:'Am F C G'") == ["pop", "pop in D"]   # = C G Am F
        assert self.ls("chords:'Bbm Ab Gb F'") == ["sad"]             # i VII VI V
        assert self.ls("chords:'Em A'") == ["dorian"]
        assert self.ls("chords:Bm") == ["pop in D"]                    # one chord: contained
        # plain beets semantics where the text is no progression
        assert self.ls("chords:=Dm G") == [] and self.ls("'chords:=Dm G'") == ["dorian"]
        assert self.ls("chords::^F#") == ["far"]
        assert self.ls("progression:=~'i iv'") == ["dorian"]
        # typed attributes
        self.add_item(title="typed", key_confidence=0.75)
        assert self.ls("key_confidence:0.7..0.8") == ["typed"]
        assert self.ls("camelot:=8A") == ["sad"]

    def test_key_query_any_spelling_and_harmonic_parts(self):
        self.add_item(title="eflat", initial_key="Eb", tuning=-12.5)
        self.add_item(title="cm", initial_key="Cm")
        self.add_item(title="dj", initial_key="C", key_intro="F#", key_outro="Bb", key_changes=2,
                      keys_timed="0.00 F#|20.00 C|150.00 Bb|180.00")
        self.add_item(title="none")
        eflat = self.lib.items("title:eflat").get()
        assert eflat.initial_key == "D#"                      # beets' own normalisation
        assert eflat.evaluate_template("$key") == "Eb"        # the musician's spelling
        for q in ("key:Eb", "key:D#", "key:5B", "key:10d", "key:'E-flat major'",
                  "key:'E flat major'", "key:eb"):
            assert self.ls(q) == ["eflat"], q
        assert self.ls("key:Cm") == self.ls("key:'C minor'") == self.ls("key:5A") == ["cm"]
        assert self.ls("initial_key:Eb") == []                # why key: exists
        with pytest.raises(InvalidQueryError):
            list(self.lib.items("key:H"))
        assert KeyQuery.value_match("Eb", "D#") and not KeyQuery.value_match("Eb", "Ebm")
        # harmonic: on the main key, the intro / outro keys, or any key of the track
        assert self.ls("harmonic:Bb") == ["eflat"]            # Bb, Eb, F, Gm
        assert self.ls("harmonic:outro:Bb") == ["dj", "eflat"]
        assert self.ls("harmonic:intro:F#") == ["dj"] == self.ls("harmonic:any:F#")
        assert self.ls("harmonic:intro:Bb") == ["eflat"]
        assert self.ls("harmonic:any:6B") == ["dj", "eflat"]
        assert self.ls("harmonic:intro:Eb") == ["cm", "eflat"]
        assert self.ls("key_changes:2") == ["dj"] and self.ls("tuning:-15..-10") == ["eflat"]

    def test_apply_stores_the_key_track(self):
        """A modulating result: keys_timed, key_changes, key_intro / key_outro
        (only where they differ from the main key), tuning; chords spelled per key."""
        from tagger.chords import Segment
        from tagger.keytrack import KeyRegion
        from tagger.pipeline import Options, Outcome
        from tagger.result import TrackResult
        from model_zoo import vocab
        segs = [Segment(0.0, 100.0, vocab.label_to_index("D#:maj"), 0.9),
                Segment(100.0, 200.0, vocab.label_to_index("G#:maj"), 0.9)]
        r = TrackResult(path="x", duration=200.0, key_index=3, key_confidence=0.6,
                        key_probs=[0.0] * 24, segments=segs, chords="Eb Ab",
                        progression="I IV", tuning=-21.04,
                        key_regions=[KeyRegion(0.0, 60.0, 15, 0.5), KeyRegion(60.0, 200.0, 3, 0.7)])
        item = self.add_item(title="mod", key_outro="C")
        self.plugin_instance().apply(item, Outcome("x", "ok", result=r), Options(flats=False),
                                     force=True)
        assert item.keys_timed == "0.00 Ebm|60.00 Eb|200.00" and item.key_changes == 1
        assert item.key_intro == "Ebm" and item.get("key_outro") is None
        assert item.tuning == -21.0 and item.initial_key == "D#"
        assert item.chords_timed == "0.00 Eb:maj|100.00 Ab:maj|200.00"

    def test_auto_off_means_no_import_stage(self):
        beets_config["keychords"]["auto"] = False
        self.unload_plugins()
        self.load_plugins()
        assert self.plugin_instance().import_stages == []


# -- with models: the command ----------------------------------------------------

@pytest.mark.usefixtures("models")
class TestCommand(LibHelper):
    @pytest.mark.slow
    def test_command_stores_and_writes(self, tmp_path):
        lib = self.lib_path
        mp3 = self.add_file(make_audio_file(lib / "tone.mp3", "mp3", 5.0, tone_hz=C_MAJOR),
                            title="tone")
        prog = self.add_file(make_progression_wav(lib / "pop.wav", ["C", "G", "Am", "F"], 1.25),
                             title="pop")
        m4a = self.add_file(make_audio_file(lib / "tone.m4a", "aac", 4.0, tone_hz=C_MAJOR),
                            title="tone m4a")
        gone = self.add_item(title="gone", path=str(lib / "missing.flac"))
        self.run_command("keychords", "-w")
        for item in (mp3, prog, m4a):
            item.load()
            key = item.initial_key
            assert key and parse_key_any(key) is not None, item.title
            assert item.chords and item.progression, item.title
            assert 0 < item.key_confidence <= 1 and item.keychords_model == MODELS
            segments = parse_chords_timed(item.chords_timed)
            assert segments and segments[-1][1] == pytest.approx(item.length, abs=0.1)
            # written to the file, through beets
            assert read_tags(item.path.decode()) == {
                "initial_key": key, "chords": item.chords, "progression": item.progression}
            assert MediaFile(item.path).chords == item.chords
        assert "C" in mp3.chords.split() and "C" in m4a.chords.split()
        assert prog.chords == "C G Am F"
        # synthetic triads leave C and its relative Am close; numerals follow the key
        expected = {"C": "I V vi IV", "Am": "III VII i VI"}[prog.initial_key]
        assert prog.progression == expected
        rotated = expected.split()[2:] + expected.split()[:2]
        assert self.ls(f"progression:'{' '.join(rotated)}'") == ["pop"]
        assert self.ls("chords:'D A Bm G'") == ["pop"]         # rotated and transposed
        assert self.ls("harmonic:Am") == sorted(
            i.title for i in (mp3, prog, m4a) if parse_key_any(i.initial_key) in (
                parse_key_any(k) for k in ("Am", "Dm", "Em", "C")))
        gone.load()
        assert not gone.get("keychords_model")
        # a second run has nothing to do
        mtime = os.stat(prog.path).st_mtime_ns
        self.run_command("keychords")
        assert os.stat(prog.path).st_mtime_ns == mtime

    def test_eflat_spelling_tuning_and_key_track(self):
        """E-flat major as a musician writes it; the key track and tuning stored."""
        song = self.add_file(make_progression_wav(self.lib_path / "eb.wav",
                                                  ["D#", "Cm", "Fm", "A#"], 1.25), title="eb")
        self.run_command("keychords", "-W")
        song.load()
        assert parse_key_any(song.initial_key) in (3, 12)     # Eb or Cm, stored as beets does
        assert song.chords == "Eb Cm Fm Bb"
        assert "#" not in song.chords_timed
        assert song.evaluate_template("$key") in ("Eb", "Cm")
        assert self.ls(f"key:{song.evaluate_template('$key')}") == ["eb"]
        assert abs(song.tuning) <= 5 and song.key_changes == 0
        assert [lab for _, _, lab in parse_chords_timed(song.keys_timed)] == [
            song.evaluate_template("$key")]
        assert song.get("key_intro") is None and song.get("key_outro") is None

    def test_failures_are_listed_and_the_run_goes_on(self, capsys, caplog):
        bad = self.lib_path / "bad.mp3"
        bad.write_text("not audio\n" * 50)
        self.add_item(title="bad", path=str(bad))
        good = self.add_file(make_audio_file(self.lib_path / "ok.ogg", "ogg", 4.0,
                                             tone_hz=C_MAJOR), title="ok")
        self.run_command("keychords", "-W")
        out = capsys.readouterr()
        assert "1 analysed, 0 skipped, 1 failed" in out.out
        failed = [r.getMessage() for r in caplog.records if r.name == "beets.keychords"
                  and r.levelname == "ERROR"]
        assert len(failed) == 1 and "bad.mp3" in failed[0] and "\n" not in failed[0]
        good.load()
        assert good.chords and "chords" not in read_tags(good.path.decode())   # -W

    def test_dry_run_changes_nothing(self, capsys):
        path = make_audio_file(self.lib_path / "d.flac", "flac", 4.0, tone_hz=C_MAJOR)
        item = self.add_file(path, title="dry")
        raw = Path(path).read_bytes()
        self.run_command("keychords", "--dry-run", "-w")
        out = capsys.readouterr().out
        assert "chords:" in out and "1 would update" in out
        item.load()
        assert not item.get("chords") and not item.get("keychords_model")
        assert Path(path).read_bytes() == raw

    @pytest.mark.slow
    def test_dry_run_force_would_update_only_changes(self, capsys):
        a = self.add_file(make_audio_file(self.lib_path / "a.flac", "flac", 4.0,
                                          tone_hz=C_MAJOR), title="a")
        self.add_file(make_audio_file(self.lib_path / "b.ogg", "ogg", 4.0, tone_hz=C_MAJOR),
                      title="b")
        self.run_command("keychords", "-W")
        a.load()
        a["chords"] = "F G"                    # a value the analysis would change
        a.store()
        capsys.readouterr()
        self.run_command("keychords", "-n", "-f")
        out = capsys.readouterr().out
        assert "1 would update, 1 unchanged, 0 skipped, 0 failed" in out
        assert "chords: F G -> C" in out and out.count("  chords:") == 1

    @pytest.mark.slow
    def test_existing_key_kept_force_replaces(self, capsys):
        path = make_audio_file(self.lib_path / "k.mp3", "mp3", 4.0, tone_hz=C_MAJOR)
        write_tags(path, {"initial_key": "G"})
        item = self.add_file(path, title="k")
        assert item.initial_key == "G"
        self.run_command("keychords", "-w")
        item.load()
        # the key is kept, chords are added, numerals are read against that key
        assert item.initial_key == "G" and item.chords == "C" and item.progression == "IV"
        assert read_tags(item.path.decode())["progression"] == "IV"
        # analysed: a plain re-run skips it ...
        self.run_command("keychords")
        assert "nothing to analyse" in capsys.readouterr().out
        # ... --force replaces everything with the analysis
        self.run_command("keychords", "-f", "-w")
        item.load()
        from model_zoo import vocab
        from tagger.progression import roman_numeral
        assert item.initial_key != "G"
        assert item.progression == roman_numeral(vocab.parse_chord_name("C"),
                                                 parse_key_any(item.initial_key))
        assert read_tags(item.path.decode())["initial_key"] == item.initial_key

    def test_overwrite_config_and_min_confidence(self):
        path = make_audio_file(self.lib_path / "m.wav", "wav", 4.0, tone_hz=C_MAJOR)
        item = self.add_file(path, title="m", initial_key="D#m", keychords_model="old")
        item.store()
        beets_config["keychords"]["overwrite"] = True
        beets_config["keychords"]["min_confidence"] = 1.01   # no key is ever sure enough
        self.run_command("keychords", "-W")
        item.load()
        # re-analysed (overwrite), but an unsure key neither replaces nor clears one
        assert item.keychords_model == MODELS and item.chords == "C"
        assert item.initial_key == "D#m" and 0 < item.key_confidence < 1.01
        from model_zoo import vocab
        from tagger.progression import roman_numeral
        assert item.progression == roman_numeral(vocab.parse_chord_name("C"),
                                                 parse_key_any("D#m"))


# -- with models: training ---------------------------------------------------------

@pytest.fixture
def tiny_teacher(models):
    """A tiny random chord model registered as ``tiny`` (the teacher)."""
    from tests.model_fixtures import save_tiny_student
    return save_tiny_student(models)


@pytest.mark.slow
@pytest.mark.usefixtures("tiny_teacher", "one_thread")
class TestTrain(LibHelper):
    def _library(self):
        for n, chords in enumerate((["C", "G"], ["Am", "F"], ["F", "C"], ["G", "Em"])):
            self.add_file(make_progression_wav(self.lib_path / f"{n}.wav", chords, 1.5),
                          title=f"t{n}", album="train" if n < 3 else "other")

    def _configure(self, lr, teacher="tiny"):
        beets_config["keychords"]["train"]["teacher"] = teacher
        beets_config["keychords"]["train"]["options"] = [
            "--steps", "2", "--window", "32", "--batch-size", "2", "--eval-every", "2",
            "--heldout", "0.5", "--speed-seconds", "0", "--lr", str(lr), "-q",
            "--cache", str(self.lib_path / "cache")]

    def test_train_registers_and_says_how_to_use_it(self, capsys):
        self._library()
        self._configure(lr=0)        # the shipped student's own weights: not worse
        self.run_command("keychords-train", "album:train", "--name", "lib-chords")
        out = capsys.readouterr()
        card = registry.find_card("lib-chords")
        assert card.task == "chord" and card.provenance["training_tracks"] + \
            card.provenance["heldout_tracks"] == 3                   # the query's items
        assert card.provenance["init"] == registry.default_model("chord").id
        assert card.metrics["baseline"]["role"] == "init"
        assert "held-out agreement with tiny: new " in out.err
        assert "    chord_model: lib-chords" in out.out

    def test_worse_model_refused_unless_register_anyway(self):
        from beets import ui
        self._library()
        # the shipped student as its own teacher agrees with itself; lr 1 wrecks it
        self._configure(lr=1.0, teacher=registry.default_model("chord").id)
        with pytest.raises(ui.UserError, match="not registered.*--register-anyway"):
            self.run_command("keychords-train", "--name", "wrecked")
        with pytest.raises(registry.ModelError):
            registry.find_card("wrecked")
        self.run_command("keychords-train", "--name", "wrecked", "--register-anyway")
        assert registry.find_card("wrecked").metrics["baseline"]["new"] is not None


# -- with models: the import stage ---------------------------------------------------

class GeneratedTracks:
    """beets' importer fixtures, with generated audio instead of beets' test files."""
    formats: ClassVar[tuple[str, ...]] = ("mp3", "flac")

    def prepare_track_for_import(self, track_id, album_path, album_id=None):
        fmt = self.formats[(track_id - 1) % len(self.formats)]
        path = make_audio_file(album_path / f"track_{track_id}{suffix(fmt)}", fmt, 4.0,
                               tone_hz=C_MAJOR)
        medium = MediaFile(str(path))
        medium.update({"album": "Tag Album", "artist": "Tag Artist",
                       "title": f"Tag Track {track_id}", "track": track_id})
        medium.save()
        self.import_media.append(medium)
        return path


@pytest.mark.usefixtures("models")
class TestImport(GeneratedTracks, AsIsImporterMixin, LibHelper):
    def test_asis_import_stores_and_writes(self):
        self.prepare_album_for_import(2)
        sources = {p: p.read_bytes() for p in (self.import_path / "album").iterdir()}
        self.run_asis_importer(write=True)
        items = list(self.lib.items())
        assert len(items) == 2
        for item in items:
            assert item.chords == "C" and item.initial_key and item.keychords_model == MODELS
            assert str(self.lib_path) in item.path.decode()        # the library copy
            assert read_tags(item.path.decode()) == {
                "initial_key": item.initial_key, "chords": "C", "progression": item.progression}
            assert MediaFile(item.path).title.startswith("Tag Track")
        for p, raw in sources.items():       # copying import: the sources are untouched
            assert p.read_bytes() == raw

    def test_import_shows_progress(self, monkeypatch):
        import tagger.progress
        bars = []

        class Recording(tagger.progress.RunProgress):
            def __init__(self, total, **kw):
                super().__init__(total, **kw)
                bars.append(self)
                self.advanced = 0

            def advance(self, audio_seconds=0.0):
                super().advance(audio_seconds)
                self.advanced += 1

        monkeypatch.setattr(tagger.progress, "RunProgress", Recording)
        self.prepare_album_for_import(2)
        self.run_asis_importer(write=False)
        assert [(b.bar.total, b.advanced) for b in bars] == [(2, 2)]
        assert bars[0].audio_seconds == pytest.approx(8.0, abs=0.5)

    def test_asis_import_without_write_stores_only(self):
        self.run_asis_importer(write=False)
        (item,) = self.lib.items()
        assert item.chords == "C" and item.keychords_model == MODELS
        assert read_tags(item.path.decode()) == {}

    def test_already_tagged_files_are_not_reanalysed(self):
        for p in (self.import_path / "album").iterdir():
            write_tags(p, {"initial_key": "Am", "chords": "Am F", "progression": "i VI"})
        self.run_asis_importer(write=True)
        (item,) = self.lib.items()
        assert (item.initial_key, item.chords, item.progression) == ("Am", "Am F", "i VI")
        assert not item.get("keychords_model")


@pytest.mark.usefixtures("models")
class TestAutotaggedImport(GeneratedTracks, KeychordsHelper, AutotagImportHelper):
    def test_applied_import_is_written_once_by_beets(self, monkeypatch):
        self.prepare_album_for_import(1)
        writes = []
        real = Item.try_write
        monkeypatch.setattr(Item, "try_write",
                            lambda item, *a, **k: writes.append(item.path) or real(item, *a, **k))
        self.setup_importer(autotag=True, write=True).run()
        (item,) = self.lib.items()
        assert item.title == "Applied Track 1" and item.chords == "C"
        assert read_tags(item.path.decode())["chords"] == "C"
        assert MediaFile(item.path).title == "Applied Track 1"
        assert writes == [item.path]          # beets' own write carried the fields
