"""The phases of ``keychords train-key`` of its own: the key teachers, training,
the output order (kept from ``--init``; calibrated only from scratch), the
held-out evaluation, the comparison with the baseline and the summary (the
shared ones: :mod:`.phases`)."""

from __future__ import annotations

import types

from .phases import CommandError, Init, Library, say, training_errors


def load_teachers(args, device):
    """The ``--teacher`` key models (:mod:`.key_teachers`), possibly none."""
    from model_zoo.registry import ModelError

    from .key_teachers import load_teachers as load
    names = args.teacher or []
    if len(set(names)) != len(names):
        raise CommandError("a --teacher is named twice")
    try:
        return load(names, device)
    except ModelError as e:
        raise CommandError(str(e)) from e


def teacher_weights(args, teachers) -> list[float] | None:
    """``--teacher-weights`` as floats, one per teacher (None: equal)."""
    if not args.teacher_weights:
        return None
    try:
        w = [float(v) for v in args.teacher_weights.split(",")]
    except ValueError:
        raise CommandError(f"--teacher-weights: not numbers: {args.teacher_weights!r}") from None
    if len(w) != len(teachers) or min(w) < 0 or sum(w) <= 0:
        raise CommandError(f"--teacher-weights: give {len(teachers)} non-negative weights, "
                           f"not {args.teacher_weights!r}")
    return w


def streams(teachers) -> list:
    """The cache streams: S-KEY's CQT and the teachers' own inputs."""
    from .cache import skey_stream
    out = {skey_stream().name: skey_stream()}
    for t in teachers:
        out.setdefault(t.input_stream().name, t.input_stream())
    return list(out.values())


def run_teacher_phase(args, lib: Library, teachers, weights):
    """Cache the teachers' window probabilities of every track; their KD targets
    (a :class:`.key_teachers.TeacherTargets`, None without teachers)."""
    from .key_teachers import TeacherTargets, run_teachers
    if not teachers:
        return None
    n = run_teachers(lib.cache, teachers, lib.ids)
    say(args, f"key teachers {', '.join(t.card.id for t in teachers)}: "
              f"{n} track outputs computed")
    return TeacherTargets(lib.cache, teachers, weights, args.teacher_combination)


