"""Register a model whose weights interpolate two models of the same network.

``weights = alpha * A + (1 - alpha) * B``, tensor by tensor (WiSE-FT,
Wortsman et al., CVPR 2022): with A a stage-1 student and B its stage-2
fine-tune, alpha trades B's gain on the labelled renders against A's closer
agreement with the teachers on real music, with no training::

    python training/interpolate.py kc-c3-s1 kc-c3-s2 --alpha 0.5 --name kc-c3-mix50

Both models must share architecture, configuration and features (B's card
gives the new card's features and extra); integer buffers (counters) are
taken from B. The new card records both sources with their sha256 and alpha.

One difference is allowed: A may be B grown with per-frame blocks or
appended dilated blocks (``distill --init B --frame-blocks N`` or
``--extra-dilations D,...``). B then counts as the same network with those
blocks at their start, the identity: A's blocks with their output layer at
zero. The mix keeps A's blocks and scales their output by alpha.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model_zoo import registry
from training.student_scripts import register_and_report, training_provenance


def _grown(config_a: dict, config_b: dict) -> bool:
    """Whether ``config_a`` is ``config_b`` grown by per-frame blocks and/or
    dilated blocks appended to the temporal stack (``distill --frame-blocks``,
    ``--extra-dilations``)."""
    extra = {k: v for k, v in config_a.items() if k not in config_b}
    if set(extra) - {"frame_blocks", "frame_mult"} or extra.get("frame_blocks", 1) < 1:
        return False
    da, db = list(config_a["dilations"]), list(config_b["dilations"])
    same = all(config_a.get(k) == v for k, v in config_b.items() if k != "dilations")
    return same and da[:len(db)] == db and (len(da) > len(db) or bool(extra))


def _as_grown(net_a, net_b):
    """``net_b`` in ``net_a``'s network, the blocks it lacks at their identity start
    (so the function is ``net_b``'s)."""
    grown = type(net_a)(**net_a.config)
    grown.load_state_dict(net_a.state_dict())
    grown.load_grown(net_b.state_dict())
    return grown.eval()


def interpolate(a: str, b: str, alpha: float, name: str,
                directory: Path | None = None) -> registry.ModelCard:
    """Save ``alpha * a + (1 - alpha) * b`` as model ``name``; its card."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    card_a, net_a = registry.load_model(a)
    card_b, net_b = registry.load_model(b)
    if (card_a.architecture, card_a.features) == (card_b.architecture, card_b.features) \
            and _grown(card_a.config, card_b.config):
        net_b = _as_grown(net_a, net_b)
    elif (card_a.architecture, card_a.config, card_a.features) != \
            (card_b.architecture, card_b.config, card_b.features):
        raise ValueError(f"{a} and {b} are not the same network (architecture, config, features)")
    sa = net_a.state_dict()
    mixed = {k: (alpha * sa[k] + (1.0 - alpha) * v) if v.is_floating_point() else v
             for k, v in net_b.state_dict().items()}
    net_b.load_state_dict(mixed)
    prov = {"method": "weight interpolation (training/interpolate.py)", "alpha": alpha}
    for key, card in (("a", card_a), ("b", card_b)):  # local cache paths stay out of cards
        prov[key] = {"id": card.id, "sha256": card.sha256,
                     "provenance": {k: v for k, v in card.provenance.items() if k != "cache"}}
    prov.update(training_provenance(card_b))
    return registry.save_model(net_b.eval(), name, task=card_b.task, features=card_b.features,
                               directory=directory, provenance=prov, extra=card_b.extra)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", help="model id (weight alpha)")
    ap.add_argument("b", help="model id (weight 1 - alpha; its card is the template)")
    ap.add_argument("--alpha", type=float, required=True)
    ap.add_argument("--name", required=True, help="id of the new model")
    args = ap.parse_args(argv)
    return register_and_report(
        "interpolate", lambda: interpolate(args.a, args.b, args.alpha, args.name))


if __name__ == "__main__":
    raise SystemExit(main())
