"""Register a chord student that averages its output over pitch-shifted inputs.

The new model has the same weights; its card adds ``shift_average`` to the
config (:class:`model_zoo.student.ChordStudent`): at inference the features
are also run shifted by each listed number of semitones, the outputs are
moved back and their log-probabilities averaged. It costs one more network
pass per extra shift and no training::

    python training/shift_average.py kc-chord-v2.1 --name kc-v21-tta1            # -1, 0, 1
    python training/shift_average.py kc-chord-v2.1 --shifts=-2,-1,0,1,2 --name kc-v21-tta2

The card records the source model and its sha256.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model_zoo import registry
from model_zoo.student import ChordStudent
from training.student_scripts import (comma_list, load_student, register_and_report,
                                      training_provenance)


def with_shift_average(model: str, shifts: list[int], name: str,
                       directory: Path | None = None) -> registry.ModelCard:
    """Save ``model``'s weights as ``name`` with ``shift_average=shifts``; its card."""
    card, net = load_student(model)
    new = ChordStudent(**{**card.config, "shift_average": shifts})
    new.load_state_dict(net.state_dict())
    prov = {"method": "shift averaging (training/shift_average.py)", "shifts": shifts,
            "source": {"id": card.id, "sha256": card.sha256}}
    prov.update(training_provenance(card))
    return registry.save_model(new.eval(), name, task=card.task, features=card.features,
                               directory=directory, provenance=prov, extra=card.extra,
                               license=card.license)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="chord student id")
    ap.add_argument("--shifts", type=comma_list(int, "integers"), default=[-1, 0, 1],
                    help="semitone shifts, comma-separated (default -1,0,1; write --shifts=-2,...)")
    ap.add_argument("--name", required=True, help="id of the new model")
    args = ap.parse_args(argv)
    return register_and_report(
        "shift_average", lambda: with_shift_average(args.model, args.shifts, args.name))


if __name__ == "__main__":
    raise SystemExit(main())
