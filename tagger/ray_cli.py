"""``keychords tag --ray``: the command around :mod:`tagger.ray_run`."""

from __future__ import annotations

import os
import re
import sys

from .console import error, json_line, scan_noting

EXTRA_HINT = "keychords tag --ray needs the ray extra: pip install 'beets-keychords[ray]'"


def split_address(value: str, paths: list[str]) -> tuple[str | None, list[str]]:
    """``--ray`` takes an optional ADDRESS, so ``--ray /music`` reads the
    first path as one: a value that is no address goes back to the paths."""
    if not value:
        return None, paths
    is_address = (value == "auto" or value.startswith("ray://")
                  or re.fullmatch(r"[\w.-]+:\d+", value) is not None)
    if is_address and not os.path.exists(value):
        return value, paths
    return None, [value, *paths]


def _cards(args):
    from .engine import resolve_model
    chord = None if args.no_chords else resolve_model("chord", args.chord_model)
    key = None if args.no_key else resolve_model("key", args.key_model)
    return chord, key


def _check(args, paths) -> str | None:
    if not paths:
        return "the following arguments are required: paths"
    if not args.results:
        return "--ray needs --results DIR (where the results table goes)"
    if args.sidecar or args.dry_run:
        return "--sidecar and --dry-run do not go with --ray (nothing is written; " \
               "'keychords apply' writes)"
    try:
        import pyarrow  # noqa: F401
        import ray  # noqa: F401
    except ImportError:
        return EXTRA_HINT
    return None


def tag_ray(args) -> int:
    from model_zoo.registry import ModelError

    from . import pipeline, ray_run
    from .progress import RunProgress
    address, paths = split_address(args.ray, list(args.paths))
    problem = _check(args, paths)
    if problem:
        error(problem)
        return 2
    try:
        chord_card, key_card = _cards(args)
    except ModelError as e:
        error(str(e))
        return 2
    options = pipeline.Options(key_notation=args.key_notation, flats=args.flats,
                               min_key_confidence=args.min_key_confidence,
                               write_key=not args.no_key, write_chords=not args.no_chords)
    ray_options = ray_run.RayOptions(address=address, results=args.results,
                                     batch_size=args.batch_size, force=args.force,
                                     model_workers=args.model_workers,
                                     flush_rows=max(1, args.flush_rows))
    entries, done = ray_run.manifest(scan_noting(paths), args.results,
                                     ray_run.model_ids(chord_card, key_card), args.force)
    if entries:
        ray_run.connect(address)
    counts = {"ok": 0, "failed": 0}
    with RunProgress(len(entries), enabled=not args.quiet) as progress:
        for row in ray_run.run(entries, chord_card, key_card, options, ray_options):
            counts[row["status"]] += 1
            if row["status"] == "failed":
                progress.write(f"keychords: {row['path']}: {row['error']}")
            if args.json:
                print(json_line(row), flush=True)
            progress.advance(row["duration"])
    if not args.quiet:
        print(progress.summary([(counts["ok"], "analysed"),
                                (len(done), "already in the results"),
                                (counts["failed"], "failed")]), file=sys.stderr)
    return 1 if counts["failed"] else 0