def config_args(args, max_warmup: int) -> dict:
    """The training flags both key architectures take, as config arguments."""
    return dict(batch_size=args.batch_size, lr=args.lr, max_steps=args.steps,
                max_minutes=args.minutes, eval_every=args.eval_every,
                checkpoint_every=args.checkpoint_every, patience=args.patience,
                kd_weight=args.kd_weight, kd_on=args.kd_on, sup_weight=args.sup_weight,
                segment_seconds=args.segment_seconds, seed=args.seed,
                warmup=min(max_warmup, max(1, args.steps // 10)))


def train_config(args):
    """The :class:`.train_key.KeyTrainConfig` from the flags."""
    from .train_key import KeyTrainConfig
    return KeyTrainConfig(**config_args(args, 50), eval_items=args.eval_items)


def run_trainer(args, lib: Library, trainer, subdir: str, train_ids, held, cfg, teacher,
                init: Init, device):
    """Run a key ``trainer`` (``train_key`` or ``train_key_cqt``) from ``init`` with its
    checkpoints in ``run_root/subdir``; its result's ``net`` holds the best weights."""
    with training_errors():
        return trainer(lib.cache, train_ids, held, cfg, lib.run_root / subdir,
                       teacher=teacher,
                       init_state=init.net.state_dict() if init.net is not None else None,
                       device=device, progress=not args.quiet, log=lambda m: say(args, m))


def train(args, lib: Library, train_ids, held, cfg, teacher, init: Init, device):
    """Train a ChromaNet from ``init`` (:func:`run_trainer`)."""
    from .train_key import train_key
    return run_trainer(args, lib, train_key, "key", train_ids, held, cfg, teacher, init, device)


def training_result(res) -> dict:
    return {"steps": res.steps, "best_step": res.best_step,
            "train_seconds": round(res.seconds, 1),
            "steps_per_second": round(res.steps / res.seconds, 3) if res.seconds else None,
            "last_heldout": res.history[-1] if res.history else None}


def labelled(lib: Library, ids) -> list[str]:
    """The tracks of ``ids`` with a .key label."""
    return [t for t in ids if lib.cache.track(t).key is not None]


# The expected MIREX score by which a from-scratch calibration must beat the
# runner-up order; below it the order is a guess (the shipped model's two best
# orders on the cadences: 0.736 vs 0.731), and the model is not registered
# unless --register-anyway.
MIN_CALIBRATION_MARGIN = 0.02


def output_order(net, lib: Library, train_ids, init: Init, device):
    """``(final CPU net, output permutation, report)``. A fine-tune keeps its
    ``init``'s output order (its training anchored it; recalibrating can move
    every key by a fifth); only a model trained from scratch is calibrated."""
    from .train_key import finalize
    if init.net is None:
        return calibrate_order(net, lib, train_ids, device)
    perm = [int(i) for i in init.net.config.get("output_permutation") or range(24)]
    return finalize(net.cpu(), perm), perm, {"method": "kept", "init": init.id}


def calibrate_order(net, lib: Library, train_ids, device):
    """Fix the output order on the synthetic cadences and the labelled training
    tracks: ``(final CPU net, permutation, calibration report)``; the report's
    ``clear`` says whether the best order won by :data:`MIN_CALIBRATION_MARGIN`."""
    from .cache import skey_stream
    from .train_key import calibrate, finalize, native_probs_cached
    stream = skey_stream().name
    items = [(native_probs_cached(net, lib.cache.load(t, stream), device), lib.cache.track(t).key)
             for t in labelled(lib, train_ids)]
    perm, calib = calibrate(net, items, device)
    margin = calib["expected_weighted"] - calib["runner_up_expected"]
    calib.update(margin=round(margin, 4), clear=margin >= MIN_CALIBRATION_MARGIN)
    return finalize(net.cpu(), perm), perm, calib


def order_line(calib: dict) -> str:
    """The output order, in one line (always shown: it decides every key)."""
    if calib["method"] == "kept":
        return f"output order: kept from --init {calib['init']} (a fine-tune is not recalibrated)"
    line = (f"output order calibrated (trained from scratch): rotation {calib['rotation']}, "
            f"minor rotation {calib['minor_rotation']}, mode flipped {calib['mode_flipped']}; "
            f"expected score {calib['expected_weighted']:.3f} vs {calib['runner_up_expected']:.3f} "
            f"for the runner-up")
    if not calib["clear"]:
        line += (f" -- AMBIGUOUS (margin {calib['margin']:.3f} < {MIN_CALIBRATION_MARGIN}): "
                 "keys may be off by a fifth")
    return line


def evaluate(lib: Library, final, perm, held, teacher, device) -> dict:
    """MIREX key scores on the labelled held-out tracks, of ``final`` (read in the
    calibrated order ``perm``) and of the combined teachers (``heldout_key[_teacher]``)."""
    import numpy as np

    from .cache import skey_stream
    from .evaluate import key_summary
    from .train_key import native_probs_cached
    held_lab = labelled(lib, held)
    if not held_lab:
        return {}
    pairs, tpairs = [], []
    for t in held_lab:
        arr = lib.cache.load(t, skey_stream().name)
        key = lib.cache.track(t).key
        pairs.append((key, int(np.argmax(native_probs_cached(final, arr)[perm]))))
        if teacher is not None:
            tpairs.append((key, int(teacher.track_probs(t).argmax())))
    out = {"heldout_key": key_summary(pairs)}
    if tpairs:
        out["heldout_key_teacher"] = key_summary(tpairs)
    return out


def compare(lib: Library, metrics: dict, final, perm, base: Init, role: str, held, device):
    """The new model's key score next to ``base``'s on the same items: the labelled
    held-out tracks, or the 24 synthetic cadences when none is labelled."""
    from .phases import Comparison
    new = metrics.get("heldout_key", {}).get("weighted")
    base_perm = None if base.net is None else list(
        base.net.config.get("output_permutation") or range(24))
    if new is not None:
        b = None if base.net is None else evaluate(
            lib, base.net, base_perm, held, None, device)["heldout_key"]["weighted"]
        return Comparison("held-out MIREX key score", new, b, base.id, role)
    return Comparison("MIREX key score on the 24 synthetic cadences (no labelled held-out "
                      "tracks)", cadence_score(final, perm), None if base.net is None
                      else cadence_score(base.net, base_perm), base.id, role)


def cadence_score(net, perm) -> float:
    """Mean MIREX weighted score of ``net`` (read in order ``perm``) on the 24
    synthetic cadences of :func:`.train_key.synthetic_native_probs`."""
    import numpy as np

    from .evaluate import key_summary
    from .train_key import synthetic_native_probs
    pairs = [(k, int(np.argmax(p[perm]))) for p, k in synthetic_native_probs(net.cpu())]
    return key_summary(pairs)["weighted"]


def doubt(calib: dict) -> str:
    """Why the output order cannot be trusted ("" when it can)."""
    if calib.get("clear", True):
        return ""
    return (f"its calibrated output order is ambiguous (margin {calib['margin']:.3f} < "
            f"{MIN_CALIBRATION_MARGIN})")


def card_extra() -> dict:
    from model_zoo import skey
    return {"segment_seconds": skey.SEGMENT_SECONDS}


def speed_card(final):
    """The card fields :func:`.phases.measure_speed` runs ``final`` by."""
    from model_zoo import skey
    return types.SimpleNamespace(task="key", features=dict(skey.FEATURES),
                                 config=dict(final.config), extra=card_extra())


def method(cfg, teacher, n_labelled_train: int) -> dict:
    """The provenance fields that say how the model was trained."""
    return {"method": "keychords train-key (S-KEY losses"
                      + (", key-teacher KD" if teacher else "")
                      + (", .key labels" if cfg.sup_weight > 0 and n_labelled_train else "")
                      + ")",
            "teacher": ",".join(teacher.ids) if teacher else None,
            "teacher_sha256": [t.card.sha256 for t in teacher.teachers] if teacher else None,
            "teacher_weights": teacher.weights if teacher else None,
            "teacher_combination": teacher.method if teacher else None,
            "kd_weight": cfg.kd_weight if teacher else 0.0, "kd_on": cfg.kd_on,
            "sup_weight": cfg.sup_weight, "labelled_tracks": n_labelled_train,
            "segment_seconds": cfg.segment_seconds}


def summary(metrics: dict) -> str:
    """The held-out key score and the calibration, a line each."""
    lines = []
    hk = metrics.get("heldout_key")
    if hk:
        lines.append(f"held-out key ({hk['tracks']} tracks): MIREX weighted "
                     f"{hk['weighted']:.3f}, correct {hk['correct']:.3f}")
    return "\n".join(lines)
