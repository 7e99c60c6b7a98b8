"""Register chord students as one model that averages their outputs.

The new model (:class:`model_zoo.chord_ensemble.ChordEnsemble`) runs every
member on the same features and takes the weighted geometric mean of their
frame posteriors; each member keeps its own ``shift_average``. No training::

    python training/ensemble_students.py kc-v21-tta1 kc-c6-ft-tta --weights 0.5,0.5 --name kc-ens

The members must read the same features. The card records each member's id,
sha256 and training provenance, and the weights.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model_zoo import registry
from model_zoo.chord_ensemble import ChordEnsemble
from training.student_scripts import (comma_list, load_student, register_and_report,
                                      training_provenance)


def ensemble(models: list[str], weights: list[float] | None, name: str,
             directory: Path | None = None) -> registry.ModelCard:
    """Save the students ``models`` as one ensemble model ``name``; its card."""
    loaded = [load_student(m) for m in models]
    first = loaded[0][0]
    for card, _ in loaded[1:]:
        if card.features != first.features:
            raise ValueError(f"{card.id} and {first.id} read different features")
    net = ChordEnsemble([n.config for _, n in loaded], weights)
    for member, (_, n) in zip(net.members, loaded):
        member.load_state_dict(n.state_dict())
    prov = {"method": "output ensemble (training/ensemble_students.py)",
            "weights": net.weights,
            "members": [{"id": c.id, "sha256": c.sha256, **training_provenance(c)}
                        for c, _ in loaded]}
    return registry.save_model(net, name, task="chord", features=first.features,
                               directory=directory, provenance=prov, extra=first.extra,
                               license=first.license)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="chord student ids (two or more)")
    ap.add_argument("--weights", type=comma_list(float, "numbers"), default=None,
                    help="one weight per model, comma-separated (default: equal)")
    ap.add_argument("--name", required=True, help="id of the new model")
    args = ap.parse_args(argv)
    return register_and_report(
        "ensemble_students", lambda: ensemble(args.models, args.weights, args.name))


if __name__ == "__main__":
    raise SystemExit(main())
