"""The ``keychords distill``, ``keychords train-key`` and ``keychords eval`` commands.

Kept apart from :mod:`tagger.cli` (which only calls :func:`add_commands`);
nothing heavy is imported until a command runs.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import types
from pathlib import Path

# Stage-1 default, chosen by measurement: two otherwise identical CPU runs
# (crema teacher, 2.81 h of game music, 14 min / ~370 steps of batch 16 x 256
# frames each), scored on the first 30 POP909 validation renders with
# `keychords eval` (mir_eval, DEFAULT_DECODE): soft targets at T = 2 reached
# majmin 0.681 / mirex 0.664 / root 0.708, hard argmax + focal loss 0.484 /
# 0.482 / 0.641 (crema itself: 0.739 / 0.715 / 0.783); held-out agreement
# with the teacher 0.436 vs 0.394. The full distribution carries more signal
# per frame, which matters most on short runs.
DEFAULT_STAGE1_LOSS = "soft"
DEFAULT_STAGE1_TEMPERATURE = 2.0


def _err(msg: str) -> None:
    print(f"keychords: error: {msg}", file=sys.stderr)


def _say(args, msg: str) -> None:
    if not getattr(args, "quiet", False):
        print(msg, file=sys.stderr, flush=True)


def _setup(args):
    import torch

    from tagger.engine import pick_device
    if args.threads:
        torch.set_num_threads(args.threads)
    return pick_device(args.device)


def _scan(args, paths):
    """Audio files under ``paths``, absolute (the cache knows a file by its path, so
    ``distill .`` and ``distill ~/Music`` reuse one another's work)."""
    from tagger.scan import scan
    skipped = []
    files = scan([os.path.abspath(p) for p in paths], skipped)
    for s in skipped:
        _say(args, f"keychords: note: {s.path}: skipped ({s.reason})")
    return files


def _library_and_validation(args) -> tuple[list[str], list[str]]:
    """``(all files, --validation files)``; a file reached both ways is listed once."""
    val_files = _scan(args, args.validation or [])
    return list(dict.fromkeys(_scan(args, args.paths) + val_files)), val_files


def _split(args, cache, ids: list[str], val_files: list[str]) -> tuple[list[str], list[str]]:
    """``(train, held out)``: the ``--validation`` folders' tracks when given, else
    the ``--heldout`` hash split of ``ids``."""
    from . import cache as C
    if not val_files:
        return C.split_tracks(cache, ids, args.heldout)
    val = {src[2] for src in map(cache.source, val_files) if src is not None and src[2]}
    return [t for t in ids if t not in val], [t for t in ids if t in val]


def _cache_dir(args) -> Path:
    from .cache import default_cache_dir
    return Path(args.cache) if args.cache else default_cache_dir(args.name)


def _name_problem(name: str) -> str | None:
    """Why ``name`` cannot be the id of a new model, or None."""
    from model_zoo import registry
    if not registry.valid_model_id(name):
        return f"invalid model name {name!r} (letters, digits, . _ -)"
    if any(c.id == name and c.builtin for c in registry.list_models()):
        return f"{name!r} is a built-in model; choose another name"
    return None


def _load_init(name: str, task: str, architecture: str):
    """``(card, net)`` of the model to continue from (``"default"``: the default
    ``task`` model); raises ModelError, also when it is not an ``architecture``."""
    from model_zoo import registry
    from tagger.engine import resolve_model
    card, net = registry.load_model(resolve_model(task, None) if name == "default" else name)
    if card.architecture != architecture:
        raise registry.ModelError(f"--init {name!r} is a {card.architecture} model; only "
                                  f"a {architecture!r} model can be continued here")
    return card, net


def _write_report(args, run_root: Path, report: dict) -> None:
    run_root.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=1, default=str) + "\n"
    (run_root / "report.json").write_text(text)
    if getattr(args, "report", None):
        Path(args.report).write_text(text)


def _summarise_build(args, rep, what: str) -> None:
    _say(args, f"{what}: {rep.analysed} files analysed ({rep.audio_seconds / 3600:.2f} h) in "
               f"{rep.feature_seconds:.0f} s ({rep.realtime:.0f}x realtime), {rep.added} new "
               f"tracks; {rep.already} already cached, {rep.duplicates} duplicates skipped, "
               f"{len(rep.failed)} failed")
    for path, why in rep.failed:
        _say(args, f"keychords: {path}: {why}")


