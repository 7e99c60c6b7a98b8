"""Tune the chord decoder's Viterbi self-transition on development data.

The tagger smooths frame posteriors with a "stay or jump anywhere" Viterbi
(``tagger.chords.decode(probs, frame_rate, p_self=..., min_duration=...)``).
Here ``p_self`` and ``min_duration`` are chosen on the VALIDATION split of
the POP909 renders (``training/render_pop909.py``), with the crema teacher's
posteriors, by mir_eval chord scores:

1. crema posteriors for every rendered track of the split, cached as
   ``<cache>/crema/<split>/<stem>.npz`` (recomputed when the audio changes);
2. for each ``(p_self, min_duration)`` of the grid: decode, score every
   track with mir_eval's chord comparisons against its ``.lab``, and count
   segments per minute (estimate vs reference);
3. pick the best duration-weighted ``majmin`` (pooled over tracks, as
   MIREX's WCSR); settings within ``--tie`` of the best count as tied and
   the one whose segment rate is closest to the reference's (smallest
   ``|log(est/ref)|``) wins;
4. write ``training/viterbi_tuning.json`` (choice, full table, data used).

``--report-test`` then scores the chosen setting once on the TEST split, for
the record; the test split never takes part in the choice.

Usage::

    python training/tune_viterbi.py --renders /work/data/pop909_render \\
        --cache /work/data/cache --workers 2 --report-test
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model_zoo import vocab
from tagger.chords import CREMA_SELF_TRANSITION, decode, merge_short
from tagger.distill.evaluate import CHORD_METRICS, compare_chords
from training import labels as L

CREMA_H5 = "/work/shared/anchors/crema/model.h5"
# With 170 states, p_self = 1/170 is no smoothing at all (every transition
# equally likely: the frame-wise argmax); the penalty of a jump over a stay,
# log(p_self * 169 / (1 - p_self)), is 0 there, 5.1 nats at 0.5 and 11.3 at
# 0.998, so the grid reaches down to it.
P_SELF_GRID = (1 / 170, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 0.9, 0.95,
               CREMA_SELF_TRANSITION, 0.97, 0.98, 0.99, 0.995, 0.998)
MIN_DURATION_GRID = (0.0, 0.2, 0.4, 0.6)
METRICS = CHORD_METRICS
SEG_METRICS = ("seg", "overseg", "underseg")

_NET = None


def _teacher():
    """The crema teacher and its front end (one per process)."""
    global _NET
    if _NET is None:
        from model_zoo import crema, importers
        from model_zoo.features import FrontEnd
        net = crema.CremaChord()
        net.load_state_dict(importers.read_crema_h5(os.environ.get("KEYCHORDS_CREMA_H5",
                                                                   CREMA_H5)))
        net.eval()
        _NET = (net, FrontEnd(**crema.FEATURES))
    return _NET


def crema_probs(audio_path: str | Path) -> tuple[np.ndarray, float, float]:
    """``(probs (T, 170) float32 in vocabulary order, frame_rate, duration_s)``."""
    import torch

    from tagger.decode import load_audio
    net, fe = _teacher()
    y = load_audio(audio_path, fe.sample_rate)
    with torch.inference_mode():
        logits = net(fe(torch.from_numpy(y)[None]))["chord"][0]
        probs = logits.softmax(-1).float().numpy()
    return probs, fe.frame_rate, len(y) / fe.sample_rate


def _h5_digest() -> str:
    p = Path(os.environ.get("KEYCHORDS_CREMA_H5", CREMA_H5))
    return hashlib.sha256(p.read_bytes()).hexdigest()[:16] if p.exists() else "?"


def cache_path(cache_dir: Path, split: str, stem: str) -> Path:
    return cache_dir / "crema" / split / f"{stem}.npz"


def cached_probs(audio: Path, cache_file: Path, model_digest: str):
    """Load the cached posteriors of ``audio`` or compute and store them."""
    st = audio.stat()
    if cache_file.exists():
        try:
            z = np.load(cache_file)
            if (int(z["source_size"]) == st.st_size and int(z["source_mtime_ns"]) == st.st_mtime_ns
                    and str(z["model"]) == model_digest):
                return z["probs"], float(z["frame_rate"]), float(z["duration"])
        except (OSError, KeyError, ValueError, EOFError):  # unreadable cache: recompute
            z = None
    probs, fr, dur = crema_probs(audio)
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_name(f".{cache_file.stem}.tmp-{os.getpid()}.npz")
    np.savez(tmp, probs=probs.astype(np.float32), frame_rate=fr, duration=dur,
             source_size=st.st_size, source_mtime_ns=st.st_mtime_ns, model=model_digest)
    os.replace(tmp, cache_file)
    return probs, fr, dur


def _cache_job(args):
    audio, cache_file, digest = args
    import torch
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    hit = Path(cache_file).exists()
    cached_probs(Path(audio), Path(cache_file), digest)
    return str(audio), time.perf_counter() - t0, hit


# -------------------------------------------------------------------- scoring

def track_comparisons(ref_intervals, ref_labels, est_intervals, est_labels) -> dict:
    """Per-metric ``(weighted correct, weighted valid)`` durations, as mir_eval's evaluate
    (:func:`tagger.distill.evaluate.compare_chords`), plus the segmentation scores
    (``seg``, ``overseg``, ``underseg``)."""
    import mir_eval
    from mir_eval import chord, util
    out = compare_chords(ref_intervals, list(ref_labels), est_intervals, list(est_labels))
    est_intervals, est_labels = util.adjust_intervals(
        np.asarray(est_intervals), list(est_labels), ref_intervals.min(), ref_intervals.max(),
        chord.NO_CHORD, chord.NO_CHORD)
    ref_merged = chord.merge_chord_intervals(ref_intervals, list(ref_labels))
    est_merged = chord.merge_chord_intervals(est_intervals, est_labels)
    out["overseg"] = float(mir_eval.chord.overseg(ref_merged, est_merged))
    out["underseg"] = float(mir_eval.chord.underseg(ref_merged, est_merged))
    out["seg"] = min(out["overseg"], out["underseg"])
    return out


def reference_segment_count(ref_intervals, ref_labels) -> int:
    """Chord segments of the reference after joining repeats of one vocabulary chord."""
    segs = [(float(a), float(b), lab) for (a, b), lab in zip(ref_intervals, ref_labels)]
    return len(L.merge_repeats(segs, key=vocab.label_to_index))


def evaluate_track(job) -> dict:
    """All grid points for one track (runs in a worker)."""
    stem, lab_path, cache_file, p_grid, d_grid = job
    import mir_eval
    z = np.load(cache_file)
    probs, fr, duration = z["probs"], float(z["frame_rate"]), float(z["duration"])
    ref_int, ref_lab = mir_eval.io.load_labeled_intervals(str(lab_path))
    span = float(ref_int.max() - ref_int.min())
    ref_count = reference_segment_count(ref_int, ref_lab)
    res = {"stem": stem, "span_s": span, "ref_segments": ref_count, "grid": {}}
    for p in p_grid:
        base = decode(probs, fr, p_self=p, duration=duration, min_duration=0.0)
        for d in d_grid:
            segs = merge_short(base, d) if d > 0 else base
            est_int = np.array([[s.start, s.end] for s in segs])
            est_lab = [vocab.LABELS[s.index] for s in segs]
            comps = track_comparisons(ref_int, ref_lab, est_int, est_lab)
            lo, hi = ref_int.min(), ref_int.max()
            n_est = sum(1 for s in segs if min(s.end, hi) - max(s.start, lo) > 1e-6)
            comps["est_segments"] = n_est
            res["grid"][f"{p!r}|{d!r}"] = comps
    return res


def aggregate(tracks: list[dict], key: str) -> dict:
    """Pooled (duration-weighted) and per-track-mean scores of one grid point."""
    row: dict = {}
    for name in METRICS:
        num = sum(t["grid"][key][name][0] for t in tracks)
        den = sum(t["grid"][key][name][1] for t in tracks)
        row[name] = num / den if den > 0 else float("nan")
        per = [t["grid"][key][name][0] / t["grid"][key][name][1]
               for t in tracks if t["grid"][key][name][1] > 0]
        row[f"{name}_track_mean"] = float(np.mean(per)) if per else float("nan")
    for name in SEG_METRICS:
        row[name] = float(np.mean([t["grid"][key][name] for t in tracks]))
    minutes = sum(t["span_s"] for t in tracks) / 60.0
    est = sum(t["grid"][key]["est_segments"] for t in tracks)
    ref = sum(t["ref_segments"] for t in tracks)
    row["est_segments_per_min"] = est / minutes
    row["ref_segments_per_min"] = ref / minutes
    row["segment_ratio"] = est / ref
    return row


def eligible(row: dict, n_states: int = vocab.N_CLASSES) -> bool:
    """A real smoother: at ``p_self <= 1/K`` the Viterbi is the frame-wise argmax."""
    return row["p_self"] > 1.0 / n_states + 1e-12


def choose(table: list[dict], tie: float) -> dict:
    """Best pooled majmin; within ``tie`` of it, the segment rate closest to the reference's.

    Rows with ``p_self <= 1/K`` (no smoothing) stay in the table as a
    baseline but cannot be chosen.
    """
    rows = [r for r in table if eligible(r)]
    best = max(r["majmin"] for r in rows)
    tied = [r for r in rows if r["majmin"] >= best - tie]
    return min(tied, key=lambda r: (abs(math.log(r["segment_ratio"])), -r["majmin"]))


def paired_bootstrap(tracks: list[dict], key_a: str, key_b: str, metric: str = "majmin",
                     n: int = 2000, seed: int = 0) -> dict:
    """Pooled ``metric`` of setting a minus setting b, tracks resampled with replacement."""
    rng = np.random.default_rng(seed)
    num_a = np.array([t["grid"][key_a][metric][0] for t in tracks])
    num_b = np.array([t["grid"][key_b][metric][0] for t in tracks])
    den = np.array([t["grid"][key_a][metric][1] for t in tracks])  # same reference
    diffs = []
    for _ in range(n):
        i = rng.integers(0, len(tracks), len(tracks))
        diffs.append((num_a[i].sum() - num_b[i].sum()) / den[i].sum())
    diffs = np.array(diffs)
    return {"metric": metric, "difference": float((num_a.sum() - num_b.sum()) / den.sum()),
            "ci95": [float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))],
            "resamples": n, "tracks": len(tracks)}


def list_tracks(renders: Path, split: str) -> list[tuple[str, Path, Path]]:
    base = renders / split
    out = []
    for flac in sorted(base.glob("*.flac")):
        if flac.name.startswith("."):
            continue
        lab = flac.with_suffix(".lab")
        if lab.exists() and flac.with_suffix(".json").exists():
            out.append((flac.stem, flac, lab))
    return out


def ensure_cache(tracks, cache_dir: Path, split: str, workers: int) -> dict:
    digest = _h5_digest()
    jobs = [(str(f), str(cache_path(cache_dir, split, stem)), digest) for stem, f, _ in tracks]
    t0 = time.perf_counter()
    times, hits = [], 0
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        for i, (audio, secs, hit) in enumerate(pool.map(_cache_job, jobs), 1):
            hits += hit
            if not hit:
                times.append(secs)
                print(f"  crema [{i}/{len(jobs)}] {Path(audio).name} {secs:.1f}s", flush=True)
    return {"n": len(jobs), "cached_before": hits, "computed": len(times),
            "seconds_per_track": round(float(np.mean(times)), 2) if times else None,
            "wall_s": round(time.perf_counter() - t0, 1)}


def run_grid(tracks, cache_dir: Path, split: str, p_grid, d_grid, workers: int) -> list[dict]:
    jobs = [(stem, str(lab), str(cache_path(cache_dir, split, stem)), tuple(p_grid),
             tuple(d_grid)) for stem, _, lab in tracks]
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(evaluate_track, jobs))


def format_table(table: list[dict], chosen: dict | None = None) -> str:
    cols = ["p_self", "min_dur"] + list(METRICS) + ["seg", "est/min", "ref/min", "ratio"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in table:
        mark = " **" if chosen is not None and r is chosen else ""
        vals = [f"{r['p_self']:g}", f"{r['min_duration']:g}"]
        vals += [f"{r[m]:.4f}" for m in METRICS]
        vals += [f"{r['seg']:.4f}", f"{r['est_segments_per_min']:.1f}",
                 f"{r['ref_segments_per_min']:.1f}", f"{r['segment_ratio']:.2f}{mark}"]
        lines.append("| " + " | ".join(vals) + " |")
    return "\n".join(lines)


def data_summary(renders: Path, split: str, tracks) -> dict:
    metas = [json.loads(f.with_suffix(".json").read_text()) for _, f, _ in tracks]
    return {
        "split": split,
        "renders": str(renders / split),
        "n_tracks": len(tracks),
        "n_songs": len({m["id"] for m in metas}),
        "hours": round(sum(m["duration_s"] for m in metas) / 3600, 3),
        "render_seeds": sorted({m["seed"] for m in metas}),
        "stems": [stem for stem, _, _ in tracks],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--renders", default="/work/data/pop909_render")
    ap.add_argument("--cache", default="/work/data/cache")
    ap.add_argument("--split", default="validation", choices=("train", "validation"),
                    help="development split to tune on (never test)")
    ap.add_argument("--p-self", type=float, nargs="+", default=list(P_SELF_GRID))
    ap.add_argument("--min-duration", type=float, nargs="+", default=list(MIN_DURATION_GRID))
    ap.add_argument("--tie", type=float, default=0.002,
                    help="majmin within this of the best counts as a tie")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "viterbi_tuning.json"))
    ap.add_argument("--report-test", action="store_true",
                    help="afterwards, score the chosen setting once on the test split")
    args = ap.parse_args(argv)
    renders, cache = Path(args.renders), Path(args.cache)

    tracks = list_tracks(renders, args.split)
    if not tracks:
        ap.error(f"no rendered tracks in {renders / args.split}")
    print(f"{len(tracks)} {args.split} tracks; crema posteriors -> {cache}", flush=True)
    cache_info = ensure_cache(tracks, cache, args.split, args.workers)
    print(f"cache: {cache_info}", flush=True)
    t0 = time.perf_counter()
    per_track = run_grid(tracks, cache, args.split, args.p_self, args.min_duration, args.workers)
    table = []
    for p in args.p_self:
        for d in args.min_duration:
            row = {"p_self": p, "min_duration": d}
            row.update(aggregate(per_track, f"{p!r}|{d!r}"))
            table.append(row)
    chosen = choose(table, args.tie)
    print(f"grid scored in {time.perf_counter() - t0:.0f}s", flush=True)
    print(format_table(table, chosen), flush=True)
    crema_row = next((r for r in table if r["p_self"] == CREMA_SELF_TRANSITION
                      and r["min_duration"] == 0.0), None)
    best_row = max(table, key=lambda r: r["majmin"])

    def key_of(r):
        return f"{r['p_self']!r}|{r['min_duration']!r}"

    comparisons = {}
    if crema_row is not None:
        comparisons["chosen_minus_crema_default"] = paired_bootstrap(
            per_track, key_of(chosen), key_of(crema_row))
    comparisons["best_majmin_minus_chosen"] = paired_bootstrap(
        per_track, key_of(best_row), key_of(chosen))
    for name, c in comparisons.items():
        print(f"{name}: majmin {c['difference']:+.4f} (95% CI {c['ci95'][0]:+.4f} "
              f"{c['ci95'][1]:+.4f})", flush=True)
    result = {
        "chosen": {"p_self": chosen["p_self"], "min_duration": chosen["min_duration"]},
        "chosen_scores": chosen,
        "crema_default_scores": crema_row,
        "rule": ("max pooled (duration-weighted) mir_eval majmin over the validation "
                 f"renders; settings within {args.tie} of the best are tied and the one "
                 "whose segments per minute is closest to the reference's (|log ratio|) "
                 "wins; p_self <= 1/170 (no smoothing: the frame-wise argmax) is shown "
                 "as a baseline but not eligible"),
        "paired_bootstrap": comparisons,
        "teacher": {"model": "crema 0.2.0 chord model (model_zoo.crema)",
                    "h5_sha256_16": _h5_digest(), "frame_rate": 22050 / 2048},
        "data": data_summary(renders, args.split, tracks),
        "grid": {"p_self": args.p_self, "min_duration": args.min_duration},
        "table": table,
        "notes": ("scores: pooled = sum of correct durations / sum of valid durations "
                  "over all tracks (mir_eval comparisons, MIREX WCSR); *_track_mean = mean "
                  "of per-track scores (as crema's test_scores.json); seg/overseg/underseg: "
                  "mir_eval directional Hamming measures, per-track mean; reference "
                  "segments counted after joining repeats of one vocabulary chord"),
        "cache": cache_info,
    }
    if args.report_test:
        test_tracks = list_tracks(renders, "test")
        if test_tracks:
            print(f"test (for the record): {len(test_tracks)} tracks", flush=True)
            test_cache = ensure_cache(test_tracks, cache, "test", args.workers)
            pt = run_grid(test_tracks, cache, "test", [chosen["p_self"]],
                          [chosen["min_duration"]], args.workers)
            key = f"{chosen['p_self']!r}|{chosen['min_duration']!r}"
            test_row = {"p_self": chosen["p_self"], "min_duration": chosen["min_duration"]}
            test_row.update(aggregate(pt, key))
            result["test_report"] = {
                "note": "scored once at the chosen setting; not used for any choice",
                "scores": test_row, "data": data_summary(renders, "test", test_tracks),
                "cache": test_cache}
            print(format_table([test_row]), flush=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"chosen p_self={chosen['p_self']} min_duration={chosen['min_duration']} "
          f"-> {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
