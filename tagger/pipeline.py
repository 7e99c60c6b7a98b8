"""Run the engine over many files: decode workers -> features -> models -> tags.

Decoding happens in worker processes that stream each file as chunks
through a bounded queue, so memory stays flat whatever the library size
or a file's duration. Results come out in input order.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .engine import AnalysisError, Analyzer
from .result import TrackResult
from .workers import decoded_stream


@dataclass
class Options:
    workers: int = 0                 # 0: decode in this process
    group_size: int = 8              # finished tracks analysed together
    dry_run: bool = False
    overwrite: bool = False
    sidecars: tuple[str, ...] = ()
    key_notation: str = "standard"
    flats: bool | None = None        # None: by key signature / the key's own spelling
    min_key_confidence: float = 0.1
    write_key: bool = True
    write_chords: bool = True


ALREADY_DONE = "already analysed with these models"


@dataclass
class Outcome:
    path: str
    status: str                      # "ok", "skipped" or "failed"
    error: str = ""
    result: TrackResult | None = None
    tags: dict[str, str] = field(default_factory=dict)   # tag values (written or would be)
    written: dict[str, str] = field(default_factory=dict)
    kept: dict[str, str] = field(default_factory=dict)    # differing values the file keeps


# -- the run -----------------------------------------------------------------

def run(paths: list[str], analyzer: Analyzer, options: Options,
        skip: Callable[[str], str | bool | None] | None = None) -> Iterator[Outcome]:
    """Analyse (and tag) ``paths``; yields one :class:`Outcome` per path, in order.

    ``skip(path)``: why to leave ``path`` alone (a string; True means
    already analysed), or a false value to analyse it."""
    from .tags import remove_tmp_files
    for d in sorted({os.path.dirname(os.path.abspath(p)) for p in paths}):
        remove_tmp_files(d)

    todo: list[str] = []
    ready: dict[int, Outcome] = {}
    for i, p in enumerate(paths):
        why = skip(p) if skip is not None else None
        if why:
            ready[i] = Outcome(p, "skipped", why if isinstance(why, str) else ALREADY_DONE)
        else:
            todo.append(p)
    todo_index = [i for i in range(len(paths)) if i not in ready]

    next_out = 0

    def flush() -> Iterator[Outcome]:
        nonlocal next_out
        while next_out < len(paths) and next_out in ready:
            yield ready.pop(next_out)
            next_out += 1

    yield from flush()
    tracks: dict[int, object] = {}
    stats: dict[int, tuple[int, int]] = {}
    group: list[int] = []

    def analyse_group() -> None:
        finished = [tracks.pop(i) for i in group]
        try:
            results = analyzer.analyse(finished)
        except Exception as e:  # a model failure fails these files, not the run
            for i in group:
                ready[todo_index[i]] = Outcome(paths[todo_index[i]], "failed",
                                               f"analysis failed ({type(e).__name__}: {e})")
            group.clear()
            return
        for i, res in zip(group, results):
            out, stat = outcome_values(res, options), stats.pop(i)
            ready[todo_index[i]] = out if options.dry_run else apply(out, stat, options)
        group.clear()

    for j, kind, payload in decoded_stream(todo, analyzer.sample_rate, options.workers):
        if kind == "chunk":
            if j not in tracks:
                tracks[j] = analyzer.start(todo[j])
            analyzer.feed(tracks[j], payload)
            continue
        if kind == "error":
            tracks.pop(j, None)
            ready[todo_index[j]] = Outcome(todo[j], "failed", payload)
        else:  # end of file
            track = tracks.get(j) or analyzer.start(todo[j])
            try:
                tracks[j] = analyzer.finish(track)
                stats[j] = payload
                group.append(j)
            except AnalysisError as e:
                tracks.pop(j, None)
                ready[todo_index[j]] = Outcome(todo[j], "failed", str(e))
        if len(group) >= options.group_size or (group and not _more_in_flight(tracks, group)):
            analyse_group()
        yield from flush()
    if group:
        analyse_group()
    yield from flush()


def _more_in_flight(tracks: dict, group: list[int]) -> bool:
    return any(i not in group for i in tracks)


def tag_values(result: TrackResult, options: Options) -> dict[str, str]:
    from .notation import format_key
    values: dict[str, str] = {}
    if options.write_key and result.key_index is not None:
        if result.key_confidence < options.min_key_confidence:
            values["initial_key"] = "o"
        else:
            values["initial_key"] = format_key(result.key_index, options.key_notation,
                                               flats=options.flats)
    if options.write_chords and result.chords:
        values["chords"] = result.chords
    if options.write_chords and result.progression:
        values["progression"] = result.progression
    return values


def outcome_values(result: TrackResult, options: Options) -> Outcome:
    """The outcome of an analysed track before anything is written: the tag
    values it gets (pure; no file is touched)."""
    return Outcome(result.path, "ok", result=result, tags=tag_values(result, options))


def apply(out: Outcome, stat: tuple[int, int], options: Options) -> Outcome:
    """Write ``out``'s tags (and sidecars, when it carries its result) into
    its file, unless the file changed since ``stat = (size, mtime_ns)``.

    Idempotent: values the file already holds are not written again; a file
    that changed but already holds them is "skipped", not failed.
    """
    from .sidecar import write_sidecar
    from .tags import FileChangedError, TagError, tags_to_write, write_tags
    try:
        out.written = write_tags(out.path, out.tags, overwrite=options.overwrite, expect=stat)
        if not options.overwrite and len(out.written) < len(out.tags):
            out.kept = _kept(out.path, out.tags)
        for kind in options.sidecars if out.result is not None else ():
            write_sidecar(out.result, kind, flats=options.flats)
    except FileChangedError as e:
        # Stale results are never written. Where writing them would have been
        # a no-op anyway (another keychords run on the same library got there
        # first), that is no failure; either way the file is not marked done,
        # so a changed file is analysed again next time.
        out.status, out.error = "failed", str(e)
        try:
            if not tags_to_write(out.path, out.tags, options.overwrite):
                out.status = "skipped"
                out.error = "already tagged meanwhile (it changed while it was being analysed)"
        except TagError:
            pass
    except TagError as e:
        out.status, out.error = "failed", str(e)
    except OSError as e:
        out.status, out.error = "failed", f"cannot write ({e.strerror or e})"
    return out


def _kept(path: str, values: dict[str, str]) -> dict[str, str]:
    """What ``--overwrite`` would still change: the file's own, differing values
    (``{}`` when the file cannot be read now: only the summary uses this)."""
    from .tags import TagError, tags_to_write
    try:
        return tags_to_write(path, values, overwrite=True)
    except TagError:
        return {}
