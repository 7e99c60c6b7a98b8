#!/usr/bin/env python
"""Dump key models' segment logits on labelled folders, for ``calibrate_key.py``.

For every audio file with a ``.key`` label under the folders, and every
``--key-model``, the logits of each segment the engine scores
(:meth:`tagger.engine.Analyzer.key_segment_logits`: 15 s segments for a
ChromaNet, one row for a whole-track model) are written to one JSON file,
with the label and whether the song keeps one key throughout. ``MODEL@15``
also runs a whole-track model on 15 s segments.

    python training/key_logits.py /work/data/mma_render/validation \\
        --key-model kc-key-v3 --key-model skey --key-model keynet --key-model keynet@15 \\
        --out /work/data/key_logits/mma_validation.json --threads 1

Not a unit test; run from the repository root.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model_zoo import registry  # noqa: E402
from tagger.decode import MODEL_RATE, load_audio  # noqa: E402
from tagger.distill.labels import LabelIndex, read_key, read_key_segments  # noqa: E402
from tagger.engine import Analyzer  # noqa: E402
from tagger.scan import scan  # noqa: E402


def analyzer(spec: str) -> Analyzer:
    """An key-only analyser for ``MODEL`` or ``MODEL@SECONDS`` (segments of that length)."""
    name, _, seconds = spec.partition("@")
    card = registry.find_card(name)
    if seconds:
        card = dataclasses.replace(card, extra={**card.extra, "segment_seconds": float(seconds)})
    return Analyzer(None, card, device="cpu", with_chords=False)


@torch.inference_mode()
def segment_logits(an: Analyzer, path: str, audio) -> list[list[float]]:
    track = an.start(path)
    an.feed(track, audio)
    outs, _ = an.key_segment_logits([an.finish(track)])
    return [[round(float(v), 5) for v in o] for o in outs]


def label_record(key_path) -> dict:
    segs = read_key_segments(key_path)
    return {"key": read_key(key_path), "single_key": len({k for _, _, k in segs}) == 1}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--key-model", action="append", required=True)
    ap.add_argument("--labels", action="append", default=[])
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ans = {m: analyzer(m) for m in args.key_model}
    torch.set_num_threads(args.threads)
    index = LabelIndex(args.labels)
    rows = []
    for p in scan(args.paths):
        key_path = index.find(p, ".key")
        if key_path is None:
            continue
        audio = load_audio(p, MODEL_RATE)
        rows.append({"path": str(p), **label_record(key_path),
                     "seconds": round(len(audio) / MODEL_RATE, 2),
                     "logits": {m: segment_logits(an, p, audio) for m, an in ans.items()}})
        print(f"{len(rows)} {Path(p).name}", file=sys.stderr, flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"models": args.key_model, "tracks": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
