"""keychords for beets: musical key and chord progression of every track.

A thin adapter over :mod:`tagger`: the analysis (models, decoding, batching)
is the tagger's; this module maps its results onto beets items, registers
the fields, template fields and queries, and wires the ``keychords``
command and the import stage. ``keychords-train`` runs ``keychords distill``
(the same parser and phases) over the matching items.

Nothing here imports torch (or numpy) at module level: ``beet ls`` and
every other command stay fast. The models are loaded on the first
analysis and kept for the rest of the run.

Fields
------
- ``initial_key``: beets' own field, always short standard notation
  (``Am``, ``F#m``; beets' MusicalKey type spells flats as sharps: ``D#``).
- ``chords`` / ``progression``: media fields (written to the files):
  ID3 ``TXXX:CHORDS`` / ``TXXX:PROGRESSION``, Vorbis and APEv2 ``CHORDS`` /
  ``PROGRESSION``, MP4 ``----:com.apple.iTunes:CHORDS`` / ``...:PROGRESSION``,
  ASF ``CHORDS`` / ``PROGRESSION`` (the keys :mod:`tagger.tags` uses).
- ``key_confidence`` (float), ``chords_timed`` (text, see
  :func:`tagger.sidecar.format_chords_timed`), ``keychords_model`` (``chord=ID,key=ID``),
  ``tuning`` (float, cents vs A440), ``key_changes`` (int), ``keys_timed``
  (the timed key track, same form as ``chords_timed``: ``0.00 Eb|95.00 E|210.50``),
  ``key_intro`` / ``key_outro`` (the key of the first / last 30 s, only when it
  differs from the main key): flexible attributes, in the database only.
- ``$camelot``, ``$openkey``, ``$key`` (``key_notation``): template fields
  computed from ``initial_key``, spelled by key signature (``Eb``, not ``D#``).
- ``chords`` and ``chords_timed`` are spelled in the key's own spelling
  (``Eb Cm Fm Bb``) unless ``flats`` is ``yes`` or ``no``.

Queries
-------
- ``harmonic:8A`` / ``harmonic:Am``: the key, its Camelot neighbours and
  its relative key. ``harmonic:intro:8A`` / ``harmonic:outro:8A`` test the
  key of the first / last 30 s (``key_intro`` / ``key_outro``, else the main
  key); ``harmonic:any:8A`` any key the track passes through (``keys_timed``).
- ``key:Eb``: the main key, whatever its spelling or notation (``key:D#``,
  ``key:5B``, ``key:"E-flat major"`` find the same tracks).
- ``progression:"I V vi IV"``: the Roman-numeral loop, up to rotation.
- ``chords:"Am F C G"``: the chord loop, up to rotation and transposition.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from beets import ui
from beets.dbcore import types
from beets.dbcore.query import FieldQuery, InvalidQueryArgumentValueError
from beets.plugins import BeetsPlugin

if TYPE_CHECKING:
    from beets.importer import ImportSession, ImportTask
    from beets.library import Item, Library

MEDIA_FIELDS = ("chords", "progression")
_WORKERS_MIN_BATCH = 4       # fewer items than this: decode in-process
_ANALYZER: dict[tuple, Any] = {}   # settings -> the loaded tagger.engine.Analyzer


# ---------------------------------------------------------------------------
# Key helpers (template fields, queries)
# ---------------------------------------------------------------------------

def _key_index(value: Any) -> int | None:
    """Key index of a stored key in any notation; None for empty/"o"/junk."""
    if not value or not isinstance(value, str) or value.strip().lower() == "o":
        return None
    from tagger.notation import parse_key_any
    try:
        return parse_key_any(value)
    except ValueError:
        return None


def _key_in(item: Item, notation: str) -> str:
    idx = _key_index(item.get("initial_key"))
    if idx is None:
        return ""
    from tagger.notation import format_key
    return format_key(idx, notation, flats=None)


def _camelot(item: Item) -> str:
    return _key_in(item, "camelot")


def _openkey(item: Item) -> str:
    return _key_in(item, "openkey")


# ---------------------------------------------------------------------------
# Queries
# ---------------------------------------------------------------------------

_PARTS = ("intro", "outro", "any")


def _track_keys(obj, part: str | None) -> set[int]:
    """Key indices of a track's ``part``: None = main key, ``intro`` / ``outro``
    = ``key_intro`` / ``key_outro`` else the main key, ``any`` = every key of
    ``keys_timed`` and the main key."""
    main = _key_index(obj.get("initial_key"))
    if part in ("intro", "outro"):
        own = _key_index(obj.get(f"key_{part}"))
        found = {own if own is not None else main}
    elif part == "any":
        from tagger.sidecar import parse_chords_timed
        try:
            timed = parse_chords_timed(obj.get("keys_timed") or "")
        except ValueError:
            timed = []
        found = {main} | {_key_index(label) for _, _, label in timed}
    else:
        found = {main}
    return found - {None}


def _part_and_key(pattern: str) -> tuple[str | None, int | None]:
    part, sep, rest = pattern.partition(":")
    if sep and part.strip().lower() in _PARTS:
        return part.strip().lower(), _key_index(rest)
    return None, _key_index(pattern)


class HarmonicQuery(FieldQuery[str]):
    """``harmonic:[PART:]KEY``: tracks that mix harmonically with KEY.

    KEY in any notation (``Am``, ``A minor``, ``8A``, ``1m``); matches the
    key itself, one step either way on the Camelot wheel and the relative
    key (:func:`tagger.notation.camelot_neighbours`), read from each item's
    ``initial_key`` (any notation there, too). PART (``intro``, ``outro``,
    ``any``) tests those keys instead (:func:`_track_keys`).
    """

    def __init__(self, field_name: str, pattern: str, fast: bool = True):
        self.part, idx = _part_and_key(pattern)
        if idx is None:
            raise InvalidQueryArgumentValueError(
                pattern, "a key", "e.g. Am, F#, 8A (Camelot), 1m (Open Key); "
                "intro:8A, outro:8A or any:8A for the first / last 30 s or any part")
        from tagger.notation import camelot_neighbours
        self.keys = frozenset(camelot_neighbours(idx))
        super().__init__(field_name, pattern, False)

    def col_clause(self):
        return None, ()

    def match(self, obj) -> bool:
        return bool(_track_keys(obj, self.part) & self.keys)

    @classmethod
    def value_match(cls, pattern: str, value: Any) -> bool:
        idx = _key_index(pattern)
        if idx is None:
            return False
        from tagger.notation import camelot_neighbours
        return _key_index(value) in camelot_neighbours(idx)


class KeyQuery(FieldQuery[str]):
    """``key:KEY``: tracks in KEY, read in any spelling or notation on both
    sides (``key:Eb`` = ``key:D#`` = ``key:5B`` = ``key:"E-flat major"``)."""

    def __init__(self, field_name: str, pattern: str, fast: bool = True):
        self.key = _key_index(_words_to_symbols(pattern))
        if self.key is None:
            raise InvalidQueryArgumentValueError(
                pattern, "a key", "e.g. Eb, D#, Ebm, 5B (Camelot), 10d (Open Key), E-flat major")
        super().__init__(field_name, pattern, False)

    def col_clause(self):
        return None, ()

    def match(self, obj) -> bool:
        return _key_index(obj.get("initial_key")) == self.key

    @classmethod
    def value_match(cls, pattern: str, value: Any) -> bool:
        want = _key_index(_words_to_symbols(pattern))
        return want is not None and _key_index(value) == want


def _words_to_symbols(text: str) -> str:
    """``E-flat major`` -> ``Eb major``, ``F sharp minor`` -> ``F# minor``."""
    import re
    return re.sub(r"^\s*([A-Ga-g])[\s-]*(flat|sharp)\b",
                  lambda m: m.group(1) + ("b" if m.group(2).lower() == "flat" else "#"),
                  str(text), flags=re.IGNORECASE)


class ProgressionQuery(FieldQuery[str]):
    """``progression:"I V vi IV"``: the Roman-numeral loop, up to rotation
    (:func:`tagger.progression.progression_query` says what matches)."""

    def __init__(self, field_name: str, pattern: str, fast: bool = True):
        from tagger.progression import progression_query
        self.matches = progression_query(pattern)
        super().__init__(field_name, pattern, False)

    def col_clause(self):
        return None, ()

    def match(self, obj) -> bool:
        return self.matches(obj.get(self.field_name))

    @classmethod
    def value_match(cls, pattern: str, value: Any) -> bool:
        return cls("progression", pattern).matches(value)


class ChordsQuery(FieldQuery[str]):
    """``chords:"Am F C G"``: the chord loop, up to rotation and transposition
    (:func:`tagger.progression.chords_query` says what matches)."""

    def __init__(self, field_name: str, pattern: str, fast: bool = True):
        from tagger.progression import chords_query
        self.matches = chords_query(pattern)
        super().__init__(field_name, pattern, False)

    def col_clause(self):
        return None, ()

    def match(self, obj) -> bool:
        return self.matches(obj.get(self.field_name))

    @classmethod
    def value_match(cls, pattern: str, value: Any) -> bool:
        return cls("chords", pattern).matches(value)


# ---------------------------------------------------------------------------
# The plugin
# ---------------------------------------------------------------------------

def _media_field(name: str):
    from mediafile import (ASFStorageStyle, MediaField, MP3DescStorageStyle,
                           MP4StorageStyle, StorageStyle)
    tag = name.upper()
    return MediaField(
        MP3DescStorageStyle(tag),
        MP4StorageStyle(f"----:com.apple.iTunes:{tag}"),
        StorageStyle(tag),
        ASFStorageStyle(tag),
    )


class KeychordsPlugin(BeetsPlugin):
    # chords/progression keep beets' default type (missing = None) so that
    # writing an item without them deletes the tags instead of writing
    # empty ones.
    item_types: ClassVar[dict[str, types.Type]] = {
        "key_confidence": types.Float(3),
        "chords_timed": types.STRING,
        "keychords_model": types.STRING,
        "tuning": types.Float(1),
        "key_changes": types.INTEGER,
        "keys_timed": types.STRING,
        "key_intro": types.STRING,
        "key_outro": types.STRING,
    }
    item_queries: ClassVar[dict[str, Any]] = {
        "harmonic": HarmonicQuery,
        "key": KeyQuery,
        "progression": ProgressionQuery,
        "chords": ChordsQuery,
    }

    def __init__(self) -> None:
        super().__init__()
        self.config.add({
            "auto": True,
            "overwrite": False,       # keyfinder's name ...
            "force": False,           # ... and autobpm's: either one forces
            "write": None,            # None: follow import.write
            "device": "auto",
            "batch_size": 16,
            "workers": "auto",
            "key_notation": "standard",
            "flats": None,            # None: the key's own spelling; yes / no force
            "chord_model": None,
            "key_model": None,
            "min_confidence": 0.1,
            "train": {                # beet keychords-train
                "teacher": "crema",   # chord teacher model id
                "init": "default",    # continue this chord model (null: from scratch)
                "minutes": 30,        # training time limit per stage
                "name": "beets-chords",
                "options": [],        # any other `keychords distill` options
            },
        })
        for name in MEDIA_FIELDS:
            self._add_media_field_once(name)
        self.template_fields["camelot"] = _camelot
        self.template_fields["openkey"] = _openkey
        self.template_fields["key"] = self._key_display
        self._analyzer_error: str | None = None
        self._to_write: set[int] = set()
        if self.config["auto"].get(bool):
            self.import_stages = [self.imported]
            self.register_listener("import_task_files", self.import_task_files)

    # -- registration -----------------------------------------------------
    def _add_media_field_once(self, name: str) -> None:
        """``add_media_field``, tolerating a second plugin instance."""
        from mediafile import MediaField, MediaFile
        if isinstance(MediaFile.__dict__.get(name), MediaField):
            from beets import library
            library.Item._media_fields.add(name)
        else:
            self.add_media_field(name, _media_field(name))

    def _key_display(self, item: Item) -> str:
        return _key_in(item, self._notation())

    def _notation(self) -> str:
        from tagger.notation import notation_name
        try:
            return notation_name(self.config["key_notation"].get() or "standard")
        except ValueError as e:
            raise ui.UserError(f"keychords: key_notation: {e}") from None

    # -- settings ---------------------------------------------------------
    def _flats(self) -> bool | None:
        value = self.config["flats"].get()
        return None if value in (None, "auto") else bool(value)

    def _force(self) -> bool:
        return self.config["force"].get(bool) or self.config["overwrite"].get(bool)

    def _write_default(self) -> bool:
        """The plugin's ``write`` option, else ``import.write``."""
        value = self.config["write"].get()
        return ui.should_write() if value is None else bool(value)

    def _workers(self, n_items: int) -> int:
        value = self.config["workers"].get()
        if value in (None, "auto"):
            value = min(4, os.cpu_count() or 1)
        try:
            value = max(0, int(value))
        except (TypeError, ValueError):
            raise ui.UserError(
                f"keychords: workers must be a number or auto, not {value!r}") from None
        return 0 if n_items < _WORKERS_MIN_BATCH else min(value, n_items)

    # -- models (lazy) ----------------------------------------------------
    def analyzer(self, device: str | None = None):
        """The tagger's Analyzer, loaded on first use and then kept.

        One per process (shared by every instance of the plugin) for the
        current settings; other settings (``-d``) load a new one.
        """
        spec = (device or self.config["device"].as_str(),
                self.config["chord_model"].get(), self.config["key_model"].get(),
                max(1, self.config["batch_size"].get(int)), self._flats(),
                os.environ.get("KEYCHORDS_MODEL_DIR"))
        cached = _ANALYZER.get(spec)
        if cached is not None:
            return cached
        from model_zoo.registry import ModelError
        from tagger.engine import AnalysisError, Analyzer
        dev, chord_model, key_model, batch_size, flats, _ = spec
        self._log.debug("loading models (device {})", dev)
        try:
            analyzer = Analyzer(chord_model, key_model, device=dev, batch_size=batch_size,
                                flats=flats)
        except (ModelError, AnalysisError) as e:
            raise ui.UserError(f"keychords: cannot load models: {e}") from e
        _ANALYZER.clear()
        _ANALYZER[spec] = analyzer
        self._log.debug("models: {}", analyzer.model_ids)
        return analyzer

    # -- analysis ---------------------------------------------------------
    def needs_analysis(self, item: Item, force: bool) -> bool:
        """Without force: items keychords has not analysed yet, and that do
        not already carry both a key and chords (from their files)."""
        if force:
            return True
        if item.get("keychords_model"):
            return False
        return not (item.get("initial_key") and item.get("chords"))

    def analyse(self, items: Sequence[Item], analyzer) -> Iterator[tuple[Item, Any, Any]]:
        """``(item, tagger.pipeline.Outcome, tagger.pipeline.Options)`` for
        each item, in order."""
        from tagger import pipeline
        options = pipeline.Options(
            workers=self._workers(len(items)), dry_run=True,
            group_size=max(1, analyzer.batch_size // 2), key_notation="standard",
            flats=False, min_key_confidence=self.config["min_confidence"].as_number())
        paths = [os.fsdecode(item.path) for item in items]
        for item, outcome in zip(items, pipeline.run(paths, analyzer, options), strict=True):
            yield item, outcome, options

    def apply(self, item: Item, outcome, options, force: bool) -> None:
        """Store an analysis result in ``item``'s fields (not in the db)."""
        from tagger.pipeline import tag_values
        r = outcome.result
        values = tag_values(r, options)
        key = values.get("initial_key")
        if key == "o":            # below min_confidence: no key (beets would store "O")
            key = None
        existing = item.get("initial_key")
        chords, progression = values.get("chords"), values.get("progression")
        if key and (force or not existing):
            item["initial_key"] = key
        elif existing:
            # The item keeps its key (not forced, or this key is unsure): read
            # the loop against that key so that the numerals (and the chords'
            # spelling) agree with it.
            idx = _key_index(existing)
            if idx is not None and r.segments:
                from tagger.progression import summarize
                chords, progression = summarize(r.segments, idx, self._flats())
                progression = progression or None
        if chords:
            item["chords"] = chords
        if progression:
            item["progression"] = progression
        if r.key_index is not None:
            item["key_confidence"] = round(float(r.key_confidence), 4)
        if r.segments:
            from tagger.sidecar import format_chords_timed
            item["chords_timed"] = format_chords_timed(r.timed_labels(self._flats()))
        self._apply_harmony(item, r)
        item["keychords_model"] = ",".join(f"{k}={v}" for k, v in sorted(r.models.items()))

    def _apply_harmony(self, item: Item, r) -> None:
        """Tuning and the timed key track (``keys_timed``, ``key_changes``,
        ``key_intro`` / ``key_outro`` where they differ from the main key)."""
        if r.tuning is not None:
            item["tuning"] = round(float(r.tuning), 1)
        if not r.key_regions:
            return
        from tagger.keytrack import edge_keys
        from tagger.sidecar import keys_timed_text
        item["keys_timed"] = keys_timed_text(r)
        item["key_changes"] = r.key_changes
        for name, idx in zip(("key_intro", "key_outro"), edge_keys(r.key_regions, r.duration)):
            if idx is not None and idx != r.key_index:
                from model_zoo.keys import short_key
                item[name] = short_key(idx, None)
            elif name in item:
                del item[name]

    # -- the command ------------------------------------------------------
    def commands(self) -> list[ui.Subcommand]:
        cmd = ui.Subcommand("keychords", help="detect musical key and chord progression")
        p = cmd.parser
        p.add_option("-f", "--force", action="store_true", default=False,
                     help="re-analyse items already analysed and replace existing keys")
        p.add_option("-w", "--write", action="store_true", dest="write", default=None,
                     help="write tags to the files (default: import.write)")
        p.add_option("-W", "--nowrite", action="store_false", dest="write",
                     help="do not write tags to the files")
        p.add_option("-m", "--move", action="store_true", dest="move", default=None,
                     help="move files in the library when their path changes "
                          "(default: as beets' import.move/copy)")
        p.add_option("-M", "--nomove", action="store_false", dest="move",
                     help="do not move files")
        p.add_option("-n", "--dry-run", "--pretend", action="store_true", dest="dry_run",
                     default=False, help="analyse and show the changes; change nothing")
        p.add_option("-d", "--device", dest="device", default=None,
                     help="auto, cpu, cuda or cuda:N (default: the device option)")
        cmd.func = self.command
        return [cmd, self._train_command()]

    # -- training -----------------------------------------------------------
    def _train_command(self) -> ui.Subcommand:
        cmd = ui.Subcommand("keychords-train",
                            help="train a chord model on library items (keychords distill)")
        p = cmd.parser
        p.add_option("--minutes", type="float", default=None,
                     help="training time limit per stage (default: train.minutes)")
        p.add_option("--name", default=None, help="id of the new model (default: train.name)")
        p.add_option("--register-anyway", action="store_true", default=False,
                     help="register the new model even when it scores below the model it "
                          "continues (or the shipped default)")
        cmd.func = self.train
        return cmd

    def train(self, lib: Library, opts, args: list[str]) -> None:
        """``beet keychords-train``: ``keychords distill`` over the matching items."""
        paths = [os.fsdecode(i.path) for i in lib.items(args)]
        if not paths:
            raise ui.UserError("keychords: no items match")
        name = opts.name or self.config["train"]["name"].as_str()
        from tagger.cli import build_parser
        from tagger.distill.phases import CommandError
        argv = self._distill_argv(paths, name, opts)
        try:
            distill = build_parser().parse_args(argv)
        except SystemExit:
            raise ui.UserError(f"keychords: train.options: cannot use {argv[len(paths) + 1:]}") \
                from None
        try:
            distill.func(distill)
        except CommandError as e:
            raise ui.UserError(f"keychords: {e.message}" if e.message else "interrupted") \
                from None
        ui.print_(f"to tag with it in beets, put this line in the keychords section of your "
                  f"config (beet config -e):\n    chord_model: {name}")

    def _distill_argv(self, paths: list[str], name: str, opts) -> list[str]:
        train = self.config["train"]
        minutes = opts.minutes if opts.minutes is not None else train["minutes"].as_number()
        argv = ["distill", *paths, "--name", name, "--teacher", train["teacher"].as_str(),
                "--minutes", str(minutes), "--device", self.config["device"].as_str()]
        init = train["init"].get()
        if init:
            argv += ["--init", str(init)]
        if opts.register_anyway:
            argv.append("--register-anyway")
        return argv + [str(o) for o in train["options"].get(list)]

    def command(self, lib: Library, opts, args: list[str]) -> None:
        force = opts.force or self._force()
        if opts.write is not None:
            write = opts.write
        else:
            write = self._write_default()
        move = ui.should_move(opts.move)
        self._notation()                      # fail early on a bad setting
        items = list(lib.items(args))
        todo = [i for i in items if self.needs_analysis(i, force)]
        skipped = len(items) - len(todo)
        if not items:
            ui.print_("keychords: no items match")
            return
        if not todo:
            ui.print_(f"keychords: nothing to analyse ({len(items)} matched, "
                      f"all analysed already; -f to redo)")
            return
        analyzer = self.analyzer(opts.device)
        counts = {"ok": 0, "changed": 0, "failed": 0, "write_failed": 0}
        from tagger.progress import RunProgress
        with RunProgress(len(todo), unit="track", desc="keychords") as progress:
            for item, outcome, options in self.analyse(todo, analyzer):
                if outcome.status != "ok":
                    counts["failed"] += 1
                    with progress.bar.external_write_mode(file=sys.stderr):
                        self._log.error("failed: {}: {}", item.filepath, outcome.error)
                    progress.advance()
                    continue
                counts["ok"] += 1
                self.apply(item, outcome, options, force)
                if opts.dry_run:
                    with progress.bar.external_write_mode(file=sys.stderr):
                        counts["changed"] += bool(ui.show_model_changes(item))
                else:
                    with progress.bar.external_write_mode(file=sys.stderr):
                        self._log.debug("{}: key {} ({}), chords {}, progression {}",
                                        item.filepath, item.get("initial_key"),
                                        self._key_display(item), item.get("chords"),
                                        item.get("progression"))
                    if write and not item.try_write():
                        counts["write_failed"] += 1
                    if move and lib.directory in _ancestry(item.path):
                        item.move()
                    item.store()
                progress.advance(outcome.result.duration)
        if opts.dry_run:   # "would update" only where a value would change
            summary = [(counts["changed"], "would update"),
                       (counts["ok"] - counts["changed"], "unchanged")]
        else:
            summary = [(counts["ok"], "analysed")]
        summary += [(skipped, "skipped"), (counts["failed"], "failed")]
        if counts["write_failed"]:
            summary.append((counts["write_failed"], "not written"))
        ui.print_(progress.summary(summary))

    # -- import ------------------------------------------------------------
    def imported(self, session: ImportSession, task: ImportTask) -> None:
        """Import stage: analyse the task's items and store the results.

        Files are written later, in :meth:`import_task_files`, once beets has
        copied or moved them into the library (writing here would change
        the source files of a copying import).
        """
        force = self._force()
        items = [i for i in task.imported_items() if self.needs_analysis(i, force)]
        if not items or self._analyzer_error:
            return
        try:
            analyzer = self.analyzer()
        except ui.UserError as e:
            self._analyzer_error = str(e)
            self._log.error("{} (analysis is off for this import)", e)
            return
        from tagger.progress import RunProgress
        with RunProgress(len(items), unit="track", desc="keychords") as progress:
            for item, outcome, options in self.analyse(items, analyzer):
                with progress.bar.external_write_mode(file=sys.stderr):
                    self._store_imported(item, outcome, options, force)
                progress.advance(outcome.result.duration if outcome.result else 0.0)

    def _store_imported(self, item: Item, outcome, options, force: bool) -> None:
        if outcome.status != "ok":
            self._log.warning("failed: {}: {}", item.filepath, outcome.error)
            return
        self.apply(item, outcome, options, force)
        item.store()
        self._to_write.add(item.id)
        self._log.info("{}: key {}, chords {}", item.filepath,
                       item.get("initial_key"), item.get("chords"))

    def import_task_files(self, session: ImportSession, task: ImportTask) -> None:
        """Write the analysed items' files, unless beets has just done it.

        beets writes an item's tags on import only for autotagged
        (applied / re-tagged) items; as-is imports are never written
        (beets#6671), so their keychords fields would stay in the database
        only.
        """
        from beets.importer import Action
        pending = [i for i in task.imported_items() if i.id in self._to_write]
        if not pending:
            return
        self._to_write.difference_update(i.id for i in pending)
        if not self._write_default():
            return
        beets_wrote = (session.config["write"].get(bool)
                       and (task.apply or task.choice_flag == Action.RETAG))
        if beets_wrote:
            return
        for item in pending:
            if item.try_write():
                item.store()


def _ancestry(path: bytes) -> list[bytes]:
    from beets import util
    return util.ancestry(path)
