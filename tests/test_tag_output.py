"""What the commands print: `tag -v` lines, the progress bar only on a
terminal, `show` from the file's tags, `search` saying it found nothing.

Runs on the constant tiny models of test_safety (always C major), so each
test takes well under a second of analysis."""

import io
import sys

import pytest

from tagger import cli, engine
from tagger.tags import read_tags, write_tags
from tests.audio_fixtures import make_audio_file
from test_safety import SECONDS, TINY_ARGS, tiny_env, tiny_models  # noqa: F401


@pytest.fixture
def song(tiny_env):
    return make_audio_file(tiny_env / "song.flac", "flac", seconds=SECONDS)


def tag(capsys, *args):
    code = cli.main(["tag", *map(str, args), "--workers", "0", *TINY_ARGS])
    out = capsys.readouterr()
    return code, out.out.splitlines(), out.err.splitlines()


def test_verbose_line_per_file(song, capsys):
    code, out, _ = tag(capsys, song, "-v", "-q")
    assert code == 0
    assert out == [f"{song}: key C, chords C; wrote initial_key, chords, progression"]
    assert tag(capsys, song, "-v", "-q")[1] == [
        f"{song}: skipped (already analysed with these models)"]
    write_tags(song, {"initial_key": "F#m"}, overwrite=True)
    assert tag(capsys, song, "-v", "-q", "--force")[1] == [
        f"{song}: key C, chords C; kept the file's own initial_key (--overwrite to replace)"]


def test_no_lines_without_verbose(song, capsys):
    assert tag(capsys, song, "-q")[1:] == ([], [])


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("on_terminal", [False, True])
def test_progress_bar_only_on_a_terminal(song, tmp_path, capsys, monkeypatch, on_terminal):
    """stderr redirected to a file gets the summary, not `\\r` bar updates."""
    stream = Terminal() if on_terminal else open(tmp_path / "err.log", "w+")
    monkeypatch.setattr(sys, "stderr", stream)
    assert cli.main(["tag", str(song), "--workers", "0", *TINY_ARGS]) == 0
    stream.seek(0)
    err = stream.read()
    assert err.rstrip().splitlines()[-1].startswith("keychords: 1 analysed, 1 written")
    assert ("\r" in err) == on_terminal, repr(err)


def no_analysis(*args, **kwargs):
    raise AssertionError("show analysed a file that has keychords tags")


def test_show_reads_the_tags(song, capsys, monkeypatch):
    write_tags(song, {"initial_key": "Am", "chords": "Am F C G", "progression": "vi IV I V"})
    monkeypatch.setattr(engine, "Analyzer", no_analysis)
    assert cli.main(["show", str(song)]) == 0
    out = capsys.readouterr().out
    assert "from the file's tags; --analyse to re-analyse" in out
    assert "Am F C G" in out and "vi IV I V" in out and "Am" in out


def test_show_analyse_and_untagged_files(song, capsys):
    """--analyse runs the models on a tagged file; a file without keychords
    tags is analysed as before."""
    for args in ([str(song)], [str(song), "--analyse"]):
        assert cli.main(["show", *args, *TINY_ARGS]) == 0
        out = capsys.readouterr().out
        assert "confidence" in out and "from the file's tags" not in out
        write_tags(song, {"initial_key": "Am", "chords": "Am"})
    assert read_tags(song) == {"initial_key": "Am", "chords": "Am"}   # show writes nothing


def test_search_without_match_says_so(song, capsys):
    write_tags(song, {"initial_key": "Am", "chords": "Am F C G"})
    assert cli.main(["search", str(song.parent), "--key", "F#"]) == 1
    out = capsys.readouterr()
    assert out.out == "" and out.err == "keychords: no match among 1 file\n"
    assert cli.main(["search", str(song.parent), "--key", "Am"]) == 0
    assert capsys.readouterr().err == ""