def _build_cache(args, cache, files, streams, labels, device, extra_bytes_per_second=0.0):
    """Features (and labels) of ``files`` in ``cache``: ``(report, labelled tracks)``, or an
    exit code after a one-line error."""
    from . import cache as C
    try:
        rep = C.build_features(cache, files, streams, device=device, label_index=labels,
                               progress=not args.quiet, log=lambda m: _say(args, m),
                               extra_bytes_per_second=extra_bytes_per_second)
    except C.CacheError as e:
        _err(str(e))
        return 2
    _summarise_build(args, rep, "features")
    if not rep.track_ids:
        _err("no usable tracks")
        return 1
    return rep, C.attach_all_labels(cache, rep.track_ids, labels)


# -- distill ------------------------------------------------------------------------------

def _stages(args, n_labelled: int) -> list[int]:
    if args.stage == "1":
        return [1]
    if args.stage == "2":
        return [2]
    if args.stage == "both":
        return [1, 2]
    if not n_labelled:
        return [1]
    return [2] if args.init else [1, 2]


def _distill(args) -> int:
    import torch

    from model_zoo import registry
    from model_zoo.student import ChordStudent

    from . import cache as C
    from .labels import LabelIndex
    from .teacher import Teacher, TeacherError, run_teacher
    from .train_chords import (
        ChordTrainConfig,
        TrainError,
        heldout_scores,
        train_chords,
    )
    t0 = time.monotonic()
    try:
        device = _setup(args)
        teacher = Teacher(args.teacher, device)
    except (TeacherError, registry.ModelError) as e:
        _err(str(e))
        return 2
    except Exception as e:  # pick_device
        _err(str(e))
        return 2
    problem = _name_problem(args.name)
    if problem:
        _err(problem)
        return 2
    init_state = student_config = None
    init_id = "scratch"
    if args.init:
        try:
            icard, inet = _load_init(args.init, "chord", "student")
            init_id = icard.id
        except registry.ModelError as e:
            _err(str(e))
            return 2
        init_state, student_config = inet.state_dict(), dict(icard.config)
    if args.track_context:
        student_config = {**(student_config or {}), "context_units": args.track_context}
    files, val_files = _library_and_validation(args)
    if not files:
        _err("no audio files found")
        return 2
    cache_dir = _cache_dir(args)
    run_root = cache_dir / "runs" / args.name
    progress = not args.quiet
    streams = [C.student_stream()] + teacher.feature_streams()
    labels = LabelIndex(args.labels or ())
    with C.DatasetCache(cache_dir) as cache:
        built = _build_cache(args, cache, files, streams, labels, device,
                             teacher.bytes_per_second())
        if isinstance(built, int):
            return built
        rep, n_lab = built
        ids = rep.track_ids
        t_teacher = time.monotonic()
        n_new = run_teacher(cache, teacher, ids, progress=progress)
        t_teacher = time.monotonic() - t_teacher
        if n_new:
            _say(args, f"teacher {teacher.card.id}: {n_new} tracks in {t_teacher:.0f} s")
        usage = cache.disk_usage()
        _say(args, f"cache {cache_dir}: {len(ids)} tracks, {C.hours(cache, ids):.2f} h, "
                   f"{n_lab} with .lab labels, {usage / 2**20:.1f} MB on disk")
        if args.cache_only:
            return 0

        train, held = _split(args, cache, ids, val_files)
        stages = _stages(args, n_lab)
        if 2 in stages and not n_lab:
            _err("stage 2 needs .lab files (next to the audio or under --labels)")
            return 2
        _say(args, f"training stages {stages}: {len(train)} training tracks "
                   f"({C.hours(cache, train):.2f} h), {len(held)} held out")
        if args.restart and run_root.exists():
            shutil.rmtree(run_root)
        results = {}
        state = init_state
        net = None
        for stage in stages:
            cfg = ChordTrainConfig(
                stage=stage, loss=args.loss, temperature=args.temperature,
                window=args.window, batch_size=args.batch_size, lr=args.lr if stage == 1
                else args.lr * args.stage2_lr_scale,
                max_steps=args.steps if stage == 1 else args.stage2_steps,
                max_minutes=args.minutes, eval_every=args.eval_every,
                checkpoint_every=args.checkpoint_every, patience=args.patience,
                seed=args.seed, rehearsal=args.rehearsal if stage == 2 else 0.0,
                warmup=min(100, max(1, (args.steps if stage == 1
                                        else args.stage2_steps) // 10)))
            try:
                res = train_chords(cache, train, held, cfg, run_root / f"stage{stage}",
                                   teacher=teacher.stream,
                                   teacher_aux=teacher.aux_stream
                                   if cache.has(train[0], teacher.aux_stream) else None,
                                   init_state=state, student_config=student_config,
                                   device=device, progress=progress,
                                   log=lambda m: _say(args, m))
            except TrainError as e:
                _err(str(e))
                return 2
            except KeyboardInterrupt:
                return 130
            net = res.net
            state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
            student_config = dict(net.config)
            results[f"stage{stage}"] = {
                "steps": res.steps, "best_step": res.best_step,
                "best_" + res.metric_name: round(res.best_metric, 4),
                "train_seconds": round(res.seconds, 1),
                "steps_per_second": round(res.steps / res.seconds, 3) if res.seconds else None,
                "config": {k: getattr(cfg, k) for k in ChordTrainConfig.TRAJECTORY}}
            _say(args, f"stage {stage}: {res.steps} steps, best held-out {res.metric_name} "
                       f"{res.best_metric:.4f} at step {res.best_step}")

        # -- evaluation --------------------------------------------------------------
        metrics: dict = {"training": results}
        cfg_eval = cfg   # the last stage's objective
        if held:
            hs = heldout_scores(net, cache, held, teacher.stream, cfg_eval, device)
            metrics["heldout"] = {k: round(v, 4) if isinstance(v, float) else v
                                  for k, v in hs.items()}
            metrics["heldout"]["tracks"] = len(held)
            metrics["heldout"]["hours"] = round(C.hours(cache, held), 3)
            lab_held = [t for t in held if cache.has(t, "labels") and cache.track(t).lab]
            if lab_held:
                try:
                    import mir_eval  # noqa: F401
                except ImportError:
                    _say(args, "keychords: note: mir_eval is not installed (pip install "
                               "'beets-keychords[eval]'): no mir_eval scores")
                else:
                    metrics["heldout_mir_eval"] = cached_chord_report(
                        net, cache, lab_held, teacher.stream, device)
        if args.speed_seconds > 0:
            metrics["speed"] = _speed(net, torch.device("cpu"), args.speed_seconds)
            if torch.cuda.is_available():
                metrics["speed_cuda"] = _speed(net, torch.device("cuda"), args.speed_seconds)
        card = registry.save_model(
            net.cpu(), args.name, task="chord", features=dict(ChordStudent.FEATURES),
            metrics=metrics,
            provenance={"method": "keychords distill", "teacher": teacher.card.id,
                        "teacher_sha256": teacher.card.sha256, "stages": stages,
                        "init": init_id,
                        "training_tracks": len(train), "heldout_tracks": len(held),
                        "training_hours": round(C.hours(cache, train), 3),
                        "labelled_tracks": n_lab, "cache": str(cache_dir),
                        "created": time.strftime("%Y-%m-%dT%H:%M:%S")},
            extra=_student_extra(net))
        report = {"model": card.id, "card": str(card.card_path),
                  "build": {"files": rep.files, "analysed": rep.analysed, "added": rep.added,
                            "already": rep.already,
                            "duplicates": rep.duplicates, "failed": len(rep.failed),
                            "audio_hours": round(rep.audio_seconds / 3600, 3),
                            "feature_seconds": round(rep.feature_seconds, 1),
                            "feature_x_realtime": round(rep.realtime, 1),
                            "teacher_seconds": round(t_teacher, 1),
                            "estimated_bytes": rep.estimated_bytes,
                            "cache_bytes": usage},
                  "metrics": metrics, "wall_seconds": round(time.monotonic() - t0, 1)}
        _write_report(args, run_root, report)
    _say(args, _format_chord_summary(metrics))
    _say(args, f"registered '{card.id}' -> {card.card_path}\n"
               f"use it: keychords tag --chord-model {card.id} ...")
    if args.json:
        print(json.dumps(report, default=str))
    return 0


def _student_extra(net) -> dict:
    """Card extras: the inference window, for students with a finite receptive field."""
    from .train_chords import INFER_WINDOW
    return {} if net.receptive_field() is None else {"window": INFER_WINDOW}


def _speed(net, device, seconds: float) -> dict:
    from model_zoo.student import ChordStudent

    from .evaluate import inference_speed
    card = types.SimpleNamespace(task="chord", features=dict(ChordStudent.FEATURES),
                                 config=dict(net.config), extra=_student_extra(net))
    return inference_speed(card, net, device, seconds=seconds)


def cached_chord_report(net, cache, ids, teacher_stream, device) -> dict:
    """mir_eval scores of the student and of the teacher on labelled cached tracks."""
    import numpy as np

    from .cache import student_input, student_stream
    from .evaluate import pool, score_probs
    from .train_chords import predict_logits
    fr = 22050 / 2048
    rows_s, rows_t = [], []
    for tid in ids:
        info = cache.track(tid)
        feats = student_input(cache.load(tid, student_stream().name))
        probs = predict_logits(net, feats, device).softmax(-1).cpu().numpy()
        rows_s.append(score_probs(probs, fr, info.duration, info.lab))
        if cache.has(tid, teacher_stream):
            tp = np.exp(np.asarray(cache.load(tid, teacher_stream), np.float32))
            rows_t.append(score_probs(tp, fr, info.duration, info.lab))
    out = {"tracks": len(ids), "student": {k: round(v, 4) for k, v in pool(rows_s).items()}}
    if rows_t:
        out["teacher"] = {k: round(v, 4) for k, v in pool(rows_t).items()}
    return out


def _format_chord_summary(m: dict) -> str:
    lines = []
    h = m.get("heldout")
    if h:
        parts = [f"{k} {h[k]:.3f}" for k in ("agreement", "agreement_majmin", "gt_accuracy")
                 if k in h]
        lines.append(f"held-out ({h['tracks']} tracks): " + ", ".join(parts))
    me = m.get("heldout_mir_eval")
    if me:
        from .evaluate import CHORD_METRICS
        lines.append("mir_eval on held-out labelled tracks: " + "  ".join(CHORD_METRICS))
        for who in ("student", "teacher"):
            if who in me:
                lines.append(f"  {who:8s} " + "  ".join(f"{me[who][k]:.3f}"
                                                        for k in CHORD_METRICS))
    s = m.get("speed")
    if s:
        lines.append(f"speed ({s['device']}, {s['threads']} threads): network "
                     f"{s['network_x_realtime']}x, with front end {s['end_to_end_x_realtime']}x "
                     "realtime")
    return "\n".join(lines)


# -- train-key --------------------------------------------------------------------------

def _train_key(args) -> int:
    import numpy as np
    import torch

    from model_zoo import registry, skey

    from . import cache as C
    from .evaluate import inference_speed, key_summary
    from .labels import LabelIndex
    from .train_chords import TrainError
    from .train_key import (
        KeyTeacher,
        KeyTrainConfig,
        calibrate,
        finalize,
        native_probs_cached,
        train_key,
    )
    t0 = time.monotonic()
    try:
        device = _setup(args)
    except Exception as e:
        _err(str(e))
        return 2
    problem = _name_problem(args.name)
    if problem:
        _err(problem)
        return 2
    teacher = None
    if args.teacher:
        try:
            teacher = KeyTeacher(args.teacher, device)
        except (registry.ModelError, TrainError) as e:
            _err(str(e))
            return 2
    init_state, init_id = None, "scratch"
    if args.init:
        try:
            icard, inet = _load_init(args.init, "key", "chromanet")
            init_id = icard.id
        except registry.ModelError as e:
            _err(str(e))
            return 2
        init_state = inet.state_dict()
    files, val_files = _library_and_validation(args)
    if not files:
        _err("no audio files found")
        return 2
    cache_dir = _cache_dir(args)
    run_root = cache_dir / "runs" / args.name
    progress = not args.quiet
    stream = C.skey_stream()
    labels = LabelIndex(args.labels or ())
    with C.DatasetCache(cache_dir) as cache:
        built = _build_cache(args, cache, files, [stream], labels, device)
        if isinstance(built, int):
            return built
        rep = built[0]
        ids = rep.track_ids
        usage = cache.disk_usage()
        if args.cache_only:
            return 0
        train, held = _split(args, cache, ids, val_files)
        _say(args, f"training: {len(train)} tracks ({C.hours(cache, train):.2f} h), "
                   f"{len(held)} held out")
        if args.restart and run_root.exists():
            shutil.rmtree(run_root)
        cfg = KeyTrainConfig(batch_size=args.batch_size, lr=args.lr, max_steps=args.steps,
                             max_minutes=args.minutes, eval_every=args.eval_every,
                             checkpoint_every=args.checkpoint_every, patience=args.patience,
                             kd_weight=args.kd_weight, kd_on=args.kd_on,
                             sup_weight=args.sup_weight,
                             segment_seconds=args.segment_seconds, seed=args.seed,
                             eval_items=args.eval_items,
                             warmup=min(50, max(1, args.steps // 10)))
        try:
            res = train_key(cache, train, held, cfg, run_root / "key", teacher=teacher,
                            init_state=init_state, device=device, progress=progress,
                            log=lambda m: _say(args, m))
        except TrainError as e:
            _err(str(e))
            return 2
        except KeyboardInterrupt:
            return 130
        net = res.net
        train_lab = [(native_probs_cached(net, cache.load(t, stream.name), device),
                      cache.track(t).key) for t in train if cache.track(t).key is not None]
        perm, calib = calibrate(net, train_lab, device)
        final = finalize(net.cpu(), perm)
        metrics = {"training": {"steps": res.steps, "best_step": res.best_step,
                                "train_seconds": round(res.seconds, 1),
                                "steps_per_second": round(res.steps / res.seconds, 3)
                                if res.seconds else None,
                                "last_heldout": res.history[-1] if res.history else None},
                   "calibration": calib}
        held_lab = [t for t in held if cache.track(t).key is not None]
        if held_lab:
            pairs, tpairs = [], []
            for t in held_lab:
                arr = cache.load(t, stream.name)
                p = native_probs_cached(final, arr)[perm]
                pairs.append((cache.track(t).key, int(np.argmax(p))))
                if teacher is not None:
                    tp = _teacher_key(teacher, arr, device)
                    tpairs.append((cache.track(t).key, tp))
            metrics["heldout_key"] = key_summary(pairs)
            if tpairs:
                metrics["heldout_key_teacher"] = key_summary(tpairs)
        card_ns = types.SimpleNamespace(task="key", features=dict(skey.FEATURES),
                                        config=dict(final.config),
                                        extra={"segment_seconds": skey.SEGMENT_SECONDS})
        if args.speed_seconds > 0:
            metrics["speed"] = inference_speed(card_ns, final, torch.device("cpu"),
                                               seconds=args.speed_seconds)
            if torch.cuda.is_available():
                metrics["speed_cuda"] = inference_speed(card_ns, final, torch.device("cuda"),
                                                        seconds=args.speed_seconds)
        card = registry.save_model(
            final.cpu(), args.name, task="key", features=dict(skey.FEATURES), metrics=metrics,
            provenance={"method": "keychords train-key (S-KEY losses"
                                  + (", key-teacher KD" if teacher else "")
                                  + (", .key labels" if cfg.sup_weight > 0 and train_lab else "")
                                  + ")",
                        "teacher": teacher.card.id if teacher else None,
                        "kd_weight": cfg.kd_weight if teacher else 0.0,
                        "kd_on": cfg.kd_on,
                        "sup_weight": cfg.sup_weight,
                        "labelled_tracks": len(train_lab),
                        "segment_seconds": cfg.segment_seconds,
                        "init": init_id, "training_tracks": len(train),
                        "heldout_tracks": len(held),
                        "training_hours": round(C.hours(cache, train), 3),
                        "cache": str(cache_dir),
                        "created": time.strftime("%Y-%m-%dT%H:%M:%S")},
            extra={"segment_seconds": skey.SEGMENT_SECONDS})
        report = {"model": card.id, "card": str(card.card_path),
                  "build": {"files": rep.files, "analysed": rep.analysed, "added": rep.added,
                            "already": rep.already,
                            "duplicates": rep.duplicates, "failed": len(rep.failed),
                            "audio_hours": round(rep.audio_seconds / 3600, 3),
                            "feature_seconds": round(rep.feature_seconds, 1),
                            "feature_x_realtime": round(rep.realtime, 1),
                            "estimated_bytes": rep.estimated_bytes, "cache_bytes": usage},
                  "metrics": metrics, "wall_seconds": round(time.monotonic() - t0, 1)}
        _write_report(args, run_root, report)
    hk = metrics.get("heldout_key")
    if hk:
        _say(args, f"held-out key ({hk['tracks']} tracks): MIREX weighted {hk['weighted']:.3f}, "
                   f"correct {hk['correct']:.3f}")
    _say(args, f"calibrated output order: rotation {calib['rotation']}, mode flipped "
               f"{calib['mode_flipped']} (expected score {calib['expected_weighted']:.3f})")
    _say(args, f"registered '{card.id}' -> {card.card_path}\n"
               f"use it: keychords tag --key-model {card.id} ...")
    if args.json:
        print(json.dumps(report, default=str))
    return 0


def _teacher_key(teacher, arr, device) -> int:
    import numpy as np
    import torch

    from model_zoo import skey
    from model_zoo.features import FrontEnd

    from .train_key import CROP, scale_segment
    seg = FrontEnd(**skey.FEATURES).n_frames(int(skey.SEGMENT_SECONDS * 22050))
    n = arr.shape[0]
    starts = range(0, n - seg + 1, seg) if n >= seg else [0]
    with torch.inference_mode():
        ps = [teacher.net(torch.from_numpy(scale_segment(arr[s: s + seg])[:CROP])[None, None]
                          .to(device))["key"].softmax(-1)[0] for s in starts]
    return int(np.argmax(torch.stack(ps).mean(0).cpu().numpy()))


# -- eval ---------------------------------------------------------------------------------

def _eval(args) -> int:
    from model_zoo import registry
    from tagger.engine import AnalysisError

    from .evaluate import evaluate_folder, format_eval
    if not args.chord_model and not args.key_model:
        _err("name at least one --chord-model or --key-model")
        return 2
    if args.reference_model and not args.chord_model:
        _err("--reference-model scores chord models: name at least one --chord-model")
        return 2
    if args.chord_model:
        try:
            import mir_eval  # noqa: F401
        except ImportError:
            _err("chord scores need mir_eval: pip install 'beets-keychords[eval]'")
            return 2
    try:
        res = evaluate_folder(args.paths, args.chord_model or [], args.key_model or [],
                              label_dirs=args.labels or (), reference=args.reference_model,
                              device=args.device, progress=not args.quiet and not args.json,
                              threads=args.threads)
    except (registry.ModelError, AnalysisError) as e:
        _err(str(e))
        return 2
    if not res["files"]:
        _err("no labelled audio files (.lab / .key next to the audio or under --labels)")
        return 1
    if args.json:
        print(json.dumps(res, indent=1, default=str))
    else:
        print(format_eval(res))
    return 0


# -- parser -------------------------------------------------------------------------------

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
    p.add_argument("--teacher", required=True, help="teacher chord model id (e.g. crema)")
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
    p.set_defaults(func=_distill)

    p = sub.add_parser("train-key", help="train an S-KEY key model on your library",
                       description="Self-supervised S-KEY training of a ChromaNet on a "
                                   "library (optionally with a key teacher), calibration of "
                                   "its output order, evaluation, registration.")
    _common(p)
    p.add_argument("--teacher", help="key model to distil from as an extra target (e.g. skey)")
    p.add_argument("--kd-weight", type=float, default=1.0, help="weight of the teacher term")
    p.add_argument("--kd-on", choices=["all", "unlabelled"], default="all",
                   help="views the teacher term covers: all, or only those of tracks without "
                        "a .key label, so that labels alone decide where there are some")
    p.add_argument("--sup-weight", type=float, default=1.0,
                   help="weight of the supervised term on tracks with .key labels "
                        "(S-KEY's semi-supervised variant; 0: self-supervised only)")
    p.add_argument("--segment-seconds", type=float, default=15.0,
                   help="training segment length (inference always uses 15 s segments)")
    p.add_argument("--init", help="continue from this ChromaNet key model ('default': the "
                                  "default key model; default: from scratch)")
    p.add_argument("--steps", type=int, default=2000, help="training steps (default 2000)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--eval-items", type=int, default=24,
                   help="held-out view triples scored at each evaluation (default 24)")
    p.set_defaults(func=_train_key)

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
    p.set_defaults(func=_eval)
