"""The phases ``keychords distill`` and ``keychords train-key`` share.

Each command is a short script over these: :func:`start` (threads, device),
:func:`check_name`, :func:`load_init`, :func:`prepare_library` (scan, cache
build, labels), :func:`split`, training inside :func:`training_errors`, its
own evaluation, the comparison with the :func:`baseline` model
(:func:`check_register`), :func:`measure_speed`, :func:`provenance`, registration,
:func:`write_report` and :func:`finish`. A phase that cannot go on raises
:class:`CommandError`; ``tagger.cli.main`` prints it and exits with its code.
Nothing heavy is imported until a phase runs.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


class CommandError(Exception):
    """A command cannot go on: ``keychords: error: <message>``, exit ``code``.

    An empty message exits quietly with ``code`` (an interrupted training run).
    """

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.message, self.code = message, code


def say(args, msg: str) -> None:
    """A progress line on stderr, unless ``--quiet``."""
    if not getattr(args, "quiet", False):
        print(msg, file=sys.stderr, flush=True)


def start(args):
    """Apply ``--threads``; the ``--device`` to train on."""
    import torch

    from tagger.engine import pick_device
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return pick_device(args.device)
    except Exception as e:   # AnalysisError, or torch's own for a malformed name
        raise CommandError(str(e)) from e


def check_name(name: str) -> None:
    """Raise unless ``name`` can be the id of a new model."""
    from model_zoo import registry
    if not registry.valid_model_id(name):
        raise CommandError(f"invalid model name {name!r} (letters, digits, . _ -)")
    if any(c.id == name and c.builtin for c in registry.list_models()):
        raise CommandError(f"{name!r} is a built-in model; choose another name")


@dataclass
class Init:
    """The model a run continues from: ``id`` ("scratch": none), its card and net."""
    id: str = "scratch"
    card: object = None
    net: object = None


def load_init(name: str | None, task: str, architecture: str) -> Init:
    """The ``--init`` model (``"default"``: the default ``task`` model), which must
    be an ``architecture``; ``Init()`` without one."""
    if not name:
        return Init()
    from model_zoo import registry
    from tagger.engine import resolve_model
    try:
        card, net = registry.load_model(resolve_model(task, None) if name == "default"
                                        else name)
    except registry.ModelError as e:
        raise CommandError(str(e)) from e
    if card.architecture != architecture:
        raise CommandError(f"--init {name!r} is a {card.architecture} model; only "
                           f"a {architecture!r} model can be continued here")
    return Init(card.id, card, net)


def init_architecture(name: str | None, task: str) -> str:
    """The architecture of the ``--init`` model ``name`` (``"default"`` or none: the
    default ``task`` model's)."""
    from model_zoo import registry
    from tagger.engine import resolve_model
    try:
        return resolve_model(task, None if name in (None, "default") else name).architecture
    except registry.ModelError as e:
        raise CommandError(str(e)) from e


def baseline(init: Init, task: str, architecture: str) -> Init:
    """The model a new one must beat: its ``init``, else the shipped default
    (``Init()`` when that is of another architecture)."""
    if init.net is not None:
        return init
    try:
        return load_init("default", task, architecture)
    except CommandError:
        return Init()


# -- the library and its cache ---------------------------------------------------------------

@dataclass
class Library:
    """A library's features in an open dataset cache (see :func:`prepare_library`)."""
    cache: object            # cache.DatasetCache
    cache_dir: Path
    run_root: Path           # this model's checkpoints and report
    build: object            # cache.BuildReport
    n_labelled: int          # tracks with .lab labels
    validation_files: list[str]

    @property
    def ids(self) -> list[str]:
        return self.build.track_ids

    def hours(self, ids: list[str]) -> float:
        from .cache import hours
        return hours(self.cache, ids)


def _scan(args, paths) -> list[str]:
    """Audio files under ``paths``, absolute (the cache knows a file by its path, so
    ``distill .`` and ``distill ~/Music`` reuse one another's work)."""
    from tagger.scan import scan
    skipped = []
    files = scan([os.path.abspath(p) for p in paths], skipped)
    for s in skipped:
        say(args, f"keychords: note: {s.path}: skipped ({s.reason})")
    return files


def _library_and_validation(args) -> tuple[list[str], list[str]]:
    """``(all files, --validation files)``; a file reached both ways is listed once."""
    val_files = _scan(args, args.validation or [])
    return list(dict.fromkeys(_scan(args, args.paths) + val_files)), val_files


def _cache_dir(args) -> Path:
    from .cache import default_cache_dir
    return Path(args.cache) if args.cache else default_cache_dir(args.name)


def _summarise_build(args, rep) -> None:
    say(args, f"features: {rep.analysed} files analysed ({rep.audio_seconds / 3600:.2f} h) in "
              f"{rep.feature_seconds:.0f} s ({rep.realtime:.0f}x realtime), {rep.added} new "
              f"tracks; {rep.already} already cached, {rep.duplicates} duplicates skipped, "
              f"{len(rep.failed)} failed")
    for path, why in rep.failed:
        say(args, f"keychords: {path}: {why}")


def _build(args, cache, files, streams, labels, device, extra_bytes_per_second):
    from . import cache as C
    try:
        rep = C.build_features(cache, files, streams, device=device, label_index=labels,
                               progress=not args.quiet, log=lambda m: say(args, m),
                               extra_bytes_per_second=extra_bytes_per_second)
    except C.CacheError as e:
        raise CommandError(str(e)) from e
    _summarise_build(args, rep)
    if not rep.track_ids:
        raise CommandError("no usable tracks", code=1)
    return rep


@contextmanager
def prepare_library(args, streams, device,
                    extra_bytes_per_second: float = 0.0) -> Iterator[Library]:
    """Scan the library (and ``--validation``), cache its ``streams`` and labels; the
    cache stays open inside the ``with``."""
    from .cache import DatasetCache, attach_all_labels
    from .labels import LabelIndex
    files, val_files = _library_and_validation(args)
    if not files:
        raise CommandError("no audio files found")
    cache_dir = _cache_dir(args)
    labels = LabelIndex(args.labels or ())
    with DatasetCache(cache_dir) as cache:
        rep = _build(args, cache, files, streams, labels, device, extra_bytes_per_second)
        n_lab = attach_all_labels(cache, rep.track_ids, labels)
        yield Library(cache, cache_dir, cache_dir / "runs" / args.name, rep, n_lab, val_files)


def split(args, lib: Library) -> tuple[list[str], list[str]]:
    """``(train, held out)``: the ``--validation`` folders' tracks when given, else
    the ``--heldout`` hash split; with ``--restart``, earlier checkpoints go."""
    from .cache import split_tracks
    if args.restart and lib.run_root.exists():
        shutil.rmtree(lib.run_root)
    if not lib.validation_files:
        return split_tracks(lib.cache, lib.ids, args.heldout)
    val = {src[2] for src in map(lib.cache.source, lib.validation_files)
           if src is not None and src[2]}
    return [t for t in lib.ids if t not in val], [t for t in lib.ids if t in val]


# -- training and after --------------------------------------------------------------------

@contextmanager
def training_errors() -> Iterator[None]:
    """A TrainError becomes a CommandError; Ctrl-C exits 130 quietly (checkpoints stay)."""
    from .loop import TrainError
    try:
        yield
    except TrainError as e:
        raise CommandError(str(e)) from e
    except KeyboardInterrupt:
        raise CommandError("", code=130) from None


def measure_speed(args, card, net) -> dict:
    """``{"speed": ..., "speed_cuda": ...}`` of ``net`` run as ``card`` describes it, over
    ``--speed-seconds`` of audio (``{}`` when 0; no CUDA entry without CUDA)."""
    if args.speed_seconds <= 0:
        return {}
    import torch

    from .evaluate import inference_speed
    out = {"speed": inference_speed(card, net, torch.device("cpu"), seconds=args.speed_seconds)}
    if torch.cuda.is_available():
        out["speed_cuda"] = inference_speed(card, net, torch.device("cuda"),
                                            seconds=args.speed_seconds)
    return out


def provenance(lib: Library, train: list[str], held: list[str], init: Init,
               **method) -> dict:
    """The card's provenance: ``method`` (how it was trained), then the data."""
    return {**method, "init": init.id, "training_tracks": len(train),
            "heldout_tracks": len(held), "training_hours": round(lib.hours(train), 3),
            "cache": str(lib.cache_dir), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}


def write_report(args, lib: Library, card, metrics: dict, t0: float, **build) -> dict:
    """The run report (``runs/<name>/report.json``, and ``--report``); ``build`` adds
    to its build figures."""
    rep = lib.build
    report = {"model": card.id, "card": str(card.card_path),
              "build": {"files": rep.files, "analysed": rep.analysed, "added": rep.added,
                        "already": rep.already, "duplicates": rep.duplicates,
                        "failed": len(rep.failed),
                        "audio_hours": round(rep.audio_seconds / 3600, 3),
                        "feature_seconds": round(rep.feature_seconds, 1),
                        "feature_x_realtime": round(rep.realtime, 1), **build,
                        "estimated_bytes": rep.estimated_bytes,
                        "cache_bytes": lib.cache.disk_usage()},
              "metrics": metrics, "wall_seconds": round(time.monotonic() - t0, 1)}
    lib.run_root.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=1, default=str) + "\n"
    (lib.run_root / "report.json").write_text(text)
    if getattr(args, "report", None):
        Path(args.report).write_text(text)
    return report


