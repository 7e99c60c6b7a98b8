"""``keychords apply``: a results table written into the files, safely and once."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from audio_fixtures import make_audio_file

pytest.importorskip("pyarrow", reason="the ray extra (pyarrow) is not installed")

from tagger import cli, pipeline  # noqa: E402
from tagger import results_table as table  # noqa: E402
from tagger.result import TrackResult  # noqa: E402
from tagger.state import file_stat  # noqa: E402
from tagger.tags import read_tags  # noqa: E402

MODELS = {"chord": "kc-chord-v1", "key": "kc-key-v3"}
WANT = {"initial_key": "Am", "chords": "Am F C G", "progression": "vi IV I V"}


def analysed_row(path) -> dict:
    size, mtime = file_stat(path)
    result = TrackResult(str(path), duration=4.0, key_index=21, key_confidence=0.9,
                         chords="Am F C G", progression="vi IV I V", models=MODELS)
    return table.result_row({"path": str(path), "size": size, "mtime_ns": mtime}, result,
                            pipeline.tag_values(result, pipeline.Options()))


@pytest.fixture
def library(tmp_path, monkeypatch):
    monkeypatch.setenv("KEYCHORDS_STATE", str(tmp_path / "state.sqlite"))
    files = [make_audio_file(tmp_path / f"t{i}.{fmt}", fmt, seconds=1.0)
             for i, fmt in enumerate(("mp3", "flac", "aac"))]
    bad = {"path": str(tmp_path / "bad.mp3"), "size": 0, "mtime_ns": 0}
    table.write_part(tmp_path / "results", [analysed_row(p) for p in files]
                     + [table.error_row(bad, "empty file (0 bytes)", MODELS)])
    return tmp_path / "results", files


def run_apply(capsys, *args) -> tuple[int, dict[str, dict], str]:
    code = cli.main(["apply", *map(str, args), "--json", "-q"])
    out = capsys.readouterr()
    rows = [json.loads(x) for x in out.out.splitlines()]
    return code, {os.path.basename(r["path"]): r for r in rows}, out.err


def test_apply_writes_then_reports_already_applied(library, capsys):
    results, files = library
    code, rows, err = run_apply(capsys, results)
    assert code == 1                                  # the file that failed analysis
    assert rows["bad.mp3"]["status"] == "failed" and "not analysed: empty file" in err
    for f in files:
        assert rows[f.name]["status"] == "ok"
        assert read_tags(f).items() >= WANT.items()
    before = {f: f.read_bytes() for f in files}
    code, rows, _ = run_apply(capsys, results)
    for f in files:
        assert (rows[f.name]["status"], rows[f.name]["error"]) == ("skipped", "already applied")
        assert f.read_bytes() == before[f]


def test_stale_file_is_refused_and_reported(library, capsys):
    results, files = library
    stale = files[0]
    with open(stale, "ab") as fh:                     # changed after it was analysed
        fh.write(b"\0" * 16)
    content = stale.read_bytes()
    _, rows, err = run_apply(capsys, results)
    assert rows[stale.name]["status"] == "failed"
    assert f"{stale}: file changed since it was analysed" in err
    assert stale.read_bytes() == content
    assert all(rows[f.name]["status"] == "ok" for f in files[1:])


def test_dry_run_touches_nothing(library, capsys):
    results, files = library
    before = {f: f.read_bytes() for f in files}
    code, rows, _ = run_apply(capsys, results, "--dry-run")
    assert [rows[f.name]["status"] for f in files] == ["ok"] * 3
    assert all(f.read_bytes() == before[f] for f in files)


def test_many_files_at_once_in_order_and_one_file_never_twice(tmp_path, monkeypatch):
    import threading
    import time

    from tagger import apply
    from tagger.state import State
    src = make_audio_file(tmp_path / "src.flac", "flac", seconds=1.0)
    files = [tmp_path / f"c{i:02d}.flac" for i in range(20)]
    for f in files:
        shutil.copyfile(src, f)
    (tmp_path / "link.flac").symlink_to(files[0])      # the same file by another name
    rows = [analysed_row(f) for f in files]
    rows.insert(1, analysed_row(tmp_path / "link.flac"))  # while c00 is being written
    writing, overlaps, lock = set(), [], threading.Lock()

    def watched(row, options):                         # records two writes of one file
        real = os.path.realpath(row["path"])
        with lock:
            overlaps.extend([real] if real in writing else [])
            writing.add(real)
        time.sleep(0.05)
        try:
            return write_row(row, options)
        finally:
            with lock:
                writing.discard(real)
    write_row = apply.write_row
    monkeypatch.setattr(apply, "write_row", watched)
    state = State(tmp_path / "state.sqlite")
    out = list(apply.apply_rows(rows, state, pipeline.Options(), writers=4))
    assert [o.path for o in out] == [r["path"] for r in rows]
    assert overlaps == []
    statuses = [o.status for o in out]
    assert statuses[1] == "skipped" and statuses[:1] + statuses[2:] == ["ok"] * 20
    assert all(read_tags(f).items() >= WANT.items() for f in files)
    again = list(apply.apply_rows(rows, state, pipeline.Options(), writers=4))
    state.close()
    assert {(o.status, o.error) for o in again} == {("skipped", "already applied")}


def test_latest_row_wins_and_partial_parts_are_ignored(tmp_path):
    f = make_audio_file(tmp_path / "a.flac", "flac", seconds=1.0)
    old = analysed_row(f) | {"chords": "C"}
    table.write_part(tmp_path / "r", [old])
    table.write_part(tmp_path / "r", [analysed_row(f)])
    (tmp_path / "r" / f".part-9-1.parquet{table.TMP_SUFFIX}").write_bytes(b"half a file")
    assert table.latest_rows(tmp_path / "r")[str(f)]["chords"] == "Am F C G"
    assert len(table.analysed(tmp_path / "r")) == 1
    assert table.remove_partial_parts(tmp_path / "r")


def test_ray_address_or_first_path(tmp_path):
    from tagger.ray_cli import split_address
    assert split_address("", ["x"]) == (None, ["x"])
    assert split_address("auto", ["x"]) == ("auto", ["x"])
    assert split_address("ray://head:10001", ["x"]) == ("ray://head:10001", ["x"])
    assert split_address("10.0.0.1:6379", ["x"]) == ("10.0.0.1:6379", ["x"])
    assert split_address(str(tmp_path), []) == (None, [str(tmp_path)])


@pytest.mark.slow
def test_base_commands_never_import_ray():
    import subprocess
    import sys
    code = ("import sys; from tagger import cli, pipeline, engine, apply; "
            "cli.build_parser(); assert 'ray' not in sys.modules, 'ray imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
