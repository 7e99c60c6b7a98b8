"""The ``keychords distill``, ``keychords train-key`` and ``keychords eval`` commands.

Each command is a short script over phases (:mod:`.phases`, shared;
:mod:`.chord_phases` and :mod:`.key_phases`, each command's own). A phase
that cannot go on raises :class:`.phases.CommandError`, which
``tagger.cli.main`` prints. Kept apart from :mod:`tagger.cli` (which only
calls :func:`add_commands`); nothing heavy is imported until a command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from . import chord_phases, key_phases, keycqt_phases, phases
from .phases import CommandError

# Stage-1 targets, chosen by measurement (training/README.md, "The stage-1 targets").
DEFAULT_STAGE1_LOSS = "soft"
DEFAULT_STAGE1_TEMPERATURE = 2.0
# How train-key combines several key teachers, chosen on validation
# (training/README.md, "Two key teachers").
DEFAULT_TEACHER_COMBINATION = "geometric"


def distill(args) -> int:
    """``keychords distill``: cache, teacher, stages 1 / 2, evaluate, register."""
    from model_zoo import registry
    from model_zoo.student import ChordStudent
    t0 = time.monotonic()
    device = phases.start(args)
    teacher = chord_phases.load_teacher(args.teacher, device, args.teacher_weights,
                                        args.teacher_combine)
    phases.check_name(args.name)
    init = phases.load_init(args.init, "chord", "student")
    with phases.prepare_library(args, chord_phases.streams(teacher), device,
                                teacher.bytes_per_second()) as lib:
        teacher_seconds = chord_phases.run_teacher_phase(args, lib, teacher)
        if args.cache_only:
            return 0
        stages = chord_phases.stages(args, lib.n_labelled)
        train, held = phases.split(args, lib)
        phases.say(args, f"training stages {stages}: {len(train)} training tracks "
                         f"({lib.hours(train):.2f} h), {len(held)} held out")
        net, cfg, results = chord_phases.train_stages(args, lib, train, held, teacher, init,
                                                      stages, device)
        metrics = {"training": results,
                   **chord_phases.evaluate(args, lib, net, held, teacher, cfg, device)}
        comp = chord_phases.compare(lib, metrics, phases.baseline(init, "chord", "student"),
                                    _role(init), held, teacher, cfg, device)
        phases.check_register(args, comp)
        metrics.update(baseline=comp.record(),
                       **phases.measure_speed(args, chord_phases.speed_card(net), net))
        card = registry.save_model(
            net.cpu(), args.name, task="chord", features=dict(ChordStudent.FEATURES),
            metrics=metrics, extra=chord_phases.card_extra(net),
            provenance=phases.provenance(
                lib, train, held, init, method="keychords distill", **teacher.provenance(),
                stages=stages, labelled_tracks=lib.n_labelled))
        report = phases.write_report(args, lib, card, metrics, t0,
                                     teacher_seconds=round(teacher_seconds, 1))
    return phases.finish(args, card, report, chord_phases.summary(metrics))


def train_key(args) -> int:
    """``keychords train-key``: cache, train, calibrate, evaluate, register."""
    from model_zoo import registry, skey
    if (args.architecture or phases.init_architecture(args.init, "key")) == "keycqt":
        return train_key_cqt(args)
    t0 = time.monotonic()
    device = phases.start(args)
    phases.check_name(args.name)
    teachers = key_phases.load_teachers(args, device)
    weights = key_phases.teacher_weights(args, teachers)
    init = phases.load_init(args.init, "key", "chromanet")
    with phases.prepare_library(args, key_phases.streams(teachers), device) as lib:
        teacher = key_phases.run_teacher_phase(args, lib, teachers, weights)
        if args.cache_only:
            return 0
        train, held = phases.split(args, lib)
        phases.say(args, f"training: {len(train)} tracks ({lib.hours(train):.2f} h), "
                         f"{len(held)} held out")
        cfg = key_phases.train_config(args)
        res = key_phases.train(args, lib, train, held, cfg, teacher, init, device)
        final, perm, calib = key_phases.output_order(res.net, lib, train, init, device)
        metrics = {"training": key_phases.training_result(res), "calibration": calib,
                   **key_phases.evaluate(lib, final, perm, held, teacher, device)}
        print(key_phases.order_line(calib), file=sys.stderr, flush=True)
        comp = key_phases.compare(lib, metrics, final, perm,
                                  phases.baseline(init, "key", "chromanet"), _role(init),
                                  held, device)
        phases.check_register(args, comp, key_phases.doubt(calib))
        metrics.update(baseline=comp.record(),
                       **phases.measure_speed(args, key_phases.speed_card(final), final))
        card = registry.save_model(
            final.cpu(), args.name, task="key", features=dict(skey.FEATURES), metrics=metrics,
            extra=key_phases.card_extra(),
            provenance=phases.provenance(
                lib, train, held, init,
                **key_phases.method(cfg, teacher, len(key_phases.labelled(lib, train)))))
        report = phases.write_report(args, lib, card, metrics, t0)
    return phases.finish(args, card, report, key_phases.summary(metrics))


def train_key_cqt(args) -> int:
    """``keychords train-key --architecture keycqt``: cache, distil, evaluate, register."""
    from model_zoo import registry
    from model_zoo.keycqt import FEATURES
    t0 = time.monotonic()
    device = phases.start(args)
    phases.check_name(args.name)
    teachers = key_phases.load_teachers(args, device)
    weights = key_phases.teacher_weights(args, teachers)
    init = phases.load_init(args.init, "key", "keycqt")
    with phases.prepare_library(args, keycqt_phases.streams(teachers), device) as lib:
        teacher = key_phases.run_teacher_phase(args, lib, teachers, weights)
        if args.cache_only:
            return 0
        train, held = phases.split(args, lib)
        phases.say(args, f"training: {len(train)} tracks ({lib.hours(train):.2f} h), "
                         f"{len(held)} held out")
        cfg = keycqt_phases.train_config(args)
        res = keycqt_phases.train(args, lib, train, held, cfg, teacher, init, device)
        metrics = {"training": keycqt_phases.training_result(res),
                   **keycqt_phases.evaluate(lib, res.net, held, teacher)}
        comp = keycqt_phases.compare(lib, metrics, keycqt_phases.baseline(init), _role(init),
                                     held, device)
        phases.check_register(args, comp)
        metrics.update(baseline=comp.record(), **phases.measure_speed(
            args, keycqt_phases.speed_card(res.net), res.net))
        card = registry.save_model(
            res.net, args.name, task="key", features=dict(FEATURES), metrics=metrics,
            extra=keycqt_phases.card_extra(),
            provenance=phases.provenance(
                lib, train, held, init,
                **keycqt_phases.method(cfg, teacher, len(key_phases.labelled(lib, train)))))
        report = phases.write_report(args, lib, card, metrics, t0)
    return phases.finish(args, card, report, key_phases.summary(metrics))


def _role(init) -> str:
    return "init" if init.net is not None else "shipped default"


def eval_models(args) -> int:
    """``keychords eval``: score models side by side on a labelled folder."""
    from model_zoo import registry
    from tagger.engine import AnalysisError

    from .evaluate import evaluate_folder, format_eval
    if not args.chord_model and not args.key_model:
        raise CommandError("name at least one --chord-model or --key-model")
    if args.reference_model and not args.chord_model:
        raise CommandError("--reference-model scores chord models: name at least one "
                           "--chord-model")
    if args.chord_model:
        try:
            import mir_eval  # noqa: F401
        except ImportError:
            raise CommandError("chord scores need mir_eval: pip install "
                               "'beets-keychords[eval]'") from None
    try:
        res = evaluate_folder(args.paths, args.chord_model or [], args.key_model or [],
                              label_dirs=args.labels or (), reference=args.reference_model,
                              device=args.device, progress=not args.quiet and not args.json,
                              threads=args.threads)
    except (registry.ModelError, AnalysisError) as e:
        raise CommandError(str(e)) from e
    if not res["files"]:
        raise CommandError("no labelled audio files (.lab / .key next to the audio or "
                           "under --labels)", code=1)
    print(json.dumps(res, indent=1, default=str) if args.json else format_eval(res))
    return 0


# -- parser -------------------------------------------------------------------------------

def _dilations(text: str) -> list[int]:
    """``"16,32"`` -> ``[16, 32]``: positive dilations, for ``--extra-dilations``."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers like 16,32: {text!r}")
    return values