@dataclass
class Comparison:
    """The new model's and its baseline's score on the same held-out set."""
    metric: str                  # what was scored, e.g. "held-out agreement"
    new: float | None
    base: float | None
    base_id: str
    role: str                    # "init" or "shipped default"

    @property
    def worse(self) -> bool:
        return self.new is not None and self.base is not None and self.new < self.base

    def line(self) -> str:
        if self.new is None:
            return f"not compared: no held-out score ({self.metric})"
        if self.base is None:
            return f"{self.metric}: new {self.new:.3f} (no baseline model to compare with)"
        return (f"{self.metric}: new {self.new:.3f} vs {self.base:.3f} for {self.base_id} "
                f"(the {self.role}, same tracks)")

    def record(self) -> dict:
        return {"metric": self.metric, "new": self.new, "model": self.base_id,
                "role": self.role, "score": self.base}


def check_register(args, comp: Comparison, doubt: str = "") -> None:
    """Say how the new model compares; refuse to register it (exit 3) when it scores
    below its baseline or ``doubt`` names another reason, unless ``--register-anyway``."""
    print(comp.line(), file=sys.stderr, flush=True)
    why = doubt or (f"it scores below {comp.base_id}" if comp.worse else "")
    if why and not args.register_anyway:
        raise CommandError(f"{args.name!r} not registered: {why}; continue a model instead "
                           "(--init default) or train longer, or pass --register-anyway "
                           "(the trained weights are kept: the same command with it "
                           "registers them at once)", code=3)


def finish(args, card, report: dict, summary: str) -> int:
    """Say the scores (even with ``--quiet``: they decide whether the model is any
    good) and how to use the new model; ``--json``: print the report."""
    print(summary, file=sys.stderr, flush=True)
    say(args, f"registered '{card.id}' -> {card.card_path}\n"
              f"use it: keychords tag --{card.task}-model {card.id} ...")
    if args.json:
        print(json.dumps(report, default=str))
    return 0
