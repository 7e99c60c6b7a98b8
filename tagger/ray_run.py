"""``keychords tag --ray``: the driver of a Ray Data run.

The driver scans the paths into a manifest of ``(path, size, mtime_ns)``,
drops what the results folder already holds for the same models (resume),
and streams the manifest in small blocks through the decoding stage and
the model stage (:mod:`tagger.ray_stages`); the result rows come back to
the driver, which writes them as Parquet part files
(:mod:`tagger.results_table`) every ``flush_rows`` rows or
``flush_seconds`` seconds. Nothing is written into the audio files:
``keychords apply`` does that where the files are.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

from . import pipeline
from . import results_table as table
from .ray_stages import ModelStage, decode_batch


@dataclass
class RayOptions:
    address: str | None = None       # None: start a local cluster; "auto"; "ray://host:port"
    results: str = "keychords-results"
    files_per_block: int = 4         # manifest rows per decoding task
    batch_size: int = 16             # tracks per model call
    model_workers: int = 0           # model actors at most (0: one per GPU, else 1)
    model_threads: int = 1           # torch threads per model actor on a CPU
    flush_rows: int = 500
    flush_seconds: float = 30.0
    force: bool = False              # analyse again what the results already hold


def connect(address: str | None, **local_kwargs) -> None:
    """Join the cluster at ``address``, or start a local one (``local_kwargs``
    go to ``ray.init``); quiet, without usage statistics."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    if ray.is_initialized():
        return
    kwargs = {"include_dashboard": False, **local_kwargs} if address is None else {}
    ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False, **kwargs)


def quiet_data_context() -> None:
    """The driver shows its own progress bar; Ray Data's are off."""
    from ray.data import DataContext
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def model_ids(chord_card, key_card) -> dict[str, str]:
    return {t: c.id for t, c in (("chord", chord_card), ("key", key_card)) if c is not None}


def manifest(paths: list[str], results: str, models: dict[str, str],
             force: bool = False) -> tuple[list[dict], list[dict]]:
    """``(todo, done)``: manifest entries to analyse, and those the results
    already hold for these models. A file that cannot be stat-ed is still
    listed (its decoding reports why)."""
    have = set() if force else table.analysed(results)
    todo, done = [], []
    for p in paths:
        path = os.path.abspath(p)
        try:
            st = os.stat(path)
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            size = mtime = -1
        entry = {"path": path, "size": size, "mtime_ns": mtime}
        key = (path, size, mtime, models.get("chord", ""), models.get("key", ""))
        (done if key in have else todo).append(entry)
    return todo, done


def resources() -> dict:
    import ray
    return ray.cluster_resources()


def build(entries: list[dict], chord_card, key_card, options: pipeline.Options,
          ray_options: RayOptions, model_stage: type = ModelStage):
    """The Ray dataset of result rows for ``entries``. ``model_stage``: the
    actor class of the model stage (a subclass may wrap it)."""
    import ray.data
    res = resources()
    gpus = int(res.get("GPU", 0))
    workers = ray_options.model_workers or max(1, gpus)
    per_actor = {"num_gpus": 1} if gpus else {"num_cpus": ray_options.model_threads}
    blocks = max(1, math.ceil(len(entries) / ray_options.files_per_block))
    ds = ray.data.from_items(entries, override_num_blocks=blocks)
    ds = ds.map_batches(decode_batch, batch_size=ray_options.files_per_block,
                        fn_kwargs={"cards": [chord_card, key_card]}, num_cpus=1)
    return ds.map_batches(
        model_stage, batch_size=ray_options.batch_size,
        fn_constructor_kwargs={"chord_card": chord_card, "key_card": key_card,
                               "options": options, "batch_size": ray_options.batch_size,
                               "threads": ray_options.model_threads},
        # Ray Data restarts a model worker that dies and runs its batch again
        # (actor pools default to max_restarts = max_task_retries = -1).
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=workers), **per_actor)


def run(entries: list[dict], chord_card, key_card, options: pipeline.Options,
        ray_options: RayOptions, model_stage: type = ModelStage) -> Iterator[dict]:
    """Analyse ``entries`` on the connected cluster; yields each result row
    as it arrives, after writing it into the results folder."""
    if os.path.isdir(ray_options.results):
        table.remove_partial_parts(ray_options.results)
    if not entries:
        return
    quiet_data_context()
    ds = build(entries, chord_card, key_card, options, ray_options, model_stage)
    pending: list[dict] = []
    last = time.monotonic()
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            for row in batch.to_pylist():
                pending.append(row)
                yield row
            if len(pending) >= ray_options.flush_rows or (
                    time.monotonic() - last >= ray_options.flush_seconds):
                table.write_part(ray_options.results, pending)
                pending, last = [], time.monotonic()
    finally:
        if pending:  # also on Ctrl-C: what was analysed is kept
            table.write_part(ray_options.results, pending)