def _common(p, name_required: bool = True) -> None:
    p.add_argument("paths", nargs="+", metavar="LIBRARY", help="audio files and folders")
    p.add_argument("--name", required=name_required, help="id of the new model to register")
    p.add_argument("--labels", action="append", metavar="DIR",
                   help="folder with .lab / .key ground truth, matched by file stem "
                        "(repeatable; files next to the audio are always used)")
    p.add_argument("--cache", metavar="DIR", help="dataset cache folder (default: "
                   "the user cache folder, distill/<name>)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: default)")
    p.add_argument("--heldout", type=float, default=0.1,
                   help="share of tracks held out for early stopping and scores (default 0.1)")
    p.add_argument("--validation", action="append", metavar="DIR",
                   help="hold out these files / folders instead (repeatable): they are cached "
                        "with the library, never trained on, and their scores pick the weights")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--eval-every", type=int, default=200, help="steps between held-out scores")
    p.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints")
    p.add_argument("--patience", type=int, default=5,
                   help="stop after this many held-out scores without improvement")
    p.add_argument("--minutes", type=float, default=0.0,
                   help="time limit per training stage, minutes (0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--restart", action="store_true",
                   help="ignore checkpoints of an earlier run of this model (the cache is kept)")
    p.add_argument("--cache-only", action="store_true", help="build the cache, do not train")
    p.add_argument("--register-anyway", action="store_true",
                   help="register the new model even when it scores below its --init (or "
                        "the shipped default) on the held-out tracks")
    p.add_argument("--report", metavar="FILE", help="also write the run report (JSON) here")
    p.add_argument("--json", action="store_true", help="print the run report as JSON")
    p.add_argument("--speed-seconds", type=float, default=120.0,
                   help="audio length for the inference-speed measurement (0: skip)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def add_commands(sub) -> None:
    """Add ``distill``, ``train-key`` and ``eval`` to the ``keychords`` subparsers."""
    p = sub.add_parser("distill", help="train a chord student on your library from a teacher",
                       description="Cache features and a teacher's posteriors for a library, "
                                   "train the chord student (stage 1: pseudo-labels; stage 2: "
                                   ".lab ground truth + selective KD), evaluate, register.")
    _common(p)
    p.add_argument("--teacher", required=True, action="append",
                   help="teacher chord model id (e.g. crema); repeat it for an ensemble "
                        "whose combined posteriors are the targets")
    p.add_argument("--teacher-weights", metavar="W1,W2,...",
                   help="an ensemble's weights, one per --teacher in order (default: equal)")
    p.add_argument("--teacher-combine", choices=["mean", "geometric"], default="geometric",
                   help="an ensemble's rule: arithmetic mean of the probabilities, or "
                        "their normalised geometric mean (default geometric: it scored "
                        "higher on validation, training/README.md)")
    p.add_argument("--init", help="continue from this student model ('default': the default "
                                  "chord model, when it is a student; default: from scratch)")
    p.add_argument("--stage", choices=["auto", "1", "2", "both"], default="auto",
                   help="auto: stage 1, plus stage 2 when .lab files exist "
                        "(stage 2 only with --init)")
    p.add_argument("--loss", choices=["focal", "soft"], default=DEFAULT_STAGE1_LOSS,
                   help=f"stage-1 targets: teacher argmax with focal loss, or softened "
                        f"posteriors (default {DEFAULT_STAGE1_LOSS})")
    p.add_argument("--temperature", type=float, default=DEFAULT_STAGE1_TEMPERATURE,
                   help="stage-1 soft-target temperature")
    p.add_argument("--steps", type=int, default=3000, help="stage-1 steps (default 3000)")
    p.add_argument("--stage2-steps", type=int, default=1500, help="stage-2 steps (default 1500)")
    p.add_argument("--rehearsal", type=float, default=0.5,
                   help="stage 2: share of each batch drawn from tracks without .lab files "
                        "and trained on the teacher's soft targets, so the student does not "
                        "drift from the teacher on unlabelled kinds of music (default 0.5; 0: off)")
    p.add_argument("--stage2-lr-scale", type=float, default=0.5,
                   help="stage-2 learning rate as a share of --lr (default 0.5)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--window", type=int, default=256, help="training window, frames")
    p.add_argument("--track-context", type=int, default=0, metavar="UNITS",
                   help="give the student a whole-track context block (a bi-directional "
                        "GRU of UNITS units per direction over 8-frame block means; added "
                        "at zero to an --init student). Train it on long windows "
                        "(e.g. --window 1024 --batch-size 4). Default 0: none")
    p.add_argument("--frame-blocks", type=int, default=0, metavar="N",
                   help="give the student N per-frame residual MLP blocks (more capacity "
                        "per frame, the same context; each starts as the identity, so an "
                        "--init student's output is unchanged at first). Default 0: none")
    p.add_argument("--eq-augment", type=float, default=0.0, metavar="DB",
                   help="pass each training window through a random smooth equaliser "
                        "(tilt and two bells, each up to +-DB dB; the targets stay), so the "
                        "student learns to ignore timbre and mix. Default 0: off")
    p.add_argument("--extra-dilations", type=_dilations, default=[], metavar="D1,D2,...",
                   help="append residual dilated conv blocks with these dilations to the "
                        "student (a longer receptive field: each adds D frames each side; "
                        "each starts as the identity, so an --init student's output is "
                        "unchanged at first). Train on windows well over twice the new "
                        "field (e.g. --window 512 --batch-size 8). Default: none")
    p.set_defaults(func=distill)

    p = sub.add_parser("train-key", help="train an S-KEY key model on your library",
                       description="Self-supervised S-KEY training of a ChromaNet on a "
                                   "library (optionally with a key teacher), calibration of "
                                   "its output order, evaluation, registration.")
    _common(p)
    p.add_argument("--teacher", action="append",
                   help="key model to distil from as an extra target (repeatable: e.g. "
                        "--teacher skey --teacher keynet; their outputs are combined)")
    p.add_argument("--teacher-weights", metavar="W1,W2",
                   help="weights of the teachers in their combination (default: equal)")
    p.add_argument("--teacher-combination", choices=["arithmetic", "geometric"],
                   default=DEFAULT_TEACHER_COMBINATION,
                   help="weighted arithmetic or geometric mean of the teachers' probabilities "
                        f"(default {DEFAULT_TEACHER_COMBINATION})")
    p.add_argument("--kd-weight", type=float, default=1.0, help="weight of the teacher term")
    p.add_argument("--kd-on", choices=["all", "unlabelled"], default="all",
                   help="views the teacher term covers: all, or only those of tracks without "
                        "a .key label, so that labels alone decide where there are some")
    p.add_argument("--sup-weight", type=float, default=1.0,
                   help="weight of the supervised term on tracks with .key labels "
                        "(S-KEY's semi-supervised variant; 0: self-supervised only)")
    p.add_argument("--segment-seconds", type=float, default=15.0,
                   help="training segment length (inference always uses 15 s segments)")
    p.add_argument("--architecture", choices=["chromanet", "keycqt"],
                   help="keycqt: a small network on the chord model's CQT (no second front "
                        "end), distilled from --teacher and .key labels; chromanet: S-KEY's "
                        "network on its own CQT, self-supervised losses plus teachers and "
                        "labels (default: the --init model's, else the default key model's)")
    p.add_argument("--init", help="continue from this key model of the same architecture ('default': the "
                                  "default key model; default: from scratch)")
    p.add_argument("--steps", type=int, default=2000, help="training steps (default 2000)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--eval-items", type=int, default=24,
                   help="held-out view triples scored at each evaluation (default 24)")
    p.set_defaults(func=train_key)

    p = sub.add_parser("eval", help="compare chord / key models on a labelled folder",
                       description="mir_eval chord scores (.lab) and MIREX key scores (.key) "
                                   "of models side by side.")
    p.add_argument("paths", nargs="+", metavar="DIR")
    p.add_argument("--chord-model", action="append", help="chord model id (repeatable)")
    p.add_argument("--key-model", action="append", help="key model id (repeatable)")
    p.add_argument("--labels", action="append", metavar="DIR",
                   help="folder with .lab / .key files matched by stem (repeatable)")
    p.add_argument("--reference-model", metavar="MODEL",
                   help="score the chord models against this model's chords instead of "
                        ".lab files (e.g. student-vs-teacher agreement on any music)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the scores as JSON")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=eval_models)
