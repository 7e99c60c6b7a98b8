"""How much POP909-CL's corrected labels differ from POP909's own, per split::

    python training/compare_cl.py --split train --json /work/data/logs/cl_vs_pop909_train.json

Chords: mir_eval's ``majmin`` and ``root`` scores of POP909's ``chord_midi.txt``
against CL's chords (both on the MIDI's clock, CL aligned by
``pop909_cl.align``), duration-weighted over all aligned songs; 1 - score is
the disagreement on the time both call a major or minor chord (or N).
Keys: songs whose CL labels change key, against POP909's ``key_audio.txt``,
and whether the two majority keys agree. Also: the share of CL chord time the
vocabulary maps to ``X``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model_zoo import vocab
from training import labels as L
from training import pop909_cl
from training.splits import SPLITS, ids_in_split, song_ids


def chord_scores(ref_rows, est_rows) -> dict[str, tuple[float, float]]:
    """``{metric: (score, weight)}`` of est against ref (mir_eval, duration-weighted)."""
    import mir_eval
    ref_i = np.array([[s, e] for s, e, _ in ref_rows])
    est_i = np.array([[s, e] for s, e, _ in est_rows])
    est_i, est_l = mir_eval.util.adjust_intervals(est_i, [r[2] for r in est_rows],
                                                  ref_i.min(), ref_i.max(), "N", "N")
    ints, ref_l, est_l = mir_eval.util.merge_labeled_intervals(ref_i, [r[2] for r in ref_rows],
                                                               est_i, est_l)
    dur = mir_eval.util.intervals_to_durations(ints)
    out = {}
    for name in ("majmin", "root"):
        comp = getattr(mir_eval.chord, name)(ref_l, est_l)
        keep = comp >= 0
        out[name] = (float(np.sum(comp[keep] * dur[keep])), float(np.sum(dur[keep])))
    return out


def compare_song(pop909: Path, cl: Path, sid: str) -> dict:
    got = pop909_cl.song_labels(pop909, cl, sid)
    row = {"id": sid, "alignment": got["alignment"]}
    if not got["alignment"]["ok"] or not got["keys"]:
        return row
    pop_chords = L.read_segments(pop909 / sid / "chord_midi.txt")
    row["scores"] = chord_scores(got["chords"], pop_chords)
    x = sum(e - s for s, e, lab in got["chords"] if vocab.label_to_index(lab) == vocab.X_INDEX)
    row["x_seconds"] = x
    row["chord_seconds"] = sum(e - s for s, e, lab in got["chords"] if lab != "N")
    cl_key, _, cl_n = L.majority_key(got["keys"])
    pop_key, _, pop_n = L.majority_key(L.read_segments(pop909 / sid / "key_audio.txt"))
    row.update(cl_keys=cl_n, pop909_keys=pop_n,
               same_key=L.parse_key(cl_key) == L.parse_key(pop_key))
    return row


def summarise(rows) -> dict:
    ok = [r for r in rows if "scores" in r]
    out = {"songs": len(rows), "aligned": len(ok),
           "not_aligned": [r["id"] for r in rows if "scores" not in r]}
    for name in ("majmin", "root"):
        num = sum(r["scores"][name][0] for r in ok)
        den = sum(r["scores"][name][1] for r in ok)
        out[f"{name}_agreement"] = round(num / den, 4)
        out[f"{name}_disagreement"] = round(1 - num / den, 4)
    out["x_share_of_chord_time"] = round(sum(r["x_seconds"] for r in ok)
                                         / sum(r["chord_seconds"] for r in ok), 4)
    out["cl_songs_with_key_changes"] = sum(r["cl_keys"] > 1 for r in ok)
    out["pop909_songs_with_key_changes"] = sum(r["pop909_keys"] > 1 for r in ok)
    out["majority_key_agrees"] = sum(r["same_key"] for r in ok)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pop909", default="/work/shared/data/pop909")
    ap.add_argument("--cl", default=pop909_cl.DEFAULT_CL)
    ap.add_argument("--split", choices=SPLITS, default="train")
    ap.add_argument("--json", help="write the per-song rows and the summary here")
    args = ap.parse_args(argv)
    pop909 = Path(args.pop909)
    rows = [compare_song(pop909, Path(args.cl), sid)
            for sid in ids_in_split(song_ids(pop909), args.split)]
    summary = summarise(rows)
    print(json.dumps(summary, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "songs": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
