"""Tuning estimation and correction on detuned POP909 renders.

Validation songs are rendered once (training/render_pop909.py, variant 0,
no transposition, cached under ``--renders``); an excerpt of each
(``--seconds`` from ``--start``) is pitch-shifted by resampling to each of
``--cents`` (a track ``c`` cents sharp plays ``2**(c/1200)`` faster; the
label times are scaled with it) and analysed twice: with the tuning
correction (the default engine) and without. Reported per detuning: the
median absolute tuning error, the MIREX key score against the render's key
and the chord majmin score against its labels, for both runs.

:func:`detune_midi` (a pitch-wheel offset on every melodic channel) detunes
a MIDI file before rendering instead; tests/test_tuning.py uses it.

Usage::

    python training/tuning_eval.py --renders /tmp/kc-tuning --songs 6
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model_zoo import keys  # noqa: E402
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


def score_run(analyzer, y, ref_key: int, lab, sr: int) -> dict:
    from tagger.distill.evaluate import compare_chords, mirex_key_score, segments_mir
    r = analyzer.analyse_audio("excerpt", y)
    est_i, est_l = segments_mir(r.segments)
    return {"tuning": r.tuning, "key": mirex_key_score(ref_key, r.key_index),
            "majmin": compare_chords(lab[0], lab[1], est_i, est_l)["majmin"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pop909", default=DEFAULT_POP909)
    ap.add_argument("--renders", required=True, help="render cache folder")
    ap.add_argument("--songs", type=int, default=6, help="first N validation songs")
    ap.add_argument("--start", type=float, default=30.0)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--cents", type=float, nargs="+", default=list(CENTS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args(argv)
    from tagger.decode import load_audio
    from tagger.engine import Analyzer
    runs = {"corrected": Analyzer(device="cpu", num_threads=args.threads),
            "uncorrected": Analyzer(device="cpu", num_threads=args.threads,
                                    correct_tuning=False)}
    sr = runs["corrected"].sample_rate
    rows = []
    for song in ids_in_split(song_ids(args.pop909), "validation")[: args.songs]:
        meta = render_one(args.pop909, args.renders, song, 0, 0, sr, transpose=False)
        base = Path(args.renders) / meta["split"] / meta["stem"]
        y = load_audio(str(base) + ".flac", sr)
        y = y[int(args.start * sr): int((args.start + args.seconds) * sr)]
        ref_key = keys.parse_key(meta["key"])
        for c in args.cents:
            lab = excerpt_labels(Path(str(base) + ".lab"), args.start, args.seconds,
                                 2 ** (c / 1200))
            yc = resample_detune(y, c)
            row = {"song": song, "cents": c}
            for name, an in runs.items():
                row[name] = score_run(an, yc, ref_key, lab, sr)
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = summarize(rows)
    print(json.dumps(summary, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows, "summary": summary}, indent=1))
    return 0


def summarize(rows: list[dict]) -> dict:
    """Per detuning: median |tuning error|, mean key score and pooled majmin, both runs."""
    out = {}
    for c in sorted({r["cents"] for r in rows}):
        sel = [r for r in rows if r["cents"] == c]
        err = [abs((r["corrected"]["tuning"] - c + 50) % 100 - 50) for r in sel]  # circular
        out[str(c)] = {"median_abs_error": float(np.median(err))}
        for name in ("corrected", "uncorrected"):
            mm = [r[name]["majmin"] for r in sel]
            out[str(c)][name] = {
                "key": float(np.mean([r[name]["key"] for r in sel])),
                "majmin": sum(a for a, _ in mm) / max(sum(b for _, b in mm), 1e-9)}
    return out


if __name__ == "__main__":
    sys.exit(main())
