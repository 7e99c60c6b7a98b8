"""Tuning estimation and correction on detuned renders.

Labelled renders (``--from``: a folder with ``<split>/<stem>.flac`` and the
``.lab`` chords and ``.key`` key(s) beside each, as render_pop909.py and
render_mma.py write them; or, with ``--renders``, POP909 validation songs
rendered here in their own key) are pitch-shifted by resampling to each of
``--cents`` (a track ``c`` cents sharp plays ``2**(c/1200)`` faster; the
label times are scaled with it), each copy an excerpt of ``--seconds`` from
``--start`` (:func:`evaluate_song`), and analysed twice: with the tuning
correction (the default engine) and without. Reported per detuning: the median absolute tuning
error against the nominal shift and against the song's own in-tune reading
plus the shift (the renders are not exactly at A440), the MIREX key score
against the key covering most of the excerpt and the pooled chord majmin
score, for both runs, and their differences from the in-tune excerpts'.

:func:`detune_midi` (a pitch-wheel offset on every melodic channel) detunes
a MIDI file before rendering instead; tests/test_tuning.py uses it.

Usage::

    python training/tuning_eval.py --from /work/data/pop909_cl_render \\
        --split validation --songs 40 --out /tmp/tuning_val.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.render_pop909 import DEFAULT_POP909, render_one  # noqa: E402
from training.splits import ids_in_split, song_ids  # noqa: E402

CENTS = (-45, -30, -15, 0, 15, 30, 45)
PITCH_BEND_RANGE_CENTS = 200.0   # the General MIDI default (+-2 semitones)


def detune_midi(src, dst, cents: float, seconds: float | None = None) -> None:
    """Write ``src`` with every melodic channel bent by ``cents`` from the start
    (and, with ``seconds``, no note starting after that time)."""
    import mido
    mid = mido.MidiFile(str(src))
    value = int(round(cents / PITCH_BEND_RANGE_CENTS * 8192))
    limit = None
    if seconds is not None:
        tempo = next((m.tempo for tr in mid.tracks for m in tr if m.type == "set_tempo"), 500000)
        limit = mido.second2tick(seconds, mid.ticks_per_beat, tempo)
    channels = sorted({m.channel for tr in mid.tracks for m in tr
                       if hasattr(m, "channel") and m.channel != 9})
    for i, track in enumerate(mid.tracks):
        kept, tick, carry = mido.MidiTrack(), 0, 0
        for msg in track:
            tick += msg.time
            if limit is not None and msg.type == "note_on" and msg.velocity > 0 and tick > limit:
                carry += msg.time
                continue
            kept.append(msg.copy(time=msg.time + carry))
            carry = 0
        if i == 0:
            for ch in channels:
                kept.insert(0, mido.Message("pitchwheel", channel=ch, pitch=value, time=0))
        mid.tracks[i] = kept
    mid.save(str(dst))


def resample_detune(y: np.ndarray, cents: float) -> np.ndarray:
    """``y`` played ``2**(cents/1200)`` times faster: ``cents`` sharp."""
    from scipy.signal import resample
    if cents == 0:
        return y
    n = int(round(len(y) / 2 ** (cents / 1200)))
    return resample(y.astype(np.float64), n).astype(np.float32)


def excerpt_labels(lab_path: Path, start: float, seconds: float, ratio: float):
    """Reference intervals and labels of the excerpt, times scaled by ``1 / ratio``."""
    from training.labels import read_lab
    ints, labs = read_lab(lab_path)
    out_i, out_l = [], []
    for (s, e), lab in zip(ints, labs):
        s, e = max(s, start), min(e, start + seconds)
        if e > s:
            out_i.append([(s - start) / ratio, (e - start) / ratio])
            out_l.append(lab)
    return np.asarray(out_i), out_l


def excerpt_key(key_path: Path, start: float, seconds: float) -> int:
    """The key covering most of ``[start, start + seconds]`` in a ``.key`` file."""
    from tagger.distill.labels import read_key_segments
    cover: dict[int, float] = {}
    for s, e, k in read_key_segments(key_path):
        cover[k] = cover.get(k, 0.0) + max(0.0, min(e, start + seconds) - max(s, start))
    return max(cover, key=cover.get)


def rendered_songs(roots: list[str], split: str) -> list[Path]:
    """``<root>/<split>/<stem>.flac`` with a ``.lab`` and a ``.key`` beside it, by stem."""
    out = []
    for root in roots:
        out += sorted(f for f in (Path(root) / split).glob("*.flac")
                      if f.with_suffix(".lab").exists() and f.with_suffix(".key").exists())
    return out


def pop909_renders(pop909: str, cache: str, n: int, sr: int) -> list[Path]:
    """The first ``n`` POP909 validation songs rendered in their own key (variant 0)."""
    out = []
    for song in ids_in_split(song_ids(pop909), "validation")[:n]:
        meta = render_one(pop909, cache, song, 0, 0, sr, transpose=False)
        out.append(Path(cache) / meta["split"] / f"{meta['stem']}.flac")
    return out


def score_run(analyzer, y, ref_key: int, lab) -> dict:
    from tagger.distill.evaluate import compare_chords, mirex_key_score, segments_mir
    r = analyzer.analyse_audio("excerpt", y)
    est_i, est_l = segments_mir(r.segments)
    return {"tuning": r.tuning, "key": mirex_key_score(ref_key, r.key_index),
            "majmin": compare_chords(lab[0], lab[1], est_i, est_l)["majmin"]}


def evaluate_song(flac: Path, runs: dict, sr: int, start: float, seconds: float,
                  cents, same_audio: bool = False) -> list[dict]:
    """One row per detuning of one render's excerpt: every run's tuning and scores.

    Each copy lasts ``seconds`` (``seconds * 2**(c/1200)`` of the render,
    resampled), so the key model's windows (15 s every 5 s) cover every copy
    alike; with ``same_audio`` every copy is made from the same ``seconds``
    of audio instead (a sharp copy is then shorter, and up to 4.5 s of its
    end falls after the last window: the key is judged on less music).
    """
    from model_zoo.tuning import estimate_tuning
    from tagger.decode import load_audio
    audio = load_audio(str(flac), sr)
    need = seconds if same_audio else seconds * max(1.0, *(2 ** (c / 1200) for c in cents))
    start = max(0.0, min(start, len(audio) / sr - need))     # short songs: their last part
    rows = []
    for c in cents:
        ratio = 2 ** (c / 1200)
        span = seconds if same_audio else seconds * ratio
        y = audio[int(start * sr): int((start + span) * sr)]
        lab = excerpt_labels(flac.with_suffix(".lab"), start, span, ratio)
        row = {"song": flac.stem, "source": flac.parent.parent.name, "cents": c}
        if c == 0:   # an independent reading of the in-tune render (librosa's method)
            row["librosa_cents"] = 100.0 * estimate_tuning(y, sr)
        ref_key = excerpt_key(flac.with_suffix(".key"), start, span)
        for name, an in runs.items():
            row[name] = score_run(an, resample_detune(y, c), ref_key, lab)
        rows.append(row)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--from", dest="roots", action="append", default=[],
                    help="render folder (<root>/<split>/<stem>.flac, .lab, .key); repeatable")
    ap.add_argument("--split", default="validation", choices=("validation", "test"))
    ap.add_argument("--renders", help="without --from: render POP909 validation songs here")
    ap.add_argument("--pop909", default=DEFAULT_POP909)
    ap.add_argument("--songs", type=int, default=6, help="first N songs (of each --from)")
    ap.add_argument("--start", type=float, default=30.0)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--cents", type=float, nargs="+", default=list(CENTS))
    ap.add_argument("--same-audio", action="store_true",
                    help="make every copy from the same --seconds of audio (sharp copies shorter)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args(argv)
    if 0 not in args.cents:
        ap.error("--cents must include 0 (the in-tune reference)")
    from tagger.engine import Analyzer
    runs = {"corrected": Analyzer(device="cpu", num_threads=args.threads),
            "uncorrected": Analyzer(device="cpu", num_threads=args.threads,
                                    correct_tuning=False)}
    sr = runs["corrected"].sample_rate
    if args.roots:
        flacs = [f for root in args.roots
                 for f in rendered_songs([root], args.split)[: args.songs]]
    elif args.renders:
        flacs = pop909_renders(args.pop909, args.renders, args.songs, sr)
    else:
        ap.error("give --from (existing renders) or --renders (a cache to render into)")
    if not flacs:
        ap.error(f"no {args.split} renders with .lab and .key files in {args.roots}")
    rows = []
    for flac in flacs:
        for row in evaluate_song(flac, runs, sr, args.start, args.seconds, args.cents,
                                 args.same_audio):
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = summarize(rows)
    print(json.dumps(summary, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "rows": rows,
                                              "summary": summary}, indent=1))
    return 0


def circular(d):
    """Differences in cents folded into [-50, 50)."""
    return (np.asarray(d, dtype=np.float64) + 50.0) % 100.0 - 50.0


def summarize(rows: list[dict]) -> dict:
    """Per detuning: median |tuning error| against the nominal shift and against
    the song's own in-tune reading plus the shift; mean key score and pooled
    majmin of both runs, and their difference from the in-tune excerpts'."""
    def song(r):
        return (r.get("source"), r["song"])
    own = {song(r): r["corrected"]["tuning"] for r in rows if r["cents"] == 0}
    base = {}
    out = {"songs": len(own)}
    for c in [0.0] + sorted({r["cents"] for r in rows} - {0}):
        sel = [r for r in rows if r["cents"] == c]
        est = np.array([r["corrected"]["tuning"] for r in sel])
        ref = np.array([own[song(r)] for r in sel])
        d = {"median_abs_error_nominal": float(np.median(np.abs(circular(est - c)))),
             "median_abs_error_own": float(np.median(np.abs(circular(est - ref - c))))}
        for name in ("corrected", "uncorrected"):
            mm = [r[name]["majmin"] for r in sel]
            key = float(np.mean([r[name]["key"] for r in sel]))
            majmin = sum(a for a, _ in mm) / max(sum(b for _, b in mm), 1e-9)
            if c == 0 and name == "corrected":
                base = {"key": key, "majmin": majmin}
            d[name] = {"key": key, "majmin": majmin, "key_delta": key - base["key"],
                       "majmin_delta": majmin - base["majmin"]}
        out[f"{c:+g}"] = d
    tuned = np.array(list(own.values()))
    lib = np.array([r["librosa_cents"] for r in rows if r["cents"] == 0 and "librosa_cents" in r])
    out["in_tune_readings"] = {"median": float(np.median(tuned)),
                               "median_abs": float(np.median(np.abs(tuned))),
                               "min": float(tuned.min()), "max": float(tuned.max())}
    if len(lib) == len(tuned):
        out["in_tune_readings"]["median_abs_diff_librosa"] = float(
            np.median(np.abs(circular(tuned - lib))))
    return out


if __name__ == "__main__":
    sys.exit(main())
