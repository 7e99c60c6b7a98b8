"""Where do students disagree with their teacher? Agreement by the teacher's confidence.

Every file is analysed by the teacher (``--reference``) and by each
``--model``. Frames are grouped by the teacher's probability for its own
majmin chord (the sum of its 170 class probabilities that reduce to that
triad); per group, the share of frames whose student argmax reduces to the
same majmin chord. Frame-wise argmax, no Viterbi decoding, so the totals
are lower than ``keychords eval --reference-model``'s decoded scores.

Usage::

    python training/agreement_by_confidence.py /work/data/heldout_real \\
        --reference crema --model kc-chord-v1 --model kc-chords-s1c
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model_zoo import vocab
from tagger.decode import DecodeError, load_audio
from tagger.engine import Analyzer
from tagger.scan import scan

BINS = (0.0, 0.5, 0.7, 0.9, 1.0 + 1e-9)
MAJMIN = np.asarray(vocab.MAJMIN_INDEX)


def teacher_confidence(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(majmin class, its total probability)`` per frame of ``probs`` ``(T, 170)``."""
    cls = MAJMIN[probs.argmax(-1)]
    pooled = np.zeros((len(probs), vocab.N_CLASSES))
    np.add.at(pooled.T, MAJMIN, probs.T)
    return cls, pooled[np.arange(len(probs)), cls]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--reference", required=True, help="teacher chord model id")
    ap.add_argument("--model", action="append", required=True, help="student chord model id")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    import torch
    ans = {m: Analyzer(m, None, device="cpu", with_key=False)
           for m in [args.reference, *args.model]}
    torch.set_num_threads(args.threads)
    conf, same = [], {m: [] for m in args.model}
    for path in scan(args.paths):
        try:
            audio = load_audio(path, 22050)
        except DecodeError as e:
            print(f"skipped {path}: {e}", file=sys.stderr)
            continue
        probs = {m: an.chord_probabilities(path, audio) for m, an in ans.items()}
        n = min(len(p) for p in probs.values())
        cls, c = teacher_confidence(probs[args.reference][:n])
        conf.append(c)
        for m in args.model:
            same[m].append(MAJMIN[probs[m][:n].argmax(-1)] == cls)
    conf = np.concatenate(conf)
    same = {m: np.concatenate(v) for m, v in same.items()}
    rows = []
    for lo, hi in [*zip(BINS[:-1], BINS[1:]), (0.0, BINS[-1])]:
        sel = (conf >= lo) & (conf < hi)
        rows.append({"confidence": [lo, min(hi, 1.0)], "share": round(float(sel.mean()), 4),
                     **{m: round(float(s[sel].mean()), 4) if sel.any() else None
                        for m, s in same.items()}})
    print(json.dumps({"frames": int(len(conf)), "reference": args.reference, "rows": rows},
                     indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
