"""How much of a chord model's output depends on distant context?

Each file is analysed by the model twice: once over the whole track, as the
tagger runs it, and once with every frame seeing only ``--context`` seconds
on each side (overlapping windows of ``2 x context + hop`` frames whose
centre ``hop`` frames are kept). Both are decoded the same way and scored
against each other with ``keychords eval --reference-model``'s mir_eval
metrics; the frame-wise argmax agreement (majmin) is reported too.

For a whole-track model such as crema (two bi-directional GRUs), this tells
how far a student whose receptive field spans ``context`` seconds on each
side could follow the teacher even if it copied it perfectly inside that
span: kc-chord-v1 sees about 5.8 s on each side (dilated convolutions 38
frames, attention 24 frames, at 10.8 frames per second).

Usage::

    python training/context.py /work/data/heldout_real --model crema \\
        --context 6 --context 12 --context 24 --context 48
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
from tagger.distill.evaluate import compare_chords, decode_segments, pool
from tagger.engine import Analyzer
from tagger.scan import scan

MAJMIN = np.asarray(vocab.MAJMIN_INDEX)


def limited_context_probs(net, feats, context: int, hop: int, batch: int = 32) -> np.ndarray:
    """Chord probabilities ``(T, 170)`` of ``net`` on features ``(..., T)`` where
    frame ``t`` is computed from frames ``t - context`` .. ``t + context`` at most
    (fewer at the track's ends), in windows whose centre ``hop`` frames are kept.
    Windows of equal length run in batches (no padding: it would reach the GRUs)."""
    import torch
    n = feats.shape[-1]
    out = np.zeros((n, vocab.N_CLASSES), np.float32)
    spans: dict[int, list] = {}
    for s in range(0, n, hop):
        e = min(s + hop, n)
        a, b = max(s - context, 0), min(e + context, n)
        spans.setdefault(b - a, []).append((a, s, e))
    with torch.no_grad():
        for length, group in spans.items():
            for i in range(0, len(group), batch):
                part = group[i: i + batch]
                x = torch.stack([feats[..., a: a + length] for a, _, _ in part])
                o = net(x)["chord"].float().softmax(-1).cpu().numpy()
                for k, (a, s, e) in enumerate(part):
                    out[s:e] = o[k, s - a: e - a]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--model", required=True, help="chord model id")
    ap.add_argument("--context", type=float, action="append", required=True,
                    help="seconds each frame may see on each side (repeatable)")
    ap.add_argument("--hop", type=int, default=16, help="frames kept per window")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    import torch
    an = Analyzer(args.model, None, device="cpu", with_key=False)
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    fe = an.front_end(an.chord_card)
    rows = {c: [] for c in args.context}
    frames = {c: [0, 0] for c in args.context}  # argmax majmin agreements, frames
    seconds = 0.0
    for path in scan(args.paths):
        try:
            audio = load_audio(path, an.sample_rate)
        except DecodeError as e:
            print(f"skipped {path}: {e}", file=sys.stderr)
            continue
        duration = len(audio) / an.sample_rate
        seconds += duration
        track = an.prepare(path, audio)
        full = an.track_chord_probabilities([track])[0]
        feats = an.features(track, an.chord_card)
        ref = decode_segments(full, fe.frame_rate, duration)
        for c in args.context:
            probs = limited_context_probs(an.chord_net, feats,
                                          round(c * fe.frame_rate), args.hop)
            rows[c].append(compare_chords(*ref, *decode_segments(probs, fe.frame_rate,
                                                                 duration)))
            frames[c][0] += int((MAJMIN[probs.argmax(-1)] == MAJMIN[full.argmax(-1)]).sum())
            frames[c][1] += len(full)
    out = {"model": args.model, "hours": round(seconds / 3600, 3), "hop_frames": args.hop,
           "frame_rate": round(fe.frame_rate, 3),
           "agreement_with_whole_track": {
               str(c): {"tracks": len(r), **{k: round(v, 4) for k, v in pool(r).items()},
                        "frame_argmax_majmin": round(frames[c][0] / max(frames[c][1], 1), 4)}
               for c, r in rows.items()}}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
