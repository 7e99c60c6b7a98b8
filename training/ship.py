"""Copy a trained user model into ``model_zoo/weights`` as a shipped default.

    python training/ship.py kc-chords-s2 kc-chord-v1 --metrics eval_test.json
    python training/ship.py kc-key-s kc-key-v1 --metrics key_eval.json

The weights are re-saved as safetensors with a fresh card: ``default: true``
(the other built-in models of the same task lose the flag), ``license: MIT``,
the training card's metrics plus the evaluation files given with
``--metrics`` (each stored under its file stem), and provenance without the
developer's local paths. The sha256 in the card is that of the new file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model_zoo import registry


def ship(source: str, new_id: str, metrics_files=(), recipe: str = "training/README.md",
         directory: Path = registry.BUILTIN_DIR) -> registry.ModelCard:
    card, net = registry.load_model(source)
    metrics = dict(card.metrics)
    for f in metrics_files:
        metrics[Path(f).stem] = json.loads(Path(f).read_text())
    prov = {k: v for k, v in card.provenance.items() if k != "cache"}
    prov.update({"trained_as": card.id, "recipe": recipe})
    for other in registry.cards_in(Path(directory), True):
        if other.task == card.task and other.default and other.id != new_id:
            data = json.loads(other.card_path.read_text())
            data["default"] = False
            other.card_path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return registry.save_model(net, new_id, task=card.task, features=card.features,
                               directory=Path(directory), provenance=prov, metrics=metrics,
                               license="MIT", default=True, extra=card.extra)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", help="registered model id (user model directory)")
    ap.add_argument("new_id", help="id of the shipped model")
    ap.add_argument("--metrics", action="append", default=[], metavar="FILE",
                    help="evaluation JSON to store in the card (repeatable)")
    args = ap.parse_args(argv)
    card = ship(args.source, args.new_id, args.metrics)
    size = card.weights_path.stat().st_size
    print(f"{card.id}: {card.weights_path} ({size / 2**20:.2f} MiB), sha256 {card.sha256}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
