"""The phases of ``keychords train-key --architecture keycqt``: a
:class:`model_zoo.keycqt.KeyCQT` distilled from key teachers and labels on the
chord student's features (the shared ones: :mod:`.phases`; the teachers:
:mod:`.key_phases`)."""

from __future__ import annotations

import types

from .phases import Init, Library

KEY_INFERENCE = {"aggregation": "mean_logprob", "temperature": 1.0}


def streams(teachers) -> list:
    """The cache streams: the chord student's CQT (the model's input), S-KEY's (the
    timed key labels' grid, S-KEY's input) and the teachers' own inputs."""
    from .cache import student_stream
    from .key_phases import streams as key_streams
    return [student_stream(), *key_streams(teachers)]


def train_config(args):
    """The :class:`.train_key_cqt.KeyCQTTrainConfig` from the flags."""
    from .key_phases import config_args
    from .train_key_cqt import KeyCQTTrainConfig
    return KeyCQTTrainConfig(**config_args(args, 100))


def train(args, lib: Library, train_ids, held, cfg, teacher, init: Init, device):
    """Train a KeyCQT from ``init`` (:func:`.key_phases.run_trainer`)."""
    from .key_phases import run_trainer
    from .train_key_cqt import train_key_cqt
    return run_trainer(args, lib, train_key_cqt, "keycqt", train_ids, held, cfg, teacher,
                       init, device)


def evaluate(lib: Library, net, held, teacher) -> dict:
    """MIREX key scores of ``net`` and of the combined teachers on the labelled
    held-out tracks (``heldout_key[_teacher]``)."""
    import numpy as np

    from .cache import student_stream
    from .evaluate import key_summary
    from .key_phases import labelled
    from .train_key_cqt import track_log_probs
    held_lab = labelled(lib, held)
    if not held_lab:
        return {}
    pairs, tpairs = [], []
    for t in held_lab:
        key = lib.cache.track(t).key
        pairs.append((key, int(np.argmax(track_log_probs(net, lib.cache.load(
            t, student_stream().name))))))
        if teacher is not None:
            tpairs.append((key, int(teacher.track_probs(t).argmax())))
    out = {"heldout_key": key_summary(pairs)}
    if tpairs:
        out["heldout_key_teacher"] = key_summary(tpairs)
    return out


def baseline(init: Init) -> Init:
    """The model to beat: ``init``, else the shipped default key model if it is a
    KeyCQT or a ChromaNet (both can be scored from the cache)."""
    if init.net is not None:
        return init
    from model_zoo import registry
    from tagger.engine import resolve_model
    try:
        card, net = registry.load_model(resolve_model("key", None))
    except registry.ModelError:
        return Init()
    return Init(card.id, card, net) if card.architecture in ("keycqt", "chromanet") else Init()


def compare(lib: Library, metrics: dict, base: Init, role: str, held, device):
    """The new model's held-out key score next to ``base``'s on the same tracks."""
    from . import key_phases
    from .phases import Comparison
    new = metrics.get("heldout_key", {}).get("weighted")
    score = None
    if new is not None and base.net is not None:
        if base.card.architecture == "keycqt":
            score = evaluate(lib, base.net, held, None)["heldout_key"]["weighted"]
        else:
            perm = list(base.net.config.get("output_permutation") or range(24))
            score = key_phases.evaluate(lib, base.net, perm, held, None,
                                        device)["heldout_key"]["weighted"]
    return Comparison("held-out MIREX key score", new, score, base.id, role)


def card_extra() -> dict:
    from .train_key_cqt import SEGMENT_SECONDS
    return {"segment_seconds": SEGMENT_SECONDS, "key_inference": dict(KEY_INFERENCE)}


def speed_card(net):
    """The card fields :func:`.phases.measure_speed` runs ``net`` by."""
    from model_zoo.keycqt import FEATURES
    return types.SimpleNamespace(task="key", features=dict(FEATURES),
                                 config=dict(net.config), extra=card_extra())


def method(cfg, teacher, n_labelled_train: int) -> dict:
    """The provenance fields that say how the model was trained."""
    return {"method": "keychords train-key --architecture keycqt ("
                      + ", ".join(p for p, on in (("key-teacher KD", teacher),
                                                  (".key labels", n_labelled_train
                                                   and cfg.sup_weight > 0)) if on) + ")",
            "teacher": ",".join(teacher.ids) if teacher else None,
            "teacher_sha256": [t.card.sha256 for t in teacher.teachers] if teacher else None,
            "teacher_weights": teacher.weights if teacher else None,
            "teacher_combination": teacher.method if teacher else None,
            "kd_weight": cfg.kd_weight if teacher else 0.0, "kd_on": cfg.kd_on,
            "sup_weight": cfg.sup_weight,
            "labelled_tracks": n_labelled_train, "segment_seconds": cfg.segment_seconds,
            "steps": cfg.max_steps, "batch_size": cfg.batch_size, "lr": cfg.lr}


def training_result(res) -> dict:
    from .key_phases import training_result as shared
    return shared(res)
