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
    model_workers: int = 0           # model actors at most (0: see model_actors)
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


# What a model actor reserves of a node's memory: torch, the models and a
# batch (measured: 0.5 GB, 1.1 GB at the peak of a batch of 16 4-minute tracks).
MODEL_MEMORY = 2**30


def stage_resources(gpus: int, ray_options: RayOptions) -> tuple[dict, dict]:
    """``(decoding task, model actor)`` resource requests on a cluster with
    ``gpus`` GPUs. The model actor always reserves memory for its models,
    which the decoding tasks do not: Ray Data fuses consecutive stages whose
    requests are equal, and fused, on a cluster without GPUs, decoding would
    run inside the model actors instead of as tasks on every core."""
    model = {"num_gpus": 1} if gpus else {"num_cpus": ray_options.model_threads}
    return {"num_cpus": 1}, {**model, "memory": MODEL_MEMORY}


def model_actors(cluster: dict, ray_options: RayOptions) -> int:
    """The most model actors: ``--model-workers``, else one per GPU, else
    (no GPUs: the model is then most of the work) all CPUs but one, which
    Ray Data shares out between the stages as they need."""
    if ray_options.model_workers:
        return ray_options.model_workers
    gpus = int(cluster.get("GPU", 0))
    if gpus:
        return gpus
    return max(1, (int(cluster.get("CPU", 1)) - 1) // max(1, ray_options.model_threads))


def build(entries: list[dict], chord_card, key_card, options: pipeline.Options,
          ray_options: RayOptions, model_stage: type = ModelStage,
          cluster: dict | None = None):
    """The Ray dataset of result rows for ``entries``. ``model_stage``: the
    actor class of the model stage (a subclass may wrap it); ``cluster``:
    plan for these resources (default: the connected cluster's)."""
    import ray.data
    if cluster is None:
        cluster = resources()
    decode_args, model_args = stage_resources(int(cluster.get("GPU", 0)), ray_options)
    workers = model_actors(cluster, ray_options)
    blocks = max(1, math.ceil(len(entries) / ray_options.files_per_block))
    ds = ray.data.from_items(entries, override_num_blocks=blocks)
    ds = ds.map_batches(decode_batch, batch_size=ray_options.files_per_block,
                        fn_kwargs={"cards": [chord_card, key_card]}, **decode_args)
    return ds.map_batches(
        model_stage, batch_size=ray_options.batch_size,
        fn_constructor_kwargs={"chord_card": chord_card, "key_card": key_card,
                               "options": options, "batch_size": ray_options.batch_size,
                               "threads": ray_options.model_threads},
        # Ray Data restarts a model worker that dies and runs its batch again
        # (actor pools default to max_restarts = max_task_retries = -1).
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=workers), **model_args)


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
