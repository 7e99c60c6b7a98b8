"""``keychords tag --ray`` and ``apply --write-on-workers`` on a local Ray
cluster (issue 20).

One small cluster for the whole session: 4 logical CPUs, one fake GPU (the
model actor asks for it, as on a GPU cluster; the CPU-only plan is checked
without running it), a 300 MB object store, no dashboard, no usage
statistics, a temporary Ray folder.
The runs use the shipped models on a few seconds of audio per file.
Skipped, with the reason, where the ``ray`` extra is not installed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from audio_fixtures import make_audio_file

ray = pytest.importorskip("ray", reason="the ray extra is not installed "
                                        "(pip install -e '.[ray]')")

from tagger import cli, pipeline, ray_run  # noqa: E402
from tagger import results_table as table  # noqa: E402
from tagger.engine import Analyzer, resolve_model  # noqa: E402
from tagger.ray_stages import ModelStage  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CHORDS = [(261.63, 329.63, 392.0), (220.0, 261.63, 329.63), (196.0, 246.94, 293.66),
          (174.61, 220.0, 261.63)]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def ray_cluster():
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    # Workers inherit this (the raylet is started from here).
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    temp = tempfile.mkdtemp(prefix="kcray-", dir="/tmp")
    ray.init(num_cpus=4, num_gpus=1, object_store_memory=300 * 2**20, include_dashboard=False,
             _temp_dir=temp, log_to_driver=False, logging_level="WARNING")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def make_library(root: Path, n: int, bad: bool = False) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        fmt = ("flac", "mp3", "wav")[i % 3]
        make_audio_file(root / f"song{i:02d}.{fmt}", fmt, seconds=4.0,
                        tone_hz=CHORDS[i % len(CHORDS)])
    if bad:
        (root / "empty.mp3").write_bytes(b"")
        (root / "text.mp3").write_text("not audio at all\n" * 200)
        good = (root / "song00.flac").read_bytes()
        (root / "noise.flac").write_bytes(bytes(reversed(good)))
    return root


def shipped_cards():
    return resolve_model("chord", None), resolve_model("key", None)


def ray_rows(lib: Path, results: Path, model_stage=ModelStage, **ray_kwargs) -> list[dict]:
    chord, key = shipped_cards()
    entries, _ = ray_run.manifest(sorted(map(str, lib.iterdir())), str(results),
                                  ray_run.model_ids(chord, key))
    opts = ray_run.RayOptions(results=str(results), batch_size=2, **ray_kwargs)
    return list(ray_run.run(entries, chord, key, pipeline.Options(), opts, model_stage))


def test_results_equal_local_tag_and_bad_files_are_error_rows(ray_cluster, tmp_path):
    lib = make_library(tmp_path / "lib", 4, bad=True)
    rows = ray_rows(lib, tmp_path / "results")
    paths = sorted(str(p) for p in lib.iterdir())
    assert sorted(r["path"] for r in rows) == paths                  # each file once
    assert sorted(r["path"] for r in table.read_rows(tmp_path / "results")) == paths
    local = {o.path: o for o in pipeline.run(paths, Analyzer(num_threads=1),
                                             pipeline.Options(dry_run=True))}
    for r in rows:
        o = local[r["path"]]
        assert r["status"] == o.status, (r["path"], r["error"], o.error)
        if o.status == "ok":
            assert json.loads(r["tags"]) == o.tags
            assert (r["key"], r["chords"], r["progression"]) == (
                o.result.key_long, o.result.chords, o.result.progression)
        else:
            assert r["error"] == o.error
    failed = {Path(r["path"]).name for r in rows if r["status"] == "failed"}
    assert failed == {"empty.mp3", "text.mp3", "noise.flac"}


@pytest.mark.parametrize("cluster", [{"CPU": 4}, {"CPU": 4, "GPU": 1}], ids=["cpu", "gpu"])
def test_decoding_tasks_and_model_actors_stay_separate_stages(ray_cluster, cluster, capsys):
    entries = [{"path": "/music/a.flac", "size": 1, "mtime_ns": 1}]
    ds = ray_run.build(entries, *shipped_cards(), pipeline.Options(), ray_run.RayOptions(),
                       cluster=cluster)
    ds.explain()                          # Ray Data's optimised plan, without running it
    plan = capsys.readouterr().out.split("Physical Plan (Optimized)")[-1]
    assert "TaskPoolMapOperator[MapBatches(decode_batch)]" in plan, plan
    assert "ActorPoolMapOperator[MapBatches(ModelStage)]" in plan, plan


def test_model_actors_default_to_gpus_else_all_cpus_but_one():
    opts = ray_run.RayOptions()
    assert ray_run.model_actors({"CPU": 64, "GPU": 4}, opts) == 4
    assert ray_run.model_actors({"CPU": 64}, opts) == 63
    assert ray_run.model_actors({"CPU": 1}, opts) == 1
    assert ray_run.model_actors({"CPU": 64}, ray_run.RayOptions(model_workers=2)) == 2


def test_model_worker_killed_mid_batch(ray_cluster, tmp_path):
    lib = make_library(tmp_path / "lib", 5)
    marker = str(tmp_path / "crashed")

    class CrashOnce(ModelStage):          # pickled by value: a local class
        def __call__(self, batch):
            if not os.path.exists(marker):
                Path(marker).touch()
                os._exit(1)               # the worker dies holding its batch
            return super().__call__(batch)

    rows = ray_rows(lib, tmp_path / "results", CrashOnce)
    assert os.path.exists(marker)
    assert sorted(r["path"] for r in rows) == sorted(str(p) for p in lib.iterdir())
    assert {r["status"] for r in rows} == {"ok"}


KILLING_DRIVER = """
import os, signal, sys
from tagger import pipeline, ray_run
from tagger.engine import resolve_model
lib, results, address = sys.argv[1:]
chord, key = resolve_model("chord", None), resolve_model("key", None)
entries, _ = ray_run.manifest(sorted(os.path.join(lib, n) for n in os.listdir(lib)), results,
                              ray_run.model_ids(chord, key))
