"""What the scripts that make a chord model from trained students share
(``interpolate.py``, ``shift_average.py``, ``ensemble_students.py``): loading a
student, the provenance a derived card keeps, argparse list types, and the
``main`` epilogue."""

from __future__ import annotations

import argparse
import sys

from model_zoo import registry
from model_zoo.student import ChordStudent


def load_student(model: str):
    """``(card, net)`` of chord student ``model``; ValueError for any other model."""
    card, net = registry.load_model(model)
    if not isinstance(net, ChordStudent):
        raise ValueError(f"{model} is a {card.architecture}, not a chord student")
    return card, net


def training_provenance(card: registry.ModelCard) -> dict:
    """What a model made from ``card``'s weights keeps of its training record:
    teachers, their combination, hours and tracks."""
    keys = ("teacher", "teachers", "teacher_combine", "training_hours", "training_tracks")
    return {k: card.provenance[k] for k in keys if k in card.provenance}


def comma_list(cast, noun: str):
    """An argparse ``type``: comma-separated values, each through ``cast``."""
    def parse(text: str) -> list:
        try:
            return [cast(v) for v in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"not a comma-separated list of {noun}: {text!r}") from None
    return parse


def register_and_report(tool: str, make) -> int:
    """Run ``make()`` (which saves a model and returns its card) for a script's
    ``main``: print the new weights' path and return 0, or a one-line error
    and 2."""
    try:
        card = make()
    except (ValueError, registry.ModelError) as e:
        print(f"{tool}: {e}", file=sys.stderr)
        return 2
    print(f"{card.id}: {card.weights_path}")
    return 0
