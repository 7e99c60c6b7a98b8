"""The ``keychords`` command line."""

from __future__ import annotations

import argparse
import os
import sys

IMPORTERS = {
    "crema": ("model_zoo.crema", "import_model_h5", "crema's model.h5 (needs h5py)"),
    "skey": ("model_zoo.skey", "import_checkpoint", "the official S-KEY skey.pt"),
    "btc": ("model_zoo.btc", "import_checkpoint", "a BTC-ISMIR19 checkpoint (.pt)"),
}


def _models_list(args) -> int:
    from model_zoo import registry
    cards = registry.list_models()
    if not cards:
        print(f"no models installed (user model directory: {registry.user_model_dir()})")
        return 0
    width = max(len(c.id) for c in cards)
    for c in cards:
        where = "built-in" if c.builtin else "user"
        flag = " (default)" if c.default else ""
        print(f"{c.id:<{width}}  {c.task:<5}  {c.architecture:<9}  "
              f"{c.parameters:>9,} params  {where}{flag}")
    print(f"user model directory: {registry.user_model_dir()}")
    return 0


def _models_import(args) -> int:
    import importlib

    from model_zoo.registry import ModelError
    module, func, _ = IMPORTERS[args.kind]
    importer = getattr(importlib.import_module(module), func)
    try:
        card = importer(args.path, model_id=args.name or args.kind)
    except ModelError as e:
        print(f"keychords: error: {e}", file=sys.stderr)
        return 1
    print(f"imported {args.path} as '{card.id}' ({card.task} model, "
          f"{card.parameters:,} parameters) -> {card.card_path}")
    return 0


def _error(msg: str) -> None:
    print(f"keychords: error: {msg}", file=sys.stderr)


def _printable(text: str) -> str:
    """``text`` as stdout can encode it. A file name's bytes that are not
    valid UTF-8 (held as surrogate escapes) become ``\\udcXX`` escapes
    instead of stopping the run. (stderr does this by itself.)"""
    enc = getattr(sys.stdout, "encoding", None) or "utf-8"
    try:
        text.encode(enc)
        return text
    except UnicodeEncodeError:
        return text.encode(enc, "backslashreplace").decode(enc)


def _json_line(obj) -> str:
    """One line of JSON; ASCII with escapes where stdout cannot take it as is
    (a non-UTF-8 file name: ``json.loads`` then ``os.fsencode`` give back the
    exact bytes of the name)."""
    import json
    text = json.dumps(obj, ensure_ascii=False)
    return text if _printable(text) is text else json.dumps(obj)


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
    }


def _tag(args) -> int:
    from . import pipeline
    from .progress import RunProgress
    from .scan import Skipped, scan
    from .state import State

    skipped: list[Skipped] = []
    paths = scan(args.paths, skipped)
    for s in skipped:
        print(f"keychords: note: {s.path}: skipped ({s.reason})", file=sys.stderr)
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
    skip = None if (args.force or state is None) else (lambda p: state.is_done(p, models))
    counts = {"ok": 0, "skipped": 0, "failed": 0}
    try:
        with RunProgress(len(paths), enabled=not args.quiet) as progress:
            for o in pipeline.run(paths, analyzer, options, skip=skip):
                counts[o.status] += 1
                if o.status == "failed":
                    progress.write(f"keychords: {o.path}: {o.error}")
                elif o.status == "ok" and state is not None:
                    state.mark_done(o.path, models)
                if args.json:
                    print(_json_line(_outcome_json(o, args.flats)), flush=True)
                elif args.dry_run and o.status == "ok":
                    vals = ", ".join(f"{k}={v!r}" for k, v in o.tags.items())
                    progress.write(_printable(f"{o.path}: would write {vals}"), sys.stdout)
                progress.advance(o.result.duration if o.result is not None else 0.0)
    finally:
        if state is not None:
            state.close()
    if not args.quiet:
        print(progress.summary([(counts["ok"], "done"), (counts["skipped"], "skipped"),
                                (counts["failed"], "failed")]), file=sys.stderr)
    return 1 if counts["failed"] else 0


def _show(args) -> int:
    from .engine import AnalysisError
    from .pipeline import Options, tag_values
    from .workers import decode_messages
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
        _error("--plot needs matplotlib (pip install 'keychords[plot]')")
        return 2
    try:
        save_plot(result, out, flats)
    except (OSError, ValueError) as e:
        _error(f"{out}: {e}")
        return 1
    return 0


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
    matched = 0
    for path in scan(args.paths):
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keychords", description="Musical key and chord tagging for music libraries.")
    sub = parser.add_subparsers(dest="command", required=True)

    models = sub.add_parser("models", help="list or import models")
    msub = models.add_subparsers(dest="models_command", required=True)
    p = msub.add_parser("list", help="show built-in and user models")
    p.set_defaults(func=_models_list)
    p = msub.add_parser("import", help="convert a foreign checkpoint into a keychords model")
    p.add_argument("kind", choices=sorted(IMPORTERS),
                   help="; ".join(f"{k}: {v[2]}" for k, v in sorted(IMPORTERS.items())))
    p.add_argument("path", help="checkpoint file")
    p.add_argument("--name", help="model id to register (default: the kind)")
    p.set_defaults(func=_models_import)

    p = sub.add_parser("tag", help="analyse audio files and write key and chord tags")
    p.add_argument("paths", nargs="+", help="files and folders (searched recursively)")
    _add_model_options(p)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="decoding processes (default: CPU count)")
    p.add_argument("--dry-run", action="store_true", help="analyse, print, touch nothing")
    p.add_argument("--json", action="store_true", help="one JSON line per file on stdout")
    p.add_argument("--overwrite", action="store_true", help="replace existing key/chord tags")
    p.add_argument("--force", action="store_true", help="re-analyse files already done")
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
    p.set_defaults(func=_tag)

    p = sub.add_parser("show", help="analyse one file and print its key and chord chart")
    p.add_argument("file")
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
