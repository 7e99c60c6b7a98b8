"""The phases of ``keychords distill`` of its own: the teacher, the training stages,
the held-out evaluation and the summary (the shared ones: :mod:`.phases`)."""

from __future__ import annotations

import time
import types

from .phases import CommandError, Init, Library, say, training_errors


def load_teacher(names: list[str], device, weights: str | None = None,
                 rule: str = "geometric"):
    """The registered chord model ``names[0]`` as a :class:`.teacher.Teacher`; with
    two or more names an :class:`.ensemble.Ensemble` of them, weighted by the
    comma-separated ``weights`` (default: equal) and combined by ``rule``."""
    from model_zoo.registry import ModelError

    from .ensemble import Ensemble, EnsembleError
    from .teacher import Teacher, TeacherError
    try:
        w = [float(x) for x in weights.split(",")] if weights else [1.0] * len(names)
    except ValueError:
        raise CommandError(f"--teacher-weights {weights!r}: numbers separated by commas") \
            from None
    if len(w) != len(names):
        raise CommandError(f"--teacher-weights gives {len(w)} weights for "
                           f"{len(names)} teachers")
    try:
        members = [Teacher(n, device) for n in names]
        return members[0] if len(members) == 1 else Ensemble(members, w, rule)
    except (TeacherError, ModelError, EnsembleError) as e:
        raise CommandError(str(e)) from e


def streams(teacher) -> list:
    """The cache streams a distill run needs: the student's input and the teacher's."""
    from .cache import student_stream
    return [student_stream()] + teacher.feature_streams()


def run_teacher_phase(args, lib: Library, teacher) -> float:
    """Cache the teacher's posteriors of every track (an ensemble's: each member's,
    then their combination); the seconds it took."""
    from .ensemble import Ensemble, run_ensemble
    from .teacher import run_teacher
    t = time.monotonic()
    run = run_ensemble if isinstance(teacher, Ensemble) else run_teacher
    n_new = run(lib.cache, teacher, lib.ids, progress=not args.quiet)
    t = time.monotonic() - t
    if n_new:
        say(args, f"teacher {teacher.id}: {n_new} tracks in {t:.0f} s")
    say(args, f"cache {lib.cache_dir}: {len(lib.ids)} tracks, {lib.hours(lib.ids):.2f} h, "
              f"{lib.n_labelled} with .lab labels, "
              f"{lib.cache.disk_usage() / 2**20:.1f} MB on disk")
    return t


def stages(args, n_labelled: int) -> list[int]:
    """The stages to train: ``--stage``, or for ``auto`` stage 1, plus stage 2 when
    there are .lab files (stage 2 alone after ``--init``)."""
    if args.stage == "auto":
        chosen = ([2] if args.init else [1, 2]) if n_labelled else [1]
    else:
        chosen = {"1": [1], "2": [2], "both": [1, 2]}[args.stage]
    if 2 in chosen and not n_labelled:
        raise CommandError("stage 2 needs .lab files (next to the audio or under --labels)")
    return chosen


