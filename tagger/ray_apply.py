"""``keychords apply --write-on-workers``: the writes of ``keychords apply``
done by Ray tasks on the cluster's nodes, for files on a shared file system
that every node mounts at the same path.

The driver keeps what needs no file access: rows that were not analysed,
and the state database ("already applied"). Each task writes its rows
through the same safe writer as ``apply`` (:func:`tagger.apply.write_row`:
lock, temporary copy, fsync, rename, and the stale-file check). It sends
back each outcome with the file's size and mtime after the write, and the
driver records that as done.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import numpy as np

from . import pipeline
from .apply import precheck, row_models, write_row
from .ray_stages import batch_rows, columns
from .state import State, file_stat

FILES_PER_TASK = 16


def write_batch(batch: dict[str, np.ndarray], options: pipeline.Options
                ) -> dict[str, np.ndarray]:
    """Results-table rows in, one outcome row per file out (on a worker)."""
    out = []
    for row in batch_rows(batch):
        o = write_row(row, options)
        size = mtime = -1
        if o.status == "ok":
            try:
                size, mtime = file_stat(o.path)
            except OSError:
                pass
        out.append({"path": o.path, "status": o.status, "error": o.error,
                    "tags": json.dumps(o.tags), "written": json.dumps(o.written),
                    "size": size, "mtime_ns": mtime})
    return columns(out)


def apply_on_workers(rows: list[dict], state: State | None, options: pipeline.Options,
                     address: str | None) -> Iterator[pipeline.Outcome]:
    """:func:`tagger.apply.apply_rows` with the writes done by Ray tasks on
    the cluster at ``address`` (None: a local one); yields each outcome as
    it arrives."""
    import ray.data

    from .ray_run import connect, quiet_data_context
    todo = []
    for row in rows:
        out = precheck(row, state)
        if out is None:
            todo.append(row)
        else:
            yield out
    if not todo:
        return
    connect(address)
    quiet_data_context()
    models = {r["path"]: row_models(r) for r in todo}
    ds = ray.data.from_items(todo, override_num_blocks=math.ceil(len(todo) / FILES_PER_TASK))
    ds = ds.map_batches(write_batch, batch_size=FILES_PER_TASK, fn_kwargs={"options": options},
                        num_cpus=1)
    for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        for r in batch.to_pylist():
            out = pipeline.Outcome(r["path"], r["status"], r["error"],
                                   tags=json.loads(r["tags"]), written=json.loads(r["written"]))
            if out.status == "ok" and r["size"] >= 0 and state is not None \
                    and not options.dry_run:
                state.mark_done(out.path, models[out.path], (r["size"], r["mtime_ns"]))
            yield out