ray_run.connect(address)
opts = ray_run.RayOptions(results=results, batch_size=2, flush_rows=1)
for i, row in enumerate(ray_run.run(entries, chord, key, pipeline.Options(), opts)):
    if os.path.isdir(results) and os.listdir(results) and i >= 2:  # a part is written: kill -9
        os.kill(os.getpid(), signal.SIGKILL)
"""


def test_driver_killed_then_rerun_analyses_only_the_rest(ray_cluster, tmp_path, capsys):
    lib, results = make_library(tmp_path / "lib", 8), tmp_path / "results"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    killed = subprocess.run([sys.executable, "-c", KILLING_DRIVER, str(lib), str(results),
                             ray_cluster], env=env, timeout=240, capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    first = {r["path"] for r in table.read_rows(results)}
    assert 0 < len(first) < 8
    # The rerun: the CLI, in this process (already connected to the cluster).
    assert cli.main(["tag", "--ray", ray_cluster, str(lib), "--results", str(results),
                     "--json", "--batch-size", "2"]) == 0
    rerun = capsys.readouterr()
    again = [json.loads(x)["path"] for x in rerun.out.splitlines()]
    assert sorted(again) == sorted(str(p) for p in lib.iterdir() if str(p) not in first)
    assert f"{len(first)} already in the results" in rerun.err
    assert sorted(r["path"] for r in table.read_rows(results)) == sorted(
        str(p) for p in lib.iterdir())                           # each file once


def test_cli_then_apply_writes_the_tags(ray_cluster, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KEYCHORDS_STATE", str(tmp_path / "state.sqlite"))
    lib, results = make_library(tmp_path / "lib", 2), tmp_path / "results"
    assert cli.main(["tag", "--ray", str(lib), "--results", str(results), "-q"]) == 0
    assert cli.main(["apply", str(results), "-q", "--json"]) == 0
    out = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [o["status"] for o in out] == ["ok", "ok"]
    from tagger.tags import read_tags
    for o in out:
        assert read_tags(o["path"]).items() >= o["tags"].items()


def test_apply_write_on_workers(ray_cluster, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KEYCHORDS_STATE", str(tmp_path / "state.sqlite"))
    lib, results = make_library(tmp_path / "lib", 3), tmp_path / "results"
    assert cli.main(["tag", "--ray", ray_cluster, str(lib), "--results", str(results),
                     "-q"]) == 0
    stale = lib / "song02.wav"
    with open(stale, "ab") as fh:                     # changed after it was analysed
        fh.write(b"\0" * 16)
    content = stale.read_bytes()

    def not_here(*args, **kwargs):
        raise AssertionError("written by the driver, not by a worker")
    monkeypatch.setattr(pipeline, "apply", not_here)  # workers are other processes
    code = cli.main(["apply", str(results), "--write-on-workers", ray_cluster, "-q", "--json"])
    run = capsys.readouterr()
    out = {Path(o["path"]).name: o for o in map(json.loads, run.out.splitlines())}
    assert code == 1 and out["song02.wav"]["status"] == "failed"
    assert f"{stale}: file changed since it was analysed" in run.err
    assert stale.read_bytes() == content
    from tagger.tags import read_tags
    for name in ("song00.flac", "song01.mp3"):
        assert out[name]["status"] == "ok" and out[name]["written"]
        assert read_tags(lib / name).items() >= out[name]["tags"].items()
    from tagger.apply import row_models
    from tagger.state import State
    state, latest = State(tmp_path / "state.sqlite"), table.latest_rows(results)
    done = {p.name for p in lib.iterdir() if state.is_done(str(p), row_models(latest[str(p)]))}
    state.close()
    assert done == {"song00.flac", "song01.mp3"}                 # marked done by the driver
    monkeypatch.undo()                                # the documented path, on the driver
    monkeypatch.setenv("KEYCHORDS_STATE", str(tmp_path / "state.sqlite"))
    cli.main(["apply", str(results), "-q", "--json"])
    again = {Path(o["path"]).name: o
             for o in map(json.loads, capsys.readouterr().out.splitlines())}
    for name in ("song00.flac", "song01.mp3"):
        assert (again[name]["status"], again[name]["error"]) == ("skipped", "already applied")
