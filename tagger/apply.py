"""``keychords apply DIR``: write a results table (:mod:`tagger.results_table`)
into the files it describes, on the machine that holds them.

Each file's latest row goes through the same safe writer as ``keychords
tag`` (a few files at once, each written whole by one thread) (:func:`tagger.pipeline.apply`: lock, temporary copy, fsync, rename),
which refuses a file whose size or mtime changed since it was analysed.
Written files are marked done in the state database; a second run reports
them as "already applied". ``--write-on-workers`` has Ray tasks do the
writes instead (:mod:`tagger.ray_apply`).
"""

from __future__ import annotations

import json
import os
import sys
from collections import deque
from collections.abc import Iterable, Iterator

from . import pipeline
from . import results_table as table
from .console import error, json_line, printable
from .state import State, file_stat

ALREADY = "already applied"
WRITERS = 4   # files written at once by apply


def row_models(row: dict) -> dict[str, str]:
    return {k: row[f"{k}_model"] for k in ("chord", "key") if row[f"{k}_model"]}


def precheck(row: dict, state: State | None) -> pipeline.Outcome | None:
    """The outcome of a row that needs no write (not analysed, or already
    applied), else None."""
    if row["status"] != "ok":
        return pipeline.Outcome(row["path"], "failed", f"not analysed: {row['error']}")
    if state is not None and state.is_done(row["path"], row_models(row)):
        return pipeline.Outcome(row["path"], "skipped", ALREADY)
    return None


def write_row(row: dict, options: pipeline.Options) -> pipeline.Outcome:
    """Write one analysed row's tags into its file through the safe writer,
    refusing a file changed since it was analysed (``options.dry_run``:
    only check)."""
    path, stat = row["path"], (row["size"], row["mtime_ns"])
    out = pipeline.Outcome(path, "ok", tags=json.loads(row["tags"]))
    if options.dry_run:
        try:
            if file_stat(path) != stat:
                out.status, out.error = "failed", f"file changed since it was analysed: {path}"
        except OSError as e:
            out.status, out.error = "failed", f"cannot read ({e.strerror or e})"
        return out
    out = pipeline.apply(out, stat, options)
    if out.status == "skipped":
        out.error = ALREADY
    return out


def apply_rows(rows: Iterable[dict], state: State | None, options: pipeline.Options,
               writers: int = WRITERS) -> Iterator[pipeline.Outcome]:
    """Write each row's tags into its file (``options.dry_run``: only check)
    and mark it done; yields the outcomes in the order of ``rows``.

    Up to ``writers`` files are written at once (each write mostly waits for
    its fsyncs), never one file twice at once; the state database is used
    from this thread only, each file marked as soon as its write is done.
    """
    from concurrent.futures import ThreadPoolExecutor
    pending: deque = deque()   # (row, outcome or future of one, real path)

    def finish() -> pipeline.Outcome:
        row, job, real = pending.popleft()
        if real is None:
            return job
        out = job.result()
        if out.status == "ok" and state is not None and not options.dry_run:
            state.mark_done(out.path, row_models(row))
        return out

    pool = ThreadPoolExecutor(max(1, writers))
    try:
        for row in rows:
            out = precheck(row, state)
            if out is not None:
                pending.append((row, out, None))
                continue
            real = os.path.realpath(row["path"])
            while pending and (len(pending) >= 4 * writers
                               or any(p[2] == real for p in pending)):
                yield finish()
            pending.append((row, pool.submit(write_row, row, options), real))
        while pending:
            yield finish()
    finally:  # stopped early (Ctrl-C): finish the writes under way, start no more
        pool.shutdown(wait=True, cancel_futures=True)


def apply_command(args) -> int:
    from pathlib import Path

    from .progress import RunProgress
    if not Path(args.results).is_dir():
        error(f"{args.results}: no such results folder")
        return 2
    if args.write_on_workers is not None:
        import importlib.util
        if importlib.util.find_spec("ray") is None:
            error("apply --write-on-workers needs the ray extra: "
                  "pip install 'beets-keychords[ray]'")
            return 2
    options = pipeline.Options(dry_run=args.dry_run, overwrite=args.overwrite)
    state = None if args.dry_run else State(args.state)
    rows = table.latest_rows(args.results)
    if args.write_on_workers is not None:
        from .ray_apply import apply_on_workers
        outcomes = apply_on_workers(list(rows.values()), state, options,
                                    args.write_on_workers or None)
    else:
        outcomes = apply_rows(rows.values(), state, options)
    counts = {"ok": 0, "skipped": 0, "failed": 0}
    try:
        with RunProgress(len(rows), enabled=not args.quiet) as progress:
            for o in outcomes:
                counts[o.status] += 1
                if o.status == "failed":
                    progress.write(f"keychords: {o.path}: {o.error}")
                if args.json:
                    print(json_line({"path": o.path, "status": o.status, "error": o.error or None,
                                     "tags": o.tags, "written": sorted(o.written)}), flush=True)
                elif args.dry_run and o.status == "ok":
                    vals = ", ".join(f"{k}={v!r}" for k, v in o.tags.items())
                    progress.write(printable(f"{o.path}: would write {vals}"), sys.stdout)
                progress.advance()
    finally:
        if state is not None:
            state.close()
    if not args.quiet:
        print(progress.summary([(counts["ok"], "would apply" if args.dry_run else "applied"),
                                (counts["skipped"], ALREADY), (counts["failed"], "failed")]),
              file=sys.stderr)
    return 1 if counts["failed"] else 0