def stage_config(args, stage: int):
    """The :class:`.train_chords.ChordTrainConfig` of ``stage`` from the flags."""
    from .train_chords import ChordTrainConfig
    steps = args.steps if stage == 1 else args.stage2_steps
    return ChordTrainConfig(
        stage=stage, loss=args.loss, temperature=args.temperature, window=args.window,
        batch_size=args.batch_size,
        lr=args.lr if stage == 1 else args.lr * args.stage2_lr_scale,
        max_steps=steps, max_minutes=args.minutes, eval_every=args.eval_every,
        checkpoint_every=args.checkpoint_every, patience=args.patience, seed=args.seed,
        rehearsal=args.rehearsal if stage == 2 else 0.0, eq_db=args.eq_augment,
        warmup=min(100, max(1, steps // 10)))


def _stage_result(res, cfg) -> dict:
    return {"steps": res.steps, "best_step": res.best_step,
            "best_" + res.metric_name: round(res.best_metric, 4),
            "train_seconds": round(res.seconds, 1),
            "steps_per_second": round(res.steps / res.seconds, 3) if res.seconds else None,
            "config": {k: getattr(cfg, k) for k in type(cfg).TRAJECTORY}}


def grown_config(args, config: dict) -> dict:
    """The student config entries that ``--track-context``, ``--frame-blocks`` and
    ``--extra-dilations`` change in ``config`` (empty: no growth)."""
    from model_zoo.student import DILATIONS
    growth = {}
    if args.track_context:
        growth["context_units"] = args.track_context
    if args.frame_blocks:
        growth["frame_blocks"] = args.frame_blocks
    if args.extra_dilations:
        growth["dilations"] = list(config.get("dilations", DILATIONS)) + args.extra_dilations
    return growth


def train_stages(args, lib: Library, train, held, teacher, init: Init, chosen, device):
    """Train ``chosen`` stages in turn, each from the last one's weights (the first
    from ``init``): ``(net, last stage's config, {"stage<n>": result})``."""
    from .train_chords import train_chords
    state = init.net.state_dict() if init.net is not None else None
    student_config = dict(init.card.config) if init.card is not None else None
    growth = grown_config(args, student_config or {})
    if growth:
        student_config = {**(student_config or {}), **growth}
    results, net, cfg = {}, None, None
    for stage in chosen:
        cfg = stage_config(args, stage)
        aux = teacher.aux_stream if train and lib.cache.has(train[0], teacher.aux_stream) \
            else None
        with training_errors():
            res = train_chords(lib.cache, train, held, cfg, lib.run_root / f"stage{stage}",
                               teacher=teacher.stream, teacher_aux=aux, init_state=state,
                               student_config=student_config, device=device,
                               progress=not args.quiet, log=lambda m: say(args, m))
        net = res.net
        state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
        student_config = dict(net.config)
        results[f"stage{stage}"] = _stage_result(res, cfg)
        say(args, f"stage {stage}: {res.steps} steps, best held-out {res.metric_name} "
                  f"{res.best_metric:.4f} at step {res.best_step}")
    return net, cfg, results


def evaluate(args, lib: Library, net, held, teacher, cfg, device) -> dict:
    """Held-out scores of ``net`` under the objective ``cfg``: agreement with the
    teacher (``heldout``) and, on tracks with .lab files, mir_eval scores of the
    student and the teacher (``heldout_mir_eval``)."""
    if not held:
        return {}
    from .train_chords import heldout_scores
    hs = heldout_scores(net, lib.cache, held, teacher.stream, cfg, device)
    out = {"heldout": {k: round(v, 4) if isinstance(v, float) else v for k, v in hs.items()}}
    out["heldout"]["tracks"] = len(held)
    out["heldout"]["hours"] = round(lib.hours(held), 3)
    lab_held = [t for t in held if lib.cache.has(t, "labels") and lib.cache.track(t).lab]
    if lab_held:
        try:
            import mir_eval  # noqa: F401
        except ImportError:
            say(args, "keychords: note: mir_eval is not installed (pip install "
                      "'beets-keychords[eval]'): no mir_eval scores")
        else:
            out["heldout_mir_eval"] = cached_chord_report(net, lib.cache, lab_held,
                                                          teacher_streams(teacher), device)
    return out


def compare(lib: Library, metrics: dict, base: Init, role: str, held, teacher, cfg, device):
    """The new model's held-out score (``metrics["heldout"]``) next to ``base``'s on
    the same tracks: frame accuracy against the .lab labels where there are
    some, else agreement with the teacher."""
    from .phases import Comparison
    new = metrics.get("heldout", {})
    name = "gt_accuracy" if "gt_accuracy" in new else "agreement"
    label = ("held-out frame accuracy (.lab)" if name == "gt_accuracy"
             else f"held-out agreement with {teacher.id}")
    b = None
    if base.net is not None and held:
        from .train_chords import heldout_scores
        b = heldout_scores(base.net.to(device), lib.cache, held, teacher.stream, cfg,
                           device).get(name)
        base.net.cpu()
    return Comparison(label, new.get(name), b, base.id, role)


def teacher_streams(teacher) -> dict[str, str]:
    """``{"teacher": its stream}``, and an ensemble's members' streams by their ids."""
    members = getattr(teacher, "members", [])
    return {"teacher": teacher.stream, **{m.id: m.stream for m in members}}


def cached_chord_report(net, cache, ids, teacher_streams: dict[str, str], device) -> dict:
    """mir_eval scores of the student and of each teacher stream (by name) on
    labelled cached tracks."""
    import numpy as np

    from model_zoo.student import ChordStudent

    from .cache import student_input, student_stream
    from .evaluate import pool, score_probs
    from .train_chords import predict_logits
    fr = ChordStudent.FEATURES["sample_rate"] / ChordStudent.FEATURES["hop_length"]
    rows_s, rows_t = [], {who: [] for who in teacher_streams}
    for tid in ids:
        info = cache.track(tid)
        feats = student_input(cache.load(tid, student_stream().name))
        probs = predict_logits(net, feats, device).softmax(-1).cpu().numpy()
        rows_s.append(score_probs(probs, fr, info.duration, info.lab))
        for who, stream in teacher_streams.items():
            if cache.has(tid, stream):
                tp = np.exp(np.asarray(cache.load(tid, stream), np.float32))
                rows_t[who].append(score_probs(tp, fr, info.duration, info.lab))
    out = {"tracks": len(ids), "student": {k: round(v, 4) for k, v in pool(rows_s).items()}}
    for who, rows in rows_t.items():
        if rows:
            out[who] = {k: round(v, 4) for k, v in pool(rows).items()}
    return out


def card_extra(net) -> dict:
    """Card extras: the inference window, for students with a finite receptive field."""
    from .train_chords import INFER_WINDOW
    return {} if net.receptive_field() is None else {"window": INFER_WINDOW}


def speed_card(net):
    """The card fields :func:`.phases.measure_speed` runs ``net`` by."""
    from model_zoo.student import ChordStudent
    return types.SimpleNamespace(task="chord", features=dict(ChordStudent.FEATURES),
                                 config=dict(net.config), extra=card_extra(net))


def summary(m: dict) -> str:
    """The held-out, mir_eval and speed figures of ``metrics``, a few lines."""
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
        for who, row in me.items():
            if isinstance(row, dict):      # the student, the teacher, an ensemble's members
                lines.append(f"  {who:8s} " + "  ".join(f"{row[k]:.3f}" for k in CHORD_METRICS))
    s = m.get("speed")
    if s:
        lines.append(f"speed ({s['device']}, {s['threads']} threads): network "
                     f"{s['network_x_realtime']}x, with front end {s['end_to_end_x_realtime']}x "
                     "realtime")
    return "\n".join(lines)
