"""Register a model whose weights interpolate two models of the same network.

``weights = alpha * A + (1 - alpha) * B``, tensor by tensor (WiSE-FT,
Wortsman et al., CVPR 2022): with A a stage-1 student and B its stage-2
fine-tune, alpha trades B's gain on the labelled renders against A's closer
agreement with the teachers on real music, with no training::

    python training/interpolate.py kc-c3-s1 kc-c3-s2 --alpha 0.5 --name kc-c3-mix50

Both models must share architecture, configuration and features (B's card
gives the new card's features and extra); integer buffers (counters) are
taken from B. The new card records both sources with their sha256 and alpha.

One difference is allowed: A may be B grown with per-frame blocks
(``distill --init B --frame-blocks N``). B then counts as the same network
with those blocks at their start, the identity: A's blocks with their output
layer at zero. The mix keeps A's blocks and scales their output by alpha.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model_zoo import registry
from model_zoo.student import ChordStudent


def _grown_by_frame_blocks(config_a: dict, config_b: dict) -> bool:
    """Whether ``config_a`` is ``config_b`` plus per-frame blocks."""
    extra = {k: v for k, v in config_a.items() if k not in config_b}
    return (set(extra) == {"frame_blocks", "frame_mult"} and extra["frame_blocks"] > 0
            and all(config_a[k] == v for k, v in config_b.items()))


def _with_identity_frame_blocks(net_a, net_b):
    """``net_b`` in ``net_a``'s network: ``net_a``'s per-frame blocks, each with its
    output layer at zero (so the function is ``net_b``'s)."""
    state = {k: v.clone() for k, v in net_a.state_dict().items() if k.startswith("frame.")}
    for k in state:
        if ".down." in k:
            state[k].zero_()
    grown = type(net_a)(**net_a.config)
    grown.load_state_dict({**net_b.state_dict(), **state})
    return grown.eval()


def training_provenance(card: registry.ModelCard) -> dict:
    """What a model made from ``card``'s weights keeps of its training record:
    teachers, their combination, hours and tracks."""
    keys = ("teacher", "teachers", "teacher_combine", "training_hours", "training_tracks")
    return {k: card.provenance[k] for k in keys if k in card.provenance}


def load_student(model: str):
    """``(card, net)`` of chord student ``model``; ValueError for any other model."""
    card, net = registry.load_model(model)
    if not isinstance(net, ChordStudent):
        raise ValueError(f"{model} is a {card.architecture}, not a chord student")
    return card, net


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


def interpolate(a: str, b: str, alpha: float, name: str,
                directory: Path | None = None) -> registry.ModelCard:
    """Save ``alpha * a + (1 - alpha) * b`` as model ``name``; its card."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    card_a, net_a = registry.load_model(a)
    card_b, net_b = registry.load_model(b)
    if (card_a.architecture, card_a.features) == (card_b.architecture, card_b.features) \
            and _grown_by_frame_blocks(card_a.config, card_b.config):
        net_b = _with_identity_frame_blocks(net_a, net_b)
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
